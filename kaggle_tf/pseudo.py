"""Pseudo-labels: `python -m kaggle_tf.pseudo --config C`.

Turns a finished run's test predictions (`<pseudo.source or
output_dir>/test_probs.npz`, from `python -m kaggle_tf.predict
--save-probs`, an ensemble's too) and the test records into
pseudo-labelled TFRecords in `pseudo.records_dir`, with a manifest (series
tasks, RSNA ICH: pseudo-labelled series); train on them with `--set
data.pseudo_records=<that folder>` (every training fold, never
validation).
"""

import argparse
import sys

from kaggle_tf import cli
from kaggle_tf import config as config_lib


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m kaggle_tf.pseudo",
                                description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="recipe JSON")
    cli.add_set(p)
    cli.add_common(p)
    return p.parse_args(argv)


@cli.command
def main(argv=None):
    args = parse_args(argv)
    cfg = config_lib.load_or_exit(args.config, args.overrides)
    if not cfg.pseudo.records_dir:
        return cli.report(config_lib.ConfigError(
            "`pseudo.records_dir` must name the folder of the "
            "pseudo-labelled records"), args.config)
    from kaggle_tf.data import pseudo
    from kaggle_tf.files import InputError

    try:
        manifest = pseudo.write_records(cfg)
    except (pseudo.PseudoError, InputError, FileNotFoundError,
            ValueError) as e:
        return cli.report(e, args.config)
    info = manifest["pseudo"]
    if "test_series" in info:
        what = (f"{info['kept']} slices in {info['kept_series']} of "
                f"{info['test_series']} test series")
    else:
        what = f"{info['kept']} of {info['test_images']} test images"
    print(f"pseudo-labelled {what} ({info['mode']}) -> "
          f"{cfg.pseudo.records_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
