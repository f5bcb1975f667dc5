"""Per-class probability thresholds with a minimum area (Severstal).

The Severstal kernels' rule: a class mask is `probs > threshold[c]`, and a
class whose mask keeps fewer than `min_area[c]` pixels becomes empty. With
`mode="components"`, connected components smaller than `min_area[c]` are
removed instead, one by one.

Thresholds are compared in float32 (float16 probabilities are promoted), or
in float64 for float64 probabilities, the same as
`kaggle_tf.postprocess.tf_ops.apply_thresholds_tf`.
"""

import numpy as np

from kaggle_tf.postprocess import components
from kaggle_tf.postprocess.params import compute_dtype
from kaggle_tf.postprocess.params import per_class

MODES = ("area", "components")


def check_probs(probs, name="probs"):
    """`probs` as an array of shape (batch, height, width, classes)."""
    probs = np.asarray(probs)
    if probs.ndim != 4:
        raise ValueError(f"`{name}` must be (batch, height, width, classes)."
                         f" Received: shape={probs.shape}")
    return probs


def apply(probs, thresholds, min_area=0, mode="area"):
    """Binarizes probabilities per class and drops small predictions.

    Args:
        probs: `(batch, height, width, classes)` probabilities.
        thresholds: one threshold for all classes or one per class; a
            pixel is on when `prob > threshold`.
        min_area: minimum pixel count, one for all classes or one per
            class. Defaults to `0` (keep everything).
        mode: `"area"` empties a class mask whose pixel count is below
            `min_area[c]`; `"components"` removes the 8-connected
            components below `min_area[c]`. Defaults to `"area"`.

    Returns:
        uint8 masks of 0/1, shape `(batch, height, width, classes)`.

    Raises:
        ValueError: a bad shape, parameter length or mode.

    Example:

    >>> probs = np.zeros((1, 2, 3, 2), np.float32)
    >>> probs[0, :, :2, 0] = 0.9   # 4 confident pixels in class 0
    >>> probs[0, 0, 0, 1] = 0.9    # 1 pixel in class 1
    >>> masks = apply(probs, [0.5, 0.5], min_area=[2, 2])
    >>> masks.sum(axis=(0, 1, 2)).tolist()
    [4, 0]
    """
    probs = check_probs(probs)
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. "
                         f"Received: mode={mode!r}")
    classes = probs.shape[-1]
    th = per_class(thresholds, classes, "thresholds",
                   compute_dtype(probs.dtype))
    areas = per_class(min_area, classes, "min_area", np.int64)
    masks = probs > th
    if mode == "components":
        return components.remove_small(masks, areas)
    masks &= (np.count_nonzero(masks, axis=(1, 2)) >= areas)[:, None, None]
    return masks.view(np.uint8)
