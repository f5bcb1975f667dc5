"""Dropout ops: rectangles of the image set to a fill value."""

import tensorflow as tf

from kaggle_tf.augment.ops import packing
from kaggle_tf.augment.ops import rng
from kaggle_tf.augment.ops.base import Op
from kaggle_tf.augment.ops.base import scalar_fill
from kaggle_tf.augment.ops.geometric import _pair
from kaggle_tf.augment.ops.registry import register_op


def _int_pair(value, name, where):
    low, high = _pair(value, name, where)
    if low != int(low) or high != int(high) or low < 0 or low > high:
        raise ValueError(f"{where}: `{name}` must be two integers "
                         f"0 <= low <= high. Received: {name}={value!r}")
    return int(low), int(high)


@register_op("CoarseDropout")
class CoarseDropout(Op):
    """Fills `num_holes_range` rectangles with `fill` (albumentations'
    CoarseDropout).

    Hole sizes are pixels when `hole_height_range[1] >= 1`, else fractions
    of the image size. Masks are filled with `fill_mask` when it is not
    None, else left alone.

    Example:

    >>> CoarseDropout(num_holes_range=(1, 8), hole_height_range=(8, 32),
    ...               hole_width_range=(8, 32), fill=0.0, p=0.5)
    """

    name = "CoarseDropout"

    def __init__(self, num_holes_range=(1, 2), hole_height_range=(0.1, 0.2),
                 hole_width_range=(0.1, 0.2), fill=0.0, fill_mask=None,
                 p=0.5):
        super().__init__(p)
        self.num_holes_range = _int_pair(num_holes_range, "num_holes_range",
                                         self.name)
        self.hole_height_range = _pair(hole_height_range,
                                       "hole_height_range", self.name)
        self.hole_width_range = _pair(hole_width_range, "hole_width_range",
                                      self.name)
        for name, value in (("fill", fill), ("fill_mask", fill_mask)):
            if value is None and name == "fill_mask":
                continue
            ok = isinstance(value, (int, float)) and not isinstance(
                value, bool) or isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, float)) for v in value)
            if not ok:
                raise ValueError(
                    f"{self.name}: `{name}` must be a number or one number "
                    f"per channel (random and inpainting fills are not "
                    f"supported). Received: {name}={value!r}")
        self.fill = fill
        self.fill_mask = fill_mask
        self.pixels = self.hole_height_range[1] >= 1

    @property
    def channel_uniform(self):
        return scalar_fill(self.fill)

    @property
    def packs_masks(self):
        return packing.is_binary_fill(self.fill_mask)

    def sample(self, seed, batch_size, height, width):
        most = self.num_holes_range[1]
        count = rng.randint(seed, "count", [batch_size],
                            *self.num_holes_range)
        h = tf.cast(height, tf.float32)
        w = tf.cast(width, tf.float32)
        shape = [batch_size, most]
        if self.pixels:
            hh = rng.randint(seed, "h", shape, self.hole_height_range[0],
                             tf.minimum(self.hole_height_range[1], h))
            hw = rng.randint(seed, "w", shape, self.hole_width_range[0],
                             tf.minimum(self.hole_width_range[1], w))
        else:
            hh = tf.cast(h * rng.uniform(seed, "h", shape,
                                         *self.hole_height_range), tf.int32)
            hw = tf.cast(w * rng.uniform(seed, "w", shape,
                                         *self.hole_width_range), tf.int32)
        y0 = rng.randint(seed, "y", shape, 0, tf.cast(height, tf.int32) - hh)
        x0 = rng.randint(seed, "x", shape, 0, tf.cast(width, tf.int32) - hw)
        used = tf.range(most)[None, :] < count[:, None]
        return {"y0": y0, "x0": x0, "hh": hh, "hw": hw, "used": used}

    def holes(self, params, height, width):
        """(batch, height, width) bool, True inside a hole."""
        y = tf.range(height)[None, None, :]
        x = tf.range(width)[None, None, :]
        y0, x0 = params["y0"][..., None], params["x0"][..., None]
        used = params["used"][..., None]
        rows = (y >= y0) & (y < y0 + params["hh"][..., None]) & used
        cols = (x >= x0) & (x < x0 + params["hw"][..., None])
        # OR over holes of row x col indicators, as one batched matmul.
        hits = tf.matmul(tf.cast(rows, tf.float32),
                         tf.cast(cols, tf.float32), transpose_a=True)
        return hits > 0.5

    def apply(self, data, params):
        images = data["images"]
        inside = self.holes(params, tf.shape(images)[1],
                            tf.shape(images)[2])[..., None]
        out = dict(data)
        out["images"] = tf.where(inside, tf.cast(self.fill, images.dtype),
                                 images)
        if "masks" in data and self.fill_mask is not None:
            masks = data["masks"]
            fill = packing.packed_fill(self.fill_mask) \
                if packing.is_packed(masks) else self.fill_mask
            out["masks"] = tf.where(inside, tf.cast(fill, masks.dtype),
                                    masks)
        return out
