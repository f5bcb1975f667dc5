"""Export for serving: `python -m kaggle_tf.export --config C --out DIR`.

Writes `DIR/<version>/`, a SavedModel whose `serving_default` takes encoded
image bytes and returns probabilities and post-processed masks or labels,
with TTA, the fold/checkpoint ensemble and post-processing in the graph.
The version folder's path is the last line printed.

`--format onnx|tflite` writes `DIR/model.onnx` or `DIR/model.tflite`
instead (`kaggle_tf.export.formats`): float32 images in, the same outputs,
or `probs` only where the format lacks a post-processing op (one line
names it).
"""

import argparse
import os
import sys

from kaggle_tf import cli
from kaggle_tf import config as config_lib


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m kaggle_tf.export",
                                description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="recipe JSON")
    p.add_argument("--out", required=True, help="export folder")
    cli.add_tta(p)
    p.add_argument("--folds", default=None,
                   help="comma-separated fold indices (default: all)")
    p.add_argument("--format", choices=("savedmodel", "onnx", "tflite"),
                   default="savedmodel",
                   help="savedmodel (TF Serving, default), onnx or tflite")
    p.add_argument("--version", type=int, default=None,
                   help="version number (default: the next free one)")
    cli.add_set(p)
    cli.add_common(p)
    return p.parse_args(argv)


@cli.command
def main(argv=None):
    args = parse_args(argv)
    import keras

    if keras.backend.backend() != "tensorflow":
        return cli.report(config_lib.ConfigError(
            "export writes a TensorFlow SavedModel, which needs "
            "KERAS_BACKEND=tensorflow (Received: "
            f"{keras.backend.backend()}); checkpoints trained on any "
            "backend export there"))
    cfg = config_lib.load_or_exit(args.config, args.overrides)
    try:
        folds = config_lib.parse_folds(args.folds)
    except config_lib.ConfigError as e:
        return cli.report(e)
    from kaggle_tf.export import run as export_run

    if args.format != "savedmodel":
        from kaggle_tf.export import formats

        try:
            path, _ = formats.export(cfg, args.out, args.format,
                                     tta=args.tta, folds=folds)
        except (config_lib.ConfigError, FileNotFoundError, ImportError,
                ValueError) as e:
            return cli.report(e, args.config)
        print(os.path.abspath(path))
        return 0
    try:
        path = export_run.export(cfg, args.out, tta=args.tta, folds=folds,
                                  version=args.version)
    except (config_lib.ConfigError, FileExistsError,
            FileNotFoundError) as e:
        return cli.report(e, args.config)
    print(os.path.abspath(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
