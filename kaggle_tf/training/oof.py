"""Out-of-fold predictions: predict a dataset, save and join `oof.npz`.

`oof.npz` holds `ids` (N,), `probs` (N, ...) float16 probabilities and
`truth` (N, ...) int8 (-1 = missing label), compressed: empty masks cost almost nothing.
"""

import os

import keras
import numpy as np

from kaggle_tf.data import records


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


def target_key(cfg):
    return ("segmentation_masks" if cfg.model.arch in ("unet", "fpn")
            else "labels")


def predict_dataset(model, ds, cfg):
    """Runs `model` over a `with_meta` dataset; returns ids, probs, truth."""
    ids, probs, truth = [], [], []
    key = target_key(cfg)
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
    os.replace(tmp, path)


def load(path):
    with np.load(path, allow_pickle=False) as f:
        return f["ids"], f["probs"], f["truth"]


def concatenate(paths):
    parts = [load(p) for p in paths]
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
