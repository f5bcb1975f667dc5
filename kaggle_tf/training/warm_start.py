"""Uptraining: a fold starts from another run's weights (`model.init_from`).

`model.init_from` is one of:

- a run's `output_dir`: fold K starts from that run's fold K checkpoint
  (the one `kaggle_tf.layout.RunLayout.checkpoint` names: `avg.keras`
  when the run averaged its top-k, else `best.keras`), so no fold sees
  weights trained on its own validation images;
- a `.keras` file: every fold starts from it;
- a `.weights.h5` file (`model.save_weights`): every fold starts from it.

Weights are matched by variable path (`conv1_0/kernel`,
`decoder_blocks_0_conv1_0/kernel`, ...; the layer names are fixed by the
builders, and the few sublayers Keras numbers itself pair in order) for
`.keras` sources, and by position in Keras' weights file for
`.weights.h5` ones (the file stores no layer names). A variable matches
when its shape is the same: a fully convolutional model (U-Net, FPN, a
pooled classifier) trained at 512 x 512 loads into the same model at
1024 x 1024 layer for layer (SIIM's uptraining). Variables that do not
match (another shape, or absent from the source) are an error listing
them, unless `model.init_skip_mismatch` is true: then they keep their
fresh initialization and the run prints which they are.

Example:

>>> cfg = config.load("configs/siim.json", overrides=[
...     "model.init_from=runs/siim_512", "data.image_size=[1024,1024]"])
>>> skipped = init_model(cfg, 0, model)        # doctest: +SKIP
"""

import os
import shutil
import tempfile

import h5py
import numpy as np

from kaggle_tf import checkpoints
from kaggle_tf import layout
from kaggle_tf.config import ConfigError
from kaggle_tf.training import augmented

KERAS_SUFFIX = ".keras"
WEIGHTS_SUFFIX = ".weights.h5"
# Mismatches named in one error message at most (then a count).
LISTED = 20


class InitMismatchError(ValueError):
    """`model.init_from` holds weights that do not fit the model."""


def source_path(init_from, fold):
    """The file fold `fold` starts from.

    Raises:
        ConfigError: `init_from` is neither a folder nor a `.keras` /
            `.weights.h5` file.
        FileNotFoundError: the run has no trained fold `fold`, or the
            file does not exist.
    """
    if os.path.isdir(init_from):
        path = layout.RunLayout(init_from).checkpoint(fold)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"model.init_from: {init_from} has no trained fold {fold} "
                f"({path} not found); train that run's fold {fold} first, "
                "or name a .keras / .weights.h5 file")
        return path
    if not init_from.endswith((KERAS_SUFFIX, WEIGHTS_SUFFIX)):
        raise ConfigError(
            "`model.init_from` must be a run's output_dir, a .keras or a "
            f".weights.h5 file. Received: {init_from!r}")
    if not os.path.exists(init_from):
        raise FileNotFoundError(f"model.init_from: {init_from} not found")
    return init_from


def _describe(problems):
    shown = [f"{name} ({why})" for name, why in problems[:LISTED]]
    more = len(problems) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _mismatch(path, problems, skip):
    if not problems:
        return []
    if not skip:
        raise InitMismatchError(
            f"model.init_from: {len(problems)} weight(s) of the model do "
            f"not match {path}: {_describe(problems)}; set "
            "model.init_skip_mismatch=true to start those from scratch")
    return [name for name, _ in problems]


def _from_keras(model, path, skip):
    source = checkpoints.load_model(path, compile=False)
    theirs = list(augmented.unwrap(source).weights)
    by_path = {v.path: v for v in theirs}
    mine = list(model.weights)
    pairs = {id(v): by_path.get(v.path) for v in mine}
    # Sublayers Keras numbers itself (a Bidirectional's `forward_lstm_2`)
    # differ from one process to the next: those left over pair in order.
    used = {id(s) for s in pairs.values() if s is not None}
    rest_mine = [v for v in mine if pairs[id(v)] is None]
    rest_theirs = [s for s in theirs if id(s) not in used]
    if len(rest_mine) == len(rest_theirs):
        for v, s in zip(rest_mine, rest_theirs):
            pairs[id(v)] = s
    problems, matched = [], []
    for v in mine:
        s = pairs[id(v)]
        if s is None:
            problems.append((v.path, "not in the source"))
        elif tuple(s.shape) != tuple(v.shape):
            problems.append((v.path, f"shape {tuple(v.shape)}, source "
                                     f"{tuple(s.shape)}"))
        else:
            matched.append((v, s))
    skipped = _mismatch(path, problems, skip)
    for v, s in matched:
        v.assign(np.asarray(s.numpy(), dtype=v.dtype))
    return skipped


def _datasets(h5):

    found = {}

    def visit(name, obj):  # returns None: visititems stops at a value
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    h5.visititems(visit)
    return found


def _from_weights_file(model, path, skip):
    """Keras' weights file is positional (groups named by layer class and
    order); the model's own file, with the matching datasets replaced by
    the source's, is loaded back."""

    folder = tempfile.mkdtemp(prefix="init_from-")
    try:
        own = os.path.join(folder, "model.weights.h5")
        model.save_weights(own)
        problems = []
        with h5py.File(own, "r+") as dst, h5py.File(path, "r") as src:
            theirs = _datasets(src)
            mine = _datasets(dst)
            for name, d in mine.items():
                s = theirs.get(name)
                if s is None:
                    problems.append((name, "not in the source"))
                elif s.shape != d.shape:
                    problems.append((name, f"shape {d.shape}, source "
                                           f"{s.shape}"))
            skipped = _mismatch(path, problems, skip)
            bad = set(skipped)
            for name, d in mine.items():
                if name not in bad:
                    d[...] = theirs[name][...]
        model.load_weights(own)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return skipped


def init_model(cfg, fold, model):
    """Loads `cfg.model.init_from`'s weights for fold `fold` into `model`
    (an augmenting wrapper's inner model); returns the names of the
    variables left at their initialization (only with
    `model.init_skip_mismatch`).

    Raises:
        InitMismatchError: weights that do not match, listed.
        FileNotFoundError, ConfigError: see `source_path`.
    """
    path = source_path(cfg.model.init_from, fold)
    inner = augmented.unwrap(model)
    skip = bool(cfg.model.init_skip_mismatch)
    if path.endswith(WEIGHTS_SUFFIX):
        skipped = _from_weights_file(inner, path, skip)
    else:
        skipped = _from_keras(inner, path, skip)
    note = (f"; {len(skipped)} weight(s) did not match and start from "
            f"scratch: {', '.join(skipped)}" if skipped else "")
    print(f"fold {fold}: weights from {path}{note}", flush=True)
    return skipped
