"""Out-of-fold predictions: predict a dataset, save and join `oof.npz`.

`oof.npz` holds `ids` (N,), `probs` (N, ...) float16 probabilities and
`truth` (N, ...) int8 (-1 = missing label), compressed: empty masks cost almost nothing.
"""

import os

import keras
import numpy as np

from kaggle_tf import files
from kaggle_tf import layout
from kaggle_tf import tasks
from kaggle_tf.data import records
from tfrecords_tools import faults


class OofError(ValueError):
    """Missing or malformed out-of-fold files; the message names the file.
    """


def to_probs(outputs, activation="sigmoid"):
    """Logits (or a dict with "masks"/"labels") -> numpy probabilities."""
    if isinstance(outputs, dict):
        outputs = outputs.get("masks", outputs.get("labels"))
    x = keras.ops.convert_to_tensor(outputs)
    if activation == "softmax":
        x = keras.ops.softmax(x, axis=-1)
    else:
        x = keras.ops.sigmoid(x)
    return keras.ops.convert_to_numpy(x)


def predict_dataset(model, ds, cfg):
    """Runs `model` over a `with_meta` dataset; returns ids, probs, truth."""
    ids, probs, truth = [], [], []
    key = tasks.get(cfg.task).target_key(cfg)
    for batch in ds:
        out = model(batch["images"], training=False)
        probs.append(to_probs(out, cfg.model.activation).astype(np.float16))
        truth.append(np.asarray(batch[key]).astype(np.int8))
        ids.extend(records.id_strings(batch["id"]))
    if not ids:
        raise ValueError("the validation fold is empty")
    return np.asarray(ids), np.concatenate(probs), np.concatenate(truth)


def save(path, ids, probs, truth):
    tmp = f"{path[:-4]}.tmp-{os.getpid()}.npz"
    np.savez_compressed(tmp, ids=np.asarray(ids), probs=probs, truth=truth)
    faults.point("oof")
    os.replace(tmp, path)


def load(path):
    """(ids, probs, truth) of one `oof.npz`.

    Raises:
        OofError: an unreadable file, a missing key or mismatched lengths.
    """
    try:
        part = files.load_npz(path, ("ids", "probs", "truth"),
                              hint="rerun python -m kaggle_tf.fit for that "
                                   "fold (delete the file first)")
    except files.InputError as e:
        raise OofError(str(e)) from None
    n = len(part[1])
    if len(part[0]) != n or len(part[2]) != n:
        raise OofError(
            f"{path}: ids, probs and truth need the same length. "
            f"Received: {len(part[0])}, {n}, {len(part[2])}")
    return part


def concatenate(paths):
    """Joins `oof.npz` files: (ids, probs, truth); shapes must agree."""
    parts = []
    for path in paths:
        part = load(path)
        if parts and (part[1].shape[1:] != parts[0][1].shape[1:]
                      or part[2].shape[1:] != parts[0][2].shape[1:]):
            raise OofError(
                f"{path}: probs/truth shapes {part[1].shape[1:]}/"
                f"{part[2].shape[1:]} differ from {paths[0]} "
                f"({parts[0][1].shape[1:]}/{parts[0][2].shape[1:]})")
        parts.append(part)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def load_run(output_dir):
    """A run's out-of-fold predictions: `<output_dir>/oof.npz`, else its
    folds' files joined. Returns (ids, probs, truth, paths).

    Raises:
        OofError: no out-of-fold file, or a malformed one.
    """
    paths = layout.RunLayout(output_dir).oof_paths()
    if not paths:
        raise OofError(
            f"no out-of-fold predictions in {output_dir}: expected oof.npz "
            "or fold*/oof.npz (written by `python -m kaggle_tf.fit`)")
    return (*concatenate(paths), paths)
