"""Ensembles of experiments: members' probabilities blended by weight.

An ensemble config (`ensemble.members`: `{"config", "weight"}`) names
finished runs. `blend_oof` joins their out-of-fold probabilities (the
members must share folds: the same fold of every image) for
`kaggle_tf.tune`; `predict` runs each member alone (its own folds,
checkpoints, TTA, input size and normalization; one member in memory at a
time), brings its probabilities to the ensemble's `data.image_size`,
blends them and post-processes once. Series members (RSNA ICH
`model.arch="sequence"`) blend per slice id, each member windowing its
series with its own `data.image_size` and `data.windows`.

    blend = sum_i w_i p_i / sum_i w_i               merge "mean"
    blend = exp(sum_i w_i log p_i / sum_i w_i)      merge "geometric_mean"

Example:

>>> cfg = config.load("configs/siim_blend.json")      # doctest: +SKIP
>>> ids, probs, truth, per_member = blend_oof(cfg)
"""

import csv
import gc
import os

import keras
import numpy as np

from kaggle_tf import config as config_lib
from kaggle_tf import files
from kaggle_tf import layout
from kaggle_tf import tasks
from kaggle_tf.data import pipeline
from kaggle_tf.data import records
from kaggle_tf.inference import outputs
from kaggle_tf.inference import predict as image_predict
from kaggle_tf.inference import sequence
from kaggle_tf.models.build import family
from kaggle_tf.training import oof as oof_lib
from tfrecords_tools import schema


# Members that cannot be blended: a config error naming the member
# (the commands exit 2, as for any bad config value).
EnsembleError = config_lib.ConfigError


def is_ensemble(cfg):
    return getattr(cfg, "ensemble", None) is not None


def weights(cfg, members=None):
    """The members' weights: `postprocess.json`'s searched ones if tuned
    with `--search-weights`, else the config's."""
    members = members or config_lib.members(cfg)
    path = layout.RunLayout.of(cfg).path(layout.POSTPROCESS)
    if os.path.exists(path):
        tuned = layout.read_json(path).get("weights")
        if tuned is not None and len(tuned) == len(members):
            return [float(w) for w in tuned]
    return [w for _, w in members]


def merge(arrays, w, how="mean"):
    """The weighted blend of same-shape arrays (float32)."""
    w = np.asarray(w, np.float64) / float(np.sum(w))
    if how == "geometric_mean":
        logs = sum(wi * np.log(np.maximum(np.asarray(a, np.float64), 1e-7))
                   for wi, a in zip(w, arrays))
        return np.exp(logs).astype(np.float32)
    return sum(wi * np.asarray(a, np.float64)
               for wi, a in zip(w, arrays)).astype(np.float32)


def resize(probs, size):
    """Spatial probabilities `(N, h, w, C)` (or `(N, h, w)`) at `size`."""
    probs = np.asarray(probs, np.float32)
    if probs.ndim not in (3, 4) or size is None or tuple(
            probs.shape[1:3]) == tuple(size):
        return probs
    x = probs[..., None] if probs.ndim == 3 else probs
    x = keras.ops.convert_to_numpy(keras.ops.image.resize(
        x, tuple(size), interpolation="bilinear"))
    return x[..., 0] if probs.ndim == 3 else x


def _spatial(cfg):
    return tasks.get(cfg.task).predicts_masks(cfg)


# --- out-of-fold ---

def fold_assignment(member_cfg):
    """`{id: fold}` of a member: its `fold<K>/oof.npz` files, else the
    records' `folds.csv`; None when neither exists."""
    run = layout.RunLayout(member_cfg.output_dir)
    out = {}
    for k in run.folds():
        path = run.fold_file(k, layout.OOF)
        if os.path.exists(path):
            ids = files.load_npz(path, ("ids",))[0]
            out.update((str(i), k) for i in ids)
    if out:
        return out
    path = os.path.join(member_cfg.data.records_dir, schema.FOLDS_CSV)
    if not os.path.exists(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        return {row["id"]: int(row["fold"]) for row in csv.DictReader(f)}


def check_folds(members):
    """Members must put every image in the same fold.

    Raises:
        EnsembleError: naming the first member whose folds differ.
    """
    first = None
    for i, (member, _) in enumerate(members):
        folds = fold_assignment(member)
        if folds is None:
            continue
        if first is None:
            first = (i, member, folds)
            continue
        j, ref_cfg, ref = first
        common = set(folds) & set(ref)
        differ = sorted(k for k in common if folds[k] != ref[k])
        if differ or set(folds) != set(ref):
            what = (f"image {differ[0]!r} is in fold {folds[differ[0]]} "
                    f"there, fold {ref[differ[0]]} in member {j}"
                    if differ else "their fold ids cover other images")
            raise EnsembleError(
                f"`ensemble.members[{i}]` "
                f"({member.source or member.output_dir}) does not share folds with `ensemble.members[{j}]` "
                f"({ref_cfg.source or ref_cfg.output_dir}): {what}; blend "
                "runs trained on the same folds (the same records' "
                "folds.csv)")


def load_member_oof(cfg, members):
    """Each member's OOF `(ids, probs, truth)`, rows in one id order and
    probabilities at the ensemble's `data.image_size`."""
    size = tuple(cfg.data.image_size) if _spatial(cfg) else None
    loaded, order = [], None
    for i, (member, _) in enumerate(members):
        try:
            ids, probs, truth, _ = oof_lib.load_run(member.output_dir)
        except oof_lib.OofError as e:
            raise EnsembleError(f"`ensemble.members[{i}]`: {e}") from None
        ids = np.asarray([str(v) for v in ids])
        idx = np.argsort(ids, kind="stable")
        ids, probs, truth = ids[idx], probs[idx], truth[idx]
        if order is not None and not np.array_equal(ids, order):
            raise EnsembleError(
                f"`ensemble.members[{i}]` ({member.output_dir}): its "
                "out-of-fold ids differ from member 0's")
        order = ids
        loaded.append((ids, resize(probs, size), truth))
    return loaded


def blend_oof(cfg, w=None, members=None):
    """The members' OOF blended: `(ids, probs, truth, member_probs)`.

    Args:
        cfg: an ensemble config.
        w: weights; defaults to the config's.
        members: `config.members(cfg)` when already loaded.

    Raises:
        EnsembleError: members with other folds or other images (named).
    """
    members = members or config_lib.members(cfg)
    check_folds(members)
    loaded = load_member_oof(cfg, members)
    w = [m[1] for m in members] if w is None else w
    per_member = [p for _, p, _ in loaded]
    ids, _, truth = loaded[0]
    size = tuple(cfg.data.image_size) if _spatial(cfg) else None
    if size is not None and tuple(truth.shape[1:3]) != size:
        for _, p, t in loaded:
            if tuple(t.shape[1:3]) == size:
                truth = t
                break
        else:
            truth = (resize(truth, size) >= 0.5).astype(np.int8)
    return ids, merge(per_member, w, cfg.ensemble.merge), truth, per_member


def search_weights(cfg, per_member, truth, w0, grid=(0.0, 0.5, 1.0, 2.0),
                   rounds=2):
    """Coordinate search of the weights on OOF (the task's score with the
    config's post-processing); returns the best weights found."""
    task = tasks.get(cfg.task)
    sign = 1.0 if task.higher_is_better else -1.0

    def value(w):
        if not sum(w) > 0:
            return -np.inf
        return sign * float(task.score(
            truth, merge(per_member, w, cfg.ensemble.merge), cfg))

    best_w, best = list(w0), value(list(w0))
    for _ in range(rounds):
        for i in range(len(best_w)):
            for g in grid:
                trial = list(best_w)
                trial[i] = g
                v = value(trial)
                if v > best + 1e-12:
                    best_w, best = trial, v
    return best_w


# --- test set ---

def member_test_probs(member_cfg, tta=None, size=None):
    """One member (or a gating classifier) alone over the test set:
    `(ids, probs)`, spatial probabilities at `size`."""
    if family(member_cfg.model.arch) == "series":
        model = sequence.series_ensemble(member_cfg)
        ds = sequence.series_lib.make_series_dataset(
            member_cfg, None, training=False, split="test", batch_size=1)
        ids, probs = [], []
        for batch in ds:
            out = np.asarray(model.predict_on_batch(
                {"images": batch["images"], "mask": batch["mask"]}),
                np.float32)
            keep = np.asarray(batch["mask"]) > 0
            probs.append(out[keep])
            ids.extend(records.id_strings(np.asarray(batch["id"])[keep]))
    else:
        predictor = image_predict.Predictor(member_cfg, tta)
        ds = pipeline.make_dataset(member_cfg, None, training=False,
                                   split="test", with_meta=True,
                                   batch_size=member_cfg.inference.batch_size)
        ids, probs = [], []
        for batch in ds:
            p = predictor.probs(np.asarray(batch["images"], np.float32))
            probs.append(resize(p, size))
            ids.extend(records.id_strings(batch["id"]))
        del predictor
    keras.backend.clear_session()
    gc.collect()
    return ids, np.concatenate(probs)


def _aligned(ids, probs, order, where):
    if list(ids) == list(order):
        return probs
    index = {k: n for n, k in enumerate(ids)}
    missing = [k for k in order if k not in index]
    if missing or len(ids) != len(order):
        raise EnsembleError(f"{where}: its test ids differ from member "
                            f"0's (e.g. {missing[:1]})")
    return probs[[index[k] for k in order]]


def test_probs(cfg, tta=None, members=None):
    """The blend over the test set: `(ids, probs)`, members run one at a
    time and merged with `weights(cfg)`."""
    members = members or config_lib.members(cfg)
    w = weights(cfg, members)
    size = tuple(cfg.data.image_size) if _spatial(cfg) else None
    geometric = cfg.ensemble.merge == "geometric_mean"
    total, order, acc = float(sum(w)), None, None
    for i, ((member, _), wi) in enumerate(zip(members, w)):
        if wi == 0:
            continue
        ids, probs = member_test_probs(member, tta or None, size)
        if order is None:
            order = ids
        probs = _aligned(ids, probs, order, f"`ensemble.members[{i}]`")
        part = (np.log(np.maximum(probs.astype(np.float64), 1e-7))
                if geometric else probs.astype(np.float64)) * (wi / total)
        acc = part if acc is None else acc + part
        del probs, part
    acc = np.exp(acc) if geometric else acc
    return order, acc.astype(np.float32)


def predict(cfg, tta=None, folds=None, save_probs=None):
    """Predicts the test set with the blend; writes `submission.csv` (and
    `test_probs.npz`); returns the submission's path.

    Args:
        cfg: an ensemble config.
        tta: a TTA mode for every member; None: each member's own.
        folds: not taken (each member uses its own folds).
        save_probs: as `inference.predict.predict`.
    """
    if folds is not None:
        raise config_lib.ConfigError(
            "--folds does not apply to an ensemble (each member predicts "
            "with its own folds)")
    task = tasks.get(cfg.task)
    members = config_lib.members(cfg)
    seg = _spatial(cfg)
    if save_probs is None:
        save_probs = not seg
    params = image_predict.load_postprocess(cfg)
    print(f"predicting the test set with a blend of {len(members)} "
          f"member(s), weights {weights(cfg, members)}, merge "
          f"{cfg.ensemble.merge}; post-processing from {params['source']}",
          flush=True)
    ids, probs = test_probs(cfg, tta, members)
    class_probs = None
    clf_cfg = image_predict.classifier_config(cfg) if seg else None
    if clf_cfg is not None:
        clf_ids, clf = member_test_probs(clf_cfg, clf_cfg.inference.tta)
        class_probs = _aligned(clf_ids, clf, ids,
                               "`inference.classifier_config`")
    predictions = {}
    step = cfg.inference.batch_size
    if family(cfg.model.arch) == "series":
        predictions = dict(zip(ids, probs))
    else:
        size = image_predict.mask_size(cfg)
        for n in range(0, len(ids), step):
            out = image_predict.postprocess(
                cfg, probs[n:n + step], params,
                None if class_probs is None else class_probs[n:n + step],
                size)
            task.add_rows(predictions, ids[n:n + step], out)
    path = outputs.write_submission(cfg, predictions)
    if save_probs:
        outputs.save_test_probs(cfg, ids, probs)
    return path
