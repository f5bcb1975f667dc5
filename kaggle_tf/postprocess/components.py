"""Connected components: drop the ones smaller than a minimum area.

Uses OpenCV's `connectedComponentsWithStats` when OpenCV is installed, else
`scipy.ndimage.label`; both are imported on first use. Components are
8-connected (diagonal neighbours join), OpenCV's default.
"""

import numpy as np


def _labeler():
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        def label(mask):
            n, labels, stats, _ = cv2.connectedComponentsWithStats(
                mask.view(np.uint8), connectivity=8)
            return labels, stats[:, cv2.CC_STAT_AREA]
        return label
    try:
        from scipy import ndimage
    except ImportError:
        raise ImportError(
            "mode='components' needs OpenCV (opencv-python-headless) or "
            "scipy; install one of them") from None

    def label(mask):
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), int))
        return labels, np.bincount(labels.ravel(), minlength=n + 1)
    return label


def remove_small(masks, min_area):
    """Zeroes the 8-connected components smaller than `min_area[c]` pixels.

    Args:
        masks: `(batch, height, width, classes)` binary masks.
        min_area: `(classes,)` minimum component sizes in pixels; a class
            with 0 is left as it is.

    Returns:
        uint8 masks of the same shape.

    Example:

    >>> m = np.zeros((1, 4, 4, 1), np.uint8)
    >>> m[0, 0, 0, 0] = 1
    >>> m[0, 2:, 2:, 0] = 1
    >>> remove_small(m, [2])[0, ..., 0]
    array([[0, 0, 0, 0],
           [0, 0, 0, 0],
           [0, 0, 1, 1],
           [0, 0, 1, 1]], dtype=uint8)
    """
    masks = np.asarray(masks)
    out = np.ascontiguousarray(masks != 0, dtype=np.uint8)
    min_area = np.asarray(min_area).reshape(-1)
    label = None
    for c in np.flatnonzero(min_area > 0):
        for i in range(out.shape[0]):
            plane = np.ascontiguousarray(out[i, :, :, c])
            if not plane.any():
                continue
            label = label or _labeler()
            labels, areas = label(plane)
            keep = areas >= min_area[c]
            keep[0] = False  # background
            out[i, :, :, c] = keep[labels]
    return out
