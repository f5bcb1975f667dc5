"""The SIIM-ACR "triplet" rule of the 1st place solution.

A probability map is kept when at least `min_area` pixels are above
`top_score_threshold`; the kept mask is then `probs > bottom_score_threshold`
(a looser threshold that grows the confident core); otherwise the mask is
empty. With `bottom == top` this is the "doublet" (area) rule.
"""

import numpy as np

from kaggle_tf.postprocess.params import compute_dtype
from kaggle_tf.postprocess.params import per_class


def triplet(probs, top_score_threshold, min_area, bottom_score_threshold):
    """Applies the triplet rule per image (and per class).

    Args:
        probs: probabilities `(height, width)` for one image,
            `(batch, height, width)`, or `(batch, height, width, classes)`.
        top_score_threshold: pixels above it are counted.
        min_area: the map is kept if that count is `>= min_area`.
        bottom_score_threshold: a kept map becomes `probs > bottom`.
        With a class axis each parameter may also be one value per class.

    Returns:
        uint8 masks of 0/1 with the shape of `probs`.

    Example (the seed's 3 x 3 illustration, triplet (0.7, 2, 0.3)):

    >>> p = np.array([[0.4, 0.4, 0.8], [0.1, 0.1, 0.9], [0.1, 0.2, 0.1]])
    >>> triplet(p, 0.7, 2, 0.3)
    array([[1, 1, 1],
           [0, 0, 1],
           [0, 0, 0]], dtype=uint8)
    >>> int(triplet(p, 0.7, 3, 0.3).sum())   # only 2 pixels above 0.7
    0
    """
    probs = np.asarray(probs)
    if probs.ndim not in (2, 3, 4):
        raise ValueError(
            "`probs` must be (height, width), (batch, height, width) or "
            f"(batch, height, width, classes). Received: shape={probs.shape}")
    classes = probs.shape[-1] if probs.ndim == 4 else 1
    dtype = compute_dtype(probs.dtype)
    top = per_class(top_score_threshold, classes, "top_score_threshold",
                    dtype)
    bottom = per_class(bottom_score_threshold, classes,
                       "bottom_score_threshold", dtype)
    area = per_class(min_area, classes, "min_area", np.int64)
    if probs.ndim < 4:
        top, bottom, area = top[0], bottom[0], area[0]
    axes = (0, 1) if probs.ndim == 2 else (1, 2)
    count = np.count_nonzero(probs > top, axis=axes, keepdims=True)
    masks = probs > bottom
    masks &= count >= area
    return masks.view(np.uint8)
