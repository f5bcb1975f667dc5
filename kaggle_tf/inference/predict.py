"""Inference: fold/checkpoint ensemble under TTA, post-processing, submission.

    checkpoints fold*/best.keras (or avg / top-k)
      -> tta.wrap(member, mode)      transform, predict, invert, merge
      -> ensemble_model              merge over checkpoints and folds
      -> postprocess                 rules of postprocess.json at model
                                     resolution, masks at Kaggle's size
      -> submission.csv (+ test_probs.npz for stacking)

Every member's TTA passes and every member are merged with
`cfg.inference.merge`; groups are equal in size, so a mean of means (or a
geometric mean of geometric means) is the mean over all TTA x checkpoint x
fold passes. The exported SavedModel (`kaggle_tf.export`) replays exactly
these steps in TensorFlow ops.

Post-processing parameters (`thresholds`, `min_area`, `triplet`) are tuned
on out-of-fold probabilities at the model's resolution
(`cfg.data.image_size`), so the keep/drop rules run there. When Kaggle's
masks are larger (the raw images' size: Severstal 256 x 1600, SIIM
1024 x 1024) the probabilities are then resized bilinearly and a kept
class's mask is `resized_probs > threshold` (or `> bottom_score_threshold`)
at the original size; a dropped class stays empty. Bilinear values are convex
combinations of their neighbours, so no pixel appears where the model
resolution had none.

Example:

>>> cfg = config.load("configs/steel.json")
>>> out = predict_images(cfg, images)          # images (B, H, W, C)
>>> out["masks"].shape                         # (B, 256, 1600, 4)
"""

import os

import keras
import numpy as np

import kaggle_tf.models  # noqa: F401  (registers the custom layers)
from kaggle_tf import augment  # noqa: F401  (in-model augmenters' layers)
from kaggle_tf import checkpoints
from kaggle_tf import config as config_lib
from kaggle_tf import layout
from kaggle_tf import tasks
from kaggle_tf.data import pipeline
from kaggle_tf.data import records
from kaggle_tf.inference import bn_fold
from kaggle_tf.inference import outputs
from kaggle_tf.inference import tta as tta_lib
from kaggle_tf.postprocess import gating as gating_lib
from kaggle_tf.postprocess import thresholds as thresholds_lib
from kaggle_tf.postprocess.params import per_class
from kaggle_tf.postprocess.triplet import triplet


def mask_size(cfg):
    """`(H, W)` of the submitted masks, or None for classification.

    The raw images' size as the records' `manifest.json` recorded it (one
    size for the whole set), else Kaggle's fixed size for the task.
    """
    return tasks.mask_size(cfg)


def checkpoint_paths(cfg, folds=None):
    """The checkpoints to ensemble, fold by fold.

    Args:
        cfg: a validated config.
        folds: fold indices; defaults to `cfg.inference.folds`, else every
            `<output_dir>/fold*` folder.

    Returns:
        Paths of `.keras` files: per fold the checkpoint that represents
        it (`kaggle_tf.layout`), or every top-k checkpoint listed in
        `checkpoints.json` when `inference.checkpoints="top_k"`.

    Raises:
        FileNotFoundError: no checkpoint, or a listed one is missing.
    """
    if folds is None:
        folds = cfg.inference.folds
    return layout.RunLayout.of(cfg).trained_checkpoints(
        folds, cfg.inference.checkpoints)


def load_postprocess(cfg):
    """Post-processing parameters: `postprocess.json` if tuned, else config.

    Returns:
        A dict with `thresholds`, `min_area`, `triplet` (or None) and
        `source` (the file the values came from, or `"config"`).
    """
    params = {"thresholds": list(cfg.inference.thresholds),
              "min_area": list(cfg.inference.min_area),
              "triplet": cfg.inference.triplet, "source": "config"}
    path = layout.RunLayout.of(cfg).path(layout.POSTPROCESS)
    if os.path.exists(path):
        tuned = layout.read_json(path, hint="rerun python -m kaggle_tf.tune "
                                 "or delete it")
        for key in ("thresholds", "min_area", "triplet"):
            if tuned.get(key) is not None:
                params[key] = tuned[key]
        params["source"] = path
    return params


def class_params(params, classes):
    """Per-class float32 thresholds / int64 min areas, triplet or None."""
    out = {"thresholds": per_class(params["thresholds"], classes,
                                   "inference.thresholds"),
           "min_area": per_class(params["min_area"], classes,
                                 "inference.min_area", np.int64),
           "triplet": None}
    if params.get("triplet"):
        top, area, bottom = params["triplet"]
        out["triplet"] = (
            per_class(top, classes, "triplet top_score_threshold"),
            per_class(area, classes, "triplet min_area", np.int64),
            per_class(bottom, classes, "triplet bottom_score_threshold"))
    return out


# --- members ---

def _free_spatial(obj):
    """Replaces static heights and widths in a model config by None."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "InputLayer":
            shape = list(obj["config"]["batch_shape"])
            obj["config"]["batch_shape"] = [shape[0], None, None, shape[-1]]
        config = obj.get("config")
        if isinstance(config, dict) and isinstance(
                config.get("input_shape"), (list, tuple)) and len(
                    config["input_shape"]) == 3:
            config["input_shape"] = [None, None, config["input_shape"][-1]]
        build = obj.get("build_config")
        if isinstance(build, dict) and isinstance(
                build.get("input_shape"), (list, tuple)) and len(
                    build["input_shape"]) == 4:
            shape = list(build["input_shape"])
            build["input_shape"] = [shape[0], None, None, shape[-1]]
        for value in obj.values():
            _free_spatial(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _free_spatial(value)


def any_size(model):
    """The same model (same weights) taking images of any height/width.

    D4 TTA transposes non-square images, so the members then need
    `(None, None, channels)` inputs.
    """
    config = model.get_config()
    _free_spatial(config)
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def load_members(cfg, paths, tta_mode, float32=False):
    """Loads the checkpoints, each wrapped with in-graph TTA.

    Image models get their BatchNormalization layers folded into the
    convolutions (`kaggle_tf.inference.fold`): the same function, faster.

    Returns:
        A list of Keras models mapping images to probabilities (dicts of
        them for models with an auxiliary head).
    """
    members = []
    for i, path in enumerate(paths):
        model = checkpoints.load_model(path, compile=False, float32=float32)
        shape = tuple(model.input_shape)
        if tta_lib.needs_any_size(tta_mode, shape):
            model = any_size(model)
        model = bn_fold.fold_batch_norms(model)
        model.name = f"member_{i}"
        size = shape[1:3] if None not in shape[1:3] else tuple(
            cfg.data.image_size)
        members.append(tta_lib.wrap(
            model, tta_mode, activation=cfg.model.activation,
            merge=cfg.inference.tta_merge or cfg.inference.merge,
            name=f"member_{i}_tta", image_size=size))
    return members


def ensemble_model(cfg, paths, tta_mode, float32=False):
    """One Keras model: the TTA-wrapped checkpoints, merged.

    Args:
        cfg: a validated config (`model.activation`, `inference.merge`).
        paths: `.keras` checkpoints (`checkpoint_paths`).
        tta_mode: `"none"`, `"hflip"`, `"vflip"`, `"d4"` or a
            composition (`kaggle_tf.inference.tta.plan`).

    Returns:
        A `keras.Model` mapping images `(batch, height, width, channels)`
        to probabilities: `(batch, height, width, classes)` for
        segmentation (the `masks` output of models with an auxiliary
        head), `(batch, classes)` for classifiers.
    """
    members = load_members(cfg, paths, tta_mode, float32)
    inputs = keras.Input(shape=members[0].input_shape[1:], name="images")
    outs = [m(inputs) for m in members]
    if isinstance(outs[0], dict):
        key = "masks" if "masks" in outs[0] else "labels"
        outs = [o[key] for o in outs]
    merged = (outs[0] if len(outs) == 1
              else tta_lib.Merge(cfg.inference.merge, name="ensemble")(outs))
    model = keras.Model(inputs, merged, name="ensemble")
    # Graph mode without XLA: the same kernels as the exported SavedModel.
    model.jit_compile = False
    return model


def classifier_config(cfg):
    """The gating classifier's config (`inference.classifier_config`).

    A relative path is looked up from the working directory, then next to
    the config file.
    """
    path = cfg.inference.classifier_config
    if path is None:
        return None
    if not os.path.exists(path) and cfg.source:
        near = os.path.join(os.path.dirname(cfg.source), path)
        if os.path.exists(near):
            path = near
    return config_lib.load(path)


# --- post-processing ---

def _resize(x, size):
    return keras.ops.convert_to_numpy(
        keras.ops.image.resize(x, size, interpolation="bilinear"))


def segmentation_masks(probs, params, class_probs=None,
                       classifier_threshold=0.5, original_size=None):
    """Probabilities -> post-processed masks, as `postprocess` does.

    Args:
        probs: `(batch, height, width, classes)` float32 at the model's
            resolution.
        params: `load_postprocess` output.
        class_probs: `(batch, classes)` classifier probabilities that gate
            each class (Severstal), or None.
        classifier_threshold: one gate threshold or one per class.
        original_size: `(H, W)` of Kaggle's masks, or None to keep the
            model's.

    Returns:
        `(probs, masks)`: probabilities and uint8 0/1 masks at
        `original_size` (or the model's size).
    """
    probs = np.asarray(probs, np.float32)
    p = class_params(params, probs.shape[-1])
    if p["triplet"] is not None:
        top, area, bottom = p["triplet"]
        masks = triplet(probs, top, area, bottom)
        pixel = bottom
    else:
        masks = thresholds_lib.apply(probs, p["thresholds"], p["min_area"])
        pixel = p["thresholds"]
    if class_probs is not None:
        masks = gating_lib.apply(masks, class_probs, classifier_threshold)
    if original_size is not None and tuple(probs.shape[1:3]) != tuple(
            original_size):
        keep = masks.any(axis=(1, 2), keepdims=True)
        probs = _resize(probs, original_size)
        masks = ((probs > pixel) & keep).view(np.uint8)
    return probs, masks


def postprocess(cfg, probs, params, class_probs=None, size="auto"):
    """Ensemble probabilities -> the outputs the SavedModel serves.

    Args:
        cfg: a validated config.
        probs: the ensemble's probabilities at the model's resolution.
        params: `load_postprocess(cfg)`.
        class_probs: the gating classifier's `(batch, classes)`, or None.
        size: `(H, W)` of the output masks; defaults to `mask_size(cfg)`.

    Returns:
        `{"probs", "masks"}` for segmentation (at Kaggle's mask size),
        `{"probs", "labels"}` for classification.
    """
    task = tasks.get(cfg.task)
    if task.predicts_masks(cfg):
        probs, masks = segmentation_masks(
            probs, params, class_probs,
            list(cfg.inference.classifier_threshold),
            mask_size(cfg) if size == "auto" else size)
        return {"probs": probs, "masks": masks}
    probs = np.asarray(probs, np.float32)
    return {"probs": probs, "labels": task.labels(probs, params["thresholds"])}


class Predictor:
    """The ensemble, the gating classifier and the parameters, loaded once.

    Args:
        cfg: a validated config.
        tta: TTA mode; defaults to `cfg.inference.tta`.
        folds: fold indices; defaults to every trained fold.

    Example:

    >>> predictor = Predictor(cfg, tta="hflip")
    >>> out = predictor(images)        # {"probs": ..., "masks": ...}
    """

    def __init__(self, cfg, tta=None, folds=None, float32=False):
        self.cfg = cfg
        self.tta = tta or cfg.inference.tta
        self.paths = checkpoint_paths(cfg, folds)
        self.model = ensemble_model(cfg, self.paths, self.tta, float32)
        self.params = load_postprocess(cfg)
        self.mask_size = mask_size(cfg)
        self.classifier = None
        clf_cfg = (classifier_config(cfg)
                   if tasks.get(cfg.task).predicts_masks(cfg) else None)
        if clf_cfg is not None:
            self.classifier_cfg = clf_cfg
            self.classifier = ensemble_model(
                clf_cfg, checkpoint_paths(clf_cfg), clf_cfg.inference.tta,
                float32)

    def probs(self, images):
        """The ensemble's probabilities, float32 numpy."""
        return np.asarray(self.model.predict_on_batch(images), np.float32)

    def class_probs(self, images):
        """The gating classifier's `(batch, classes)` probabilities."""
        if self.classifier is None:
            return None
        size = self.classifier.input_shape[1:3]
        if None not in size and tuple(images.shape[1:3]) != tuple(size):
            images = _resize(images, size)
        return np.asarray(self.classifier.predict_on_batch(images),
                          np.float32)

    def __call__(self, images):
        images = np.asarray(images, np.float32)
        return postprocess(self.cfg, self.probs(images), self.params,
                           self.class_probs(images), self.mask_size)


def predict_images(cfg, images, tta=None, folds=None, batch_size=None):
    """Predicts an array of images: what `kaggle_tf.predict` computes.

    Args:
        cfg: a validated config.
        images: `(n, height, width, channels)` float32 in [0, 1] at
            `cfg.data.image_size`, decoded as the data pipeline does.
        tta: TTA mode; defaults to `cfg.inference.tta`.
        folds: fold indices; defaults to every trained fold.
        batch_size: defaults to `cfg.inference.batch_size`.

    Returns:
        `{"probs", "masks"}` or `{"probs", "labels"}` numpy arrays.
    """
    predictor = Predictor(cfg, tta, folds)
    batch_size = batch_size or cfg.inference.batch_size
    images = np.asarray(images, np.float32)
    parts = [predictor(images[i:i + batch_size])
             for i in range(0, len(images), batch_size)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --- submission ---

def predict(cfg, tta=None, folds=None, save_probs=None):
    """Predicts the test records; writes `<output_dir>/submission.csv`.

    Args:
        cfg: a validated config.
        tta: TTA mode; defaults to `cfg.inference.tta`.
        folds: fold indices; defaults to every trained fold.
        save_probs: also write `<output_dir>/test_probs.npz` (`ids`,
            float16 `probs` at the model's resolution) for stacking.
            Defaults to True for classification, False for segmentation
            (full-size masks are large).

    Returns:
        The path of `submission.csv`.
    """
    task = tasks.get(cfg.task)
    predictor = Predictor(cfg, tta, folds)
    ds = pipeline.make_dataset(cfg, None, training=False, split="test",
                               with_meta=True,
                               batch_size=cfg.inference.batch_size)
    seg = task.predicts_masks(cfg)
    if save_probs is None:
        save_probs = not seg
    print(f"predicting the test set with {len(predictor.paths)} "
          f"checkpoint(s), TTA {predictor.tta}, merge "
          f"{cfg.inference.merge}; post-processing from "
          f"{predictor.params['source']}", flush=True)
    # Examples, not records: an rsna_ich series counts as its slices.
    total = pipeline.count_records(cfg, None, split="test")
    bar = keras.utils.Progbar(total, unit_name="image")
    predictions, all_ids, all_probs = {}, [], []
    for batch in ds:
        images = np.asarray(batch["images"], np.float32)
        probs = predictor.probs(images)
        ids = records.id_strings(batch["id"])
        all_ids.extend(ids)
        if save_probs:
            all_probs.append(probs.astype(np.float16))
        out = postprocess(cfg, probs, predictor.params,
                          predictor.class_probs(images) if seg else None,
                          predictor.mask_size)
        task.add_rows(predictions, ids, out)
        bar.add(len(ids))
    path = outputs.write_submission(cfg, predictions)
    if save_probs and all_probs:
        outputs.save_test_probs(cfg, all_ids, np.concatenate(all_probs))
    return path
