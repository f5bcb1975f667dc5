"""Post-processing in TensorFlow ops, for the exported SavedModel.

Twins of the numpy functions in `kaggle_tf.postprocess` with the same
results on the same inputs: `apply_thresholds_tf` (area rule),
`triplet_tf` and `gating_tf`. Parameters are Python numbers or sequences
(baked into the graph as constants) or tensors; thresholds are compared
in float32, or in the input's precision when it is wider, as numpy's type
promotion does.

Example:

>>> probs = tf.constant([[[[0.9], [0.2]], [[0.8], [0.1]]]])  # (1, 2, 2, 1)
>>> apply_thresholds_tf(probs, [0.5], [2])[0, :, :, 0].numpy()
array([[1, 0],
       [1, 0]], dtype=uint8)
"""

import numpy as np
import tensorflow as tf

from kaggle_tf.postprocess.params import per_class


def _compute_dtype(x):
    if x.dtype in (tf.float16, tf.bfloat16):
        return tf.float32
    return x.dtype if x.dtype.is_floating else tf.float32


def _probs(probs, ranks, layout):
    probs = tf.convert_to_tensor(probs)
    if probs.shape.rank not in ranks:
        raise ValueError(f"`probs` must be {layout}. "
                         f"Received: shape={probs.shape}")
    return tf.cast(probs, _compute_dtype(probs))


def _param(values, classes, name, dtype=np.float64):
    """A `(classes,)` constant from numbers, or a graph tensor broadcast.

    Thresholds are made float64 here and cast to the compute dtype by the
    caller: one rounding, as numpy's `astype`.
    """
    if tf.is_tensor(values):
        static = tf.get_static_value(values)
        if static is None:
            values = tf.reshape(tf.cast(values, dtype), [-1])
            return tf.broadcast_to(values, [classes])
        values = static
    return tf.constant(per_class(values, classes, name, dtype))


def _classes(x, *values):
    classes = x.shape[-1]
    if classes is None:
        classes = max(np.size(v) for v in values)
    return classes


def apply_thresholds_tf(probs, thresholds, min_area=0):
    """`thresholds.apply(probs, thresholds, min_area, mode="area")` in TF.

    Args:
        probs: `(batch, height, width, classes)` probabilities.
        thresholds: one threshold or one per class (`prob > threshold`).
        min_area: one minimum pixel count or one per class; a class mask
            with fewer pixels becomes empty. Defaults to `0`.

    Returns:
        uint8 tensor of 0/1 masks, same shape as `probs`.

    Example:

    >>> probs = tf.fill([2, 4, 4, 3], 0.6)
    >>> masks = apply_thresholds_tf(probs, [0.5, 0.7, 0.5], [0, 0, 17])
    >>> tf.reduce_sum(tf.cast(masks, tf.int32), axis=[0, 1, 2]).numpy()
    array([32,  0,  0], dtype=int32)
    """
    probs = _probs(probs, (4,), "(batch, height, width, classes)")
    classes = _classes(probs, thresholds, min_area)
    th = _param(thresholds, classes, "thresholds")
    areas = _param(min_area, classes, "min_area", np.int64)
    masks = probs > tf.cast(th, probs.dtype)
    count = tf.reduce_sum(tf.cast(masks, tf.int64), axis=[1, 2])
    kept = (count >= areas)[:, None, None, :]
    return tf.cast(tf.logical_and(masks, kept), tf.uint8)


def triplet_tf(probs, top_score_threshold, min_area, bottom_score_threshold):
    """`kaggle_tf.postprocess.triplet` in TF.

    Args:
        probs: `(height, width)`, `(batch, height, width)` or
            `(batch, height, width, classes)` probabilities.
        top_score_threshold: pixels above it are counted.
        min_area: a map is kept when that count is `>= min_area`.
        bottom_score_threshold: a kept map becomes `probs > bottom`.
        With a class axis each may be one value per class.

    Returns:
        uint8 tensor of 0/1 masks, same shape as `probs`.

    Example:

    >>> p = tf.constant([[0.4, 0.4, 0.8], [0.1, 0.1, 0.9], [0.1, 0.2, 0.1]])
    >>> triplet_tf(p, 0.7, 2, 0.3).numpy()
    array([[1, 1, 1],
           [0, 0, 1],
           [0, 0, 0]], dtype=uint8)
    """
    probs = _probs(probs, (2, 3, 4), "(height, width), (batch, height, "
                   "width) or (batch, height, width, classes)")
    rank = probs.shape.rank
    classes = (_classes(probs, top_score_threshold, min_area,
                        bottom_score_threshold) if rank == 4 else 1)
    top = _param(top_score_threshold, classes, "top_score_threshold")
    bottom = _param(bottom_score_threshold, classes,
                    "bottom_score_threshold")
    area = _param(min_area, classes, "min_area", np.int64)
    if rank < 4:
        top, bottom, area = top[0], bottom[0], area[0]
    axes = [0, 1] if rank == 2 else [1, 2]
    above = probs > tf.cast(top, probs.dtype)
    count = tf.reduce_sum(tf.cast(above, tf.int64), axis=axes,
                          keepdims=True)
    kept = count >= area
    masks = probs > tf.cast(bottom, probs.dtype)
    return tf.cast(tf.logical_and(masks, kept), tf.uint8)


def gating_tf(masks, class_probs, threshold=0.5):
    """`kaggle_tf.postprocess.gating.apply` in TF.

    Args:
        masks: `(batch, height, width, classes)` masks.
        class_probs: `(batch, classes)` classifier probabilities.
        threshold: one value or one per class; a class mask is kept when
            `class_prob >= threshold`. Defaults to `0.5`.

    Returns:
        The masks with gated classes zeroed (same dtype).

    Example:

    >>> masks = tf.ones([1, 2, 2, 2], tf.uint8)
    >>> out = gating_tf(masks, [[0.9, 0.2]], 0.5)
    >>> tf.reduce_sum(tf.cast(out, tf.int32), axis=[0, 1, 2]).numpy()
    array([4, 0], dtype=int32)
    """
    masks = tf.convert_to_tensor(masks)
    class_probs = tf.convert_to_tensor(class_probs)
    if masks.shape.rank != 4 or class_probs.shape.rank != 2:
        raise ValueError(
            "`masks` must be (batch, height, width, classes) and "
            "`class_probs` (batch, classes). Received: "
            f"masks.shape={masks.shape}, class_probs.shape="
            f"{class_probs.shape}")
    class_probs = tf.cast(class_probs, _compute_dtype(class_probs))
    classes = _classes(masks, threshold)
    th = _param(threshold, classes, "threshold")
    keep = class_probs >= tf.cast(th, class_probs.dtype)
    return masks * tf.cast(keep, masks.dtype)[:, None, None, :]
