"""Predict the test set: `python -m kaggle_tf.predict --config C`.

Ensembles the trained folds' checkpoints under TTA, post-processes and
writes `<output_dir>/submission.csv`; its path is the last line printed.
"""

import argparse
import os
import sys

from kaggle_tf import cli
from kaggle_tf import config as config_lib


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m kaggle_tf.predict",
                                description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="recipe JSON")
    cli.add_tta(p)
    p.add_argument("--folds", default=None,
                   help="comma-separated fold indices (default: all "
                        "trained folds, or inference.folds)")
    cli.add_set(p)
    p.add_argument("--save-probs", action="store_true",
                   help="also write test_probs.npz for segmentation tasks")
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
    from kaggle_tf.fit import ensure_records
    from kaggle_tf.inference import run as inference_run

    ensure_records(cfg)
    try:
        path = inference_run.predict(cfg, tta=args.tta, folds=folds,
                                   save_probs=args.save_probs or None)
    except (config_lib.ConfigError, FileNotFoundError) as e:
        return cli.report(e, args.config)
    # A progress bar may leave the cursor mid-line: the path gets its own.
    print(f"\n{os.path.abspath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
