"""Reading what `tfrecords_tools.convert` wrote: manifest, shards, decoders.

The feature keys come from `tfrecords_tools.schema` (shared with the
writer). Every function here is TensorFlow ops or `tf.io.gfile`, so it runs
in `tf.data` on a TPU host and reads `gs://` paths.

Example:

>>> manifest = read_manifest("data/records/steel")       # doctest: +SKIP
>>> manifest["splits"]["train"]["records_per_fold"]       # doctest: +SKIP
{'0': 2514, '1': 2514, '2': 2514, '3': 2513, '4': 2513}
"""

import json
import os

import tensorflow as tf

from kaggle_tf.data import shard_check
from tfrecords_tools import schema


def id_strings(values) -> list:
    """String ids from a dataset batch (bytes, any shape) -> `str` list,
    flattened in row-major order."""
    import numpy as np

    return [v.decode() if isinstance(v, bytes) else str(v)
            for v in np.asarray(values).ravel()]


def read_manifest(records_dir: str) -> dict:
    """Loads `records_dir/manifest.json`.

    Raises:
        FileNotFoundError: no manifest (the conversion has not finished).
        ValueError: a manifest of another schema version.
    """
    path = os.path.join(records_dir, schema.MANIFEST)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} not found: convert the raw data first "
            "(python -m tfrecords_tools.convert --config ...)")
    with tf.io.gfile.GFile(path, "rb") as f:
        text = f.read()
    try:
        manifest = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: damaged manifest ({e}); convert the raw "
                         "data again") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not a manifest (a JSON object expected);"
                         " convert the raw data again")
    version = manifest.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema version {version}, this reader expects "
            f"{schema.SCHEMA_VERSION}; convert the raw data again")
    return manifest


def check_manifest(manifest: dict, cfg, records_dir: str) -> None:
    """Raises ValueError when the records do not match the config."""
    where = os.path.join(records_dir, schema.MANIFEST)
    if manifest["task"] != cfg.task:
        raise ValueError(f"{where} holds task {manifest['task']!r}, the "
                         f"config says task={cfg.task!r}")
    if manifest["folds"] != cfg.data.folds:
        raise ValueError(
            f"{where} was written with {manifest['folds']} folds, the "
            f"config says data.folds={cfg.data.folds}; convert again")


def shard_files(records_dir: str, manifest: dict, split: str = "train",
                folds=None) -> list:
    """Shard paths of `split` (those holding `folds`; None = all).

    Files are listed with `tf.io.gfile.glob` and checked against the
    manifest, so a missing shard is an error rather than a silent gap.
    """
    if split not in manifest["splits"]:
        raise ValueError(f"split must be one of "
                         f"{sorted(manifest['splits'])}. Received: {split!r}")
    pattern = os.path.join(records_dir, schema.shard_pattern(split))
    found = {os.path.basename(p) for p in tf.io.gfile.glob(pattern)}
    wanted = None if folds is None else {int(f) for f in folds}
    files = []
    for shard in manifest["splits"][split]["shards"]:
        if wanted is not None and shard.get("fold") not in wanted:
            continue
        if shard["file"] not in found:
            raise FileNotFoundError(
                f"{os.path.join(records_dir, shard['file'])} is listed in "
                "the manifest but missing")
        files.append(os.path.join(records_dir, shard["file"]))
    shard_check.remember(files)
    return files


def decode_image(encoded, channels: int):
    """Encoded JPEG/PNG (scalar string) -> `(height, width, channels)` float32
    in [0, 1] (8- or 16-bit sources are scaled by their range)."""
    image = tf.io.decode_image(encoded, channels=channels,
                               expand_animations=False)
    return tf.image.convert_image_dtype(image, tf.float32)


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


def segmentation_example(parsed: dict, cfg, split: str, manifest: dict,
                         classes: int, stored_channels: int) -> dict:
    """A parsed segmentation record -> `images`, `segmentation_masks`,
    `labels`, `id`, `fold` at `cfg.data.image_size`.

    The image is decoded with `stored_channels` and resized; a grayscale
    image (1 stored channel) is then repeated to `cfg.data.channels`.
    """
    size = cfg.data.image_size
    stored = (manifest or {}).get("image_size")
    image = decode_image(parsed[schema.IMAGE][0], stored_channels)
    image = resize_image(image, size, stored)
    if stored_channels != cfg.data.channels:
        image = tf.tile(image, [1, 1, cfg.data.channels])
    out = {"images": image, "id": parsed[schema.ID],
           "fold": parsed[schema.FOLD]}
    if split == "train":
        mask = resize_mask(decode_mask(parsed[schema.MASK], classes), size,
                           stored)
        out["segmentation_masks"] = tf.cast(mask, tf.float32)
        out["labels"] = tf.ensure_shape(parsed[schema.LABELS], (classes,))
    return out

