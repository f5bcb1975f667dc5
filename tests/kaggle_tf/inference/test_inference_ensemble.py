"""The fold/checkpoint ensemble under TTA, against an independent numpy
reference: every checkpoint reloaded, every transform done in numpy."""

import copy
import functools
import json

import keras
import numpy as np
import pytest
import tiny_runs

from kaggle_tf import models
from kaggle_tf import tasks
from kaggle_tf.inference import predict


def np_transform(x, op):
    if op == "h":
        return x[:, :, ::-1]
    if op == "v":
        return x[:, ::-1]
    t, r = divmod(op, 4)
    if t:
        x = np.transpose(x, (0, 2, 1, 3))
    return np.rot90(x, r, axes=(1, 2))


def np_inverse(x, op):
    if op in ("h", "v"):
        return np_transform(x, op)
    t, r = divmod(op, 4)
    x = np.rot90(x, -r, axes=(1, 2))
    if t:
        x = np.transpose(x, (0, 2, 1, 3))
    return x


OPS = {"none": [0], "hflip": [0, "h"], "vflip": [0, "v"],
       "d4": list(range(8))}


def reference_passes(cfg, x, mode):
    """Sigmoid probabilities of every (checkpoint, transform), inverted."""
    passes = []
    for path in predict.checkpoint_paths(cfg):
        model = reference_model(cfg.model, cfg.data.channels, path)
        for op in OPS[mode]:
            xt = np.ascontiguousarray(np_transform(x, op))
            logits = keras.ops.convert_to_numpy(model(xt, training=False))
            passes.append(np_inverse(tiny_runs.sigmoid(logits), op))
    return np.stack(passes)


@functools.lru_cache(maxsize=None)
def _reference_model(arch, encoder, classes, decoder, channels, path):
    cfg = tiny_runs.make_config(".", arch=arch, classes=classes)
    cfg.model.encoder, cfg.model.decoder_channels = encoder, list(decoder)
    model = models.build(cfg.model, (None, None, channels))
    model.load_weights(path)
    return model


def reference_model(model_cfg, channels, path):
    """The checkpoint's weights in a freshly built any-size model."""
    return _reference_model(model_cfg.arch, model_cfg.encoder,
                            model_cfg.classes,
                            tuple(model_cfg.decoder_channels), channels, path)


def merge(passes, how):
    if how == "geometric_mean":
        return np.exp(np.mean(np.log(np.maximum(passes, 1e-7)), axis=0))
    if how == "max":
        return passes.max(axis=0)
    return passes.mean(axis=0)


@pytest.fixture(scope="module")
def x():
    return tiny_runs.images(2).astype(np.float32) / 255


def test_checkpoint_paths_lists_each_fold(steel_run):
    paths = predict.checkpoint_paths(steel_run)
    assert [p.split("/")[-2:] for p in paths] == [
        ["fold0", "best.keras"], ["fold1", "best.keras"]]
    assert predict.checkpoint_paths(steel_run, folds=[1]) == paths[1:]
    with pytest.raises(FileNotFoundError, match="fold3"):
        predict.checkpoint_paths(steel_run, folds=[3])


@pytest.mark.parametrize("mode,how", [("hflip", "mean"), ("d4", "mean"),
                                      ("vflip", "geometric_mean")])
def test_ensemble_is_mean_of_checkpoint_tta(steel_run, x, mode, how):
    cfg = copy.deepcopy(steel_run)
    cfg.inference.merge = how
    # D4 on 64 x 128 images runs transposed 128 x 64 passes too (the
    # members then take any size); one member keeps that test short.
    cfg.inference.folds = [0] if mode == "d4" else None
    model = predict.ensemble_model(cfg, predict.checkpoint_paths(cfg), mode)
    got = np.asarray(model.predict_on_batch(x))
    passes = reference_passes(cfg, x, mode)
    assert len(passes) == len(predict.checkpoint_paths(cfg)) * len(
        OPS[mode])
    want = merge(passes, how)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Not a trivial case: the passes disagree, probabilities spread.
    assert np.abs(passes[0] - passes[-1]).max() > 0.05
    assert want.min() < 0.1 and want.max() > 0.6


def test_predict_images_postprocess(steel_run, x, tmp_path):
    """Rules at the model's resolution; masks at the raw images' size."""
    cfg = copy.deepcopy(steel_run)
    records = tmp_path / "records"
    records.mkdir()
    (records / "manifest.json").write_text(
        json.dumps({"image_size": [128, 256]}))
    cfg.data.records_dir = str(records)
    thresholds, areas = [0.5, 0.4, 0.6, 0.3], [0, 300, 100, 10 ** 6]
    cfg.inference.thresholds, cfg.inference.min_area = thresholds, areas
    out = predict.predict_images(cfg, x, tta="hflip")
    probs = merge(reference_passes(cfg, x, "hflip"), "mean")
    th = np.asarray(thresholds, np.float32)
    small = probs > th
    keep = (small.sum(axis=(1, 2), keepdims=True) >= areas) & small.any(
        axis=(1, 2), keepdims=True)
    # Every (image, class) case occurs: kept, dropped by area, empty.
    assert keep.any() and not keep.all()
    up = bilinear(probs, (128, 256))
    np.testing.assert_allclose(out["probs"], up, atol=1e-5)
    want = (up > th) & keep
    sure = np.abs(up - th) > 1e-5
    assert out["masks"].dtype == np.uint8
    assert out["masks"].shape == (2, 128, 256, 4)
    np.testing.assert_array_equal(out["masks"][sure], want[sure])
    assert out["masks"][..., 3].sum() == 0  # min area above the image


def test_triplet_and_labels(steel_run, x):
    probs = merge(reference_passes(steel_run, x, "none"), "mean")
    params = {"thresholds": [0.5], "min_area": [0],
              "triplet": [0.6, 40, 0.3]}
    _, masks = predict.segmentation_masks(probs, params)
    count = (probs > np.float32(0.6)).sum(axis=(1, 2), keepdims=True)
    want = (probs > np.float32(0.3)) & (count >= 40)
    assert 0 < want.sum() < want.size
    np.testing.assert_array_equal(masks, want)
    p = np.array([[0.1, 0.7, 0.2], [0.3, 0.2, 0.1]], np.float32)
    np.testing.assert_array_equal(
        tasks.get("protein").labels(p, [0.5]),
        [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(
        tasks.get("steel").labels(p, [0.5, 0.5, 0.05]),
        [[0, 1, 1], [0, 0, 1]])


def bilinear(x, size):
    """Half-pixel-centre bilinear resize (as tf.image.resize), float64."""
    def weights(n_in, n_out):
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        lo = np.floor(pos)
        frac = pos - lo
        lo_i = np.clip(lo, 0, n_in - 1).astype(int)
        hi_i = np.clip(lo + 1, 0, n_in - 1).astype(int)
        return lo_i, hi_i, frac

    y0, y1, fy = weights(x.shape[1], size[0])
    x0, x1, fx = weights(x.shape[2], size[1])
    rows = (x[:, y0] * (1 - fy)[None, :, None, None]
            + x[:, y1] * fy[None, :, None, None])
    return (rows[:, :, x0] * (1 - fx)[None, None, :, None]
            + rows[:, :, x1] * fx[None, None, :, None])


def test_classifier_gates_masks(steel_run, x, tmp_path):
    """Severstal: a class mask survives only where the classifier ensemble
    gives the class a probability >= classifier_threshold."""
    clf = tiny_runs.make_config(tmp_path / "cls", arch="classifier",
                                classes=4)
    tiny_runs.save_folds(clf, (0,), scale=3.0)
    path = tmp_path / "cls.json"
    data = clf.to_dict()
    data.pop("source")
    path.write_text(json.dumps(data))
    model = reference_model(clf.model, 3, predict.checkpoint_paths(clf)[0])
    class_probs = tiny_runs.sigmoid(keras.ops.convert_to_numpy(
        model(x, training=False)))
    # Per-class gates between the two images' probabilities: each class is
    # kept for one image and gated for the other.
    gates = class_probs.mean(axis=0)
    assert (np.abs(class_probs - gates) > 1e-4).all()
    cfg = copy.deepcopy(steel_run)
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "manifest.json").write_text(
        json.dumps({"image_size": [64, 128]}))  # masks at the model's size
    cfg.data.records_dir = str(tmp_path / "records")
    cfg.inference.classifier_config = str(path)
    cfg.inference.classifier_threshold = gates.tolist()
    out = predict.Predictor(cfg, tta="none")(x)
    probs = merge(reference_passes(cfg, x, "none"), "mean")
    masks = probs > np.float32(0.5)
    keep = class_probs >= gates.astype(np.float32)
    assert keep.any() and not keep.all()
    want = masks & keep[:, None, None, :]
    assert want.any() and (masks & ~keep[:, None, None, :]).any()
    sure = np.abs(probs - 0.5) > 1e-5
    np.testing.assert_array_equal(out["masks"][sure], want[sure])
