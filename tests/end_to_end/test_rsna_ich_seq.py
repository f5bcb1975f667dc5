"""RSNA ICH 2nd-place recipe end to end: slice classifier, then a BiLSTM
over its embeddings per series, as a user runs it through the commands.

sample -> fit rsna_ich.json (classifier) -> fit rsna_ich_seq.json -> tune
-> predict -> export; the tests check the cached embeddings against the
classifier, the slice order against the DICOM headers, the out-of-fold
file against the labels CSV, the submission against the sample, and the
SavedModel against predict.
"""

import glob
import os
import warnings

import keras
import numpy as np
import pandas as pd
import pydicom
import pytest
import tensorflow as tf

from kaggle_tf import config
from kaggle_tf import models  # noqa: F401  (registers the layers)
from kaggle_tf import submission
from kaggle_tf.data import series as series_lib
from kaggle_tf.metrics import kaggle as kaggle_metrics
from kaggle_tf.models import classifier as classifier_lib
from tfrecords_tools import dicom
from tfrecords_tools.competitions.rsna_ich import CLASSES
from e2e_commands import ROOT
from e2e_commands import run
from e2e_commands import sets

CLS = os.path.join(ROOT, "configs", "rsna_ich.json")
SEQ = os.path.join(ROOT, "configs", "rsna_ich_seq.json")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    base = tmp_path_factory.mktemp("rsna_ich_seq")
    raw = base / "rsna-intracranial-hemorrhage-detection"
    run("tfrecords_tools.sample", "--task", "rsna_ich", "--out", str(raw),
        "--n", "160", "--size", "64", "--seed", "3")
    common = [
        f"data.raw_dir={raw}", f"data.records_dir={base / 'records'}",
        "data.image_size=[64,64]", "data.folds=2",
        "model.encoder=test_resnet", "augment.transforms=null",
        "train.jit_compile=false", "train.verbose=2", "inference.tta=none",
    ]
    cls = common + [f"output_dir={base / 'cls'}", "train.epochs=6",
                    "train.batch_size=8", "optimizer.lr=0.003"]
    seq = common + [f"output_dir={base / 'seq'}",
                    f"model.embedding_model={base / 'cls'}",
                    "model.units=16", "schedule.stages=[]",
                    "train.epochs=12", "train.batch_size=4",
                    "optimizer.lr=0.003", "callbacks.top_k=2"]
    run("kaggle_tf.fit", "--config", CLS, "--fold", "all", *sets(cls))
    fit = run("kaggle_tf.fit", "--config", SEQ, "--fold", "all", *sets(seq))
    run("kaggle_tf.tune", "--config", SEQ, *sets(seq))
    pred = run("kaggle_tf.predict", "--config", SEQ, *sets(seq))
    export = run("kaggle_tf.export", "--config", SEQ, "--out",
                 str(base / "export"), *sets(seq))
    return {"cfg": config.load(SEQ, seq), "raw": raw, "base": base,
            "fit": fit.stdout, "submission": pred.stdout.strip().splitlines()
            [-1], "export": export.stdout.strip().splitlines()[-1],
            "seq_sets": seq}


def dicom_series(folder):
    """{series uid: [(z, sop id, path)] sorted by z} of a DICOM folder."""
    out = {}
    for path in glob.glob(os.path.join(folder, "*.dcm")):
        with warnings.catch_warnings():
            # Kaggle's RSNA UIDs ("ID_...") are not valid DICOM UIDs.
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            uid = str(ds.SeriesInstanceUID)
        out.setdefault(uid, []).append(
            (float(ds.ImagePositionPatient[2]),
             os.path.basename(path)[:-4], path))
    return {k: sorted(v) for k, v in out.items()}


def labels_table(raw):
    df = pd.read_csv(os.path.join(raw, "stage_2_train.csv"))
    df = df.drop_duplicates("ID")
    parts = df["ID"].str.rsplit("_", n=1, expand=True)
    df["image"], df["subtype"] = parts[0], parts[1]
    return df.pivot(index="image", columns="subtype",
                    values="Label")[list(CLASSES)]


def test_embeddings_are_the_classifiers_in_dicom_slice_order(recipe):
    cfg, base = recipe["cfg"], recipe["base"]
    with np.load(base / "seq" / "fold0" / "embeddings.npz") as f:
        cached = {k: f[k] for k in f.files}
    # Slice order: each series' rows follow ImagePositionPatient z.
    truth_order = dicom_series(os.path.join(recipe["raw"], "stage_2_train"))
    for uid, slices in truth_order.items():
        rows = np.flatnonzero(cached["series"] == uid)
        assert len(rows) == len(slices), uid
        ordered = rows[np.argsort(cached["index"][rows])]
        assert list(cached["ids"][ordered]) == [s[1] for s in slices]
    # Values: the fold-0 classifier's embeddings and logits of the slices.
    clf = keras.saving.load_model(base / "cls" / "fold0" / "best.keras",
                                  compile=False)
    embed = classifier_lib.embedding_model(clf)
    ds = series_lib.make_series_dataset(cfg, [1], training=False,
                                        batch_size=1)
    checked = 0
    for element in ds.take(3):
        n = int(np.asarray(element["mask"]).sum())
        images = np.asarray(element["images"][0, :n])
        ids = [v.decode() for v in np.asarray(element["id"][0, :n])]
        rows = [int(np.flatnonzero(cached["ids"] == i)[0]) for i in ids]
        np.testing.assert_allclose(cached["embeddings"][rows],
                                   np.asarray(embed(images)), atol=1e-4)
        np.testing.assert_allclose(cached["logits"][rows],
                                   np.asarray(clf(images)), atol=1e-4)
        checked += n
    assert checked > 0


def test_oof_covers_every_slice_with_the_csv_labels(recipe):
    base, raw = recipe["base"], recipe["raw"]
    with np.load(base / "seq" / "oof.npz") as f:
        ids, probs, truth = f["ids"], f["probs"], f["truth"]
    table = labels_table(raw)
    assert sorted(ids) == sorted(table.index)
    np.testing.assert_array_equal(truth, table.loc[ids].to_numpy())
    assert probs.shape == (len(ids), 6)
    assert probs.min() >= 0 and probs.max() <= 1
    import json

    with open(base / "seq" / "metrics.json") as f:
        metrics = json.load(f)
    expected = kaggle_metrics.rsna_ich_log_loss(truth, probs)
    assert metrics["kaggle_metric"] == pytest.approx(expected, abs=1e-3)
    for k in (0, 1):
        with open(base / "seq" / f"fold{k}" / "metrics.json") as f:
            fold = json.load(f)
        assert np.isfinite(fold["slice_classifier_metric"])


def test_the_recipe_learns_beyond_a_constant_prediction(recipe):
    with np.load(recipe["base"] / "seq" / "oof.npz") as f:
        probs, truth = f["probs"].astype(np.float64), f["truth"]
    constant = np.broadcast_to(truth.mean(axis=0), truth.shape)
    baseline = kaggle_metrics.rsna_ich_log_loss(truth, constant)
    ours = kaggle_metrics.rsna_ich_log_loss(truth, probs)
    assert ours < 0.9 * baseline, (ours, baseline)


def test_submission_matches_the_sample_and_the_saved_probs(recipe):
    cfg = recipe["cfg"]
    path = recipe["submission"]
    assert path.endswith("submission.csv")
    df = submission.validate("rsna_ich", cfg.data.raw_dir, path)
    with np.load(os.path.join(cfg.output_dir, "test_probs.npz")) as f:
        ids, probs = f["ids"], f["probs"].astype(np.float32)
    values = dict(zip(df["ID"], df["Label"].astype(float)))
    for image_id, row in zip(ids, probs):
        for name, p in zip(CLASSES, row):
            assert values[f"{image_id}_{name}"] == pytest.approx(
                float(p), abs=2e-3)
    assert len(values) == 6 * len(ids)


def test_export_serves_hu_series_like_predict(recipe):
    cfg = recipe["cfg"]
    served = tf.saved_model.load(recipe["export"])
    with np.load(os.path.join(cfg.output_dir, "test_probs.npz")) as f:
        expected = dict(zip(f["ids"], f["probs"].astype(np.float32)))
    test = dicom_series(os.path.join(recipe["raw"], "stage_2_test"))
    assert test
    # Two series in one padded request: padding must not change anything.
    series = sorted(test.values(), key=len)[-2:]
    t = max(len(s) for s in series)
    hu = np.zeros((2, t, 64, 64), np.float32)
    mask = np.zeros((2, t), np.float32)
    for b, slices in enumerate(series):
        for i, (_, _, path) in enumerate(slices):
            hu[b, i] = dicom.read_hu(path)
            mask[b, i] = 1
    out = served.signatures["serving_default"](hu=tf.constant(hu),
                                               mask=tf.constant(mask))
    probs = out["probs"].numpy()
    for b, slices in enumerate(series):
        for i, (_, sop, _) in enumerate(slices):
            np.testing.assert_allclose(probs[b, i], expected[sop],
                                       atol=2e-3)
        assert not probs[b, len(slices):].any()
    np.testing.assert_array_equal(out["labels"].numpy(),
                                  (probs > 0.5).astype(np.uint8))
    alone = served.signatures["serving_default"](
        hu=tf.constant(hu[:1, :len(series[0])]),
        mask=tf.constant(mask[:1, :len(series[0])]))["probs"].numpy()
    np.testing.assert_allclose(alone[0], probs[0, :len(series[0])],
                               atol=1e-5)


def test_missing_classifier_and_wrong_task_are_clear_errors(recipe,
                                                             tmp_path):
    seq = [s for s in recipe["seq_sets"]
           if not s.startswith(("model.embedding_model=", "output_dir="))]
    proc = run("kaggle_tf.fit", "--config", SEQ,
               *sets(seq + [f"model.embedding_model={tmp_path / 'none'}",
                            f"output_dir={tmp_path / 'out'}"]), expect=1)
    assert "model.embedding_model" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run("kaggle_tf.fit", "--config", SEQ,
               *sets(seq + ["inference.tta=hflip",
                            f"output_dir={tmp_path / 'out'}"]), expect=2)
    assert "inference.tta" in proc.stderr
