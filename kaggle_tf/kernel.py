"""The offline Kaggle kernel in one command:
`python -m kaggle_tf.kernel --config C --out DIR`.

Writes `DIR/wheel` (the kaggle_tf wheel), `DIR/model` (the SavedModel of
`kaggle_tf.export` with its config) and `DIR/kernel` (`inference.ipynb`),
each with its Kaggle metadata; prints the time budget measured on the
local test files, then the upload commands.
"""

import argparse
import os
import sys

from kaggle_tf import cli
from kaggle_tf import config as config_lib


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m kaggle_tf.kernel",
                                description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="recipe JSON")
    p.add_argument("--out", required=True, help="bundle folder (new)")
    cli.add_tta(p)
    p.add_argument("--folds", default=None,
                   help="comma-separated fold indices (default: all)")
    p.add_argument("--accelerator", choices=("gpu", "cpu", "tpu"),
                   default="gpu", help="the kernel's accelerator")
    p.add_argument("--user", default=os.environ.get("KAGGLE_USERNAME",
                                                    "your-kaggle-username"),
                   help="Kaggle user owning the datasets and the kernel "
                        "(default: $KAGGLE_USERNAME)")
    p.add_argument("--measure", type=int, default=16,
                   help="local test items timed for the budget (0: skip)")
    cli.add_set(p)
    cli.add_common(p)
    return p.parse_args(argv)


@cli.command
def main(argv=None):
    args = parse_args(argv)
    cfg = config_lib.load_or_exit(args.config, args.overrides)
    try:
        folds = config_lib.parse_folds(args.folds)
    except config_lib.ConfigError as e:
        return cli.report(e)
    from kaggle_tf.export import kernel

    out = os.path.abspath(args.out)
    try:
        names = kernel.build(cfg, out, args.user, tta=args.tta, folds=folds,
                             accelerator=args.accelerator)
    except (config_lib.ConfigError, FileExistsError, FileNotFoundError,
            ValueError) as e:  # KernelError; a TTA the exporter refuses
        return cli.report(e, args.config)
    for sub in ("wheel", "model", "kernel"):
        print(f"wrote {os.path.join(out, sub)}")
    if args.measure > 0:
        try:
            b = kernel.budget(cfg, out, args.measure)
            print(kernel.budget_line(b, cfg.task))
        except (OSError, ValueError) as e:
            print(f"budget: not measured ({e})")
    print(f"competition {names['competition']}; upload with:")
    for line in kernel.upload_commands(out):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
