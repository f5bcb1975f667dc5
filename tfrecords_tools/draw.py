"""Pictures of records for `inspect`: masks overlaid in class colors."""

import numpy as np

from tfrecords_tools import encode
from tfrecords_tools import schema
from tfrecords_tools.readers import image_file

# Class k is drawn in COLORS[k % len(COLORS)] (RGB).
COLORS = np.array([
    (255, 40, 40), (40, 220, 40), (40, 120, 255), (255, 200, 0),
    (255, 0, 255), (0, 230, 230), (255, 128, 0), (160, 80, 255),
], np.uint8)


def to_rgb(image) -> np.ndarray:
    """Any decoded image -> `(height, width, 3)` uint8 (first 3 channels)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        top = max(float(image.max()), 1.0)
        image = (image.astype(np.float32) * (255.0 / top)).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, -1)
    return np.ascontiguousarray(image[..., :3])


def overlay(image, masks, alpha: float = 0.45,
            outline: bool = True) -> np.ndarray:
    """Blends `(height, width, classes)` masks over an image in COLORS.

    Example:

    >>> img = np.zeros((4, 4, 3), np.uint8)
    >>> m = np.zeros((4, 4, 1), bool); m[0, 0] = True
    >>> overlay(img, m, alpha=1.0, outline=False)[0, 0].tolist()
    [255, 40, 40]
    """
    out = to_rgb(image).astype(np.float32)
    masks = np.asarray(masks, bool)
    for k in range(masks.shape[-1]):
        m = masks[..., k]
        if not m.any():
            continue
        color = COLORS[k % len(COLORS)].astype(np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * color
        if outline:
            edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0)
                         & np.roll(m, 1, 1) & np.roll(m, -1, 1))
            out[edge] = color
    return out.astype(np.uint8)


def default_draw(features: dict, classes: int) -> np.ndarray:
    """The first stored image, with its mask (if any) overlaid."""
    data = features[schema.IMAGE][0]
    image = image_file.decode_array(data)
    if features.get(schema.MASK):
        masks = encode.unpack_mask(features[schema.MASK][0], classes)
        return overlay(image, masks)
    return to_rgb(image)
