"""A 2-fold Severstal run killed again and again ends as if never killed.

The same `python -m kaggle_tf.fit` command (which converts the raw files
first) is SIGKILLed at five moments, each time rerun: during the
conversion, in an epoch, while a checkpoint is written, while an
out-of-fold file is written and while the folds are gathered
(`tfrecords_tools.faults`: the kill lands after a temporary file is
written and before its rename). The last run finishes. Its records, its
files and its metrics.json equal those of one uninterrupted run
(`train.deterministic`, on the CPU), the recipe's random augmentation
included (each step's draws come from the seed and the step).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd

from e2e_commands import ROOT
from e2e_commands import run
from tfrecords_tools import faults

KILLS = ["shard:2", "batch:3", "checkpoint:2", "oof:1", "gather:1"]
STEEL = os.path.join(ROOT, "configs", "steel.json")


def fit(base, raw, kill=None):
    overrides = [
        f"data.raw_dir={raw}", f"data.records_dir={base / 'records'}",
        f"output_dir={base / 'run'}", "data.image_size=[32,64]",
        "data.folds=2", "data.shard_size=4", "model.encoder=test_resnet",
        "model.decoder_channels=[8,8,8,4,4]", "train.epochs=2",
        "train.batch_size=2", "train.steps_per_epoch=3",
        "train.validation_steps=2", "train.deterministic=true",
        "train.jit_compile=false", "train.verbose=0",
        "callbacks.top_k=2",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop(faults.ENV, None)
    if kill:
        env[faults.ENV] = kill
    return subprocess.run(
        [sys.executable, "-m", "kaggle_tf.fit", "--config", STEEL,
         "--set", *overrides], capture_output=True, text=True, cwd=ROOT,
        env=env, timeout=600)


def listing(folder):
    """Every file under `folder`, relative, without TensorBoard logs."""
    out = []
    for root, _, files in os.walk(folder):
        for name in files:
            out.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(p for p in out if not p.startswith("logs"))


def read_metrics(base):
    with open(base / "run" / "metrics.json", encoding="utf-8") as f:
        return json.load(f)


def test_killed_five_times_ends_like_an_uninterrupted_run(tmp_path):
    raw = tmp_path / "severstal-steel-defect-detection"
    run("tfrecords_tools.sample", "--task", "steel", "--out", str(raw),
        "--n", "16", "--size", "32x64", "--seed", "3")
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    done = fit(clean, raw)
    assert done.returncode == 0, done.stderr[-3000:]

    for kill in KILLS:
        proc = fit(killed, raw, kill)
        assert proc.returncode == -9, (kill, proc.returncode,
                                       proc.stderr[-3000:])
    last = fit(killed, raw)
    assert last.returncode == 0, last.stderr[-3000:]

    # The records: same shards, same manifest content.
    assert listing(killed / "records") == listing(clean / "records")
    with open(clean / "records" / "manifest.json") as f:
        want = json.load(f)
    with open(killed / "records" / "manifest.json") as f:
        got = json.load(f)
    assert got["splits"] == want["splits"]
    # The run: the same files (no temporary left over), the same scores.
    assert listing(killed / "run") == listing(clean / "run")
    assert not [p for p in listing(killed / "run") if ".tmp-" in p]
    assert read_metrics(killed) == read_metrics(clean)
    for k in range(2):
        fold = os.path.join("run", f"fold{k}")
        with open(killed / fold / "metrics.json") as f:
            got = json.load(f)
        with open(clean / fold / "metrics.json") as f:
            want = json.load(f)
        assert got == want, k
        a = pd.read_csv(killed / fold / "history.csv")
        b = pd.read_csv(clean / fold / "history.csv")
        pd.testing.assert_frame_equal(a, b)
    with np.load(killed / "run" / "oof.npz", allow_pickle=False) as a, \
            np.load(clean / "run" / "oof.npz", allow_pickle=False) as b:
        for key in ("ids", "probs", "truth"):
            np.testing.assert_array_equal(a[key], b[key])
