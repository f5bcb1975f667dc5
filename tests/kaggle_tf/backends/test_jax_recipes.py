"""The other recipes under `KERAS_BACKEND=jax`, through the command lines.

One JAX subprocess per recipe runs, in order, `tfrecords_tools.sample` and
`kaggle_tf.fit` (fold 0 of 2, one epoch of two steps, `test_resnet`):
HPA protein (encoder LR), RSNA lumbar (series classifier, gradient
accumulation) and the RSNA ICH series model (the slice classifier, then
the BiLSTM over its embeddings). Each writes its fold files and
`metrics.json`. The JAX-trained protein run is then exported under
TensorFlow (`KERAS_BACKEND=tensorflow python -m kaggle_tf.export`), and the
SavedModel's probabilities equal the JAX model's on the validation images
(1e-4).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kaggle_tf import config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
FOLD_FILES = ("best.keras", "history.csv", "oof.npz", "metrics.json",
              "checkpoints.json")
COMMON = ["data.folds=2", "model.encoder=test_resnet",
          "model.encoder_weights=null", "augment.transforms=null",
          "train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=4",
          "train.verbose=2", "callbacks.top_k=1", "callbacks.backup=false",
          "schedule.stages=[]", "inference.tta=none"]
# Runs `module.main(argv)` for each (module, argv) of sys.argv[1] (JSON),
# stopping at the first non-zero exit.
RUNNER = """
import importlib, json, sys
for module, argv in json.loads(sys.argv[1]):
    code = importlib.import_module(module).main(argv)
    if code:
        sys.exit(code)
"""


def run_commands(commands, backend="jax", env=None):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT, **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(commands)], cwd=ROOT,
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def sample(task, raw, n, size="64"):
    return ["tfrecords_tools.sample", ["--task", task, "--out", str(raw),
                                       "--n", str(n), "--size", size,
                                       "--seed", "1"]]


def fit(name, overrides):
    return ["kaggle_tf.fit", [
        "--config", os.path.join(ROOT, "configs", f"{name}.json"),
        "--fold", "0", *[a for o in overrides for a in ("--set", o)]]]


def data(base, image_size=32):
    return [f"data.raw_dir={base / 'raw'}",
            f"data.records_dir={base / 'records'}",
            f"data.image_size=[{image_size},{image_size}]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{recipe: its config} after the JAX fits (and the slice classifier
    of the ICH series model)."""
    out = {}
    for name, n in (("protein", 24), ("rsna_lumbar", 16)):
        base = tmp_path_factory.mktemp(name)
        sets = [*data(base), *COMMON, f"output_dir={base / 'run'}"]
        run_commands([sample(name, base / "raw", n), fit(name, sets)])
        out[name] = config.load(
            os.path.join(ROOT, "configs", f"{name}.json"), sets)
    base = tmp_path_factory.mktemp("ich")
    cls = [*data(base), *COMMON, f"output_dir={base / 'cls'}"]
    seq = [*data(base), *COMMON, f"output_dir={base / 'seq'}",
           f"model.embedding_model={base / 'cls'}", "model.units=8"]
    run_commands([sample("rsna_ich", base / "raw", 48),
                  fit("rsna_ich", cls), fit("rsna_ich_seq", seq)])
    out["rsna_ich"] = config.load(
        os.path.join(ROOT, "configs", "rsna_ich.json"), cls)
    out["rsna_ich_seq"] = config.load(
        os.path.join(ROOT, "configs", "rsna_ich_seq.json"), seq)
    return out


@pytest.mark.parametrize("name", ["protein", "rsna_lumbar", "rsna_ich",
                                  "rsna_ich_seq"])
def test_a_jax_fit_writes_the_fold_files(runs, name):
    fold = os.path.join(runs[name].output_dir, "fold0")
    for file in FOLD_FILES:
        assert os.path.exists(os.path.join(fold, file)), (name, file)
    with open(os.path.join(fold, "metrics.json")) as f:
        metric = json.load(f)["kaggle_metric"]
    assert np.isfinite(metric), (name, metric)
    oof = np.load(os.path.join(fold, "oof.npz"))
    assert len(oof["ids"]) == len(set(oof["ids"])) > 0
    assert np.isfinite(oof["probs"].astype("float32")).all()


def test_a_jax_trained_run_exports_under_tensorflow(runs, tmp_path):
    import tensorflow as tf

    from kaggle_tf.data import pipeline

    cfg = runs["protein"]
    images = np.concatenate([
        np.asarray(b["images"], np.float32) for b in pipeline.make_dataset(
            cfg, [0], training=False, with_meta=True, batch_size=4)])
    np.save(tmp_path / "x.npy", images)
    overrides = [f"data.raw_dir={cfg.data.raw_dir}",
                 f"data.records_dir={cfg.data.records_dir}",
                 "data.image_size=[32,32]", *COMMON,
                 f"output_dir={cfg.output_dir}"]
    export = run_commands([["kaggle_tf.export.__main__", [
        "--config", os.path.join(ROOT, "configs", "protein.json"),
        "--out", str(tmp_path / "export"), "--folds", "0", "--tta", "none",
        *[a for o in overrides for a in ("--set", o)]]]],
        backend="tensorflow")
    path = export.stdout.strip().splitlines()[-1]
    best = os.path.join(cfg.output_dir, "fold0", "best.keras")
    code = ("import sys, keras, numpy as np\n"
            "import kaggle_tf.models\n"
            "from kaggle_tf.training import oof\n"
            "m = keras.saving.load_model(sys.argv[1], compile=False)\n"
            "x = np.load(sys.argv[2])\n"
            "np.save(sys.argv[3], oof.to_probs(m(x, training=False)))\n")
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", code, best, str(tmp_path / "x.npy"),
         str(tmp_path / "y.npy")], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = np.load(tmp_path / "y.npy")
    served = tf.saved_model.load(path)
    got = served.signatures["predict_images"](
        images=tf.constant(images))["probs"].numpy()
    assert got.shape == want.shape and np.std(want) > 0
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    # The fit's out-of-fold file (float16) holds the same predictions.
    oof = np.load(os.path.join(cfg.output_dir, "fold0", "oof.npz"))
    np.testing.assert_allclose(oof["probs"].astype("float32"), want,
                               atol=2e-3)


def test_data_parallel_validates_a_fold_that_does_not_split_over_devices(
        tmp_path):
    """Two forced host devices, global batch 4, an odd validation fold:
    Keras' JAX trainer lays out every batch of an epoch like the first, so
    the last validation batch must still split over the devices; the fit
    ends, and `oof.npz` (predicted outside the distributed loop) holds
    every image of the fold once."""
    steel = [*data(tmp_path), *COMMON, f"output_dir={tmp_path / 'run'}",
             "train.batch_size=2", "train.strategy=auto"]
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = run_commands([sample("steel", tmp_path / "raw", 10, "64x128"),
                         fit("steel", steel)], env=env)
    assert "each epoch validates" in proc.stdout, proc.stdout[-2000:]
    import pandas as pd

    folds = pd.read_csv(tmp_path / "records" / "folds.csv")
    want = sorted(folds.loc[folds["fold"] == 0].iloc[:, 0].astype(str))
    assert len(want) % 2 == 1, want  # the case: 2 devices, odd fold
    oof = np.load(tmp_path / "run" / "fold0" / "oof.npz")
    assert sorted(str(i) for i in oof["ids"]) == want
    history = pd.read_csv(tmp_path / "run" / "fold0" / "history.csv")
    assert np.isfinite(history["val_kaggle_metric"]).all()
