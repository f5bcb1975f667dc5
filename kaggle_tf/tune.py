"""Tune post-processing on out-of-fold predictions.

    python -m kaggle_tf.tune --config C [--set k=v]... [--thresholds ...]

Reads `<output_dir>/oof.npz`, or joins `<output_dir>/fold*/oof.npz`, and
searches what `cfg.task` post-processes:

| task                  | searched                            | metric     |
|-----------------------|-------------------------------------|------------|
| steel                 | threshold x min area, per class     | mean_dice  |
| siim                  | triplet (top, min area, bottom)     | siim_dice  |
| protein               | threshold per class                 | f1_macro   |
| rsna_ich, rsna_lumbar | nothing (identity post-processing)  | log loss   |

It prints the metric with the config's `inference.thresholds` /
`min_area` / `triplet` and with the tuned values, and writes
`<output_dir>/postprocess.json` (read by predict and export):
`{"task", "thresholds", "min_area", "triplet", "metric_before",
"metric_after", ...}`. Min areas are pixels at the model's resolution
(`data.image_size`: that of the out-of-fold masks, and the size predict
and export post-process at before resizing masks to Kaggle's size);
`image_size` in the file records it.

An ensemble config (`ensemble.members`) blends its members' OOF (they
must share folds), prints each member's and the blend's metric, tunes the
blend, and with `--search-weights` searches the members' weights too
(`weights`, `weights_metric_before` / `_after` in postprocess.json).

Example (Python, with arrays already loaded):

    cfg = kaggle_tf.config.load("configs/steel.json")
    _, probs, truth, _ = load_oof(cfg.output_dir)
    result = tune(cfg, probs, truth)   # {"thresholds": [...], ...}
"""

import argparse
import os
import sys

import numpy as np

from kaggle_tf import cli
from kaggle_tf import config as config_lib
from kaggle_tf import layout


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m kaggle_tf.tune",
                                description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="recipe JSON")
    cli.add_set(p)
    p.add_argument("--thresholds", metavar="T,T,...",
                   help="threshold grid (steel, protein) or top-threshold "
                        "grid (siim). Default: 0.1..0.9 by 0.05 "
                        "(protein: 0.05..0.95 by 0.01)")
    p.add_argument("--min-areas", metavar="A,A,...",
                   help="min-area grid in pixels at the model's "
                        "resolution. Default: 0 and 1/8192..1/32 of the "
                        "image")
    p.add_argument("--bottom-thresholds", metavar="T,T,...",
                   help="siim bottom-threshold grid (default: the top "
                        "grid, bottom <= top)")
    p.add_argument("--search-weights", action="store_true",
                   help="ensemble configs: also search the members' "
                        "weights on the blended OOF")
    cli.add_common(p)
    return p.parse_args(argv)


def _grid(text, name, cast):
    if text is None:
        return None
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{name} takes comma-separated numbers. "
                         f"Received: {text!r}") from None
    if not values:
        raise ValueError(f"--{name} is empty. Received: {text!r}")
    return values


def load_oof(output_dir):
    """Loads and joins the OOF files: returns (ids, probs, truth, paths)."""
    # The CLI validates its config before TensorFlow loads (a bad key is
    # one line, without TensorFlow's start-up noise): imported here.
    from kaggle_tf.training import oof as oof_lib

    return oof_lib.load_run(output_dir)


def tune(cfg, probs, truth, thresholds=None, min_areas=None,
         bottom_thresholds=None):
    """Searches the post-processing of `cfg.task` on OOF predictions.

    What is searched is the task plugin's (`kaggle_tf.tasks`, `tune`).

    Args:
        cfg: a `Config` (`task`, `inference.*` give the "before" values).
        probs: OOF probabilities, `(N, H, W, C)` for segmentation (siim
            also `(N, H, W)`), `(N, K)` for classification.
        truth: the matching binary truth.
        thresholds: threshold grid (siim: top thresholds); None for the
            defaults of `kaggle_tf.postprocess.tune`.
        min_areas: min-area grid in pixels of these arrays; None for
            `default_min_areas` of their size.
        bottom_thresholds: siim bottom grid; None for the top grid.

    Returns:
        The `postprocess.json` content as a dict.

    Raises:
        kaggle_tf.tasks.TuneError: the arrays do not have the task's layout.
        kaggle_tf.config.ConfigError: bad `inference.*` values.
    """
    from kaggle_tf import tasks  # after the config check, as load_oof

    task = tasks.get(cfg.task)
    probs, truth = np.asarray(probs), np.asarray(truth)
    out = task.tune(cfg, probs, truth, thresholds, min_areas,
                    bottom_thresholds)
    return {"task": cfg.task, "metric": task.metric, **out,
            "images": int(len(probs))}


def _describe(cfg, result, before):
    inf = cfg.inference
    if before:
        if inf.triplet:
            return f"config triplet {list(inf.triplet)}"
        return (f"config thresholds {list(inf.thresholds)}, min_area "
                f"{list(inf.min_area)}")
    if result["triplet"] is not None:
        return f"triplet {result['triplet']}"
    if result["thresholds"] is None:
        return "nothing to tune"
    text = f"thresholds {result['thresholds']}"
    if result["min_area"] is not None:
        text += f", min_area {result['min_area']}"
    return text


def tune_ensemble(cfg, search=False, thresholds=None, min_areas=None,
                  bottom_thresholds=None, log=print):
    """An ensemble config: each member's and the blend's metric, weights
    (with `search`) and post-processing tuned on the blended OOF.

    Returns:
        The `postprocess.json` content, with `members` (config, weight,
        metric of each) and, when searched, `weights`,
        `weights_metric_before`, `weights_metric_after`.
    """
    from kaggle_tf.inference import ensemble

    members = config_lib.members(cfg)
    ids, blend, truth, per_member = ensemble.blend_oof(cfg, members=members)
    grids = (thresholds, min_areas, bottom_thresholds)
    rows = []
    for i, ((member, w), probs) in enumerate(zip(members, per_member)):
        metric = tune(cfg, probs, truth, *grids)["metric_after"]
        rows.append({"config": member.source, "weight": w, "metric": metric})
        log(f"member {i} ({member.source}, weight {w}): {metric:.5f}")
    w0 = [w for _, w in members]
    result = tune(cfg, blend, truth, *grids)
    log(f"blend (weights {w0}): {result['metric_after']:.5f}")
    extra = {}
    if search:
        w = ensemble.search_weights(cfg, per_member, truth, w0)
        searched = tune(cfg, ensemble.merge(per_member, w,
                                            cfg.ensemble.merge), truth, *grids)
        gain = searched["metric_after"] - result["metric_after"]
        better = gain > 0 if tasks_higher(cfg) else gain < 0
        before = result["metric_after"]
        if not better:
            w, searched = w0, result
        log(f"blend (searched weights {w}): {searched['metric_after']:.5f}")
        result = searched
        extra = {"weights": w, "weights_metric_before": before,
                 "weights_metric_after": searched["metric_after"]}
    return {**result, "members": rows, **extra}


def tasks_higher(cfg):
    from kaggle_tf import tasks

    return tasks.get(cfg.task).higher_is_better


@cli.command
def main(argv=None):
    args = parse_args(argv)
    try:
        thresholds = _grid(args.thresholds, "thresholds", float)
        min_areas = _grid(args.min_areas, "min-areas", int)
        bottoms = _grid(args.bottom_thresholds, "bottom-thresholds", float)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = config_lib.load_or_exit(args.config, args.overrides)
    if cfg.ensemble is not None:
        try:
            result = tune_ensemble(cfg, args.search_weights, thresholds,
                                   min_areas, bottoms)
        except ValueError as e:  # EnsembleError, OofError, TuneError
            return cli.report(e, args.config)
        os.makedirs(cfg.output_dir, exist_ok=True)
        path = layout.RunLayout.of(cfg).path(layout.POSTPROCESS)
        layout.write_json(path, result)
        print(os.path.abspath(path))
        return 0
    if args.search_weights:
        return cli.report(config_lib.ConfigError(
            "--search-weights needs an ensemble config (`ensemble`)"),
            args.config)
    try:
        _, probs, truth, paths = load_oof(cfg.output_dir)
        print(f"tuning {cfg.task} post-processing on {len(probs)} "
              f"out-of-fold predictions from {len(paths)} file(s)",
              flush=True)
        result = tune(cfg, probs, truth, thresholds, min_areas, bottoms)
    except ValueError as e:  # OofError, TuneError, ConfigError
        return cli.report(e, args.config)
    name = result["metric"]
    print(f"{name} before: {result['metric_before']:.5f} "
          f"({_describe(cfg, result, True)})")
    print(f"{name} after:  {result['metric_after']:.5f} "
          f"({_describe(cfg, result, False)})")
    path = layout.RunLayout.of(cfg).path(layout.POSTPROCESS)
    layout.write_json(path, result)
    print(os.path.abspath(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
