"""Geometric ops: they move pixels, so they move masks too.

Images use `interpolation` (0 nearest, 1 bilinear), masks use
`mask_interpolation` (nearest by default, which keeps them binary). The
formulas follow albumentations 2.x so that fixed parameters give the same
pixels (see tests/kaggle_tf/augment/test_parity.py for the tolerances):

- `Affine`: albumentations' matrix `center @ translate @ shear @ rotate @
  scale @ center^-1`, centre `(width / 2 - 0.5, height / 2 - 0.5)`,
  translation truncated to whole pixels; `ShiftScaleRotate`, `Rotate` and
  `RandomScale` are special cases.
- `GridDistortion`: albumentations' per-row / per-column tables, applied as
  a separable remap.
- `OpticalDistortion`: the maps of `cv2.initUndistortRectifyMap` (camera)
  or the fisheye formula, computed in closed form.
- `ElasticTransform`: same field statistics, but the smooth noise is made
  on a grid `sigma // 1.5` times coarser and upsampled bilinearly, which keeps
  the cost small (albumentations blurs a full-size field).
- Flips, transpose, rot90 and D4 are exact permutations.
"""

import math

import tensorflow as tf

from kaggle_tf.augment.ops import packing
from kaggle_tf.augment.ops import rng
from kaggle_tf.augment.ops import warp
from kaggle_tf.augment.ops.base import Op
from kaggle_tf.augment.ops.base import scalar_fill
from kaggle_tf.augment.ops.registry import register_op


def _static_or(dim, fallback):
    return dim if isinstance(dim, int) else fallback


def _hashable(fill):
    return tuple(fill) if isinstance(fill, (list, tuple)) else fill


class WarpOp(Op):
    """A geometric op with OpenCV-style interpolation, border and fills."""

    def __init__(self, interpolation=1, mask_interpolation=0,
                 border_mode=0, fill=0.0, fill_mask=0.0, p=0.5):
        super().__init__(p)
        for arg, value in (("interpolation", interpolation),
                           ("mask_interpolation", mask_interpolation)):
            if value not in (warp.NEAREST, warp.LINEAR):
                raise ValueError(
                    f"{self.name}: `{arg}` must be 0 (nearest) or 1 "
                    f"(linear). Received: {arg}={value!r}")
        if border_mode not in warp.BORDER_MODES:
            raise ValueError(
                f"{self.name}: `border_mode` must be one of "
                f"{sorted(warp.BORDER_MODES)}. Received: "
                f"border_mode={border_mode!r}")
        self.interpolation = interpolation
        self.mask_interpolation = mask_interpolation
        self.border_mode = border_mode
        self.fill = fill
        self.fill_mask = fill_mask

    @property
    def packs_masks(self):
        return self.mask_interpolation == warp.NEAREST \
            and packing.is_binary_fill(self.fill_mask)

    @property
    def channel_uniform(self):
        return scalar_fill(self.fill)

    # A pure map of coordinates, which a chain of consecutive warps
    # samples once (`chain`): `prepare`, `map_points` and `map_taps`.
    composes = False

    def compose_key(self):
        """What consecutive warps must share to be sampled as one: the
        interpolations, the border mode and the fills."""
        return (self.interpolation, self.mask_interpolation,
                self.border_mode, _hashable(self.fill),
                _hashable(self.fill_mask))

    def prepare(self, params, height, width):
        """The tensors `map_points` needs for these parameters."""
        raise NotImplementedError

    def map_points(self, state, ys, xs):
        """Source (ys, xs) of output points (ys, xs), (batch, h, w) each;
        whole pixels, except where `map_taps` passes blended ones."""
        raise NotImplementedError

    def map_taps(self, state, taps_y, taps_x):
        """The map read bilinearly at the taps of each axis
        (`warp.Taps`): the mean of `map_points` at the four tap pairs,
        weighted, as a linear image would be read. Maps that are linear
        between whole pixels evaluate `Taps.point` once instead."""
        y0, y1, uy0, uy1 = taps_y.parts()
        x0, x1, ux0, ux1 = taps_x.parts()
        rows = []
        for py in (y0, y1):
            a_y, a_x = self.map_points(state, py, x0)
            b_y, b_x = self.map_points(state, py, x1)
            rows.append((ux0 * a_y + ux1 * b_y, ux0 * a_x + ux1 * b_x))
        (t_y, t_x), (b_y, b_x) = rows
        return uy0 * t_y + uy1 * b_y, uy0 * t_x + uy1 * b_x

    def coords(self, data, params):
        """Source (ys, xs), each (batch, height, width)."""
        images = data["images"]
        state = self.prepare(params, warp.size_of(images, 1),
                             warp.size_of(images, 2))
        ys, xs = warp.grid(images)
        return self.map_points(state, ys, xs)

    def apply(self, data, params):
        ys, xs = self.coords(data, params)
        return self.remap(data, ys, xs, warp.warp_data)

    def remap(self, data, ys, xs, fn):
        return fn(data, ys, xs, self.interpolation, self.mask_interpolation,
                  self.border_mode, self.fill, self.fill_mask)


# --- exact permutations --------------------------------------------------


def _where_batch(flags, fn, x):
    """`fn(x)` where `flags` (batch,), else `x`; a cond for batch size 1."""
    if x.shape[0] == 1:
        return tf.cond(flags[0], lambda: fn(x), lambda: x)
    return tf.where(flags[:, None, None, None], fn(x), x)


@register_op("Flip")
class Flip(Op):
    """Flips left-right (`"horizontal"`) or top-bottom (`"vertical"`).

    Example:

    >>> Flip("horizontal", p=0.5)
    """

    name = "Flip"

    def __init__(self, axis="horizontal", p=0.5):
        super().__init__(p)
        if axis not in ("horizontal", "vertical"):
            raise ValueError("Flip: `axis` must be 'horizontal' or "
                             f"'vertical'. Received: axis={axis!r}")
        self.axis = axis

    packs_masks = True
    channel_uniform = True

    def apply(self, data, params):
        axis = 2 if self.axis == "horizontal" else 1
        return {key: tf.reverse(value, [axis]) for key, value in data.items()}


# (transpose, vertical flip, horizontal flip), applied in that order, for
# each element of albumentations' D4 group.
D4_ELEMENTS = {
    "e": (0, 0, 0), "r90": (1, 1, 0), "r180": (0, 1, 1), "r270": (1, 0, 1),
    "v": (0, 1, 0), "hvt": (1, 1, 1), "h": (0, 0, 1), "t": (1, 0, 0),
}


@register_op("Dihedral")
class Dihedral(Op):
    """Picks one of `elements` of the D4 group uniformly per sample.

    Transpose is `["t"]`, RandomRotate90 `["e", "r90", "r180", "r270"]`
    (counter-clockwise, as `np.rot90`), D4 all eight. Needs square images
    whenever a transpose is possible.

    Example:

    >>> Dihedral(["e", "r90", "r180", "r270"], p=0.5)   # RandomRotate90
    """

    name = "Dihedral"

    def __init__(self, elements=tuple(D4_ELEMENTS), p=0.5):
        super().__init__(p)
        elements = list(elements)
        unknown = [e for e in elements if e not in D4_ELEMENTS]
        if not elements or unknown:
            raise ValueError(
                f"Dihedral: `elements` must be a non-empty subset of "
                f"{list(D4_ELEMENTS)}. Received: {elements!r}")
        self.elements = elements

    packs_masks = True
    channel_uniform = True

    def sample(self, seed, batch_size, height, width):
        table = tf.constant([D4_ELEMENTS[e] for e in self.elements],
                            tf.int32)
        index = rng.randint(seed, "element", [batch_size], 0,
                            len(self.elements) - 1)
        return {"ops": tf.cast(tf.gather(table, index), tf.bool)}

    def apply(self, data, params):
        ops = params["ops"]
        transposes = any(D4_ELEMENTS[e][0] for e in self.elements)
        h, w = data["images"].shape[1], data["images"].shape[2]
        if transposes and h is not None and w is not None and h != w:
            raise ValueError(
                f"{self.name}: rotating or transposing needs square images "
                f"(a batch has one shape). Received: height={h}, width={w}")
        out = {}
        for key, x in data.items():
            if transposes:
                x = _where_batch(ops[:, 0],
                                 lambda t: tf.transpose(t, [0, 2, 1, 3]), x)
            x = _where_batch(ops[:, 1], lambda t: tf.reverse(t, [1]), x)
            x = _where_batch(ops[:, 2], lambda t: tf.reverse(t, [2]), x)
            out[key] = x
        return out


# --- affine --------------------------------------------------------------


def _pair(value, name, where):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool)
            for v in value):
        return float(value[0]), float(value[1])
    raise ValueError(f"{where}: `{name}` must be a number or a pair of "
                     f"numbers. Received: {name}={value!r}")


@register_op("Affine")
class Affine(WarpOp):
    """Scale, translation, rotation and shear about the image centre.

    All ranges are `(low, high)` and drawn uniformly per sample: `scale_x`,
    `scale_y` (factors), `translate_x`, `translate_y` (fractions of the
    width / height when `translate_unit="percent"`, pixels when `"px"`),
    `rotate` (degrees, counter-clockwise), `shear_x`, `shear_y` (degrees).

    Example:

    >>> Affine(scale_x=(0.9, 1.1), scale_y=(0.9, 1.1), rotate=(-45, 45),
    ...        translate_x=(-0.0625, 0.0625), translate_y=(-0.0625, 0.0625),
    ...        border_mode=4, p=0.5)                # ShiftScaleRotate
    """

    name = "Affine"
    composes = True

    def __init__(self, scale_x=(1.0, 1.0), scale_y=(1.0, 1.0),
                 translate_x=(0.0, 0.0), translate_y=(0.0, 0.0),
                 translate_unit="percent", rotate=(0.0, 0.0),
                 shear_x=(0.0, 0.0), shear_y=(0.0, 0.0), keep_ratio=False,
                 balanced_scale=False, interpolation=1,
                 mask_interpolation=0, border_mode=0, fill=0.0,
                 fill_mask=0.0, p=0.5):
        super().__init__(interpolation, mask_interpolation, border_mode,
                         fill, fill_mask, p)
        where = self.name
        self.scale_x = _pair(scale_x, "scale_x", where)
        self.scale_y = _pair(scale_y, "scale_y", where)
        self.translate_x = _pair(translate_x, "translate_x", where)
        self.translate_y = _pair(translate_y, "translate_y", where)
        self.rotate = _pair(rotate, "rotate", where)
        self.shear_x = _pair(shear_x, "shear_x", where)
        self.shear_y = _pair(shear_y, "shear_y", where)
        if translate_unit not in ("percent", "px"):
            raise ValueError(f"{where}: `translate_unit` must be 'percent' "
                             f"or 'px'. Received: {translate_unit!r}")
        self.translate_unit = translate_unit
        self.keep_ratio = bool(keep_ratio)
        self.balanced_scale = bool(balanced_scale)
        if self.keep_ratio and self.scale_x != self.scale_y:
            raise ValueError(f"{where}: `keep_ratio` needs equal x and y "
                             f"scale ranges. Received: {self.scale_x}, "
                             f"{self.scale_y}")

    def _scale(self, seed, key, batch_size, bounds):
        low, high = bounds
        if not self.balanced_scale:
            return rng.uniform(seed, key, [batch_size], low, high)
        # Balanced: shrinking and enlarging are equally likely.
        if low < 1.0 and high > 1.0:
            up = rng.bernoulli(seed, key + "_side", [batch_size], 0.5)
            low = tf.where(up, 1.0, low)
            high = tf.where(up, high, 1.0)
        elif low < 1.0:
            high = 1.0
        elif high > 1.0:
            low = 1.0
        else:
            return tf.ones([batch_size])
        return rng.uniform(seed, key, [batch_size], low, high)

    def sample(self, seed, batch_size, height, width):
        height = tf.cast(height, tf.float32)
        width = tf.cast(width, tf.float32)
        if self.translate_unit == "percent":
            tx = rng.uniform(seed, "tx", [batch_size], *self.translate_x)
            ty = rng.uniform(seed, "ty", [batch_size], *self.translate_y)
            # int() of the pixel shift, as albumentations.
            tx = tf.cast(tf.cast(tx * width, tf.int32), tf.float32)
            ty = tf.cast(tf.cast(ty * height, tf.int32), tf.float32)
        else:
            tx = tf.cast(rng.randint(seed, "tx", [batch_size],
                                     *self.translate_x), tf.float32)
            ty = tf.cast(rng.randint(seed, "ty", [batch_size],
                                     *self.translate_y), tf.float32)
        sx = self._scale(seed, "sx", batch_size, self.scale_x)
        sy = sx if self.keep_ratio else self._scale(seed, "sy", batch_size,
                                                    self.scale_y)
        angle = rng.uniform(seed, "rotate", [batch_size], *self.rotate)
        shx = -rng.uniform(seed, "shear_x", [batch_size], *self.shear_x)
        shy = -rng.uniform(seed, "shear_y", [batch_size], *self.shear_y)
        return {"matrix": inverse_affine(sx, sy, angle, shx, shy, tx, ty,
                                         height, width)}

    def prepare(self, params, height, width):
        return params["matrix"][:, :, None, None]

    def map_points(self, state, ys, xs):
        m = state
        return (m[:, 3] * xs + m[:, 4] * ys + m[:, 5],
                m[:, 0] * xs + m[:, 1] * ys + m[:, 2])

    def map_taps(self, state, taps_y, taps_x):
        # Linear: the map of the blended point is the blend of the maps.
        return self.map_points(state, taps_y.point, taps_x.point)


def inverse_affine(sx, sy, angle, shx, shy, tx, ty, height, width):
    """Rows of the output->input map as (batch, 6): x_in = m0 x + m1 y + m2,
    y_in = m3 x + m4 y + m5, for albumentations' forward matrix."""
    rad = angle * (math.pi / 180.0)
    cos, sin = tf.cos(rad), tf.sin(rad)
    tan_x = tf.tan(shx * (math.pi / 180.0))
    tan_y = tf.tan(shy * (math.pi / 180.0))
    # A = shear @ rotate @ scale (2x2).
    r00, r01, r10, r11 = cos * sx, sin * sy, -sin * sx, cos * sy
    a00 = r00 + tan_x * r10
    a01 = r01 + tan_x * r11
    a10 = tan_y * r00 + r10
    a11 = tan_y * r01 + r11
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    cx = width / 2.0 - 0.5
    cy = height / 2.0 - 0.5
    # x_in = c + A^-1 (x_out - c - t)
    ox = -cx - tx
    oy = -cy - ty
    return tf.stack([i00, i01, cx + i00 * ox + i01 * oy,
                     i10, i11, cy + i10 * ox + i11 * oy], axis=1)


# --- distortions -----------------------------------------------------------


@register_op("GridDistortion")
class GridDistortion(WarpOp):
    """Stretches `num_steps` bands of rows and of columns by `1 + d`,
    d ~ U(distort_limit); `normalized` keeps the image inside its frame.

    Example:

    >>> GridDistortion(num_steps=5, distort_limit=(-0.3, 0.3), p=0.5)
    """

    name = "GridDistortion"
    composes = True

    def __init__(self, num_steps=5, distort_limit=(-0.3, 0.3),
                 normalized=True, interpolation=1, mask_interpolation=0,
                 border_mode=0, fill=0.0, fill_mask=0.0, p=0.5):
        super().__init__(interpolation, mask_interpolation, border_mode,
                         fill, fill_mask, p)
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) \
                or num_steps < 1:
            raise ValueError("GridDistortion: `num_steps` must be an "
                             f"integer >= 1. Received: {num_steps!r}")
        self.num_steps = num_steps
        self.distort_limit = _pair(distort_limit, "distort_limit", self.name)
        self.normalized = bool(normalized)

    def sample(self, seed, batch_size, height, width):
        shape = [batch_size, self.num_steps + 1]
        return {"steps_x": 1.0 + rng.uniform(seed, "x", shape,
                                             *self.distort_limit),
                "steps_y": 1.0 + rng.uniform(seed, "y", shape,
                                             *self.distort_limit)}

    def _table(self, steps, size):
        """albumentations' `generate_grid` for one axis: (batch, size)."""
        n = self.num_steps
        if isinstance(size, int) and size < n:
            raise ValueError(f"GridDistortion: images must be at least "
                             f"num_steps={n} pixels wide and high. "
                             f"Received: {size}")
        starts, ends = self._bands(steps, size)
        size_i = tf.cast(size, tf.int32)
        step_i = size_i // n
        x = tf.range(size_i)
        index = x // step_i
        inside = index <= n
        index = tf.minimum(index, n)
        first = index * step_i
        length = tf.minimum(first + step_i, size_i) - first
        t = tf.cast(x - first, tf.float32) / tf.cast(
            tf.maximum(length - 1, 1), tf.float32)
        batch = tf.shape(steps)[0]
        index = tf.broadcast_to(index, [batch, size_i])
        prev = tf.gather(starts, index, batch_dims=1)
        cur = tf.gather(ends, index, batch_dims=1)
        return tf.where(inside, prev + (cur - prev) * t, 0.0)

    def _bands(self, steps, size):
        """Where each band of the table starts and ends: (batch, n + 1)
        each."""
        n = self.num_steps
        size_i = tf.cast(size, tf.int32)
        step_i = size_i // n
        step = tf.cast(step_i, tf.float32)
        size_f = tf.cast(size, tf.float32)
        if self.normalized:
            last = tf.cast(tf.minimum(size_i, (n + 1) * step_i)
                           - n * step_i, tf.float32)
            steps = tf.concat([steps[:, :-1], steps[:, -1:] * last / step],
                              axis=1)
            steps = steps * ((size_f / step)
                             / tf.reduce_sum(steps, 1, keepdims=True))
        ends = tf.cumsum(steps * step, axis=1)
        return ends - steps * step, ends

    def _at(self, bands, x, size, between=False):
        """The table (`_table`) at whole pixels `x` (batch, ...), float,
        from the bands: a select per band instead of a gather per pixel
        (several times cheaper on a CPU for a few bands).

        `between`: `x` may lie between whole pixels, and the table is read
        linearly there. Within a band the table is linear; from a band's
        last pixel to the next band's first it is flat (both hold the
        band's end), which the clipped `t` gives."""
        starts, ends = bands
        n = self.num_steps
        step = tf.cast(tf.cast(size, tf.int32) // n, tf.float32)
        size_f = tf.cast(size, tf.float32)
        index = tf.floor(x / step)
        first = tf.minimum(index, float(n)) * step
        length = tf.minimum(first + step, size_f) - first
        t = (x - first) / tf.maximum(length - 1.0, 1.0)
        if between:
            t = tf.minimum(t, 1.0)
        shape = tf.concat([[-1], tf.ones([x.shape.rank - 1], tf.int32)], 0)
        prev = cur = tf.zeros_like(x)
        for i in range(n + 1):
            hit = tf.equal(index, float(i))
            prev = tf.where(hit, tf.reshape(starts[:, i], shape), prev)
            cur = tf.where(hit, tf.reshape(ends[:, i], shape), cur)
        return prev + (cur - prev) * t

    def apply(self, data, params):
        images = data["images"]
        ys = self._table(params["steps_y"], warp.size_of(images, 1))
        xs = self._table(params["steps_x"], warp.size_of(images, 2))
        return self.remap(data, ys, xs, warp.warp_data_separable)

    # Up to this many bands the table is evaluated by selects, beyond by
    # a gather per pixel.
    max_select_bands = 12

    def prepare(self, params, height, width):
        """Per axis, the table's bands (or the table itself, for many
        bands) and the size."""
        out = []
        for key, size in (("steps_y", height), ("steps_x", width)):
            if self.num_steps + 1 <= self.max_select_bands:
                out.append((self._bands(params[key], size), size))
            else:
                out.append((self._table(params[key], size), size))
        return tuple(out)

    def _read(self, axis_state, x):
        what, size = axis_state
        if isinstance(what, tuple):
            return self._at(what, x, size)
        return _lookup(what, x)

    def map_points(self, state, ys, xs):
        return self._read(state[0], ys), self._read(state[1], xs)

    def _bands_cover(self, size):
        """Whether every pixel of an axis of static `size` lies in a band
        (else the table is 0 past the last one)."""
        n = self.num_steps
        return isinstance(size, int) and (size - 1) // (size // n) <= n

    def map_taps(self, state, taps_y, taps_x):
        # Separable: each axis reads its table linearly.
        out = []
        for axis_state, taps in zip(state, (taps_y, taps_x)):
            what, size = axis_state
            if isinstance(what, tuple) and self._bands_cover(size):
                out.append(self._at(what, taps.point, size, between=True))
                continue
            p0, p1, u0, u1 = taps.parts()
            out.append(u0 * self._read(axis_state, p0)
                       + u1 * self._read(axis_state, p1))
        return tuple(out)


def _lookup(table, index):
    """table (batch, n) read at whole indices (batch, ...) given as float."""
    shape = tf.shape(index)
    flat = tf.reshape(tf.cast(index, tf.int32), tf.stack([shape[0], -1]))
    return tf.reshape(tf.gather(table, flat, batch_dims=1), shape)


@register_op("OpticalDistortion")
class OpticalDistortion(WarpOp):
    """Barrel / pincushion distortion with coefficient k ~ U(distort_limit).

    `mode="camera"`: OpenCV's undistortion maps for a camera with focal
    lengths (width, height), centre (width / 2, height / 2) and k1 = k2 = k.
    `mode="fisheye"`: r -> r (1 + k (r / r_max)^2).

    Example:

    >>> OpticalDistortion(distort_limit=(-0.05, 0.05), p=0.5)
    """

    name = "OpticalDistortion"
    composes = True

    def __init__(self, distort_limit=(-0.05, 0.05), mode="camera",
                 interpolation=1, mask_interpolation=0, border_mode=0,
                 fill=0.0, fill_mask=0.0, p=0.5):
        super().__init__(interpolation, mask_interpolation, border_mode,
                         fill, fill_mask, p)
        self.distort_limit = _pair(distort_limit, "distort_limit", self.name)
        if mode not in ("camera", "fisheye"):
            raise ValueError("OpticalDistortion: `mode` must be 'camera' or "
                             f"'fisheye'. Received: mode={mode!r}")
        self.mode = mode

    def sample(self, seed, batch_size, height, width):
        return {"k": rng.uniform(seed, "k", [batch_size],
                                 *self.distort_limit)}

    def prepare(self, params, height, width):
        return (params["k"][:, None, None], tf.cast(height, tf.float32),
                tf.cast(width, tf.float32))

    def map_points(self, state, ys, xs):
        k, h, w = state
        if self.mode == "camera":
            # initUndistortRectifyMap with the default new camera matrix,
            # whose principal point is ((w - 1) / 2, (h - 1) / 2).
            x = (xs - (w - 1.0) / 2.0) / w
            y = (ys - (h - 1.0) / 2.0) / h
            r2 = x * x + y * y
            kr = 1.0 + k * r2 + k * r2 * r2
            return h * y * kr + h / 2.0, w * x * kr + w / 2.0
        cx, cy = w / 2.0, h / 2.0
        r_max2 = cx * cx + cy * cy
        x, y = xs - cx, ys - cy
        factor = 1.0 + k * (x * x + y * y) / r_max2
        return y * factor + cy, x * factor + cx


def _gaussian_kernel(sigma, radius):
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * tf.square(x / sigma))
    return k / tf.reduce_sum(k)


def _blur_replicate(fields, sigma, radius):
    """Separable Gaussian blur with a replicated border; (b, h, w, c).

    A sum of shifted slices (XLA fuses it into one loop; a depthwise
    convolution is much slower on a CPU)."""
    if radius <= 0:
        return fields
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    weights = tf.exp(-0.5 * tf.square(x / sigma))
    weights = weights / tf.reduce_sum(weights)
    for axis in (1, 2):
        n = tf.shape(fields)[axis]
        index = tf.clip_by_value(tf.range(-radius, n + radius), 0, n - 1)
        padded = tf.gather(fields, index, axis=axis)
        total = 0.0
        for k in range(2 * radius + 1):
            begin = [0, 0, 0, 0]
            begin[axis] = k
            size = [-1, -1, -1, -1]
            size[axis] = n
            total += weights[k] * tf.slice(padded, begin, size)
        fields = total
    return fields


def expected_max_abs_normal(count):
    """E[max |z|] over `count` standard normal draws (extreme-value fit)."""
    n = 2.0 * max(count, 2)
    a = math.sqrt(2.0 * math.log(n))
    return a - (math.log(math.log(n)) + math.log(4 * math.pi)) / (2 * a) \
        + 0.5772156649 / a


def _kernel(sigma, radius):
    x = [float(k) for k in range(-radius, radius + 1)]
    weights = [math.exp(-0.5 * (v / sigma) ** 2) for v in x]
    total = sum(weights)
    return [v / total for v in weights]


def coarse_field_scale(sigma, radius, factor, coarse_sigma, coarse_radius):
    """Std factor that gives a field blurred on the coarse grid and
    upsampled bilinearly the std of the full-size blurred field."""
    full = _kernel(sigma, radius)
    coarse = _kernel(coarse_sigma, coarse_radius)
    energy_full = sum(v * v for v in full)
    energy_coarse = sum(v * v for v in coarse)
    # Lag-1 correlation of blurred white noise on the coarse grid; linear
    # interpolation between two such values keeps 2/3 + rho/3 of the
    # variance on average (per axis).
    rho = sum(a * b for a, b in zip(coarse, coarse[1:])) / energy_coarse
    kept = 2.0 / 3.0 + rho / 3.0
    if factor == 1:
        kept = 1.0
    # Two axes: variance ratios multiply, so the std ratio is their root.
    return (energy_full / energy_coarse) / kept


@register_op("ElasticTransform")
class ElasticTransform(WarpOp):
    """Displaces every pixel by alpha * (Gaussian-smoothed noise).

    The noise is uniform in [-1, 1] or Gaussian scaled by its expected
    maximum, smoothed with `sigma` (radius 4 sigma, or 8 px with
    `approximate=True`), drawn on a grid `max(1, sigma // 1.5)` times
    coarser than the image (scaled so the smoothed field keeps its
    variance) and upsampled bilinearly.

    Example:

    >>> ElasticTransform(alpha=120, sigma=6, noise_distribution="uniform")
    """

    name = "ElasticTransform"
    composes = True

    def __init__(self, alpha=1.0, sigma=50.0, approximate=False,
                 same_dxdy=False, noise_distribution="gaussian",
                 interpolation=1, mask_interpolation=0, border_mode=0,
                 fill=0.0, fill_mask=0.0, p=0.5):
        super().__init__(interpolation, mask_interpolation, border_mode,
                         fill, fill_mask, p)
        for arg, value in (("alpha", alpha), ("sigma", sigma)):
            if isinstance(value, bool) or not isinstance(
                    value, (int, float)) or value < 0:
                raise ValueError(f"ElasticTransform: `{arg}` must be a "
                                 f"number >= 0. Received: {value!r}")
        if noise_distribution not in ("gaussian", "uniform"):
            raise ValueError(
                "ElasticTransform: `noise_distribution` must be 'gaussian' "
                f"or 'uniform'. Received: {noise_distribution!r}")
        self.alpha = float(alpha)
        self.sigma = float(sigma)
        self.approximate = bool(approximate)
        self.same_dxdy = bool(same_dxdy)
        self.noise_distribution = noise_distribution
        self.factor = max(1, int(self.sigma // 1.5))

    def _coarse_size(self, size):
        return (size - 1) // self.factor + 2

    def sample(self, seed, batch_size, height, width):
        # The field is made in `apply`, for the samples that need it only.
        return {"seed": rng.bits(seed, "field_seed", [batch_size, 2])}

    def field(self, seeds, height, width):
        """Smooth displacement on the coarse grid: (b, hc, wc, 2)."""
        f = self.factor
        hc, wc = self._coarse_size(height), self._coarse_size(width)
        fields = 1 if self.same_dxdy else 2
        shape = [hc, wc, fields]
        if self.noise_distribution == "uniform":
            def draw(s):
                return rng.uniform(s, "noise", shape, -1.0, 1.0)
        else:
            count = _static_or(height, 512) * _static_or(width, 512) \
                * fields

            def draw(s):
                return rng.normal(s, "noise", shape) \
                    / expected_max_abs_normal(count)
        noise = tf.map_fn(draw, seeds, fn_output_signature=tf.TensorSpec(
            [None, None, fields], tf.float32))
        radius_full = 8 if self.approximate else int(
            round(self.sigma * 4.0))
        radius = int(math.ceil(radius_full / f))
        sigma = max(self.sigma / f, 1e-3)
        scale = coarse_field_scale(max(self.sigma, 1e-3), radius_full, f,
                                   sigma, radius)
        field = _blur_replicate(noise, sigma, radius) * (self.alpha * scale)
        field.set_shape([None, None, None, fields])
        if self.same_dxdy:
            field = tf.concat([field, field], axis=-1)
        return field

    def prepare(self, params, height, width):
        return self.field(params["seed"], height, width)

    def map_points(self, state, ys, xs):
        f = float(self.factor)
        field = warp.remap(state, ys / f, xs / f, warp.LINEAR,
                           warp.BORDER_REPLICATE, pad=True)
        return ys + field[..., 1], xs + field[..., 0]

    def map_taps(self, state, taps_y, taps_x):
        # The field is bilinear on cells of `factor` whole pixels, so it is
        # linear between two neighbouring pixels.
        return self.map_points(state, taps_y.point, taps_x.point)

    def coords(self, data, params):
        images = data["images"]
        h, w = warp.size_of(images, 1), warp.size_of(images, 2)
        batch = tf.shape(images)[0]
        f = float(self.factor)
        zero = warp.runtime_zero(images)
        ys = tf.broadcast_to(tf.range(tf.cast(h, tf.float32)) / f + zero,
                             tf.stack([batch, h]))
        xs = tf.broadcast_to(tf.range(tf.cast(w, tf.float32)) / f + zero,
                             tf.stack([batch, w]))
        field = self.field(params["seed"], h, w)
        field = warp.remap_separable(field, ys, xs, warp.LINEAR,
                                     warp.BORDER_REPLICATE,
                                     column_pixels=True)
        gy, gx = warp.grid(images)
        return gy + field[..., 1], gx + field[..., 0]


# --- crops and resizes (they set the output size) -----------------------


class CropResize(Op):
    """Crops a per-sample box and resizes it to (height, width) as
    `cv2.resize` does (bilinear with half-pixel centres; nearest takes
    `floor(x * scale)`). Always applied (`p` must be 1): a batch has one
    shape."""

    def __init__(self, height, width, interpolation=1, mask_interpolation=0,
                 p=1.0):
        super().__init__(p)
        for arg, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) \
                    or value < 1:
                raise ValueError(f"{self.name}: `{arg}` must be an integer "
                                 f">= 1. Received: {arg}={value!r}")
        if self.p != 1.0:
            raise ValueError(
                f"{self.name}: sets the output size, so it must always "
                f"apply (p=1); a batch has one shape. Received: p={p}")
        for arg, value in (("interpolation", interpolation),
                           ("mask_interpolation", mask_interpolation)):
            if value not in (warp.NEAREST, warp.LINEAR):
                raise ValueError(
                    f"{self.name}: `{arg}` must be 0 (nearest) or 1 "
                    f"(linear). Received: {arg}={value!r}")
        self.height = height
        self.width = width
        self.interpolation = interpolation
        self.mask_interpolation = mask_interpolation

    @property
    def packs_masks(self):
        return self.mask_interpolation == warp.NEAREST

    channel_uniform = True

    def changes_size(self):
        return True

    def output_size(self, height, width):
        return self.height, self.width

    def box(self, seed, batch_size, height, width):
        """(y0, x0, crop_height, crop_width), each int32 (batch,)."""
        raise NotImplementedError

    def sample(self, seed, batch_size, height, width):
        return dict(zip(("y0", "x0", "ch", "cw"),
                        self.box(seed, batch_size, height, width)))

    @staticmethod
    def _axis(start, length, out, interpolation):
        start = tf.cast(start, tf.float32)[:, None]
        length = tf.cast(length, tf.float32)[:, None]
        i = tf.range(out, dtype=tf.float32)[None, :]
        scale = length / out
        if interpolation == warp.NEAREST:
            pos = tf.minimum(tf.floor(i * scale), length - 1.0)
        else:
            pos = tf.clip_by_value((i + 0.5) * scale - 0.5, 0.0,
                                   length - 1.0)
        return start + pos

    def apply(self, data, params):
        out = {}
        for key, value in data.items():
            interp = self.interpolation if key == "images" \
                else self.mask_interpolation
            ys = self._axis(params["y0"], params["ch"], self.height, interp)
            xs = self._axis(params["x0"], params["cw"], self.width, interp)
            out[key] = warp.remap_separable(value, ys, xs, interp,
                                            warp.BORDER_REPLICATE)
        return out


def _check_fits(name, height, width, crop_h, crop_w):
    if isinstance(height, int) and isinstance(width, int) and (
            crop_h > height or crop_w > width):
        raise ValueError(f"{name}: the crop ({crop_h}, {crop_w}) is larger "
                         f"than the images ({height}, {width}).")


@register_op("Resize")
class Resize(CropResize):
    """Resizes every image to (height, width).

    Example:

    >>> Resize(512, 512)
    """

    name = "Resize"

    def box(self, seed, batch_size, height, width):
        zeros = tf.zeros([batch_size], tf.int32)
        return (zeros, zeros, zeros + tf.cast(height, tf.int32),
                zeros + tf.cast(width, tf.int32))


@register_op("RandomCrop")
class RandomCrop(CropResize):
    """A (height, width) crop at a uniform position.

    Example:

    >>> RandomCrop(256, 256)
    """

    name = "RandomCrop"

    def box(self, seed, batch_size, height, width):
        _check_fits(self.name, height, width, self.height, self.width)
        y0 = tf.cast(tf.cast(height - self.height + 1, tf.float32)
                     * rng.uniform(seed, "h_start", [batch_size]), tf.int32)
        x0 = tf.cast(tf.cast(width - self.width + 1, tf.float32)
                     * rng.uniform(seed, "w_start", [batch_size]), tf.int32)
        ones = tf.ones([batch_size], tf.int32)
        return y0, x0, ones * self.height, ones * self.width


@register_op("CenterCrop")
class CenterCrop(CropResize):
    """The central (height, width) crop.

    Example:

    >>> CenterCrop(256, 256)
    """

    name = "CenterCrop"

    def box(self, seed, batch_size, height, width):
        _check_fits(self.name, height, width, self.height, self.width)
        ones = tf.ones([batch_size], tf.int32)
        y0 = (tf.cast(height, tf.int32) - self.height) // 2
        x0 = (tf.cast(width, tf.int32) - self.width) // 2
        return ones * y0, ones * x0, ones * self.height, ones * self.width


@register_op("RandomResizedCrop")
class RandomResizedCrop(CropResize):
    """A crop of random area (`scale` of the image) and aspect ratio
    (`ratio`, width / height), resized to (height, width); ten tries, then
    a centre crop, as albumentations.

    Example:

    >>> RandomResizedCrop(224, 224, scale=(0.5, 1.0))
    """

    name = "RandomResizedCrop"
    tries = 10

    def __init__(self, height, width, scale=(0.08, 1.0),
                 ratio=(0.75, 4.0 / 3.0), interpolation=1,
                 mask_interpolation=0, p=1.0):
        super().__init__(height, width, interpolation, mask_interpolation, p)
        self.scale = _pair(scale, "scale", self.name)
        self.ratio = _pair(ratio, "ratio", self.name)
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"{self.name}: `ratio` must be positive and "
                             f"increasing. Received: {ratio!r}")

    def box(self, seed, batch_size, height, width):
        h = tf.cast(height, tf.float32)
        w = tf.cast(width, tf.float32)
        shape = [batch_size, self.tries]
        area = rng.uniform(seed, "area", shape, self.scale[0] * h * w,
                           self.scale[1] * h * w)
        log_ratio = rng.uniform(seed, "ratio", shape,
                                math.log(self.ratio[0]),
                                math.log(self.ratio[1]))
        aspect = tf.exp(log_ratio)
        cw = tf.round(tf.sqrt(area * aspect))
        ch = tf.round(tf.sqrt(area / aspect))
        ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = tf.argmax(tf.cast(ok, tf.int32), axis=1, output_type=tf.int32)
        found = tf.reduce_any(ok, axis=1)
        ch = tf.gather(ch, first, batch_dims=1)
        cw = tf.gather(cw, first, batch_dims=1)
        hs = rng.uniform(seed, "h_start", [batch_size])
        ws = rng.uniform(seed, "w_start", [batch_size])
        y0 = tf.floor((h - ch + 1.0) * hs)
        x0 = tf.floor((w - cw + 1.0) * ws)
        # Fallback: the whole image, cut to the nearest allowed ratio.
        in_ratio = w / h
        fh = tf.where(in_ratio < self.ratio[0],
                      tf.round(w / self.ratio[0]), h)
        fw = tf.where(in_ratio > self.ratio[1],
                      tf.round(h * self.ratio[1]), w)
        fy0 = tf.floor((h - fh) / 2.0)
        fx0 = tf.floor((w - fw) / 2.0)
        return tuple(tf.cast(tf.where(found, a, b), tf.int32)
                     for a, b in ((y0, fy0), (x0, fx0), (ch, fh), (cw, fw)))
