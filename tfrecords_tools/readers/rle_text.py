"""Kaggle run-length strings: strict parsing with reasons, mask drawing.

Kaggle numbers pixels column-major (top to bottom, then left to right).
`absolute` runs (Severstal, SIIM stage 2) are `start length` pairs with
1-based starts; `relative` runs (SIIM stage 1) give each start as the
offset from the end of the previous run (the first from pixel 0).

Example, the 3 x 4 mask with ones at (1, 0), (2, 0), (1, 3):

>>> starts, lengths = parse_runs("2 2 11 1")
>>> runs_to_mask(starts, lengths, (3, 4)).astype(int).tolist()
[[0, 0, 0, 0], [1, 0, 0, 1], [1, 0, 0, 0]]
"""

import numpy as np


def parse_runs(text: str, convention: str = "absolute") -> tuple:
    """RLE text -> 0-based column-major `(starts, lengths)` int64 arrays.

    An empty string (or `-1`) is an empty mask.

    Args:
        text: the EncodedPixels value.
        convention: "absolute" or "relative".

    Raises:
        ValueError: odd count, non-integers, non-positive lengths, starts
            out of order or overlapping; the message says which.
    """
    text = (text or "").strip()
    if text in ("", "-1"):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tokens = text.split()
    if len(tokens) % 2:
        raise ValueError(f"malformed RLE: {len(tokens)} numbers, "
                         "pairs expected")
    try:
        values = np.array([int(t) for t in tokens], np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("-").isdigit())
        raise ValueError(f"malformed RLE: {bad!r} is not an integer") \
            from None
    starts, lengths = values[0::2], values[1::2]
    if np.any(lengths <= 0):
        raise ValueError("malformed RLE: run lengths must be positive")
    if convention == "absolute":
        if np.any(starts < 1):
            raise ValueError("malformed RLE: starts are 1-based")
        starts = starts - 1
    elif convention == "relative":
        if np.any(starts < 0):
            raise ValueError("malformed RLE: negative offset")
        ends = np.cumsum(starts + lengths)
        starts = ends - lengths
    else:
        raise ValueError(f"convention must be 'absolute' or 'relative'. "
                         f"Received: {convention!r}")
    ends = starts + lengths
    if np.any(starts[1:] < ends[:-1]):
        raise ValueError("malformed RLE: runs out of order or overlapping")
    return starts, lengths


def runs_to_mask(starts, lengths, shape) -> np.ndarray:
    """Paints runs into a `(height, width)` bool mask.

    Raises:
        ValueError: a run goes past the last pixel.
    """
    h, w = shape
    flat = np.zeros(h * w, bool)
    if len(starts):
        end = int(starts[-1] + lengths[-1])
        if end > h * w:
            raise ValueError(f"RLE run ends at pixel {end}, past the "
                             f"{h}x{w} image ({h * w} pixels)")
        for s, n in zip(starts, lengths):
            flat[s:s + n] = True
    return flat.reshape((w, h)).T


def mask_to_rle(mask) -> str:
    """A `(height, width)` mask -> absolute 1-based column-major RLE text.

    Example:

    >>> m = np.zeros((3, 4), bool); m[1:3, 0] = True; m[1, 3] = True
    >>> mask_to_rle(m)
    '2 2 11 1'
    """
    flat = np.asarray(mask, bool).T.reshape(-1)
    padded = np.concatenate([[False], flat, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = changes[0::2], changes[1::2]
    return " ".join(f"{s + 1} {e - s}" for s, e in zip(starts, ends))
