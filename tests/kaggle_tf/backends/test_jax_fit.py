"""Severstal on the JAX backend, as a Kaggle TPU kernel runs it.

`KERAS_BACKEND=jax` subprocesses: sample -> fit (fold 0, 2 epochs,
augmentation in tf.data) -> predict -> a valid submission. The JAX-trained
`best.keras` then gives the same outputs under TensorFlow (this process).
Also the one-line refusals under JAX: a TF strategy, augmentation placed
in the model, export.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

from kaggle_tf import config
from kaggle_tf import models  # noqa: F401  (registers the layers)
from kaggle_tf import submission

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
STEEL = os.path.join(ROOT, "configs", "steel.json")


def run_jax(*args, expect=0, code=None):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    cmd = [sys.executable, "-c", code, *args] if code else [
        sys.executable, "-m", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=900)
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("steel_jax")
    raw = base / "severstal-steel-defect-detection"
    run_jax("tfrecords_tools.sample", "--task", "steel", "--out", str(raw),
            "--n", "24", "--size", "64x400", "--seed", "1")
    overrides = [
        f"data.raw_dir={raw}", f"data.records_dir={base / 'records'}",
        f"output_dir={base / 'run'}", "data.image_size=[64,128]",
        "data.folds=4", "model.encoder=test_resnet",
        "model.encoder_weights=null", "train.epochs=2",
        "train.batch_size=4", "train.steps_per_epoch=6",
        "optimizer.lr=0.003", "train.verbose=2", "callbacks.top_k=2",
        "inference.min_area=[10]", "inference.classifier_config=null",
    ]
    sets = [a for o in overrides for a in ("--set", o)]
    fit = run_jax("kaggle_tf.fit", "--config", STEEL, "--fold", "0", *sets)
    pred = run_jax("kaggle_tf.predict", "--config", STEEL, "--folds", "0",
                   *sets)
    return config.load(STEEL, overrides), fit, pred, sets


def test_jax_fit_writes_the_run_and_learns(trained):
    cfg, fit, _, _ = trained
    fold = os.path.join(cfg.output_dir, "fold0")
    for name in ("best.keras", "history.csv", "oof.npz", "metrics.json",
                 "checkpoints.json"):
        assert os.path.exists(os.path.join(fold, name)), name
    history = pd.read_csv(os.path.join(fold, "history.csv"))
    assert list(history["epoch"]) == [1, 2]
    assert history["loss"].iloc[1] < history["loss"].iloc[0], history
    with open(os.path.join(fold, "metrics.json")) as f:
        assert 0 <= json.load(f)["kaggle_metric"] <= 1


def test_jax_predict_writes_a_valid_submission(trained):
    cfg, _, pred, _ = trained
    path = pred.stdout.strip().splitlines()[-1]
    df = submission.validate("steel", cfg.data.raw_dir, path)
    sample = pd.read_csv(os.path.join(cfg.data.raw_dir,
                                      "sample_submission.csv"))
    assert len(df) == len(sample)


def test_a_jax_checkpoint_predicts_the_same_under_tensorflow(trained,
                                                             tmp_path):
    cfg, _, _, _ = trained
    best = os.path.join(cfg.output_dir, "fold0", "best.keras")
    x = np.random.default_rng(0).uniform(size=(2, 64, 128, 3)).astype(
        "float32")
    np.save(tmp_path / "x.npy", x)
    run_jax(best, str(tmp_path), code=(
        "import sys, keras, numpy as np\n"
        "import kaggle_tf.models\n"
        "m = keras.saving.load_model(sys.argv[1], compile=False)\n"
        "x = np.load(sys.argv[2] + '/x.npy')\n"
        "np.save(sys.argv[2] + '/y.npy', np.asarray(m(x, training=False)))\n"))
    model = keras.saving.load_model(best, compile=False)
    np.testing.assert_allclose(np.asarray(model(x, training=False)),
                               np.load(tmp_path / "y.npy"), atol=1e-4,
                               rtol=1e-4)


def test_jax_refuses_tf_strategies_model_placement_and_export(trained):
    _, _, _, sets = trained
    proc = run_jax("kaggle_tf.fit", "--config", STEEL, "--fold", "0", *sets,
                   "--set", "train.strategy=mirrored", expect=2)
    line = proc.stderr.strip().splitlines()[-1]
    assert "train.strategy" in line and "'auto'" in line, line
    proc = run_jax("kaggle_tf.fit", "--config", STEEL, "--fold", "0", *sets,
                   "--set", "augment.placement=model", expect=2)
    line = proc.stderr.strip().splitlines()[-1]
    assert "augment.placement" in line and "'dataset'" in line, line
    proc = run_jax("kaggle_tf.export", "--config", STEEL, "--out", "x",
                   expect=2)
    assert "KERAS_BACKEND=tensorflow" in proc.stderr.strip().splitlines()[-1]
