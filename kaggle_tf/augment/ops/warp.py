"""Resampling: the one primitive behind every geometric op.

`remap(images, ys, xs)` reads `images` at source coordinates, as OpenCV's
`cv2.remap` does: bilinear (`interpolation=1`) or nearest (`0`, rounding
half to even), with OpenCV's border modes (albumentations' `border_mode`):

    0 constant    iiiiii|abcdefgh|iiiiiii  (i = `fill`)
    1 replicate   aaaaaa|abcdefgh|hhhhhhh
    2 reflect     fedcba|abcdefgh|hgfedcb
    3 wrap        cdefgh|abcdefgh|abcdefg
    4 reflect_101 gfedcb|abcdefgh|gfedcba

The border is handled once: the coordinates are folded into the image
(reflected, wrapped or clamped) and the image is padded by one pixel, after
which every bilinear tap is inside and the four taps of a pixel are at fixed
offsets of one flat index. For these modes this equals OpenCV's per-tap
rule exactly. Replicate and reflect_101 fold every coordinate into the
image itself, so they skip the padded copy: the only tap past the edge
has weight 0 there. `warp_data` resamples images and masks (masks usually with
nearest sampling, so they stay binary).

Everything is `tf.gather` and arithmetic, so it compiles with XLA (unlike
`ImageProjectiveTransformV3`, which Keras' affine layers use).
`warp_data_separable` is the fast path for maps where the source row
depends on the output row only and the source column on the output column
only (grid distortion, crops, resizes): two 1-D gathers (bilinear), or
one gather of whole pixels (nearest).

Example:

>>> ys, xs = grid(images)                  # identity
>>> out = remap(images, ys + 0.5, xs, interpolation=1, border_mode=4)
"""

import tensorflow as tf

from kaggle_tf.augment.ops import packing

NEAREST = 0
LINEAR = 1
BORDER_CONSTANT = 0
BORDER_REPLICATE = 1
BORDER_REFLECT = 2
BORDER_WRAP = 3
BORDER_REFLECT_101 = 4
BORDER_MODES = {0: "constant", 1: "replicate", 2: "reflect", 3: "wrap",
                4: "reflect_101"}


def size_of(images, axis):
    """A static dimension when known, else a scalar tensor."""
    dim = images.shape[axis]
    return dim if dim is not None else tf.shape(images)[axis]


def runtime_zero(x, dtype=tf.float32):
    """A scalar 0 that depends on the values of `x` (one element read).

    XLA folds whatever depends on constants only: the pixel grid and every
    coordinate computed from it would become literals of the image's size
    (at 1024 x 1024 the SIIM list compiled ~200 MB of them, and the
    compiler's peak memory went past 6 GB). Adding this zero keeps them
    computed at run time. A NaN in `x`, or an empty `x`, still gives 0.
    """
    first = x[(slice(0, 1),) * x.shape.rank]
    flag = tf.reduce_any(tf.math.is_nan(tf.cast(first, tf.float32)))
    return tf.cast(flag, dtype) * tf.constant(0, dtype)


def grid(images, dtype=tf.float32):
    """The identity map: (ys, xs) of shape (batch, height, width), computed
    at run time (`runtime_zero`)."""
    batch = tf.shape(images)[0]
    h, w = size_of(images, 1), size_of(images, 2)
    zero = runtime_zero(images, dtype)
    ys = tf.cast(tf.range(h), dtype)[:, None] + zero
    xs = tf.cast(tf.range(w), dtype)[None, :] + zero
    shape = tf.stack([batch, h, w])
    return tf.broadcast_to(ys, shape), tf.broadcast_to(xs, shape)


def _check(interpolation, border_mode):
    if interpolation not in (NEAREST, LINEAR):
        raise ValueError("interpolation must be 0 (nearest) or 1 (linear). "
                         f"Received: {interpolation!r}")
    if border_mode not in BORDER_MODES:
        raise ValueError(f"border_mode must be one of {sorted(BORDER_MODES)}"
                         f". Received: {border_mode!r}")


# --- borders ---------------------------------------------------------------


def floormod(c, period):
    """`tf.math.floormod(c, period)` for float coordinates without its
    per-element `fmod` (a library call XLA cannot vectorize: up to a third
    of a warp's time at 256 x 1600).

    `period * floor(c / period)` is an integer multiple of the period, so
    `c` minus it is exact; where the division rounded across an integer
    the remainder is off by one period, which the two corrections put
    back with the same rounding as `floormod`'s own `fmod(c) + period`.
    The same values, except that where that rounding gives `period`
    itself (`c` a tiny negative) this gives 0, the same point once a
    border folds it.
    """
    r = c - period * tf.floor(c / period)
    r = tf.where(r >= period, r - period, r)
    return tf.where(r < 0.0, r + period, r)


def _fold(c, n, mode):
    """Continuous coordinates -> coordinates in the padded frame.

    The padded axis has `n + 2` entries for constant and reflect (one pad
    each side), `n + 1` otherwise (one pad at the end).
    """
    n = tf.cast(n, c.dtype)
    if mode == BORDER_CONSTANT:
        return tf.clip_by_value(c, -1.0, n) + 1.0
    if mode == BORDER_REPLICATE:
        return tf.clip_by_value(c, 0.0, n - 1.0)
    if mode == BORDER_WRAP:
        return floormod(c, n)
    if mode == BORDER_REFLECT_101:
        period = tf.maximum(2.0 * n - 2.0, 1.0)
        c = floormod(c, period)
        return tf.minimum(tf.where(c > n - 1.0, period - c, c), n - 1.0)
    # BORDER_REFLECT: mirror about -0.5 and n - 0.5; the one-pixel pad
    # repeats the edge, as OpenCV's per-tap rule does between -1 and 0.
    c = floormod(c + 0.5, 2.0 * n) - 0.5
    return tf.where(c > n - 0.5, 2.0 * n - 1.0 - c, c) + 1.0


def _padded_size(n, mode):
    extra = 2 if mode in (BORDER_CONSTANT, BORDER_REFLECT) else 1
    return n + extra


def _pixel(j, n, mode):
    """Index `j` (int32) of the padded frame -> (pixel index, inside);
    inside is None except for the constant border."""
    if mode == BORDER_CONSTANT:
        return tf.clip_by_value(j - 1, 0, n - 1), (j >= 1) & (j <= n)
    if mode == BORDER_REPLICATE:
        return tf.minimum(j, n - 1), None
    if mode == BORDER_WRAP:
        return tf.where(j >= n, j - n, j), None
    if mode == BORDER_REFLECT_101:
        return tf.where(j >= n, tf.maximum(n - 2, 0), j), None
    return tf.clip_by_value(j - 1, 0, n - 1), None  # reflect


class Taps:
    """Where a bilinear read at continuous coordinates falls along an axis
    of `n` pixels once the border rule is applied (`border_taps`).

    `point`: the coordinate inside [0, n - 1] the read amounts to;
    `parts()`: its two taps (p0, p1, u0, u1), pixel indices (float) and
    weights, u0 + u1 = 1, so that a linear image read at the coordinate
    equals `u0 * I[p0] + u1 * I[p1]`; `weight`: the share of the read
    inside the image (the rest is the fill), None (1) except for the
    constant border.
    """

    def __init__(self, point, n, parts=None, weight=None):
        self.point = point
        self.n = n
        self.weight = weight
        self._parts = parts

    def parts(self):
        if self._parts is None:
            last = tf.cast(self.n - 1, self.point.dtype)
            p0 = tf.clip_by_value(tf.floor(self.point), 0.0,
                                  tf.maximum(last - 1.0, 0.0))
            u1 = self.point - p0
            self._parts = (p0, tf.minimum(p0 + 1.0, last), 1.0 - u1, u1)
        return self._parts


def _fold_fast(c, n, mode):
    """`_fold` for replicate, reflect and reflect_101 in the pixel frame
    (inside [0, n - 1]), with a floor instead of a floor-mod (a few times
    cheaper; equal but for the last bit at period boundaries)."""
    last = tf.cast(n - 1, c.dtype)
    if mode == BORDER_REPLICATE:
        return tf.clip_by_value(c, 0.0, last)
    if mode == BORDER_REFLECT_101:
        period = tf.maximum(2.0 * last, 1.0)
        c = c - period * tf.floor(c / period)
        return tf.clip_by_value(tf.where(c > last, period - c, c), 0.0,
                                last)
    # reflect: about -0.5 and n - 0.5; within half a pixel of the edge a
    # read gives the edge pixel.
    period = 2.0 * last + 2.0
    c = c + 0.5
    c = c - period * tf.floor(c / period) - 0.5
    return tf.where(c > last + 0.5, period - 1.0 - c, c)


def border_taps(c, n, mode):
    """The `Taps` of a bilinear read at continuous coordinates `c` along
    an axis of `n` pixels with border `mode`, as `remap` reads."""
    n = tf.cast(n, tf.int32)
    if mode in (BORDER_REPLICATE, BORDER_REFLECT, BORDER_REFLECT_101):
        # Within [0, n - 1] these borders are the identity.
        return Taps(tf.clip_by_value(_fold_fast(c, n, mode), 0.0,
                                     tf.cast(n - 1, c.dtype)), n)
    size = _padded_size(n, mode)
    folded = _fold(c, n, mode)
    c0 = tf.minimum(tf.floor(folded), tf.cast(size - 2, c.dtype))
    w1 = folded - c0
    j0 = tf.cast(c0, tf.int32)
    p0, in0 = _pixel(j0, n, mode)
    p1, in1 = _pixel(j0 + 1, n, mode)
    p0, p1 = tf.cast(p0, c.dtype), tf.cast(p1, c.dtype)
    if in0 is None:  # wrap: the taps either side of the seam
        return Taps((1.0 - w1) * p0 + w1 * p1, n, (p0, p1, 1.0 - w1, w1))
    w0 = tf.where(in0, 1.0 - w1, 0.0)
    w1 = tf.where(in1, w1, 0.0)
    weight = w0 + w1
    safe = tf.where(weight > 0.0, weight, 1.0)
    # Nothing inside: any pixel, weight 0.
    u0 = tf.where(weight > 0.0, w0 / safe, 1.0)
    u1 = w1 / safe
    return Taps(u0 * p0 + u1 * p1, n, (p0, p1, u0, u1), weight)


def border_nearest(c, n, mode):
    """The pixel a nearest read at `c` takes, as `remap` does: (p, inside);
    p is a float pixel index in [0, n - 1], inside None except for the
    constant border (False: the read gives the fill)."""
    n = tf.cast(n, tf.int32)
    last = tf.cast(n - 1, c.dtype)
    if mode in (BORDER_REPLICATE, BORDER_REFLECT_101):
        return tf.round(_fold_fast(c, n, mode)), None
    if mode == BORDER_REFLECT:
        # Rounded in the padded frame (one pixel before), as `remap`.
        return tf.clip_by_value(tf.round(_fold_fast(c, n, mode) + 1.0)
                                - 1.0, 0.0, last), None
    j = tf.minimum(tf.cast(tf.round(_fold(c, n, mode)), tf.int32),
                   _padded_size(n, mode) - 1)
    p, inside = _pixel(j, n, mode)
    return tf.cast(p, c.dtype), inside


def _slice_axis(x, axis, start, stop):
    begin = [0, 0, 0, 0]
    size = [-1, -1, -1, -1]
    begin[axis] = start
    size[axis] = stop - start
    return tf.slice(x, begin, size)


def _pad_axis(x, axis, mode, fill):
    """Pads one axis of (batch, h, w, c) as `_fold` expects."""
    n = tf.shape(x)[axis]
    if mode == BORDER_CONSTANT:
        paddings = [[0, 0], [0, 0], [0, 0], [0, 0]]
        paddings[axis] = [1, 1]
        return tf.pad(x - fill, paddings) + fill
    if mode == BORDER_REPLICATE:
        parts = [x, _slice_axis(x, axis, n - 1, n)]
    elif mode == BORDER_WRAP:
        parts = [x, _slice_axis(x, axis, 0, 1)]
    elif mode == BORDER_REFLECT_101:
        last = tf.maximum(n - 2, 0)
        parts = [x, _slice_axis(x, axis, last, last + 1)]
    else:  # reflect
        parts = [_slice_axis(x, axis, 0, 1), x,
                 _slice_axis(x, axis, n - 1, n)]
    return tf.concat(parts, axis)


def _pad(x, mode, fill):
    if mode == BORDER_CONSTANT:
        return tf.pad(x - fill, [[0, 0], [1, 1], [1, 1], [0, 0]]) + fill
    return _pad_axis(_pad_axis(x, 1, mode, fill), 2, mode, fill)


def _fill_vector(fill, channels, dtype):
    fill = tf.cast(tf.convert_to_tensor(fill), dtype)
    return tf.broadcast_to(tf.reshape(fill, [-1]), [channels])


def _parts(data, interpolation, mask_interpolation, fill, fill_mask):
    """(key, tensor, method, fill vector) for images and maybe masks."""
    images = data["images"]
    parts = [("images", images, interpolation,
              _fill_vector(fill, images.shape[-1], images.dtype))]
    if "masks" in data:
        masks = data["masks"]
        if packing.is_packed(masks):
            fill_mask = packing.packed_fill(fill_mask)
        parts.append(("masks", masks, mask_interpolation,
                      _fill_vector(fill_mask, masks.shape[-1],
                                   masks.dtype)))
    return parts


# --- 2-D remap -----------------------------------------------------------


# Borders whose folded coordinates stay inside the image ([0, n - 1]):
# every tap is a pixel of the image itself, except the second tap of a
# read exactly at the last pixel, whose weight is then 0.
_INSIDE_BORDERS = (BORDER_REPLICATE, BORDER_REFLECT_101)


def _remap_one(x, ys, xs, method, border_mode, fill_vec, pad=False):
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    ys = _fold(ys, h, border_mode)
    xs = _fold(xs, w, border_mode)
    if pad or border_mode not in _INSIDE_BORDERS:
        padded = _pad(x, border_mode, fill_vec)
        return _read(padded, ys, xs, method, pair_inside=True)
    # No padded copy: the taps are read from `x` itself. Where the second
    # tap of an axis would fall past the last pixel its weight is exactly
    # 0, so any finite pixel gives the same result; the flat index is only
    # kept inside the tensor.
    return _read(x, ys, xs, method, pair_inside=False)


def _read(x, ys, xs, method, pair_inside):
    """`x` (batch, rows, cols, channels) read at the folded coordinates
    `ys`, `xs`: nearest, or bilinear from four taps. `pair_inside`: the
    bilinear pair of an axis must lie in `x` (a padded copy); else its
    second tap may fall past the last pixel (weight 0) and is clamped."""
    rows, cols = tf.shape(x)[1], tf.shape(x)[2]
    flat = tf.reshape(x, [-1, x.shape[-1]])
    base = (tf.range(tf.shape(x)[0]) * rows * cols)[:, None, None]
    if method == NEAREST:
        # Round half to even, as OpenCV's cvRound.
        yi = tf.minimum(tf.cast(tf.round(ys), tf.int32), rows - 1)
        xi = tf.minimum(tf.cast(tf.round(xs), tf.int32), cols - 1)
        return tf.gather(flat, base + yi * cols + xi)
    edge = 2 if pair_inside else 1
    y0f = tf.minimum(tf.floor(ys), tf.cast(rows - edge, ys.dtype))
    x0f = tf.minimum(tf.floor(xs), tf.cast(cols - edge, xs.dtype))
    wy = tf.cast(ys - y0f, x.dtype)[..., None]
    wx = tf.cast(xs - x0f, x.dtype)[..., None]
    index = base + tf.cast(y0f, tf.int32) * cols + tf.cast(x0f, tf.int32)
    last = tf.shape(flat)[0] - 1

    def tap(offset):
        at = index + offset
        return tf.gather(flat, at if pair_inside else tf.minimum(at, last))

    v00, v01, v10, v11 = [tap(offset) for offset in (0, 1, cols, cols + 1)]
    top = v00 + (v01 - v00) * wx
    bottom = v10 + (v11 - v10) * wx
    return top + (bottom - top) * wy


def warp_data(data, ys, xs, interpolation=LINEAR, mask_interpolation=NEAREST,
              border_mode=BORDER_CONSTANT, fill=0.0, fill_mask=0.0,
              mask_coords=None, pad=False):
    """Resamples images (and masks) at (ys, xs).

    Args:
        data: {"images": (batch, H, W, C) float, "masks" optional}.
        ys, xs: source rows and columns per output pixel, float32
            (batch, out_height, out_width).
        interpolation, mask_interpolation: 0 nearest, 1 bilinear.
        border_mode: OpenCV border mode (see the module docstring).
        fill, fill_mask: constant-border values (a number or one per
            channel).
        mask_coords: (ys, xs) for the masks when they differ from the
            images' (a chain of warps rounds the masks' own per step).
        pad: always read from a padded copy; otherwise replicate and
            reflect_101 read the image itself (the same values). A copy
            costs little for a small source read at many points (a coarse
            field), and there XLA fuses the padded form better.

    Returns:
        `data` resampled to (batch, out_height, out_width, ...).

    Example:

    >>> ys, xs = grid(data["images"])
    >>> flipped = warp_data(data, ys, float(width - 1) - xs)
    """
    out = dict(data)
    for key, x, method, fill_vec in _parts(data, interpolation,
                                           mask_interpolation, fill,
                                           fill_mask):
        _check(method, border_mode)
        at = (ys, xs) if key == "images" or mask_coords is None \
            else mask_coords
        out[key] = _remap_one(x, *at, method, border_mode, fill_vec, pad)
    return out


def fill_values(data, fill, fill_mask):
    """{"images": fill vector, "masks": fill vector} as `warp_data` fills
    (the packed value for packed masks)."""
    return {key: vec for key, _, _, vec in _parts(data, LINEAR, NEAREST,
                                                   fill, fill_mask)}


def remap(images, ys, xs, interpolation=LINEAR, border_mode=BORDER_CONSTANT,
          fill=0.0, pad=False):
    """`warp_data` for one tensor (batch, H, W, C)."""
    return warp_data({"images": images}, ys, xs, interpolation, NEAREST,
                     border_mode, fill, pad=pad)["images"]


# --- separable remap -----------------------------------------------------


def _axis_taps(x, coords, axis, border_mode, fill_vec, pixels=False):
    """Gathers along `axis` at `coords` (batch, n_out): the two bilinear
    taps and the weight of the second. `pixels`: the columns as a gather
    of whole pixels (`gather_columns`)."""
    n = tf.shape(x)[axis]
    inside = border_mode in _INSIDE_BORDERS
    # As `_remap_one`: no padded copy for borders that fold inside.
    padded = x if inside else _pad_axis(x, axis, border_mode, fill_vec)
    size = tf.shape(padded)[axis] if not inside else n + 1
    c = _fold(coords, n, border_mode)
    shape = [-1, 1, 1, 1]
    shape[axis] = tf.shape(coords)[1]
    c0 = tf.minimum(tf.floor(c), tf.cast(size - 2, c.dtype))
    weight = tf.reshape(tf.cast(c - c0, x.dtype), shape)
    i0 = tf.cast(c0, tf.int32)
    i1 = tf.minimum(i0 + 1, n - 1) if inside else i0 + 1
    if axis == 2 and pixels:
        return gather_columns(padded, i0), gather_columns(padded, i1), weight
    a = tf.gather(padded, i0, axis=axis, batch_dims=1)
    b = tf.gather(padded, i1, axis=axis, batch_dims=1)
    return a, b, weight


def gather_pixels(x, rows, cols):
    """`x[b, rows[b, i], cols[b, j]]` for (batch, h, w, c) `x` and int32
    `rows` (batch, n), `cols` (batch, m): one gather of whole pixels.

    A gather along the width (`tf.gather(x, cols, axis=2)`) makes XLA lay
    its result out transposed; where that layout spreads (the branches of
    a `OneOf` must agree on it) every op that passes the tensor on copies
    it back, a transposing copy as costly as the gather."""
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    base = tf.range(tf.shape(x)[0]) * height
    index = (base[:, None, None] + rows[:, :, None]) * width \
        + cols[:, None, :]
    return tf.gather(tf.reshape(x, [-1, x.shape[-1]]), index)


def gather_columns(x, cols):
    """`tf.gather(x, cols, axis=2, batch_dims=1)` as `gather_pixels`."""
    rows = tf.range(tf.shape(x)[1])[None, :]
    return gather_pixels(x, tf.broadcast_to(
        rows, tf.stack([tf.shape(x)[0], tf.shape(x)[1]])), cols)


def warp_data_separable(data, ys, xs, interpolation=LINEAR,
                        mask_interpolation=NEAREST,
                        border_mode=BORDER_CONSTANT, fill=0.0,
                        fill_mask=0.0, column_pixels=False):
    """`warp_data` for a map with ys (batch, h) per output row and xs
    (batch, w) per output column; two 1-D passes (bilinear) or one read
    of whole pixels (nearest). `column_pixels`: the bilinear column pass
    as a gather of whole pixels too (`gather_columns`), for a result read
    per pixel afterwards (a displacement field); for an image, the plain
    gather along the width is faster."""
    out = dict(data)
    for key, x, method, fill_vec in _parts(data, interpolation,
                                           mask_interpolation, fill,
                                           fill_mask):
        _check(method, border_mode)

        if method == NEAREST:
            out[key] = _nearest_separable(x, ys, xs, border_mode, fill_vec)
            continue

        def one_axis(x, coords, axis):
            a, b, weight = _axis_taps(x, coords, axis, border_mode,
                                      fill_vec, column_pixels)
            return a + (b - a) * weight

        out[key] = one_axis(one_axis(x, ys, 1), xs, 2)
    return out


def _nearest_separable(x, ys, xs, border_mode, fill_vec):
    """The nearest read of a separable map as one gather of whole pixels
    (`gather_pixels`: a row index per output row, a column index per
    output column)."""
    padded = x if border_mode in _INSIDE_BORDERS \
        else _pad(x, border_mode, fill_vec)
    rows, cols = tf.shape(x)[1], tf.shape(x)[2]
    prows, pcols = tf.shape(padded)[1], tf.shape(padded)[2]

    def pick(c, n, size):
        c = _fold(c, n, border_mode)
        return tf.minimum(tf.cast(tf.round(c), tf.int32), size - 1)

    return gather_pixels(padded, pick(ys, rows, prows),
                         pick(xs, cols, pcols))


def remap_separable(images, ys, xs, interpolation=LINEAR,
                    border_mode=BORDER_CONSTANT, fill=0.0,
                    column_pixels=False):
    """`warp_data_separable` for one tensor (batch, H, W, C)."""
    return warp_data_separable({"images": images}, ys, xs, interpolation,
                               NEAREST, border_mode, fill,
                               column_pixels=column_pixels)["images"]
