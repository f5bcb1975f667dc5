"""Small helpers shared by the competitions' sample generators."""

import os

import numpy as np


def sample_size(size, default):
    """`None` -> `default`; `S` -> `(S, S)`; `(H, W)` -> `(H, W)` as ints."""
    if size is None:
        return tuple(default)
    if np.ndim(size) == 0:
        return int(size), int(size)
    h, w = (int(v) for v in size)
    return h, w


def random_hex(rng, n):
    """`n` random lowercase hex digits drawn from `rng`."""
    return "".join(rng.choice(list("0123456789abcdef"), n))


def write_lines(path, lines):
    """Writes `lines` as a text file (e.g. a CSV) through a temporary name."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
