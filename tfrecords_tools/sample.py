"""A small dataset in a competition's exact Kaggle layout.

    python -m tfrecords_tools.sample --task steel --out DIR \\
        [--n 64] [--size 64x400] [--seed 0]

Dispatches to `tfrecords_tools.competitions.<task>.make_sample`. The same
seed writes the same bytes.

Example:

>>> main(["--task", "steel", "--out", "/tmp/steel", "--n", "8",
...       "--size", "64x400"])                          # doctest: +SKIP
0
"""

import argparse
import sys

from kaggle_tf import cli
from tfrecords_tools import competitions


def parse_size(text: str) -> tuple:
    """"64x400" -> (64, 400) (height x width); "256" -> (256, 256).

    Raises:
        argparse.ArgumentTypeError: not two positive integers.
    """
    try:
        parts = [int(v) for v in text.lower().split("x")]
        h, w = parts * 2 if len(parts) == 1 else parts
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--size must be HxW or S, e.g. 64x400 or 256. "
            f"Received: {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(
            f"--size must be positive. Received: {text!r}")
    return h, w


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m tfrecords_tools.sample",
        description="Write a small dataset in a competition's Kaggle layout.")
    p.add_argument("--task", required=True, choices=competitions.names())
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--n", type=int, default=None,
                   help="training samples (default: the task's, 64 for "
                        "steel)")
    p.add_argument("--size", type=parse_size, default=None,
                   help="image size HxW, or S for S x S (default: the "
                        "competition's)")
    p.add_argument("--seed", type=int, default=0)
    cli.add_common(p)
    return p.parse_args(argv)


@cli.command
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.n is not None and args.n < 1:
        print(f"error: --n must be >= 1. Received: {args.n}", file=sys.stderr)
        return 2
    module = competitions.get(args.task)
    try:
        module.make_sample(args.out, n=args.n, size=args.size,
                           seed=args.seed)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote a {args.task} sample to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
