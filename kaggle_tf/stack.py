"""Stack runs: `python -m kaggle_tf.stack --config configs/protein_stack.json`.

Trains a second-level model (LightGBM by default, `pip install
kaggle_tf[stack]`) on the out-of-fold probabilities of `stack.members`
plus per-image meta-features, with nested folds; tunes per-class
thresholds on its out-of-fold predictions and, when every member has a
`test_probs.npz` (`python -m kaggle_tf.predict --save-probs`), writes the
stacked `<output_dir>/submission.csv` itself (and `test_probs.npz`).
Writes `oof.npz`, `postprocess.json` and `metrics.json` (the stack's and
the plain mean's Kaggle metric) in `<output_dir>`.
"""

import argparse
import sys

from kaggle_tf import cli
from kaggle_tf import config as config_lib


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m kaggle_tf.stack",
                                description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="stack config JSON")
    cli.add_set(p)
    cli.add_common(p)
    return p.parse_args(argv)


@cli.command
def main(argv=None):
    args = parse_args(argv)
    cfg = config_lib.load_or_exit(args.config, args.overrides)
    if not cfg.stack.members:
        return cli.report(config_lib.ConfigError(
            "`stack.members` must list the output_dirs of one or more "
            "finished runs"), args.config)
    from kaggle_tf import tasks
    from kaggle_tf.files import InputError
    from kaggle_tf.inference import stack
    from kaggle_tf.training.oof import OofError

    if tasks.get(cfg.task).kind != "classification":
        return cli.report(config_lib.ConfigError(
            f"`stack` stacks per-image class probabilities (classification "
            f"tasks such as protein). Received: task={cfg.task!r}"),
            args.config)
    try:
        stack.run(cfg)
    except (stack.StackError, OofError, InputError, FileNotFoundError) as e:
        return cli.report(e, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
