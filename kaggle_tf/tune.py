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

Example (Python, with arrays already loaded):

    cfg = kaggle_tf.config.load("configs/steel.json")
    _, probs, truth, _ = load_oof(cfg.output_dir)
    result = tune(cfg, probs, truth)   # {"thresholds": [...], ...}
"""

import argparse
import glob
import json
import os
import re
import sys

import numpy as np

from kaggle_tf import cli
from kaggle_tf import config as config_lib
from kaggle_tf.postprocess import tune as search
from kaggle_tf.postprocess.params import per_class

METRIC = {"steel": "mean_dice", "siim": "siim_dice", "protein": "f1_macro",
          "rsna_ich": "rsna_ich_log_loss",
          "rsna_lumbar": "rsna_lumbar_log_loss"}


class OofError(ValueError):
    """Missing or malformed out-of-fold files; the message names the file.
    """


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


# --- out-of-fold files --------------------------------------------------------
def oof_paths(output_dir):
    """`<output_dir>/oof.npz`, else every `fold*/oof.npz` in fold order."""
    joined = os.path.join(output_dir, "oof.npz")
    if os.path.exists(joined):
        return [joined]
    paths = glob.glob(os.path.join(output_dir, "fold*", "oof.npz"))

    def fold(path):
        found = re.search(r"fold(\d+)", os.path.basename(
            os.path.dirname(path)))
        return (int(found.group(1)) if found else -1, path)

    paths = sorted(paths, key=fold)
    if not paths:
        raise OofError(
            f"no out-of-fold predictions in {output_dir}: expected oof.npz "
            "or fold*/oof.npz (written by `python -m kaggle_tf.fit`)")
    return paths


def load_oof(output_dir):
    """Loads and joins the OOF files: returns (ids, probs, truth, paths)."""
    paths = oof_paths(output_dir)
    ids, probs, truth = [], [], []
    for path in paths:
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = [k for k in ("ids", "probs", "truth")
                           if k not in f.files]
                if missing:
                    raise OofError(f"{path}: missing key '{missing[0]}' "
                                   f"(has: {', '.join(f.files)})")
                part = f["ids"], f["probs"], f["truth"]
        except OofError:
            raise
        except Exception as e:  # unreadable file: name it
            raise OofError(f"{path}: cannot read ({e})") from None
        n = len(part[1])
        if len(part[0]) != n or len(part[2]) != n:
            raise OofError(
                f"{path}: ids, probs and truth need the same length. "
                f"Received: {len(part[0])}, {n}, {len(part[2])}")
        if probs and (part[1].shape[1:] != probs[0].shape[1:]
                      or part[2].shape[1:] != truth[0].shape[1:]):
            raise OofError(
                f"{path}: probs/truth shapes {part[1].shape[1:]}/"
                f"{part[2].shape[1:]} differ from {paths[0]} "
                f"({probs[0].shape[1:]}/{truth[0].shape[1:]})")
        for store, value in zip((ids, probs, truth), part):
            store.append(value)
    return (np.concatenate(ids), np.concatenate(probs),
            np.concatenate(truth), paths)


# --- searches per task --------------------------------------------------------
def _config_param(values, classes, key, dtype=np.float32):
    try:
        return per_class(values, classes, f"inference.{key}", dtype)
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from None


def _area_grid(min_areas, oof_size):
    if min_areas is None:
        return search.default_min_areas(*oof_size)
    return sorted(set(int(a) for a in min_areas))


def _check_shapes(probs, truth, ndims, layout, task):
    if probs.ndim not in ndims or probs.shape != truth.shape:
        raise OofError(
            f"{task} OOF probs and truth must both be {layout}. Received: "
            f"probs.shape={probs.shape}, truth.shape={truth.shape}")


def _tune_steel(cfg, probs, truth, thresholds, min_areas):
    _check_shapes(probs, truth, (4,), "(N, H, W, classes)", "steel")
    classes = probs.shape[-1]
    inf = cfg.inference
    if inf.triplet:
        top, area, bottom = inf.triplet
        before = float(np.mean([
            search.score_triplet(probs[..., c], truth[..., c], top, area,
                                 bottom)
            for c in range(classes)]))
    else:
        th = _config_param(inf.thresholds, classes, "thresholds")
        areas = _config_param(inf.min_area, classes, "min_area", np.int64)
        before = search.score_thresholds(probs, truth, th, areas)
    best = search.search_thresholds(probs, truth, thresholds,
                                    _area_grid(min_areas, probs.shape[1:3]))
    return {"thresholds": best["thresholds"], "min_area": best["min_area"],
            "triplet": None, "metric_before": before,
            "metric_after": best["score"],
            "image_size": list(probs.shape[1:3])}


def _tune_siim(cfg, probs, truth, thresholds, min_areas, bottoms):
    if probs.ndim == 4 and probs.shape[-1] == 1:
        probs, truth = probs[..., 0], truth[..., 0]
    _check_shapes(probs, truth, (3,), "(N, H, W) or (N, H, W, 1)", "siim")
    inf = cfg.inference
    if inf.triplet:
        top, area, bottom = inf.triplet
    else:
        top = bottom = float(_config_param(inf.thresholds, 1,
                                           "thresholds")[0])
        area = int(_config_param(inf.min_area, 1, "min_area", np.int64)[0])
    before = search.score_triplet(probs, truth, top, int(area), bottom)
    best = search.search_triplet(probs, truth, thresholds,
                                 _area_grid(min_areas, probs.shape[1:3]),
                                 bottoms)
    top, area, bottom = best["triplet"]
    return {"thresholds": [bottom], "min_area": [area],
            "triplet": [top, area, bottom], "metric_before": before,
            "metric_after": best["score"],
            "image_size": list(probs.shape[1:3])}


def _tune_protein(cfg, probs, truth, thresholds):
    _check_shapes(probs, truth, (2,), "(N, classes)", "protein")
    th = _config_param(cfg.inference.thresholds, probs.shape[1],
                       "thresholds")
    before = search.score_class_thresholds(probs, truth, th)
    best = search.search_class_thresholds(probs, truth, thresholds)
    return {"thresholds": best["thresholds"], "min_area": None,
            "triplet": None, "metric_before": before,
            "metric_after": best["score"]}


def _identity(cfg, probs, truth):
    from kaggle_tf.metrics import kaggle as metrics

    value = float(metrics.score(cfg.task, truth, probs, cfg))
    return {"thresholds": None, "min_area": None, "triplet": None,
            "metric_before": value, "metric_after": value}


def tune(cfg, probs, truth, thresholds=None, min_areas=None,
         bottom_thresholds=None):
    """Searches the post-processing of `cfg.task` on OOF predictions.

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
        OofError: the arrays do not have the task's layout.
        kaggle_tf.config.ConfigError: bad `inference.*` values.
    """
    probs, truth = np.asarray(probs), np.asarray(truth)
    if cfg.task == "steel":
        out = _tune_steel(cfg, probs, truth, thresholds, min_areas)
    elif cfg.task == "siim":
        out = _tune_siim(cfg, probs, truth, thresholds, min_areas,
                         bottom_thresholds)
    elif cfg.task == "protein":
        out = _tune_protein(cfg, probs, truth, thresholds)
    else:
        out = _identity(cfg, probs, truth)
    return {"task": cfg.task, "metric": METRIC[cfg.task], **out,
            "images": int(len(probs))}


def write_json(path, content):
    """Writes JSON under a temporary name, then renames it into place."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


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
    try:
        _, probs, truth, paths = load_oof(cfg.output_dir)
        print(f"tuning {cfg.task} post-processing on {len(probs)} "
              f"out-of-fold predictions from {len(paths)} file(s)",
              flush=True)
        result = tune(cfg, probs, truth, thresholds, min_areas, bottoms)
    except (OofError, ValueError) as e:  # ConfigError is a ValueError
        return config_lib.report(e, args.config)
    name = result["metric"]
    print(f"{name} before: {result['metric_before']:.5f} "
          f"({_describe(cfg, result, True)})")
    print(f"{name} after:  {result['metric_after']:.5f} "
          f"({_describe(cfg, result, False)})")
    path = os.path.join(cfg.output_dir, "postprocess.json")
    write_json(path, result)
    print(os.path.abspath(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
