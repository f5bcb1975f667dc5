"""K-fold training driven by a config: one fold after another, then gather.

`run(cfg, folds)` trains each fold against its validation fold and writes
`<output_dir>/fold<K>/` (see `kaggle_tf.layout`):

- `best.keras` (and the top-k `ckpt-*.keras`, listed in `checkpoints.json`),
- `history.csv` and `history.png` (learning curves),
- `oof.npz` (`ids`, `probs`, `truth` of the fold's validation images),
- `metrics.json` (the Kaggle metric on those images).

The model family (`kaggle_tf.models.build.family`) chooses the trainer:
image models train on images (`training.image`), series models on the
slice classifier's embeddings (`training.sequence`); both run the shared
stage loop (`training.stages`). A fold whose `metrics.json` exists is
finished and skipped; an interrupted fold resumes at the stage and epoch
it was in. With all folds done, `<output_dir>/oof.npz` and `metrics.json`
gather them.
"""

import dataclasses
import os
import shutil
import tempfile
import time

from kaggle_tf import config as config_lib
from kaggle_tf import layout
from kaggle_tf import tasks
from kaggle_tf.models.build import family
from kaggle_tf.training import image
from kaggle_tf.training import oof as oof_lib
from kaggle_tf.training import sequence
from kaggle_tf.training import warm_start
from kaggle_tf.training.distribution import is_chief
from tfrecords_tools import faults

# Model family -> its trainer: `train_fold(cfg, fold)` and
# `evaluate_fold(cfg, fold, fold_dir)`.
TRAINERS = {"image": image, "series": sequence}


def trainer(cfg):
    """The trainer module of `cfg.model.arch`'s family."""
    return TRAINERS[family(cfg.model.arch)]


def run(cfg, folds="all"):
    """Trains and evaluates folds; returns {fold: metrics dict}.

    Under `train.strategy="multiworker"` only the chief (`TF_CONFIG`'s
    "chief" task, else worker 0) writes to `output_dir`; every other worker
    runs the same fit writing to a temporary folder it removes afterwards.
    That folder starts as a copy of `output_dir` as the worker finds it, so
    a restarted cluster resumes everywhere from the chief's state (finished
    folds, stages, the epoch backup), in step with the chief.

    Args:
        cfg: a validated `Config`.
        folds: "all" or an int fold index.
    """
    if cfg.train.strategy == "multiworker" and not is_chief():
        scratch = tempfile.mkdtemp(prefix="kaggle_tf-worker-")
        print(f"not the chief worker: writing to {scratch} (removed at "
              "the end)", flush=True)
        if os.path.isdir(cfg.output_dir):
            # The chief's run so far (read only): resume where it resumes.
            # The chief may be cleaning up as it starts: a copy taken while
            # its run changed is taken again.
            changed = layout.copy_run(cfg.output_dir, scratch)
            print(f"not the chief worker: starting from a copy of "
                  f"{cfg.output_dir}" + (
                      f" (changed while copied: {', '.join(changed[:3])})"
                      if changed else ""), flush=True)
        try:
            return _run(dataclasses.replace(cfg, output_dir=scratch), folds)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return _run(cfg, folds)


def _run(cfg, folds):
    os.makedirs(cfg.output_dir, exist_ok=True)
    runs = layout.RunLayout.of(cfg)
    config_lib.save(cfg, runs.path(layout.CONFIG))
    if folds == "all":
        fold_list = list(range(cfg.data.folds))
    else:
        fold_list = [int(folds)]
        if not 0 <= fold_list[0] < cfg.data.folds:
            raise config_lib.ConfigError(
                f"--fold must be in 0..{cfg.data.folds - 1} or 'all'. "
                f"Received: {folds}")
    layout.remove_temporaries(cfg.output_dir)
    for k in fold_list:
        layout.remove_temporaries(runs.fold_dir(k))
    chosen = trainer(cfg)
    if hasattr(chosen, "check_config"):
        chosen.check_config(cfg)
    if cfg.model.init_from:  # every fold's source, before any trains
        for k in fold_list:
            if not runs.is_done(k):
                warm_start.source_path(cfg.model.init_from, k)
    results = {}
    for fold in fold_list:
        if runs.is_done(fold):
            results[fold] = layout.read_json(runs.fold_file(fold,
                                                            layout.METRICS))
            print(f"fold {fold}: done before "
                  f"(kaggle_metric {results[fold]['kaggle_metric']:.5f})")
            continue
        start = time.time()
        fold_dir = chosen.train_fold(cfg, fold)
        results[fold] = chosen.evaluate_fold(cfg, fold, fold_dir)
        print(f"fold {fold}: kaggle_metric "
              f"{results[fold]['kaggle_metric']:.5f} "
              f"({time.time() - start:.0f} s)", flush=True)
    done_folds = [k for k in range(cfg.data.folds)
                  if os.path.exists(runs.fold_file(k, layout.OOF))]
    if len(done_folds) == cfg.data.folds:
        gather(cfg)
    return results


def gather(cfg):
    """Joins every fold's oof.npz into `<output_dir>/oof.npz` and scores it.
    """
    runs = layout.RunLayout.of(cfg)
    folds = range(cfg.data.folds)
    ids, probs, truth = oof_lib.concatenate(
        [runs.fold_file(k, layout.OOF) for k in folds])
    oof_lib.save(runs.path(layout.OOF), ids, probs, truth)
    faults.point("gather")
    per_fold = {str(k): layout.read_json(
        runs.fold_file(k, layout.METRICS))["kaggle_metric"] for k in folds}
    overall = float(tasks.score(cfg.task, truth, probs, cfg))
    result = {"task": cfg.task, "kaggle_metric": overall,
              "folds": per_fold, "images": int(len(ids))}
    layout.write_json(runs.path(layout.METRICS), result)
    print(f"out-of-fold kaggle_metric over {len(ids)} images: "
          f"{overall:.5f}")
    return result
