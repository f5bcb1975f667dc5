"""Same seed, same run: folds, batches, initial weights and first loss.

What makes a CPU run repeat exactly here: `cfg.seed` seeds the folds
(`tfrecords_tools.folds`), the file and example shuffles of `tf.data`
(whose parallel maps keep their order, `deterministic=True` being the
default), and `keras.utils.set_random_seed(cfg.seed)` in `train_fold` seeds
Python, NumPy, TF and Keras' initializers and dropout. CPU kernels are
deterministic for a given thread count, so two fresh processes give the
same first-epoch loss without `tf.config.experimental.enable_op_determinism()`.
On a GPU that call is needed as well (cuDNN convolution backprop and
scatter/segment reductions pick nondeterministic algorithms otherwise);
it also makes an op that has no deterministic kernel raise instead of
varying, and slows training, so it belongs behind a config flag.
"""

import filecmp
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

from kaggle_tf import config as config_lib
from kaggle_tf.training import image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
CONFIG = os.path.join(REPO, "configs", "steel.json")
FIT_TIMEOUT_S = 300


def overrides(root, raw, rec, seed=42, **extra):
    values = {
        "seed": seed, "data.raw_dir": raw, "data.records_dir": rec,
        "output_dir": os.path.join(str(root), "out"),
        "data.image_size": [32, 64], "data.folds": 2,
        "data.shuffle_buffer": 4, "model.encoder": "test_resnet",
        "model.decoder_channels": [8, 8, 8, 4, 4],
        "augment.transforms": None, "train.epochs": 1,
        "train.batch_size": 2, "train.steps_per_epoch": 2,
        "train.validation_steps": 1, "train.jit_compile": False,
        "train.verbose": 0, "callbacks.top_k": 1,
    }
    values.update(extra)
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}"
            for k, v in values.items()]


def convert_cli(root, raw, rec, seed):
    from tfrecords_tools import convert

    args = ["--config", CONFIG, "--quiet"]
    for item in overrides(root, raw, rec, seed=seed):
        args += ["--set", item]
    assert convert.main(args) == 0
    return rec


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    from tfrecords_tools import sample

    out = str(tmp_path_factory.mktemp("steel_det") / "raw")
    assert sample.main(["--task", "steel", "--out", out, "--n", "12",
                        "--size", "32x64", "--seed", "0"]) == 0
    return out


@pytest.fixture(scope="module")
def records(raw, tmp_path_factory):
    root = tmp_path_factory.mktemp("steel_det_rec")
    return convert_cli(root, raw, str(root / "rec"), seed=42)


def test_same_seed_same_folds_and_shards(tmp_path, raw, records):
    again = convert_cli(tmp_path, raw, str(tmp_path / "again"), seed=42)
    names = sorted(n for n in os.listdir(records)
                   if n.endswith((".csv", ".tfrec")))
    assert "folds.csv" in names
    match, mismatch, errors = filecmp.cmpfiles(records, again, names,
                                               shallow=False)
    assert (mismatch, errors) == ([], [])
    folds = pd.read_csv(os.path.join(records, "folds.csv"))
    assert sorted(folds["fold"].unique()) == [0, 1]
    # The seed is what fixes them: another seed moves some images.
    other = convert_cli(tmp_path, raw, str(tmp_path / "other"), seed=7)
    moved = pd.read_csv(os.path.join(other, "folds.csv"))
    assert not moved.sort_values("id")["fold"].equals(
        folds.sort_values("id")["fold"])


def test_same_seed_same_batches_and_initial_weights(tmp_path, raw,
                                                    records):
    """The inputs of the first step repeat: data order and init."""
    from kaggle_tf.data import pipeline

    cfg = config_lib.load(CONFIG, overrides(tmp_path, raw, records))

    def first_batches():
        ds = pipeline.make_dataset(cfg, [1], training=True,
                                   sample_rate=0.5, batch_size=2)
        return [{k: v.numpy() for k, v in b.items()} for b in ds.take(3)]

    def initial_weights():
        keras.utils.set_random_seed(cfg.seed)
        return image.build_model(cfg).get_weights()

    for a, b in zip(first_batches(), first_batches()):
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for a, b in zip(initial_weights(), initial_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_two_fresh_processes_same_first_epoch_loss(tmp_path, raw,
                                                   records):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO,
               CUDA_VISIBLE_DEVICES="")
    procs, dirs = [], []
    for name in ("a", "b"):
        root = tmp_path / name
        dirs.append(root / "out" / "fold0")
        cmd = [sys.executable, "-m", "kaggle_tf.fit", "--config", CONFIG,
               "--fold", "0"]
        for item in overrides(root, raw, records,
                              **{"train.jit_compile": True}):
            cmd += ["--set", item]
        procs.append(subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    try:
        logs = [p.communicate(timeout=FIT_TIMEOUT_S)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    rows = [pd.read_csv(d / "history.csv").iloc[0] for d in dirs]
    # Bit-identical on one CPU; the tolerance only allows for summation
    # order differences between machines.
    for key in ("loss", "val_loss", "kaggle_metric", "val_kaggle_metric"):
        np.testing.assert_allclose(rows[0][key], rows[1][key], rtol=1e-6,
                                   err_msg=key)
    assert np.isfinite(rows[0]["loss"])
