"""Ensembles of RSNA ICH series experiments (slice classifier + sequence
model): the predicted blend, its SavedModel, and the members that cannot
be blended or exported together."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import series_runs
import tensorflow as tf

from kaggle_tf import config
from kaggle_tf.inference import ensemble
from kaggle_tf.tasks import rsna_ich
from tfrecords_tools.competitions.rsna_ich import CLASSES

OTHER_WINDOWS = [[50, 150], [30, 60], [600, 2800]]


@pytest.fixture(scope="module")
def ich(tmp_path_factory):
    """(raw, records, root) of a converted RSNA ICH sample (2 folds)."""
    raw, out = series_runs.converted_ich(tmp_path_factory, "ich_blend", 7)
    return raw, out, out.parent


@pytest.fixture(scope="module")
def members(ich):
    """Member configs: `a` (32 x 32, the usual windows), `b` (24 x 24,
    other windows, wider LSTM), `c` (as `a`'s inputs, other weights), each
    predicted alone with `--save-probs`."""
    from kaggle_tf.predict import main

    raw, records, root = ich
    made = {
        "a": series_runs.save_series_run(raw, records, root, "a", seed=1),
        "b": series_runs.save_series_run(raw, records, root, "b", size=24,
                                         windows=OTHER_WINDOWS, units=6,
                                         seed=2),
        "c": series_runs.save_series_run(raw, records, root, "c", seed=3),
    }
    for name in made:
        assert main(["--config", str(root / f"{name}.json"),
                     "--save-probs"]) == 0
    return made


def saved_probs(run_dir):
    with np.load(os.path.join(run_dir, "test_probs.npz")) as f:
        return dict(zip(f["ids"], f["probs"].astype(np.float32)))


def alone(cfg):
    """{slice id: float32 probs} of one member predicted alone."""
    ids, probs = ensemble.member_test_probs(cfg)
    return dict(zip(ids, probs))


def test_series_blend_is_the_weighted_mean_of_the_members(ich, members):
    from kaggle_tf.predict import main

    _, _, root = ich
    path = series_runs.write_ensemble(root / "ab.json",
                                      [root / "a.json", root / "b.json"],
                                      [2.0, 1.0])
    cfg = config.load(str(path))
    assert cfg.model.arch == "sequence"
    assert main(["--config", str(path), "--save-probs"]) == 0
    got = saved_probs(cfg.output_dir)
    pa = saved_probs(members["a"].output_dir)
    pb = saved_probs(members["b"].output_dir)
    assert sorted(got) == sorted(pa) == sorted(pb)
    assert len(got) >= 12  # every test slice of the sample
    spread = np.stack([pa[i] - pb[i] for i in got])
    assert np.abs(spread).max() > 0.05  # the members differ
    for i, p in got.items():
        np.testing.assert_allclose(p, (2.0 * pa[i] + pb[i]) / 3.0,
                                   atol=2e-3)
    # The submission: 6 rows per slice, the blend's probabilities.
    df = pd.read_csv(os.path.join(cfg.output_dir, "submission.csv"))
    assert len(df) == 6 * len(got)
    labels = dict(zip(df["ID"], df["Label"].astype(float)))
    for i, p in got.items():
        for name, v in zip(CLASSES, p):
            assert labels[f"{i}_{name}"] == pytest.approx(float(v),
                                                          abs=2e-3)


def test_series_members_with_other_folds_are_an_error(ich, members,
                                                      capsys):
    from kaggle_tf.tune import main

    _, _, root = ich
    ids = np.asarray(sorted(saved_probs(members["a"].output_dir)))
    truth = np.zeros((len(ids), 6), np.int8)
    probs = np.full((len(ids), 6), 0.3, np.float16)
    folder = {}
    for name, shift in (("a", 0), ("c", 1)):
        folder[name] = root / f"oof_{name}"
        for k in (0, 1):
            rows = (np.arange(len(ids)) + shift) % 2 == k
            os.makedirs(folder[name] / f"fold{k}", exist_ok=True)
            np.savez(folder[name] / f"fold{k}" / "oof.npz", ids=ids[rows],
                     probs=probs[rows], truth=truth[rows])
        data = members[name].to_dict()
        data.pop("source")
        data["output_dir"] = str(folder[name])
        (root / f"oof_{name}.json").write_text(json.dumps(data))
    path = series_runs.write_ensemble(
        root / "folds.json", [root / "oof_a.json", root / "oof_c.json"],
        [1, 1])
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "`ensemble.members[1]`" in err and "oof_c.json" in err
    assert "share folds" in err


def stored_series(records_dir):
    """[(slice ids, HU (T, h, w))] of the test series, as stored."""
    files = sorted(tf.io.gfile.glob(os.path.join(str(records_dir),
                                                 "test-*.tfrec")))
    out = []
    for raw in tf.data.TFRecordDataset(files):
        p = rsna_ich.parse_series(raw)
        hu = np.stack([tf.io.decode_png(b, channels=1, dtype=tf.uint16)
                       .numpy()[..., 0] for b in p["image_bytes"].numpy()])
        out.append(([i.decode() for i in p["id"].numpy()],
                    hu.astype(np.float32) - rsna_ich.HU_OFFSET))
    return out


def padded(series):
    """The series as one padded request: (hu, mask, [(b, t, slice id)])."""
    t = max(len(ids) for ids, _ in series)
    h, w = series[0][1].shape[1:]
    hu = np.zeros((len(series), t, h, w), np.float32)
    mask = np.zeros((len(series), t), np.float32)
    where = []
    for b, (ids, x) in enumerate(series):
        hu[b, :len(ids)], mask[b, :len(ids)] = x, 1
        where.extend((b, n, i) for n, i in enumerate(ids))
    return hu, mask, where


def test_exported_series_blend_equals_predict(ich, members):
    from kaggle_tf.export import __main__ as export_cli

    _, records, root = ich
    path = series_runs.write_ensemble(root / "ab_export.json",
                                      [root / "a.json", root / "b.json"],
                                      [2.0, 1.0])
    out = root / "exports_ab"
    assert export_cli.main(["--config", str(path), "--out", str(out)]) == 0
    served = tf.saved_model.load(str(out / "1"))
    # b windows otherwise: windowed images cannot serve both members.
    assert set(served.signatures) == {"serving_default"}
    pa, pb = alone(members["a"]), alone(members["b"])
    hu, mask, where = padded(stored_series(records))
    got = served.signatures["serving_default"](hu=tf.constant(hu),
                                               mask=tf.constant(mask))
    probs = got["probs"].numpy()
    for b, t, i in where:
        np.testing.assert_allclose(probs[b, t], (2 * pa[i] + pb[i]) / 3,
                                   atol=1e-5)
    assert probs[mask == 0].max(initial=0) == 0
    np.testing.assert_array_equal(got["labels"].numpy(),
                                  (probs > 0.5).astype(np.uint8))


def test_exported_geometric_blend_serves_windowed_series(ich, members):
    from kaggle_tf.export import __main__ as export_cli

    _, records, root = ich
    path = series_runs.write_ensemble(
        root / "ac.json", [root / "a.json", root / "c.json"], [1.0, 3.0],
        merge="geometric_mean")
    out = root / "exports_ac"
    assert export_cli.main(["--config", str(path), "--out", str(out)]) == 0
    served = tf.saved_model.load(str(out / "1"))
    pa, pc = alone(members["a"]), alone(members["c"])
    series = stored_series(records)
    hu, mask, where = padded(series)
    windows = rsna_ich.windows_of(members["a"])
    images = rsna_ich.window_hu(hu[..., None], windows).numpy()
    outs = [served.signatures["serving_default"](
                hu=tf.constant(hu), mask=tf.constant(mask))["probs"],
            served.signatures["predict_series"](
                images=tf.constant(images), mask=tf.constant(mask))["probs"]]
    for probs in outs:
        probs = probs.numpy()
        for b, t, i in where:
            want = np.exp((np.log(np.maximum(pa[i], 1e-7))
                           + 3 * np.log(np.maximum(pc[i], 1e-7))) / 4)
            np.testing.assert_allclose(probs[b, t], want, atol=1e-5)
        assert probs[mask == 0].max(initial=0) == 0


def test_image_and_series_members_are_not_exported_together(
        ich, members, capsys):
    from kaggle_tf.export import __main__ as export_cli

    _, _, root = ich
    clf = config.load(str(root / "a.json")).model.embedding_model
    data = series_runs.ich_config(*ich[:2], clf, "classifier").to_dict()
    data.pop("source")
    (root / "slice_cls.json").write_text(json.dumps(data))
    path = series_runs.write_ensemble(
        root / "mixed.json", [root / "slice_cls.json", root / "a.json"],
        [1, 1])
    assert export_cli.main(["--config", str(path), "--out",
                            str(root / "mixed_export")]) == 2
    err = capsys.readouterr().err
    assert "`ensemble.members[1]`" in err and "image and series" in err
    assert not os.path.exists(root / "mixed_export" / "1")


def test_one_series_run_exports_as_before(ich, members):
    """A single series config: both signatures, equal to its predict."""
    from kaggle_tf.export import __main__ as export_cli

    _, records, root = ich
    out = root / "exports_a"
    assert export_cli.main(["--config", str(root / "a.json"), "--out",
                            str(out)]) == 0
    served = tf.saved_model.load(str(out / "1"))
    assert set(served.signatures) == {"serving_default", "predict_series"}
    pa = alone(members["a"])
    hu, mask, where = padded(stored_series(records))
    images = rsna_ich.window_hu(hu[..., None],
                                rsna_ich.windows_of(members["a"])).numpy()
    for probs in (served.signatures["serving_default"](
                      hu=tf.constant(hu), mask=tf.constant(mask))["probs"],
                  served.signatures["predict_series"](
                      images=tf.constant(images),
                      mask=tf.constant(mask))["probs"]):
        probs = probs.numpy()
        for b, t, i in where:
            np.testing.assert_allclose(probs[b, t], pa[i], atol=1e-5)
        assert probs[mask == 0].max(initial=0) == 0
