"""Train a recipe: `python -m kaggle_tf.fit --config configs/steel.json`.

Converts the raw Kaggle files to TFRecords first when the records are
missing, then trains fold K (or all folds) and writes
`<output_dir>/fold<K>/` (checkpoints, history.csv/png, oof.npz,
metrics.json). Rerunning the same command resumes where it stopped.
"""

import argparse
import os
import sys
import time

from kaggle_tf import cli
from kaggle_tf import config as config_lib


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m kaggle_tf.fit",
                                description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="recipe JSON")
    p.add_argument("--fold", default="all",
                   help="fold index K or 'all' (default: all)")
    cli.add_set(p, help="override config keys, e.g. --set train.epochs=1 "
                        "loss.weights=[3,1,4] (JSON values; repeatable)")
    p.add_argument("--lr-find", action="store_true",
                   help="run the LR range test on fold 0 instead of "
                        "training; writes lr_find.png and lr_find.json")
    p.add_argument("--workers", type=int, default=1,
                   help="processes for the TFRecord conversion")
    cli.add_common(p)
    return p.parse_args(argv)


def ensure_records(cfg, workers=1, poll_s=1.0):
    """Converts the raw files when `records_dir` has no manifest yet.

    Under `train.strategy="multiworker"` only the chief converts; every
    other worker waits up to `data.records_wait_s` for the chief's
    manifest (written last) and raises a `ConfigError` naming that key
    when it does not come.
    """
    manifest = os.path.join(cfg.data.records_dir, "manifest.json")
    if os.path.exists(manifest):
        return manifest
    from kaggle_tf.training.distribution import is_chief

    if cfg.train.strategy == "multiworker" and not is_chief():
        print(f"not the chief worker: waiting for the chief to convert "
              f"{cfg.data.raw_dir} into {cfg.data.records_dir}", flush=True)
        deadline = time.monotonic() + cfg.data.records_wait_s
        while not os.path.exists(manifest):
            if time.monotonic() >= deadline:
                raise config_lib.ConfigError(
                    f"data.records_wait_s: no {manifest} after "
                    f"{cfg.data.records_wait_s:g} s; the chief worker "
                    "converts the records (is it running, with the same "
                    "data.records_dir?), or convert them first with "
                    "python -m tfrecords_tools.convert")
            time.sleep(poll_s)
        return manifest
    from tfrecords_tools import convert

    print(f"no records in {cfg.data.records_dir}: converting "
          f"{cfg.data.raw_dir} first", flush=True)
    convert.convert(cfg, workers=workers)
    return manifest


@cli.command
def main(argv=None):
    args = parse_args(argv)
    if args.fold != "all":
        try:
            int(args.fold)
        except ValueError:
            print(f"config error: --fold must be an integer or 'all'. "
                  f"Received: {args.fold!r}", file=sys.stderr)
            return 2
    cfg = config_lib.load_or_exit(args.config, args.overrides)
    from kaggle_tf.models import pretrained

    try:  # before anything is written: the weights must be had
        pretrained.check_config(cfg.model)
    except pretrained.PretrainedWeightsError as e:
        return cli.report(e, args.config)
    except ValueError as e:
        return cli.report(config_lib.ConfigError(
            f"model.encoder_weights: {e}"), args.config)
    try:
        ensure_records(cfg, args.workers)
    except config_lib.ConfigError as e:
        return cli.report(e, args.config)
    if args.lr_find:
        from kaggle_tf.training import lr_find

        lr_find.run(cfg)
        return 0
    from kaggle_tf.training import run
    from kaggle_tf.training import warm_start

    try:
        run.run(cfg, args.fold)
    except (config_lib.ConfigError, FileNotFoundError,
            pretrained.PretrainedWeightsError,
            warm_start.InitMismatchError) as e:
        return cli.report(e, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
