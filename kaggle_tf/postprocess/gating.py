"""Classifier gating (Severstal): a class mask survives only when an image
classifier says the class is present."""

import numpy as np

from kaggle_tf.postprocess.params import compute_dtype
from kaggle_tf.postprocess.params import per_class


def apply(masks, class_probs, threshold=0.5):
    """Zeroes each class mask whose class probability is below threshold.

    Args:
        masks: `(batch, height, width, classes)` masks (any dtype).
        class_probs: `(batch, classes)` classifier probabilities.
        threshold: one value or one per class; a mask is kept when
            `class_prob >= threshold`. Defaults to `0.5`.

    Returns:
        The masks, same shape and dtype, with gated classes zeroed.

    Example:

    >>> masks = np.ones((1, 2, 2, 2), np.uint8)
    >>> apply(masks, [[0.9, 0.2]], [0.5, 0.5]).sum(axis=(0, 1, 2)).tolist()
    [4, 0]
    """
    masks = np.asarray(masks)
    class_probs = np.asarray(class_probs)
    if masks.ndim != 4 or class_probs.shape != (masks.shape[0],
                                                masks.shape[-1]):
        raise ValueError(
            "`masks` must be (batch, height, width, classes) and "
            "`class_probs` (batch, classes). Received: "
            f"masks.shape={masks.shape}, class_probs.shape="
            f"{class_probs.shape}")
    th = per_class(threshold, masks.shape[-1], "threshold",
                   compute_dtype(class_probs.dtype))
    keep = (class_probs >= th).astype(masks.dtype)
    return masks * keep[:, None, None, :]
