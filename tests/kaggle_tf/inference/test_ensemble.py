"""Ensembles of experiments: OOF blending and tuning, the blended test
prediction, and members that do not share folds."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import tiny_runs

from kaggle_tf import config
from kaggle_tf import rle
from kaggle_tf.inference import ensemble
from kaggle_tf.inference import predict

OOF_SIZE = (32, 32)


def write_ensemble(path, members, weights, **extra):
    path.write_text(json.dumps({
        "task": "steel", "output_dir": str(path.parent / "blend"),
        "ensemble": {"members": [{"config": m, "weight": w}
                                 for m, w in zip(members, weights)],
                     "merge": "mean"}, **extra}))
    return path


def synthetic_member(root, name, truth, bad, folds, seed):
    """A member whose OOF errs (heavy noise) on the images in `bad`."""
    cfg = tiny_runs.make_config(root / name, size=OOF_SIZE)
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 0.1, truth.shape)
    noise[bad] = rng.normal(0, 0.7, truth[bad].shape)
    probs = np.clip(truth + noise, 0, 1).astype(np.float16)
    ids = np.asarray([f"img{i:02d}.jpg" for i in range(len(truth))])
    for k in (0, 1):
        rows = folds == k
        os.makedirs(root / name / f"fold{k}", exist_ok=True)
        np.savez(root / name / f"fold{k}" / "oof.npz", ids=ids[rows],
                 probs=probs[rows], truth=truth[rows].astype(np.int8))
    return tiny_runs.write_config(cfg, root / f"{name}.json")


@pytest.fixture(scope="module")
def oof_members(tmp_path_factory):
    root = tmp_path_factory.mktemp("oof_members")
    rng = np.random.default_rng(0)
    n = 16
    truth = np.zeros((n, *OOF_SIZE, 4), np.float32)
    for i in range(n):  # a rectangle of one or two classes per image
        for c in rng.choice(4, 2, replace=False):
            y, x = rng.integers(0, 20, 2)
            truth[i, y:y + 10, x:x + 12, c] = 1
    folds = np.arange(n) % 2
    a = synthetic_member(root, "a", truth, np.arange(n) < n // 2, folds, 1)
    b = synthetic_member(root, "b", truth, np.arange(n) >= n // 2, folds, 2)
    other = synthetic_member(root, "c", truth, np.arange(n) < 4,
                             (np.arange(n) // 2) % 2, 3)
    return root, a, b, other


def test_blended_oof_is_weighted_mean_of_members(oof_members):
    root, a, b, _ = oof_members
    cfg = config.load(str(write_ensemble(root / "blend.json", ["a.json",
                                                               "b.json"],
                                         [1.0, 3.0])))
    assert tuple(cfg.data.image_size) == OOF_SIZE  # the first member's
    ids, probs, truth, _ = ensemble.blend_oof(cfg)

    def alone(name):
        parts = [np.load(root / name / f"fold{k}" / "oof.npz")
                 for k in (0, 1)]
        i = np.concatenate([p["ids"] for p in parts])
        p = np.concatenate([p["probs"] for p in parts]).astype(np.float32)
        return dict(zip(i, p))

    pa, pb = alone("a"), alone("b")
    want = np.stack([(pa[i] * 1.0 + pb[i] * 3.0) / 4.0 for i in ids])
    np.testing.assert_allclose(probs, want, atol=1e-6)


def test_tuned_blend_beats_best_member(oof_members):
    from kaggle_tf.tune import main

    root, *_ = oof_members
    path = write_ensemble(root / "tune.json", ["a.json", "b.json"],
                          [1.0, 0.5])
    assert main(["--config", str(path), "--search-weights",
                 "--thresholds", "0.3,0.5,0.7", "--min-areas", "0,20"]) == 0
    out = json.loads((root / "blend" / "postprocess.json").read_text())
    best_member = max(m["metric"] for m in out["members"])
    assert out["metric_after"] >= best_member
    assert out["metric_after"] > best_member + 0.01  # errors averaged out
    assert out["weights_metric_after"] >= out["weights_metric_before"]
    assert len(out["weights"]) == 2


def test_members_with_other_folds_are_an_error(oof_members, capsys):
    from kaggle_tf.tune import main

    root, *_ = oof_members
    path = write_ensemble(root / "bad.json", ["a.json", "c.json"], [1, 1])
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "`ensemble.members[1]`" in err and "c.json" in err
    assert "share folds" in err


def test_bad_member_is_a_config_error_naming_it(tmp_path):
    path = write_ensemble(tmp_path / "e.json", ["missing.json"], [1])
    with pytest.raises(config.ConfigError,
                       match=r"`ensemble.members\[0\].config`"):
        config.load(str(path))


SIZE = (32, 192)  # the steel sample's 64 x 400 images, resized


@pytest.fixture(scope="module")
def blend_run(steel_raw, steel_records, make_steel_config,
              tmp_path_factory):
    """Two members (a U-Net with hflip TTA, an FPN without) on the steel
    sample's records, each predicted alone, and their ensemble config."""
    from kaggle_tf.predict import main

    root = tmp_path_factory.mktemp("blend_run")
    records_dir = steel_records[0].data.records_dir
    paths = []
    for name, arch, tta in (("unet", "unet", "hflip"), ("fpn", "fpn", "none")):
        cfg = make_steel_config(steel_raw, records_dir, image_size=list(SIZE))
        small = tiny_runs.make_config(root / name, arch=arch, size=SIZE)
        cfg.model, cfg.output_dir = small.model, str(root / name)
        cfg.inference.tta, cfg.inference.batch_size = tta, 4
        tiny_runs.save_folds(cfg, (0, 1))
        paths.append(tiny_runs.write_config(cfg, root / f"{name}.json"))
        assert main(["--config", str(paths[-1]), "--save-probs"]) == 0
    path = write_ensemble(root / "blend.json", ["unet.json", "fpn.json"],
                          [2.0, 1.0], inference={
                              "thresholds": [0.5, 0.4, 0.6, 0.3],
                              "min_area": [0, 100, 50, 0],
                              "batch_size": 3})
    return root, config.load(str(path)), path


@pytest.fixture(scope="module")
def blend_reference(blend_run):
    """(ids, post-processed outputs) of the float32 weighted mean of the
    members' probabilities, each member predicted alone."""
    _, cfg, _ = blend_run
    members = config.members(cfg)
    parts = [ensemble.member_test_probs(m, size=SIZE) for m, _ in members]
    ids = parts[0][0]
    blend = (2.0 * parts[0][1] + parts[1][1][[parts[1][0].index(i)
                                              for i in ids]]) / 3.0
    ref = predict.postprocess(cfg, blend, predict.load_postprocess(cfg))
    assert ref["masks"].shape[1:3] == (64, 400)  # the raw size
    assert ref["masks"].any()
    return ids, ref


def test_predicted_blend_is_weighted_mean_post_processed_once(
        blend_run, blend_reference):
    from kaggle_tf.predict import main

    root, cfg, path = blend_run
    assert main(["--config", str(path), "--save-probs"]) == 0
    got = np.load(root / "blend" / "test_probs.npz")
    ids = list(got["ids"])

    def alone(name):
        saved = np.load(root / name / "test_probs.npz")
        order = [list(saved["ids"]).index(i) for i in ids]
        return saved["probs"][order].astype(np.float32)

    want = (2.0 * alone("unet") + alone("fpn")) / 3.0
    np.testing.assert_allclose(got["probs"].astype(np.float32), want,
                               atol=2e-3)
    # Post-processed once, from the float32 blend of the members alone.
    image_ids, ref = blend_reference
    df = pd.read_csv(root / "blend" / "submission.csv", dtype=str,
                     keep_default_na=False)
    rows = {(r.ImageId, int(r.ClassId)): r.EncodedPixels
            for r in df.itertuples()}
    for n, image_id in enumerate(image_ids):
        for c in range(4):
            np.testing.assert_array_equal(
                rle.decode(rows[(image_id, c + 1)], (64, 400),
                           convention="severstal"), ref["masks"][n, ..., c])


def test_exported_blend_equals_predict(blend_run, blend_reference,
                                       steel_raw):
    import tensorflow as tf

    from kaggle_tf.export import __main__ as export_cli

    root, _, path = blend_run
    ids, ref = blend_reference
    out = root / "exports"
    assert export_cli.main(["--config", str(path), "--out", str(out)]) == 0
    served = tf.saved_model.load(str(out / "1"))
    blobs = [(steel_raw / "test_images" / i).read_bytes() for i in ids]
    got = served.signatures["serving_default"](
        image_bytes=tf.constant(blobs))
    np.testing.assert_allclose(got["probs"].numpy(), ref["probs"],
                               atol=1e-5)
    np.testing.assert_array_equal(got["masks"].numpy(), ref["masks"])


def test_classification_members_blend_and_tune(tmp_path):
    """HPA-like members (28 labels) blend and tune the same way."""
    from kaggle_tf.tune import main

    rng = np.random.default_rng(5)
    n = 40
    truth = (rng.uniform(size=(n, 28)) < 0.15).astype(np.int8)
    ids = np.asarray([f"id{i:02d}" for i in range(n)])
    names = []
    half = np.arange(n) < n // 2
    for name, bad in (("p", half), ("q", ~half)):
        cfg = tiny_runs.make_config(tmp_path / name, task="protein",
                                    arch="classifier", classes=28,
                                    channels=4)
        noise = rng.normal(0, 0.1, truth.shape)
        noise[bad] = rng.normal(0, 0.6, truth[bad].shape)
        probs = np.clip(truth + noise, 0, 1).astype(np.float16)
        for k in (0, 1):
            rows = np.arange(n) % 2 == k
            os.makedirs(tmp_path / name / f"fold{k}")
            np.savez(tmp_path / name / f"fold{k}" / "oof.npz", ids=ids[rows],
                     probs=probs[rows], truth=truth[rows])
        tiny_runs.write_config(cfg, tmp_path / f"{name}.json")
        names.append(f"{name}.json")
    path = tmp_path / "blend.json"
    path.write_text(json.dumps({
        "task": "protein", "output_dir": str(tmp_path / "blend"),
        "ensemble": {"members": [{"config": m} for m in names]}}))
    cfg = config.load(str(path))
    assert cfg.model.arch == "classifier" and cfg.data.channels == 4
    _, blend, _, per_member = ensemble.blend_oof(cfg)
    np.testing.assert_allclose(blend, (per_member[0] + per_member[1]) / 2,
                               atol=1e-6)
    assert main(["--config", str(path), "--thresholds", "0.3,0.5,0.7"]) == 0
    out = json.loads((tmp_path / "blend" / "postprocess.json").read_text())
    assert out["metric_after"] >= max(m["metric"] for m in out["members"])
    assert len(out["thresholds"]) == 28
