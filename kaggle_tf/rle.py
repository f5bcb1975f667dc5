"""Kaggle run-length encoding (RLE) of binary masks, in pure numpy.

Pixels are numbered column-major (top to bottom, then left to right), as in
every Kaggle segmentation competition. Two conventions:

- `"severstal"`: absolute 1-based `start length` pairs (Severstal, most
  competitions). An empty mask is `""`.
- `"siim"`: relative pairs (SIIM-ACR stage 1): each start is the offset
  from the end of the previous run, the first from pixel 0. An empty mask
  is `"-1"`.

Both directions are vectorized: `encode` finds the run boundaries by
comparing whole machine words of neighbouring rows (no transpose copy) and
formats the numbers through a lookup table; `decode` parses with one numpy
call and paints the mask with `np.repeat`.

Example:

>>> mask = np.array([[0, 0, 0, 0], [1, 0, 0, 1], [1, 0, 0, 0]], np.uint8)
>>> encode(mask)
'2 2 11 1'
>>> encode(mask, convention="siim")
'1 2 7 1'
>>> bool((decode("2 2 11 1", (3, 4)) == mask).all())
True
"""

import functools
import math

import numpy as np

CONVENTIONS = ("severstal", "siim")

_WORDS = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}
_SHOWN = 60  # characters of a bad RLE string quoted in error messages


def _table(width, fill, zero):
    """4-byte cells holding 0..9999 right-aligned, as native uint32."""
    cells = [(f"{i:{fill}>{width}}" if i else zero).encode("ascii")
             for i in range(10000)]
    return np.frombuffer(b"".join(cells).replace(b"_", b"\0"),
                         dtype=np.uint32)


# Numbers < 10**8 are written as two 4-digit cells, high then low. Leading
# zeros become NUL bytes, which one `bytes.translate` removes at the end.
_HIGH = _table(4, "_", "____")  # 0 -> nothing
_LOW = np.concatenate([
    _table(4, "_", "___0"),  # high part is 0: no leading zeros
    _table(4, "0", "0000"),  # high part > 0: zero-padded
])
_SPACE = np.frombuffer(b" \0\0\0", dtype=np.uint32)[0]
_ALTERNATING = np.zeros(1, np.uint8)


def _check_convention(convention):
    if convention not in CONVENTIONS:
        raise ValueError(f"`convention` must be one of {CONVENTIONS}. "
                         f"Received: convention={convention!r}")


_TABLE_PIXELS = 1 << 22  # images up to 4 Mpx get a cached position table


@functools.lru_cache(maxsize=4)
def _position_table(h, w, size):
    """Kaggle's 0-based column-major index of pixel k (row-major) of
    `m[1:]`, i.e. of pixel (1 + k // w, k % w), grouped by `size`-pixel
    words; int32, cached per image size."""
    cols, rows = np.meshgrid(np.arange(w, dtype=np.int32),
                             np.arange(1, h, dtype=np.int32))
    return (cols * h + rows).reshape(-1, size)


@functools.lru_cache(maxsize=4)
def _column_tops(h, w):
    """Kaggle's 0-based index of pixel (0, c) for c = 1 .. w - 1."""
    return np.arange(1, w, dtype=np.int64) * h


def _boundaries(mask):
    """Sorted 0-based column-major positions where runs start or end.

    Vertical neighbours `m[r, c]`, `m[r + 1, c]` are adjacent in column-major
    order, so most boundaries come from comparing row r + 1 with row r; the
    rest come from the top of each column against the bottom of the
    previous one. Rows are compared a machine word (up to 8 pixels) at a
    time, in one pass over the mask, and only differing words are looked
    at byte by byte.
    """
    h, w = mask.shape
    if mask.dtype == np.bool_ or mask.dtype == np.uint8:
        m = mask if mask.flags.c_contiguous else np.ascontiguousarray(mask)
        m = m.view(np.uint8)
    else:
        m = np.not_equal(mask, 0).view(np.uint8)
    size = 8 if w % 8 == 0 else 4 if w % 4 == 0 else 2 if w % 2 == 0 else 1
    words = m.reshape(-1).view(_WORDS[size])
    row = w // size
    below, above = words[row:], words[:-row]
    hit = np.flatnonzero(below != above)
    b, a = below[hit], above[hit]
    if mask.dtype == np.uint8 and (b | a).view(np.uint8).max(initial=0) > 1:
        # Values other than 0/1 where rows differ: compare as booleans.
        return _boundaries(m != 0)
    # Bytes are 0/1 here, so the XOR of two words is a valid bool array.
    flips = np.flatnonzero((b ^ a).view(np.bool_))
    if h * w <= _TABLE_PIXELS:  # look the positions up
        below_pos = _position_table(h, w, size)[hit].ravel()[flips]
    else:  # compute them: flat index k = row * w + col into m[1:]
        k = hit[flips // size] * size + flips % size
        row = k // w
        below_pos = (k - row * w) * h + row + 1
    top = np.flatnonzero(np.logical_xor(m[0, 1:], m[h - 1, :-1]))
    parts = [below_pos, _column_tops(h, w)[top]]
    if m[0, 0]:
        parts.append(np.zeros(1, np.int64))
    if m[h - 1, w - 1]:
        parts.append(np.full(1, h * w, np.int64))
    pos = np.concatenate(parts).astype(np.int64, copy=False)
    pos.sort()
    return pos


def _format(values, limit):
    """int64 values in [0, limit] -> "v0 v1 v2 ..." (vectorized)."""
    if values.size == 0:
        return ""
    if limit >= 10 ** 8:
        return " ".join(map(str, values.tolist()))
    high = values // 10000
    # Index into _LOW: the low part, +10000 (zero-padded cells) if high > 0.
    low = values - np.maximum(high - 1, 0) * 10000
    cells = np.empty((values.size, 3), np.uint32)
    cells[:, 0] = _HIGH[high]
    cells[:, 1] = _LOW[low]
    cells[:, 2] = _SPACE
    return cells.tobytes().translate(None, b"\0")[:-1].decode("ascii")


def encode(mask, convention="severstal"):
    """Run-length encodes a 2-D binary mask in Kaggle's column-major order.

    Args:
        mask: `(height, width)` array; any nonzero value is "on" (bool,
            integer or float).
        convention: `"severstal"` (absolute 1-based starts) or `"siim"`
            (each start relative to the end of the previous run). Defaults
            to `"severstal"`.

    Returns:
        The space-separated `start length` pairs; for an empty mask `""`
        (severstal) or `"-1"` (siim).

    Raises:
        ValueError: if `mask` is not 2-D or `convention` is unknown.

    Example:

    >>> m = np.zeros((3, 4), np.uint8)
    >>> m[1:, 0] = 1
    >>> m[1, 3] = 1
    >>> encode(m), encode(m, "siim")
    ('2 2 11 1', '1 2 7 1')
    """
    _check_convention(convention)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError("`encode` needs a 2-D (height, width) mask. "
                         f"Received: shape={mask.shape}")
    pos = _boundaries(mask) if mask.size else np.zeros(0, np.int64)
    if convention == "severstal":
        pos[1::2] -= pos[::2]
        pos[::2] += 1
        return _format(pos, mask.size)
    if pos.size == 0:
        return "-1"
    ends = pos[1::2].copy()
    pos[1::2] -= pos[::2]
    pos[2::2] -= ends[:-1]
    return _format(pos, mask.size)


def _shown(text):
    text = str(text)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _is_empty(rle, convention):
    if rle is None:
        return True
    if isinstance(rle, float) and math.isnan(rle):
        return True
    if not isinstance(rle, str):
        raise TypeError("an RLE must be a string (or None/NaN for an empty "
                        f"mask). Received: {type(rle).__name__} "
                        f"{_shown(repr(rle))}")
    if len(rle) > 8:  # cheap: long strings hold runs
        return False
    text = rle.strip()
    return text == "" or (convention == "siim" and text == "-1")


def _parse(text):
    """"1 2 3 4" -> int64 array; one numpy call when the text is clean."""
    if text.isascii() and text.encode().translate(None, b" ").isdigit():
        return np.fromstring(text, dtype=np.int64, sep=" ")
    text = text.strip()
    values = []
    for i, token in enumerate(text.split()):
        try:
            values.append(int(token))
        except ValueError:
            raise ValueError(
                f"RLE value #{i} is not an integer: {token!r}. "
                f"Received: {_shown(text)!r}") from None
    return np.asarray(values, dtype=np.int64)


def _run_counts(values, n, convention, text):
    """Alternating (off, on, off, ..., off) run lengths covering n pixels."""
    if values.size % 2:
        raise ValueError(
            f"an RLE needs start/length pairs, got an odd number of values "
            f"({values.size}). Received: {_shown(text)!r}")
    if convention == "severstal":
        bounds = np.empty(values.size + 2, np.int64)  # 1-based run bounds
        bounds[0] = 1
        bounds[1:-1] = values
        bounds[2:-1:2] += values[::2]
        bounds[-1] = n + 1
        counts = np.diff(bounds)
    else:
        counts = np.empty(values.size + 1, np.int64)
        counts[:-1] = values
        counts[-1] = n - values.sum()
    # Viewed unsigned, a negative count is huge: one check finds both
    # runs out of order or past the image (and any overflow).
    if counts.view(np.uint64).max() > n or (
            values.size and counts[1::2].min() < 1):
        _diagnose(values, n, convention, text)
    return counts


def _diagnose(values, n, convention, text):
    """Raises the precise error for pairs that failed the fast check."""
    starts, lengths = values[::2], values[1::2]
    received = f"Received: {_shown(text)!r}"
    lowest = 1 if convention == "severstal" else 0
    bad = np.flatnonzero(starts < lowest)
    if bad.size:
        i = bad[0]
        what = ("starts are 1-based, so must be >= 1"
                if convention == "severstal"
                else "offsets must be >= 0")
        raise ValueError(f"RLE run #{i} starts at {starts[i]}; {what}. "
                         f"{received}")
    bad = np.flatnonzero(lengths < 1)
    if bad.size:
        i = bad[0]
        raise ValueError(f"RLE run #{i} has length {lengths[i]}; lengths "
                         f"must be >= 1. {received}")
    bad = np.flatnonzero(values > n)
    if bad.size:
        i = bad[0] // 2
        raise ValueError(f"RLE run #{i} has a value ({values[bad[0]]}) "
                         f"larger than the image of {n} pixels. {received}")
    if convention == "severstal":
        first = starts - 1
    else:
        first = np.cumsum(starts + lengths) - lengths
    ends = first + lengths
    bad = np.flatnonzero(first[1:] < ends[:-1])
    if bad.size:
        i = bad[0] + 1
        raise ValueError(
            f"RLE runs must be sorted and must not overlap: run #{i} "
            f"(start {starts[i]}) begins before run #{i - 1} ends. "
            f"{received}")
    i = int(np.argmax(ends))
    raise ValueError(
        f"RLE run #{i} ends at pixel {ends[i]}, past the image of {n} "
        f"pixels. {received}")


def decode(rle, shape, convention="severstal"):
    """Decodes a Kaggle RLE string into a `(height, width)` uint8 mask.

    Args:
        rle: the encoded pixels. `""`, `None` or NaN (pandas' empty cell)
            mean an empty mask; so does `"-1"` (or `" -1"`) for `"siim"`.
        shape: `(height, width)` of the image.
        convention: `"severstal"` or `"siim"`, as in `encode`. Defaults to
            `"severstal"`.

    Returns:
        uint8 array of 0/1 with shape `(height, width)`. It is a
        column-major (Fortran-ordered) view, as Kaggle's pixels are
        numbered; `np.ascontiguousarray` makes a row-major copy.

    Raises:
        ValueError: odd number of values, non-integers, non-positive
            lengths or starts (severstal starts are 1-based), unsorted or
            overlapping runs, runs past the image; the message names the
            run and quotes the string.
        TypeError: `rle` is not a string, None or NaN.

    Example:

    >>> decode("2 2 11 1", (3, 4))
    array([[0, 0, 0, 0],
           [1, 0, 0, 1],
           [1, 0, 0, 0]], dtype=uint8)
    """
    global _ALTERNATING
    _check_convention(convention)
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError("`shape` must be (height, width). "
                         f"Received: shape={shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"`shape` must be positive. Received: shape={shape}")
    if _is_empty(rle, convention):
        return np.zeros((w, h), np.uint8).T
    counts = _run_counts(_parse(rle), h * w, convention, rle)
    if _ALTERNATING.size < counts.size:
        _ALTERNATING = np.resize(np.array([0, 1], np.uint8),
                                 2 * counts.size + 1)
    flat = np.repeat(_ALTERNATING[:counts.size], counts)
    return flat.reshape(w, h).T
