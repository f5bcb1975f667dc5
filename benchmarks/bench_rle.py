"""RLE throughput: `kaggle_tf.rle` vs the numpy functions Kaggle kernels use.

    python benchmarks/bench_rle.py [--masks 200] [--repeats 7] [--distinct N]

Masks are 256 x 1600 uint8 (Severstal) with 1-4 elliptic defects each, 200
distinct ones by default (82 MB: each is read from main memory, as when
encoding a batch of predictions); `--distinct 4` cycles through 4 masks
that stay in the CPU cache, as when each mask is encoded right after
post-processing made it.
The reference is the classic kernel pair: `mask2rle` (transpose, pad,
compare neighbours, `np.where`) and `rle2mask` (a Python loop painting one
slice per run). Both sides run in the same process on the same masks,
interleaved repeat by repeat; each figure is the best repeat. Outputs are
asserted identical before timing. One summary line per op.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kaggle_tf import rle  # noqa: E402

HEIGHT, WIDTH = 256, 1600


# --- the reference, as in the Kaggle kernels ---------------------------------
def mask2rle(img):
    pixels = img.T.flatten()
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def rle2mask(mask_rle, shape=(WIDTH, HEIGHT)):
    s = mask_rle.split()
    starts, lengths = [np.asarray(x, dtype=int)
                       for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    ends = starts + lengths
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, ends):
        img[lo:hi] = 1
    return img.reshape(shape).T


# --- data ---------------------------------------------------------------------
def defect_masks(n, seed=0):
    """Masks with 1-4 ellipses (5-80 px tall, 10-250 px wide) each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    masks = []
    for _ in range(n):
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        for _ in range(rng.integers(1, 5)):
            cy, cx = rng.integers(0, HEIGHT), rng.integers(0, WIDTH)
            ry, rx = rng.integers(5, 80), rng.integers(10, 250)
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            mask[inside] = 1
        masks.append(mask)
    return masks


def best_rate(fns, items, repeats):
    """Interleaves the functions; returns each one's best items/second."""
    best = [0.0] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for item in items:
                fn(item)
            rate = len(items) / (time.perf_counter() - start)
            best[i] = max(best[i], rate)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--masks", type=int, default=200)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--distinct", type=int, default=None,
                   help="distinct masks, cycled (default: all distinct)")
    args = p.parse_args(argv)

    distinct = defect_masks(args.distinct or args.masks, args.seed)
    masks = [distinct[i % len(distinct)] for i in range(args.masks)]
    texts = [mask2rle(m) for m in masks]
    for m, text in zip(masks, texts):
        assert rle.encode(m) == text, "encode differs from the reference"
        assert np.array_equal(rle.decode(text, m.shape), rle2mask(text))
        assert np.array_equal(rle.decode(text, m.shape), m)
    runs = np.mean([len(t.split()) // 2 for t in texts])
    print(f"{len(masks)} masks {HEIGHT}x{WIDTH} ({len(distinct)} distinct), "
          f"{runs:.0f} runs/mask on average; outputs identical; best of "
          f"{args.repeats} repeats")

    shape = (HEIGHT, WIDTH)
    ours, ref = best_rate([rle.encode, mask2rle], masks, args.repeats)
    print(f"encode: kaggle_tf {ours:9.0f} masks/s | reference mask2rle "
          f"{ref:8.0f} masks/s | {ours / ref:5.1f}x")
    ours, ref = best_rate([lambda t: rle.decode(t, shape), rle2mask],
                          texts, args.repeats)
    print(f"decode: kaggle_tf {ours:9.0f} masks/s | reference rle2mask "
          f"{ref:8.0f} masks/s | {ours / ref:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
