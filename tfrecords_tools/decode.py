"""Reading the records back in TensorFlow: images, bit-packed masks, resizing.

The twin of `tfrecords_tools.encode`: what `encode` packs at conversion,
these functions unpack inside `tf.data` (TensorFlow ops only, so they run
on a TPU host). The competition plugins (`kaggle_tf.tasks`) decode their
records with them.

Example:

>>> mask = decode_mask(encoded, classes=4)     # doctest: +SKIP
>>> mask.shape                                 # (H, W, 4) uint8 0/1
"""

import tensorflow as tf

from tfrecords_tools import schema


def decode_image(encoded, channels: int, scale: bool = True):
    """Encoded JPEG/PNG (scalar string) -> `(height, width, channels)` float32
    in [0, 1] (8- or 16-bit sources are scaled by their range); `scale`
    False: the decoded uint8 as it is."""
    image = tf.io.decode_image(encoded, channels=channels,
                               expand_animations=False)
    return tf.image.convert_image_dtype(image, tf.float32) if scale \
        else image


def decode_images(encoded, count: int, channels_each: int = 1):
    """`count` encoded images (a `(count,)` string tensor) stacked on the
    channel axis: `(height, width, count * channels_each)` float32."""
    return tf.concat([decode_image(encoded[i], channels_each)
                      for i in range(count)], axis=-1)


def decode_mask(encoded, classes: int):
    """A bit-packed mask PNG -> `(height, width, classes)` uint8 0/1.

    Bit k of the single-channel PNG is class k (see
    `tfrecords_tools.encode.pack_mask`).
    """
    dtype = tf.uint8 if schema.mask_dtype(classes) == "uint8" else tf.uint16
    packed = tf.io.decode_png(encoded, channels=1, dtype=dtype)
    bits = tf.constant([1 << k for k in range(classes)], dtype)
    return tf.cast(tf.bitwise.bitwise_and(packed, bits) > 0, tf.uint8)


def resize_image(image, size, stored_size=None):
    """Bilinear resize to `size` (skipped when `stored_size` equals it);
    the result has a static `(height, width, channels)` shape."""
    h, w = size
    if stored_size is None or tuple(stored_size) != (h, w):
        image = tf.image.resize(image, (h, w), method="bilinear")
    return tf.ensure_shape(image, (h, w, image.shape[-1]))


def resize_mask(mask, size, stored_size=None):
    """Nearest-neighbour resize (labels stay 0/1), static shape."""
    h, w = size
    if stored_size is None or tuple(stored_size) != (h, w):
        mask = tf.image.resize(mask, (h, w), method="nearest")
    return tf.ensure_shape(mask, (h, w, mask.shape[-1]))


# --- segmentation records (steel, siim) -------------------------------------

def segmentation_features(split: str, classes: int) -> dict:
    """The parse spec of a segmentation record: one encoded image, id and
    fold; train records add the bit-packed mask and per-class presence."""
    spec = {
        schema.ID: tf.io.FixedLenFeature([], tf.string),
        schema.IMAGE: tf.io.FixedLenFeature([1], tf.string),
        schema.FOLD: tf.io.FixedLenFeature([], tf.int64,
                                           default_value=schema.TEST_FOLD),
    }
    if split == "train":
        spec[schema.MASK] = tf.io.FixedLenFeature([], tf.string)
        spec[schema.LABELS] = tf.io.FixedLenFeature([classes], tf.float32)
    return spec


def decode_packed_mask(encoded):
    """A bit-packed mask PNG of up to 8 classes -> `(height, width, 1)`
    uint8 as stored (bit k = class k)."""
    return tf.io.decode_png(encoded, channels=1, dtype=tf.uint8)


def segmentation_example(parsed: dict, cfg, split: str, manifest: dict,
                         classes: int, stored_channels: int,
                         stored_forms: bool = False) -> dict:
    """A parsed segmentation record -> `images`, `segmentation_masks`,
    `labels`, `id`, `fold` at `cfg.data.image_size`.

    The image is decoded with `stored_channels` and resized; a grayscale
    image (1 stored channel) is then repeated to `cfg.data.channels`.

    `stored_forms`: what an augmenter can take as stored (it converts
    them): the masks (up to 8 classes) as `packed_masks` (H, W, 1) uint8, a
    bit per class, instead of `segmentation_masks`; the image as decoded
    (uint8) when it needs no resizing.
    """
    size = cfg.data.image_size
    stored = (manifest or {}).get("image_size")
    if stored_forms and stored is not None \
            and tuple(stored) == tuple(size):
        image = decode_image(parsed[schema.IMAGE][0], stored_channels,
                             scale=False)
        image = tf.ensure_shape(image, (*size, stored_channels))
    else:
        image = decode_image(parsed[schema.IMAGE][0], stored_channels)
        image = resize_image(image, size, stored)
    if stored_channels != cfg.data.channels:
        image = tf.tile(image, [1, 1, cfg.data.channels])
    out = {"images": image, "id": parsed[schema.ID],
           "fold": parsed[schema.FOLD]}
    if split == "train":
        if not stored_forms:
            mask = resize_mask(decode_mask(parsed[schema.MASK], classes),
                               size, stored)
            out["segmentation_masks"] = tf.cast(mask, tf.float32)
        elif schema.mask_dtype(classes) != "uint8":
            raise ValueError(f"packed masks hold up to 8 classes (a bit "
                             f"each in uint8). Received: {classes}")
        else:
            out["packed_masks"] = resize_mask(
                decode_packed_mask(parsed[schema.MASK]), size, stored)
        out["labels"] = tf.ensure_shape(parsed[schema.LABELS], (classes,))
    return out

