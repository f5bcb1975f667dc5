"""Where a run's files live, and which checkpoint each consumer takes.

    <output_dir>/
      config.resolved.json        the config the run trained with
      fold<K>/
        best.keras                best checkpoint by callbacks.monitor
        ckpt-s<S>-e<EEE>.keras    the top-k, listed in checkpoints.json
        avg.keras                 their weight average (callbacks.average_top_k)
        stage<S>.weights.h5, stage<S>.done, backup/stage<S>/   resume state
        history.csv, history.png, oof.npz, metrics.json
        embeddings.npz            (sequence models: the slice embeddings)
      oof.npz, metrics.json       all folds joined (when every fold is done)
      postprocess.json            kaggle_tf.tune
      submission.csv, test_probs.npz    kaggle_tf.predict

The one rule for checkpoints: a fold is represented by `avg.keras` when
the run averages its top-k (`callbacks.average_top_k`) and the average
exists, else by `best.keras`. Out-of-fold scoring, predict, export and the
sequence stage's slice classifier all take that one; predict and export
take the whole top-k list instead with `inference.checkpoints="top_k"`.

Example:

>>> run = RunLayout("runs/steel")
>>> run.fold_dir(0)
'runs/steel/fold0'
"""

import glob
import json
import os
import re
import shutil
import time

import numpy as np

from kaggle_tf import files

BEST = "best.keras"
AVERAGE = "avg.keras"
CHECKPOINTS = "checkpoints.json"
CONFIG = "config.resolved.json"
OOF = "oof.npz"
METRICS = "metrics.json"
HISTORY = "history.csv"
HISTORY_PNG = "history.png"
POSTPROCESS = "postprocess.json"
SUBMISSION = "submission.csv"
TEST_PROBS = "test_probs.npz"
EMBEDDINGS = "embeddings.npz"


def write_json(path, obj):
    """Writes JSON under a temporary name, then renames it into place."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def read_json(path, hint=None, expect=dict):
    """The JSON value at `path` (a dict by default); a missing or damaged
    file is a `files.InputError` naming it."""
    return files.read_json(path, hint, expect=expect)


def read_checkpoints(fold_dir):
    """The `checkpoints.json` entries of a fold folder, best first."""
    path = os.path.join(fold_dir, CHECKPOINTS)
    if not os.path.exists(path):
        return []
    return read_json(path, expect=list)


def remove_temporaries(folder):
    """Removes the `*.tmp-<pid>*` files a killed process left in `folder`
    (one command writes a run at a time); returns their names."""
    stale = sorted(glob.glob(os.path.join(glob.escape(folder), "*.tmp-*")))
    for path in stale:
        if os.path.isfile(path):
            os.remove(path)
    return [os.path.basename(p) for p in stale]


def _run_files(root):
    """{relative path: (size, mtime)} of the files under `root`, without
    temporaries."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if ".tmp-" in name:
                continue
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue
            out[os.path.relpath(path, root)] = (stat.st_size,
                                                stat.st_mtime_ns)
    return out


def copy_run(src, dst, attempts=3, wait_s=1.0):
    """Copies the run folder `src` into the empty folder `dst`, without
    temporaries, while another process may still be writing it.

    When `src` changed during the copy (a file vanished while it was
    copied, or the files, sizes or times after the copy are not those
    copied: the writer removed, replaced or added files), the copy would
    mix two states of the run: `dst` is emptied and the copy starts again,
    up to `attempts` times, `wait_s` apart. Returns the paths (relative to
    `src`) that changed during the last attempt: empty when the copy is
    one state of the run.
    """
    for attempt in range(max(attempts, 1)):
        vanished = []

        def copy(source, target):
            try:
                return shutil.copy2(source, target)
            except FileNotFoundError:
                vanished.append(os.path.relpath(source, src))
                return target

        try:
            shutil.copytree(src, dst, dirs_exist_ok=True, copy_function=copy,
                            ignore=shutil.ignore_patterns("*.tmp-*"))
        except shutil.Error as e:
            vanished += [os.path.relpath(error[0], src) for error in e.args[0]]
        except FileNotFoundError:
            vanished.append(".")
        now, copied = _run_files(src), _run_files(dst)
        changed = sorted(set(vanished) | {
            name for name in set(now) | set(copied)
            if now.get(name) != copied.get(name)})
        if not changed or attempt >= attempts - 1:
            return changed
        shutil.rmtree(dst, ignore_errors=True)
        os.makedirs(dst, exist_ok=True)
        time.sleep(wait_s)


class RunLayout:
    """The files of one run (`output_dir`), fold by fold.

    Args:
        output_dir: the run's folder (`cfg.output_dir`).
        average_top_k: whether the run averages its top-k checkpoints
            (`cfg.callbacks.average_top_k`); None reads it from the
            run's `config.resolved.json` (for another run's folder).
    """

    def __init__(self, output_dir, average_top_k=None):
        self.output_dir = output_dir
        self._average = average_top_k

    @classmethod
    def of(cls, cfg):
        """The layout of a config's run."""
        return cls(cfg.output_dir, cfg.callbacks.average_top_k)

    @property
    def average_top_k(self):
        if self._average is None:
            path = self.path(CONFIG)
            cfg = read_json(path) if os.path.exists(path) else {}
            # Without a resolved config, an existing average counts.
            self._average = cfg.get("callbacks", {}).get("average_top_k",
                                                         True)
        return bool(self._average)

    def path(self, name):
        """`<output_dir>/<name>`."""
        return os.path.join(self.output_dir, name)

    def fold_dir(self, fold):
        return os.path.join(self.output_dir, f"fold{int(fold)}")

    def fold_file(self, fold, name):
        return os.path.join(self.fold_dir(fold), name)

    def fold_dirs(self):
        """The existing `fold<K>` folders, in fold order."""
        dirs = [d for d in glob.glob(os.path.join(self.output_dir, "fold*"))
                if os.path.isdir(d) and re.fullmatch(
                    r"fold\d+", os.path.basename(d))]
        return sorted(dirs, key=lambda d: int(os.path.basename(d)[4:]))

    def folds(self):
        """The fold indices that have a folder."""
        return [int(os.path.basename(d)[4:]) for d in self.fold_dirs()]

    def is_done(self, fold):
        """A fold is finished once its `metrics.json` exists."""
        return os.path.exists(self.fold_file(fold, METRICS))

    # --- checkpoints ---------------------------------------------------------
    def checkpoint(self, fold):
        """The checkpoint that represents fold `fold` (the module's rule);
        the path may not exist yet."""
        avg = self.fold_file(fold, AVERAGE)
        if self.average_top_k and os.path.exists(avg):
            return avg
        return self.fold_file(fold, BEST)

    def top_k(self, fold):
        """The top-k checkpoint paths of fold `fold`, best first."""
        return [os.path.join(self.fold_dir(fold), e["file"])
                for e in read_checkpoints(self.fold_dir(fold))]

    def checkpoints(self, fold, which="best"):
        """`which="best"`: [the representative checkpoint];
        `"top_k"`: the top-k list."""
        if which == "top_k":
            return self.top_k(fold)
        return [self.checkpoint(fold)]

    def trained_checkpoints(self, folds=None, which="best"):
        """The checkpoints to ensemble, fold by fold.

        Args:
            folds: fold indices; None for every fold folder.
            which: "best" (one per fold) or "top_k".

        Raises:
            FileNotFoundError: no checkpoint, or a wanted one is missing.
        """
        folds = self.folds() if folds is None else list(folds)
        paths = [p for k in folds for p in self.checkpoints(k, which)]
        missing = [p for p in paths if not os.path.exists(p)]
        if not paths or missing:
            raise FileNotFoundError(
                f"no trained checkpoints in {self.output_dir} "
                f"(missing: {missing or 'fold*/best.keras'}); run "
                "`python -m kaggle_tf.fit` first")
        return paths

    # --- out-of-fold predictions --------------------------------------------
    def oof_paths(self):
        """`<output_dir>/oof.npz` when the folds were joined, else every
        `fold*/oof.npz` in fold order."""
        joined = self.path(OOF)
        if os.path.exists(joined):
            return [joined]
        return [p for p in (os.path.join(d, OOF) for d in self.fold_dirs())
                if os.path.exists(p)]
