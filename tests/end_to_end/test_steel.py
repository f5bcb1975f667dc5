"""Severstal end to end, as a user runs it: sample -> fit -> predict.

One tiny training run (module fixture) through the real command lines;
the tests check every file it promises, that the model learned (training
Dice clearly above the all-empty prediction's), and the submission.
"""

import json
import os

import keras
import numpy as np
import pandas as pd
import pytest

from kaggle_tf import config
from kaggle_tf import models  # noqa: F401  (registers the layers)
from kaggle_tf import rle
from kaggle_tf import submission
from kaggle_tf.data import pipeline
from kaggle_tf.metrics import kaggle as kaggle_metrics
from kaggle_tf.postprocess import thresholds
from e2e_commands import ROOT
from e2e_commands import run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("steel")
    raw = base / "severstal-steel-defect-detection"
    run("tfrecords_tools.sample", "--task", "steel", "--out", str(raw),
        "--n", "40", "--size", "64x400", "--seed", "1")
    overrides = [
        f"data.raw_dir={raw}", f"data.records_dir={base / 'records'}",
        f"output_dir={base / 'run'}", "data.image_size=[64,384]",
        "data.folds=4", "model.encoder=test_resnet", "train.epochs=16",
        "train.batch_size=4", "train.steps_per_epoch=8",
        "optimizer.lr=0.003", "augment.transforms=null",
        "train.jit_compile=false", "train.verbose=2", "callbacks.top_k=2",
        "inference.min_area=[10]", "inference.classifier_config=null",
    ]
    sets = [a for o in overrides for a in ("--set", o)]
    steel = os.path.join(ROOT, "configs", "steel.json")
    fit = run("kaggle_tf.fit", "--config", steel, "--fold", "0", *sets)
    pred = run("kaggle_tf.predict", "--config", steel, *sets)
    cfg = config.load(steel, overrides)
    return cfg, fit, pred, sets


def test_lr_finder_writes_a_plot_and_a_suggestion(trained):
    cfg, _, _, sets = trained
    steel = os.path.join(ROOT, "configs", "steel.json")
    out = os.path.join(os.path.dirname(cfg.output_dir), "lr_find")
    proc = run("kaggle_tf.fit", "--config", steel, "--lr-find", *sets,
               "--set", f"output_dir={out}", "--set",
               "train.steps_per_epoch=12")
    with open(os.path.join(out, "lr_find.json")) as f:
        result = json.load(f)
    assert len(result["lrs"]) >= 3
    assert np.all(np.diff(result["lrs"]) > 0)
    assert result["lrs"][0] <= result["suggested_lr"] <= result["lrs"][-1]
    assert "suggested learning rate" in proc.stdout
    with open(os.path.join(out, "lr_find.png"), "rb") as f:
        assert f.read(4) == b"\x89PNG"


def test_fit_writes_every_promised_file(trained):
    cfg, _, _, _ = trained
    fold = os.path.join(cfg.output_dir, "fold0")
    for name in ("best.keras", "history.csv", "history.png", "oof.npz",
                 "metrics.json", "checkpoints.json"):
        assert os.path.exists(os.path.join(fold, name)), name
    assert os.path.exists(os.path.join(cfg.data.records_dir,
                                       "manifest.json"))
    history = pd.read_csv(os.path.join(fold, "history.csv"))
    assert list(history["epoch"]) == list(range(1, 17))
    assert np.isfinite(history["loss"]).all()
    with open(os.path.join(fold, "checkpoints.json")) as f:
        checkpoints = json.load(f)
    assert len(checkpoints) == 2
    assert checkpoints[0]["score"] == history["val_kaggle_metric"].max()
    assert not [f for f in os.listdir(fold) if ".tmp" in f]


def test_oof_and_metrics_agree_with_the_kaggle_metric(trained):
    cfg, _, _, _ = trained
    fold = os.path.join(cfg.output_dir, "fold0")
    with np.load(os.path.join(fold, "oof.npz")) as f:
        oof = dict(f)
    n_val = pipeline.count_records(cfg, [0])
    assert len(oof["ids"]) == n_val
    assert oof["probs"].shape == (n_val, 64, 384, 4)
    expected = kaggle_metrics.mean_dice(oof["truth"], oof["probs"] > 0.5)
    with open(os.path.join(fold, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["kaggle_metric"] == pytest.approx(expected, abs=1e-6)


def test_model_learned_beyond_the_all_empty_prediction(trained):
    cfg, _, _, _ = trained
    model = keras.saving.load_model(
        os.path.join(cfg.output_dir, "fold0", "best.keras"), compile=False)
    ds = pipeline.make_dataset(cfg, [1, 2, 3], training=False, batch_size=8)
    truth, probs = [], []
    for batch in ds:
        truth.append(np.asarray(batch["segmentation_masks"]))
        logits = np.asarray(model(batch["images"], training=False))
        probs.append(1 / (1 + np.exp(-logits)))
    truth, probs = np.concatenate(truth), np.concatenate(probs)
    pred = probs > 0.5
    # Scored as the recipe submits: threshold, then the min-area rule.
    learned = kaggle_metrics.mean_dice(
        truth, thresholds.apply(probs, [0.5] * 4, [30] * 4))
    empty = kaggle_metrics.mean_dice(truth, np.zeros_like(truth))
    # Dice on the (image, class) pairs that have a defect: 0 when empty.
    has = truth.reshape(len(truth), -1, 4).any(1)
    inter = (truth * pred).sum((1, 2))
    dice = 2 * inter / np.maximum(truth.sum((1, 2)) + pred.sum((1, 2)), 1)
    assert dice[has].mean() > 0.3, (dice[has].mean(), learned, empty)
    assert learned > empty + 0.03, (learned, empty)


def test_submission_matches_the_sample_and_decodes(trained):
    cfg, _, pred, _ = trained
    path = pred.stdout.strip().splitlines()[-1]
    assert path == os.path.join(os.path.abspath(cfg.output_dir),
                                "submission.csv")
    df = submission.validate("steel", cfg.data.raw_dir, path)
    sample = pd.read_csv(os.path.join(cfg.data.raw_dir,
                                      "sample_submission.csv"))
    assert list(df.columns) == list(sample.columns)
    assert len(df) == len(sample)
    for value in df["EncodedPixels"]:
        mask = rle.decode(value, (64, 400), convention="severstal")
        assert mask.shape == (64, 400)
    assert (df["EncodedPixels"] != "").any(), "every mask is empty"
