"""Runs a transform tree on a batch: formats, dtypes, seeds and XLA.

`Runner(tree, per_sample, jit_compile)(batch, seed)` takes the batch as the
data pipeline yields it (`{"images", "segmentation_masks", other keys}` or
a bare image tensor) and returns the same structure; keys other than those
two pass through untouched.

Seeds: inside a model the caller passes the next value of a
`keras.random.SeedGenerator`. In `tf.data` (placement "dataset") the runner
keeps its own counter and reads it with `RngReadAndSkip`, which is atomic:
parallel map calls never get the same seed (a Keras SeedGenerator's
read-then-assign can hand two of them the same value). A hash of a
subsample of the images is folded in as well. The same seed and the same
call order give the same batches; parallel map calls may take the seeds in
a different order.

Binary masks of up to 8 classes run packed, a bit per class in one uint8
channel (`packing`), when every op of the tree allows it. A batch may also
bring them packed already (`"packed_masks"`, (batch, H, W, 1) uint8, with
`mask_classes`), as the records store them: the runner then skips the
one-hot masks' check and packing, and returns them unpacked as
`"segmentation_masks"` float32 (B, H, W, mask_classes). Images of uint8
or uint16 are scaled to [0, 1] as `tf.image.convert_image_dtype` does,
inside the compiled function (the batch travels at its stored depth), and
come back float32.

Grayscale stored as RGB (Severstal's JPEGs, a DICOM repeated into three
channels): where every image of a batch has all its channels equal and
every op of the tree treats channels alike (`channel_uniform`), the tree
runs on the first channel and the result is repeated (per-sample runner,
`gray_once`): the same output bit for bit at a third of the resampling
work. Any other batch takes the full path; each path compiles on its
first use.

Example:

>>> runner = Runner(tree, per_sample=True, jit_compile=True)
>>> out = runner({"images": images, "segmentation_masks": masks}, seed)
"""

import functools
import random

import tensorflow as tf

from kaggle_tf.augment.ops import base
from kaggle_tf.augment.ops import packing
from kaggle_tf.augment.ops import rng

IMAGES = "images"
MASKS = "segmentation_masks"
PACKED_MASKS = "packed_masks"


# XLA compiles of the same tree are shared between runners (compiling the
# SIIM list takes seconds): key -> tf.function.
_COMPILED = {}


# Integer images are taken as `tf.image.convert_image_dtype` scales them
# (the records' decoding does the same): float32 in [0, 1] (`base.run`).
INTEGER_IMAGES = base.INTEGER_IMAGES


def _content_key(images):
    sample = base.float_images(images[:, ::16, ::16, :])
    return tf.reduce_sum(tf.cast(tf.round(sample * 255.0), tf.int32))


class Runner:
    """Callable `(batch, seed) -> batch` for one tree.

    Args:
        tree: the root node, indices assigned.
        per_sample: map over the batch with conds (CPU, tf.data) or
            vectorize over it (accelerators).
        jit_compile: compile with XLA (ignored when an op cannot be).
        seed: initial value of the runner's own atomic counter (used when
            a call passes no seed); None for a random one.
        cache_key: a string naming the tree (its spec); runners with the
            same key share one compiled function. None: no sharing.
        compose_geometric: sample consecutive geometric ops once
            (`chain`) rather than once each.
        gray_once: per sample, run batches whose images have all
            channels equal on one channel (see the module docstring).
    """

    def __init__(self, tree, per_sample, jit_compile, seed=None,
                 cache_key=None, compose_geometric=True, gray_once=True):
        self.tree = tree
        self.compose_geometric = bool(compose_geometric)
        self.gray_once = bool(gray_once) and per_sample \
            and tree.channel_uniform
        if seed is None:
            seed = random.randrange(2 ** 31)
        self.counter = tf.Variable([seed, 0, 0], dtype=tf.int64,
                                   trainable=False, name="augment_counter")
        self.per_sample = per_sample
        self.jit_compile = bool(jit_compile) and tree.xla_safe
        self._key = None
        if self.jit_compile and cache_key and all(
                not hasattr(leaf, "layer") for leaf in tree.leaves()):
            self._key = (cache_key, per_sample, self.compose_geometric)
        self._cores = {}
        self._core = self._compiled(None)

    def _compiled(self, packed_classes, gray_channels=None):
        """`(data, seed) -> out` for one-hot masks (None) or masks packed
        with `packed_classes`, XLA-compiled when the runner is.
        `gray_channels`: run on the images' first channel and repeat the
        result `gray_channels` times."""
        if (packed_classes, gray_channels) in self._cores:
            return self._cores[packed_classes, gray_channels]
        run = self._run if packed_classes is None else functools.partial(
            self._run_packed, classes=packed_classes)
        if gray_channels is not None:
            run = functools.partial(_on_first_channel, run=run,
                                    channels=gray_channels)
        if self.jit_compile:
            key = None if self._key is None else self._key + (
                packed_classes, gray_channels)
            if key is not None and key in _COMPILED:
                run = _COMPILED[key]
            else:
                # Traced per input shape: relaxed shapes would lose the
                # masks' class count, which packing needs.
                run = tf.function(run, jit_compile=True, autograph=False)
                if key is not None:
                    _COMPILED[key] = run
        self._cores[packed_classes, gray_channels] = run
        return run

    def _run(self, data, seed):
        masks = data.get("masks")
        classes = None if masks is None else masks.shape[-1]
        if classes is None or classes > packing.MAX_CLASSES \
                or not self.tree.packs_masks:
            return self._tree(data, seed)

        # Binary masks move as one uint8 channel (a bit per class); others
        # as they are.
        def packed():
            out = self._tree(dict(data, masks=packing.pack(masks)), seed)
            out["masks"] = packing.unpack(out["masks"], classes, masks.dtype)
            return out

        return tf.cond(packing.is_binary(masks), packed,
                       lambda: self._tree(data, seed))

    def _run_packed(self, data, seed, classes):
        """`data["masks"]` packed already (a bit per class)."""
        if not self.tree.packs_masks:
            data = dict(data, masks=packing.unpack(data["masks"], classes,
                                                   tf.float32))
            return self._tree(data, seed)
        out = self._tree(data, seed)
        out["masks"] = packing.unpack(out["masks"], classes, tf.float32)
        return out

    def _tree(self, data, seed):
        return base.run(self.tree, data, seed, self.per_sample,
                        self.compose_geometric)

    def next_seed(self):
        """A fresh seed from the atomic counter, int32 (2,)."""
        state = tf.raw_ops.RngReadAndSkip(
            resource=self.counter.handle, alg=1,
            delta=tf.constant(1, tf.uint64))
        return tf.cast(tf.math.floormod(state[:2], 2 ** 31 - 1), tf.int32)

    def __call__(self, batch, seed=None, mask_classes=None):
        """`mask_classes`: the classes of `batch["packed_masks"]`."""
        packed = None
        if isinstance(batch, dict):
            if IMAGES not in batch:
                raise ValueError(
                    "augment: a batch dict needs an 'images' key. Received "
                    f"keys: {sorted(batch)}")
            images = tf.convert_to_tensor(batch[IMAGES])
            masks = batch.get(MASKS)
            if PACKED_MASKS in batch:
                packed = _check_packed(batch, mask_classes)
        else:
            images, masks = tf.convert_to_tensor(batch), None
        if images.shape.rank != 4:
            raise ValueError(
                "augment: images must be (batch, height, width, channels). "
                f"Received shape: {images.shape}")
        data = {"images": images if images.dtype in INTEGER_IMAGES
                else tf.cast(images, tf.float32)}
        if masks is not None:
            masks = tf.convert_to_tensor(masks)
            if masks.shape.rank != 4:
                raise ValueError(
                    "augment: segmentation_masks must be (batch, height, "
                    f"width, classes). Received shape: {masks.shape}")
            data["masks"] = tf.cast(masks, tf.float32)
        if packed is not None:
            data["masks"] = packed
        if seed is None:
            seed = self.next_seed()
        else:
            seed = tf.cast(tf.math.floormod(tf.cast(seed, tf.int64),
                                            2 ** 31 - 1), tf.int32)
        seed = tf.random.experimental.stateless_fold_in(
            seed, _content_key(data["images"]), alg=rng.ALG)
        classes = None if packed is None else int(mask_classes)
        core = self._compiled(classes)
        channels = data["images"].shape[-1]
        if self.gray_once and channels is not None and channels > 1:
            gray = self._compiled(classes, channels)
            out = tf.cond(_channels_equal(data["images"]),
                          lambda: gray(data, seed), lambda: core(data, seed))
        else:
            out = core(data, seed)
        new_images = out["images"] if images.dtype in INTEGER_IMAGES \
            else tf.cast(out["images"], images.dtype)
        if not isinstance(batch, dict):
            return new_images
        result = dict(batch)
        result[IMAGES] = new_images
        if masks is not None:
            result[MASKS] = tf.cast(out["masks"], masks.dtype)
        if packed is not None:
            del result[PACKED_MASKS]
            result[MASKS] = out["masks"]
        return result


@tf.function(jit_compile=True, autograph=False)
def _channels_equal(images):
    """Whether every image of the batch has all its channels equal (one
    fused pass over the batch)."""
    return tf.reduce_all(tf.equal(images[..., 1:], images[..., :1]))


def _on_first_channel(data, seed, run, channels):
    """`run` on the images' first channel, its images repeated to
    `channels` (equal channels give equal results: `channel_uniform`)."""
    out = run(dict(data, images=data["images"][..., :1]), seed)
    out["images"] = tf.tile(out["images"], [1, 1, 1, channels])
    return out


def _check_packed(batch, classes):
    """`batch["packed_masks"]` as a uint8 tensor, checked against
    `classes` (and the absence of one-hot masks)."""
    if MASKS in batch:
        raise ValueError(
            f"augment: a batch holds either '{MASKS}' or '{PACKED_MASKS}', "
            "not both")
    if isinstance(classes, bool) or not isinstance(classes, int) \
            or not 1 <= classes <= packing.MAX_CLASSES:
        raise ValueError(
            f"augment: '{PACKED_MASKS}' needs `mask_classes`, an integer in "
            f"[1, {packing.MAX_CLASSES}]. Received: {classes!r}")
    packed = tf.convert_to_tensor(batch[PACKED_MASKS])
    if packed.dtype != packing.DTYPE or packed.shape.rank != 4 \
            or packed.shape[-1] != 1:
        raise ValueError(
            f"augment: '{PACKED_MASKS}' must be (batch, height, width, 1) "
            f"uint8, a bit per class. Received: {packed.dtype.name} "
            f"{packed.shape}")
    return packed
