"""Inference: fold/checkpoint ensemble under TTA, post-processing, submission.

`predict(cfg)` loads the checkpoints of every trained fold, wraps each with
in-graph TTA (`kaggle_tf.tta.wrap`), averages their probabilities over the
test records, applies the post-processing of `<output_dir>/postprocess.json`
(written by `kaggle_tf.tune`) or of `cfg.inference`, and writes
`<output_dir>/submission.csv` in the competition's exact format.
"""

import glob
import json
import os

import keras
import numpy as np

from kaggle_tf import rle
from kaggle_tf import submission
from kaggle_tf import tta as tta_lib
from kaggle_tf.data import pipeline
from kaggle_tf.postprocess import thresholds as thresholds_lib
from kaggle_tf.postprocess import triplet as triplet_lib
from kaggle_tf.training import callbacks as cbs

# Original image sizes (H, W) where Kaggle's masks are fixed-size.
ORIGINAL_SIZE = {"steel": (256, 1600), "siim": (1024, 1024)}
RLE_CONVENTION = {"steel": "severstal", "siim": "siim"}


def checkpoint_paths(cfg, folds=None):
    """The checkpoints to ensemble: per fold, the best/average or top-k."""
    if folds is None:
        folds = cfg.inference.folds
    if folds is None:
        dirs = sorted(glob.glob(os.path.join(cfg.output_dir, "fold*")))
    else:
        dirs = [os.path.join(cfg.output_dir, f"fold{k}") for k in folds]
    paths = []
    for d in dirs:
        if cfg.inference.checkpoints == "top_k":
            entries = cbs.read_checkpoints(d)
            paths.extend(os.path.join(d, e["file"]) for e in entries)
        else:
            avg = os.path.join(d, "avg.keras")
            best = os.path.join(d, "best.keras")
            if cfg.callbacks.average_top_k and os.path.exists(avg):
                paths.append(avg)
            elif os.path.exists(best):
                paths.append(best)
    missing = [p for p in paths if not os.path.exists(p)]
    if not paths or missing:
        raise FileNotFoundError(
            f"no trained checkpoints in {cfg.output_dir} "
            f"(missing: {missing or 'fold*/best.keras'}); run "
            "`python -m kaggle_tf.fit` first")
    return paths


def load_postprocess(cfg):
    """Post-processing parameters: postprocess.json if tuned, else config."""
    params = {"thresholds": list(cfg.inference.thresholds),
              "min_area": list(cfg.inference.min_area),
              "triplet": cfg.inference.triplet, "source": "config"}
    path = os.path.join(cfg.output_dir, "postprocess.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            tuned = json.load(f)
        for key in ("thresholds", "min_area", "triplet"):
            if tuned.get(key) is not None:
                params[key] = tuned[key]
        params["source"] = path
    return params


def _per_class(values, classes, key):
    values = list(values)
    if len(values) == 1:
        return values * classes
    if len(values) != classes:
        raise ValueError(f"`inference.{key}` needs 1 or {classes} values. "
                         f"Received: {values}")
    return values


def ensemble_model(cfg, paths, tta_mode):
    """One Keras model: mean of the TTA-wrapped checkpoints' probabilities.
    """
    members = []
    for i, path in enumerate(paths):
        model = keras.saving.load_model(path, compile=False)
        model.name = f"member_{i}"
        members.append(tta_lib.wrap(model, tta_mode,
                                    activation=cfg.model.activation,
                                    merge=cfg.inference.merge,
                                    name=f"member_{i}_tta"))
    inputs = keras.Input(shape=members[0].input_shape[1:], name="images")
    outs = [m(inputs) for m in members]
    if isinstance(outs[0], dict):
        outs = [o.get("masks", o.get("labels")) for o in outs]
    merged = (outs[0] if len(outs) == 1
              else tta_lib.Merge(cfg.inference.merge, name="ensemble")(outs))
    return keras.Model(inputs, merged, name="ensemble")


def segmentation_masks(cfg, probs, params):
    """(B, h, w, C) probabilities -> (B, H, W, C) uint8 masks at the
    original resolution, post-processed."""
    size = ORIGINAL_SIZE.get(cfg.task)
    if size is not None and tuple(probs.shape[1:3]) != size:
        probs = keras.ops.convert_to_numpy(keras.ops.image.resize(
            probs, size, interpolation="bilinear"))
    classes = probs.shape[-1]
    if params.get("triplet"):
        top, area, bottom = params["triplet"]
        return triplet_lib.triplet(probs, top, int(area), bottom)
    th = _per_class(params["thresholds"], classes, "thresholds")
    areas = _per_class(params["min_area"], classes, "min_area")
    return thresholds_lib.apply(probs, th, areas)


def predict(cfg, tta=None, folds=None, save_probs=None):
    """Writes `<output_dir>/submission.csv`; returns its path."""
    mode = tta or cfg.inference.tta
    paths = checkpoint_paths(cfg, folds)
    model = ensemble_model(cfg, paths, mode)
    params = load_postprocess(cfg)
    ds = pipeline.make_dataset(cfg, None, training=False, split="test",
                               with_meta=True,
                               batch_size=cfg.inference.batch_size)
    n = pipeline.count_records(cfg, None, split="test")
    print(f"predicting {n} test images with {len(paths)} checkpoint(s), "
          f"TTA {mode}; post-processing from {params['source']}", flush=True)
    seg = cfg.model.arch in ("unet", "fpn")
    if save_probs is None:
        save_probs = not seg
    bar = keras.utils.Progbar(n, unit_name="image")
    predictions, all_ids, all_probs = {}, [], []
    for batch in ds:
        probs = keras.ops.convert_to_numpy(model(batch["images"]))
        ids = [v.decode() for v in np.asarray(batch["id"]).ravel()]
        all_ids.extend(ids)
        if save_probs:
            all_probs.append(probs.astype(np.float16))
        if seg:
            masks = segmentation_masks(cfg, probs, params)
            _seg_rows(cfg, ids, masks, predictions)
        else:
            _cls_rows(cfg, ids, probs, params, predictions)
        bar.add(len(ids))
    out = os.path.join(cfg.output_dir, "submission.csv")
    submission.write(cfg.task, cfg.data.raw_dir, predictions, out)
    if save_probs and all_probs:
        tmp = os.path.join(cfg.output_dir, f"test_probs.tmp-{os.getpid()}.npz")
        np.savez_compressed(tmp, ids=np.asarray(all_ids),
                            probs=np.concatenate(all_probs))
        os.replace(tmp, os.path.join(cfg.output_dir, "test_probs.npz"))
    return out


def _seg_rows(cfg, ids, masks, predictions):
    convention = RLE_CONVENTION[cfg.task]
    for image_id, mask in zip(ids, masks):
        if cfg.task == "steel":
            for c in range(mask.shape[-1]):
                predictions[(image_id, c + 1)] = rle.encode(
                    mask[..., c], convention=convention)
        else:
            predictions[image_id] = rle.encode(mask[..., 0],
                                               convention=convention)


def _cls_rows(cfg, ids, probs, params, predictions):
    if cfg.task == "protein":
        th = np.asarray(_per_class(params["thresholds"], probs.shape[-1],
                                   "thresholds"))
        for image_id, p in zip(ids, probs):
            chosen = np.flatnonzero(p > th)
            if chosen.size == 0:  # an empty prediction scores 0: take the top
                chosen = [int(np.argmax(p))]
            predictions[image_id] = chosen
    else:
        for image_id, p in zip(ids, probs):
            predictions[image_id] = p

