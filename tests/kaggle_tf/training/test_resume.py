"""The training loop resumes where it stopped and skips finished folds.

A tiny Severstal sample (`tfrecords_tools.sample`, 32 x 64 images) is
converted once per module; each test trains fold 0 of 2 with the test
encoder for a few steps.

- In-process (fast): a 2-stage schedule (1e-3 constant, then 1e-4 cosine
  with a sample rate) interrupted by an exception at the start of its
  third epoch (stage 2, after that stage's first backup), run again, then
  a third time. history.csv has each epoch once, the stage and the LR each
  stage promises; the second run trains only the missing epoch; the third
  trains nothing.
- Subprocesses (slow): `python -m kaggle_tf.fit` SIGKILLed once the first
  backup exists, in a one-stage and in a two-stage run, then rerun.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from kaggle_tf import config as config_lib
from kaggle_tf.training import callbacks as cbs
from kaggle_tf.training import run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
CONFIG = os.path.join(REPO, "configs", "steel.json")
LR1, LR2 = 1e-3, 1e-4
STAGES = [{"epochs": 1, "lr": LR1, "scheduler": "constant"},
          {"epochs": 2, "lr": LR2, "scheduler": "cosine",
           "sample_rate": 0.5}]
STEPS = 2
FIT_TIMEOUT_S = 300


def tiny_overrides(root, records, **extra):
    """`--set` values for a few-second steel run in `root`."""
    values = {
        "data.raw_dir": records["raw"], "data.records_dir": records["rec"],
        "output_dir": os.path.join(str(root), "out"),
        "data.image_size": [32, 64], "data.folds": 2,
        "data.shuffle_buffer": 4, "model.encoder": "test_resnet",
        "model.decoder_channels": [8, 8, 8, 4, 4],
        "augment.transforms": None, "train.epochs": 3,
        "train.batch_size": 2, "train.steps_per_epoch": STEPS,
        "train.validation_steps": 1, "train.jit_compile": False,
        "train.verbose": 2, "callbacks.top_k": 1,
    }
    values.update(extra)
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
            for k, v in values.items()]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A 12-image steel sample and its records (2 folds), via the CLIs."""
    from tfrecords_tools import convert
    from tfrecords_tools import sample

    root = tmp_path_factory.mktemp("steel_loop")
    raw, rec = str(root / "raw"), str(root / "rec")
    assert sample.main(["--task", "steel", "--out", raw, "--n", "12",
                        "--size", "32x64", "--seed", "0"]) == 0
    paths = {"raw": raw, "rec": rec}
    args = ["--config", CONFIG, "--quiet"]
    for item in tiny_overrides(root, paths):
        args += ["--set", item]
    assert convert.main(args) == 0
    return paths


def promised_lrs(stages, steps):
    """The LR of each epoch's last batch (what history.csv logs)."""
    lrs = []
    for stage in stages:
        for epoch in range(stage["epochs"]):
            t = epoch + (steps - 1) / steps
            if stage["scheduler"] == "constant":
                lrs.append(stage["lr"])
            else:  # cosine from lr to 0 over the stage
                frac = t / stage["epochs"]
                lrs.append(0.5 * stage["lr"] * (1 + math.cos(math.pi * frac)))
    return lrs


def check_history(fold_dir, stages):
    history = pd.read_csv(os.path.join(fold_dir, "history.csv"))
    total = sum(s["epochs"] for s in stages)
    assert history["epoch"].tolist() == list(range(1, total + 1))
    want_stage = [i for i, s in enumerate(stages) for _ in range(s["epochs"])]
    assert history["stage"].tolist() == want_stage
    for got, want in zip(history["lr"], promised_lrs(stages, STEPS)):
        assert got == pytest.approx(want, rel=1e-6)
    for s in range(len(stages)):
        assert os.path.exists(os.path.join(fold_dir, f"stage{s}.done"))
    assert not os.path.exists(os.path.join(fold_dir, "backup"))
    return history


class Interrupted(Exception):
    pass


class EpochLog(cbs.NaNGuard):
    """NaNGuard that records epoch starts and can raise at the n-th."""

    started = []
    raise_at = None

    def on_epoch_begin(self, epoch, logs=None):
        EpochLog.started.append(epoch)
        if len(EpochLog.started) == EpochLog.raise_at:
            raise Interrupted(f"interrupted at epoch {epoch}")


# Keras warns while run.train_fold does not pass shuffle=False to fit.
@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed:UserWarning")
def test_staged_run_resumes_in_stage_2_with_the_promised_lrs(
        tmp_path, records, monkeypatch):
    cfg = config_lib.load(CONFIG, tiny_overrides(
        tmp_path, records, **{"schedule.stages": STAGES,
                              "train.verbose": 0}))
    fold_dir = os.path.join(cfg.output_dir, "fold0")
    monkeypatch.setattr(cbs, "NaNGuard", EpochLog)

    # 1: stage 0 (one epoch), stage 1 epoch 0, then stopped.
    EpochLog.started, EpochLog.raise_at = [], 3
    with pytest.raises(Interrupted):
        run.run(cfg, 0)
    assert EpochLog.started == [0, 0, 1]
    assert os.path.exists(os.path.join(fold_dir, "stage0.done"))
    assert not os.path.exists(os.path.join(fold_dir, "stage1.done"))
    assert os.path.exists(os.path.join(
        fold_dir, "backup", "stage1", "training_metadata.json"))
    before = pd.read_csv(os.path.join(fold_dir, "history.csv"))
    assert before["epoch"].tolist() == [1, 2]

    # 2: only stage 1's second epoch is trained.
    EpochLog.started, EpochLog.raise_at = [], None
    result = run.run(cfg, 0)
    assert EpochLog.started == [1]
    history = check_history(fold_dir, STAGES)
    pd.testing.assert_frame_equal(history.iloc[:2], before)
    metrics_path = os.path.join(fold_dir, "metrics.json")
    mtime = os.stat(metrics_path).st_mtime_ns

    # 3: the finished fold is skipped.
    again = run.run(cfg, 0)
    assert EpochLog.started == [1]
    assert os.stat(metrics_path).st_mtime_ns == mtime
    assert again[0]["kaggle_metric"] == result[0]["kaggle_metric"]


# --- real kills, in subprocesses ------------------------------------------


def fit_command(overrides):
    cmd = [sys.executable, "-m", "kaggle_tf.fit", "--config", CONFIG,
           "--fold", "0"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO,
                CUDA_VISIBLE_DEVICES="")


def run_fit(overrides):
    proc = subprocess.run(fit_command(overrides), cwd=REPO, env=_env(),
                          capture_output=True, text=True,
                          timeout=FIT_TIMEOUT_S)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def fit_and_kill(overrides, marker):
    """Starts fit, SIGKILLs it once `marker` exists; returns its output."""
    proc = subprocess.Popen(fit_command(overrides), cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + FIT_TIMEOUT_S
    try:
        while not os.path.exists(marker):
            if proc.poll() is not None:
                raise AssertionError("fit ended before the backup:\n"
                                     + proc.stdout.read()[-4000:])
            if time.time() > deadline:
                raise AssertionError("no backup within the time limit")
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        return proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def epochs_started(output):
    """Keras' "Epoch k/n" lines, as (k, n)."""
    return [tuple(int(v) for v in line.split()[1].split("/"))
            for line in output.splitlines() if line.startswith("Epoch ")]


@pytest.mark.slow
def test_sigkill_resume_one_stage(tmp_path, records):
    overrides = tiny_overrides(tmp_path, records)
    fold_dir = os.path.join(str(tmp_path), "out", "fold0")
    marker = os.path.join(fold_dir, "backup", "stage0",
                          "training_metadata.json")
    first = fit_and_kill(overrides, marker)
    assert (1, 3) in epochs_started(first)
    assert not os.path.exists(os.path.join(fold_dir, "metrics.json"))
    with open(marker, encoding="utf-8") as f:
        done = json.load(f)["epoch"]
    assert done >= 1

    second = run_fit(overrides)
    assert epochs_started(second) == [(k, 3) for k in range(done + 1, 4)]
    stages = [{"epochs": 3, "lr": 3e-4, "scheduler": "constant"}]
    check_history(fold_dir, stages)
    metrics_path = os.path.join(fold_dir, "metrics.json")
    mtime = os.stat(metrics_path).st_mtime_ns

    third = run_fit(overrides)
    assert "done before" in third
    assert epochs_started(third) == []
    assert os.stat(metrics_path).st_mtime_ns == mtime


@pytest.mark.slow
def test_sigkill_resume_in_stage_2(tmp_path, records):
    overrides = tiny_overrides(tmp_path, records,
                               **{"schedule.stages": STAGES})
    fold_dir = os.path.join(str(tmp_path), "out", "fold0")
    marker = os.path.join(fold_dir, "backup", "stage1",
                          "training_metadata.json")
    fit_and_kill(overrides, marker)
    assert os.path.exists(os.path.join(fold_dir, "stage0.done"))
    assert not os.path.exists(os.path.join(fold_dir, "stage1.done"))

    second = run_fit(overrides)
    assert "stage 0:" not in second          # stage 0 is not retrained
    assert "fold 0 stage 1:" in second
    assert epochs_started(second) == [(2, 2)]
    check_history(fold_dir, STAGES)
