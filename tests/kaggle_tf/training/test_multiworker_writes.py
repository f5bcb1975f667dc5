"""Two `python -m kaggle_tf.fit` workers on localhost: only the chief writes.

Both workers train the same steel fold under `train.strategy=multiworker`
(`TF_CONFIG` names both, loopback ports picked free; worker 0 is the
chief). The chief writes checkpoints, history, OOF and metrics to
`output_dir`; worker 1 trains and evaluates in a temporary folder (under its
own `TMPDIR` here) and removes it. The records are missing at the start:
the chief converts them while worker 1 waits for the manifest.

A cluster killed in the middle of an epoch (SIGKILL, every worker) and
started again resumes from the chief's backup on every worker and ends
with the files and scores of an uninterrupted cluster.

Also, in process: a non-chief worker that finds no manifest in
`data.records_wait_s` stops naming that key, and a non-chief worker's
scratch folder starts as a copy of the chief's run (so a restarted
cluster resumes in step).
"""

import json
import os
import re
import sys

import numpy as np
import pytest

import localhost_workers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
CONFIG = os.path.join(REPO, "configs", "steel.json")
TIMEOUT_S = 240


def _overrides(raw, rec, out):
    values = {
        "data.raw_dir": raw, "data.records_dir": rec, "output_dir": out,
        "data.image_size": [32, 64], "data.folds": 2,
        "data.shuffle_buffer": 4, "model.encoder": "test_resnet",
        "model.encoder_weights": None,
        "model.decoder_channels": [8, 8, 8, 4, 4],
        "augment.transforms": None, "train.epochs": 1,
        "train.batch_size": 1, "train.steps_per_epoch": 2,
        "train.validation_steps": 1, "train.jit_compile": False,
        "train.verbose": 0, "train.strategy": "multiworker",
        "callbacks.top_k": 1,
    }
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}"
            for k, v in values.items()]


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, names in os.walk(root) for f in names)


def test_only_the_chief_writes_the_run(tmp_path):
    from tfrecords_tools import sample

    raw, rec = str(tmp_path / "raw"), str(tmp_path / "rec")
    out = str(tmp_path / "out")
    assert sample.main(["--task", "steel", "--out", raw, "--n", "8",
                        "--size", "32x64", "--seed", "0"]) == 0
    sets = [a for o in _overrides(raw, rec, out) for a in ("--set", o)]

    tmpdirs = [tmp_path / f"tmp{index}" for index in range(2)]
    for tmpdir in tmpdirs:
        tmpdir.mkdir()
    ended = localhost_workers.run_workers(
        lambda index: [sys.executable, "-m", "kaggle_tf.fit", "--config",
                       CONFIG, "--fold", "0", *sets],
        lambda index: {"TMPDIR": str(tmpdirs[index]), "PYTHONPATH": REPO},
        cwd=REPO, timeout=TIMEOUT_S)
    logs = [log for _, log in ended]
    for index, (code, log) in enumerate(ended):
        assert code == 0, f"worker {index}:\n{log[-3000:]}"
        # Each worker trained and evaluated its fold.
        assert "fold 0: kaggle_metric" in log, log[-2000:]

    # Only the chief converted. Worker 1 either waited for the manifest or,
    # started later than the chief finished, found it (both are right;
    # the waiting itself is tested below).
    assert "converting" in logs[0] and "converting" not in logs[1], logs[1]
    assert os.path.exists(os.path.join(rec, "manifest.json"))

    # Worker 1 said where it wrote; that folder and its TMPDIR are empty now.
    scratch = re.findall(r"not the chief worker: writing to (\S+)", logs[1])
    assert len(scratch) == 1, logs[1][-2000:]
    assert scratch[0].startswith(str(tmpdirs[1]))
    assert not os.path.exists(scratch[0])
    assert _files(tmpdirs[1]) == []
    assert "not the chief worker" not in logs[0]

    # output_dir holds the chief's run, once: no second writer's files.
    files = _files(out)
    for name in ("fold0/best.keras", "fold0/history.csv", "fold0/oof.npz",
                 "fold0/metrics.json", "fold0/checkpoints.json"):
        assert name in files, files
    assert not [f for f in files if "worker" in f or f.endswith(".tmp")], files
    with open(os.path.join(out, "fold0", "metrics.json")) as f:
        assert json.load(f)["fold"] == 0


def _cluster_fit(raw, rec, out, tmp, extra=(), kill=None):
    """Both workers fit fold 0; returns [(returncode, log)]."""
    from tfrecords_tools import faults

    sets = [a for o in [*_overrides(raw, rec, out), *extra]
            for a in ("--set", o)]
    for index in range(2):
        os.makedirs(os.path.join(tmp, f"tmp{index}"), exist_ok=True)

    def env(index):
        e = {"TMPDIR": os.path.join(tmp, f"tmp{index}"), "PYTHONPATH": REPO}
        if kill:
            e[faults.ENV] = kill
        return e

    saved = os.environ.pop(faults.ENV, None)
    try:
        return localhost_workers.run_workers(
            lambda index: [sys.executable, "-m", "kaggle_tf.fit", "--config",
                           CONFIG, "--fold", "0", *sets],
            env, cwd=REPO, timeout=TIMEOUT_S)
    finally:
        if saved is not None:
            os.environ[faults.ENV] = saved


def test_a_killed_cluster_restarts_where_the_chief_stopped(tmp_path):
    import pandas as pd

    from tfrecords_tools import sample

    raw, rec = str(tmp_path / "raw"), str(tmp_path / "rec")
    assert sample.main(["--task", "steel", "--out", raw, "--n", "8",
                        "--size", "32x64", "--seed", "0"]) == 0
    # Three epochs of two steps; the kill lands after the third batch (in
    # the second epoch, after the first epoch's backup).
    # Every epoch validates the whole fold (a partial `validation_steps`
    # would go on where the previous epoch's validation stopped).
    extra = ["train.epochs=3", "train.deterministic=true",
             "train.validation_steps=null"]
    clean, killed = str(tmp_path / "clean"), str(tmp_path / "killed")
    for code, log in _cluster_fit(raw, rec, clean, str(tmp_path / "t1"),
                                  extra):
        assert code == 0, log[-3000:]
    ended = _cluster_fit(raw, rec, killed, str(tmp_path / "t2"), extra,
                         kill="batch:3")
    assert [code for code, _ in ended] == [-9, -9], \
        [log[-2000:] for _, log in ended]
    assert not os.path.exists(os.path.join(killed, "fold0", "metrics.json"))
    ended = _cluster_fit(raw, rec, killed, str(tmp_path / "t3"), extra)
    for code, log in ended:
        assert code == 0, log[-3000:]
    assert f"starting from a copy of {killed}" in ended[1][1]

    # The chief's run equals the uninterrupted one: every epoch once, the
    # same training, the same weights, the same out-of-fold scores.
    a = pd.read_csv(os.path.join(killed, "fold0", "history.csv"))
    b = pd.read_csv(os.path.join(clean, "fold0", "history.csv"))
    assert list(a["epoch"]) == list(b["epoch"]) == [1, 2, 3]
    train_columns = [c for c in b.columns if not c.startswith("val_")]
    pd.testing.assert_frame_equal(a[train_columns], b[train_columns],
                                  rtol=1e-5)
    # The per-epoch validation of the epoch the restart begins with was
    # seen to differ in the 4th digit (the weights do not: below).
    pd.testing.assert_frame_equal(a.drop(columns=train_columns),
                                  b.drop(columns=train_columns), rtol=1e-3)
    for name in ("best.keras", "checkpoints.json"):
        assert os.path.exists(os.path.join(killed, "fold0", name)), name
    got, want = (_weights(os.path.join(run, "fold0", "best.keras"))
                 for run in (killed, clean))
    assert len(got) == len(want) > 50
    for i, (x, y) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(x, y, err_msg=f"weight {i}")
    with open(os.path.join(killed, "fold0", "metrics.json")) as f:
        got = json.load(f)
    with open(os.path.join(clean, "fold0", "metrics.json")) as f:
        want = json.load(f)
    assert got.keys() == want.keys()
    for key, value in want.items():
        if key == "checkpoints":    # their per-epoch validation scores
            assert [{**c, "score": None} for c in got[key]] == \
                [{**c, "score": None} for c in value]
            assert [c["score"] for c in got[key]] == pytest.approx(
                [c["score"] for c in value], rel=1e-3)
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-6), key
        else:
            assert got[key] == value, key


def _weights(path):
    import keras

    import kaggle_tf.models  # noqa: F401  (registers the layers)

    return [w.numpy() for w in keras.saving.load_model(
        path, compile=False).weights]


def _worker_env(monkeypatch, index):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": index}}))


def test_a_worker_waits_for_the_chiefs_records_then_stops(tmp_path,
                                                          monkeypatch):
    from kaggle_tf import config as config_lib
    from kaggle_tf import fit

    raw, rec = str(tmp_path / "raw"), str(tmp_path / "rec")
    cfg = config_lib.load(CONFIG, _overrides(raw, rec, str(tmp_path / "o"))
                          + ["data.records_wait_s=0.3"])
    _worker_env(monkeypatch, 1)
    with pytest.raises(config_lib.ConfigError) as raised:
        fit.ensure_records(cfg, poll_s=0.05)
    message = str(raised.value)
    assert message.startswith("data.records_wait_s: no "), message
    assert "chief worker" in message
    assert not os.path.exists(rec)          # the worker converted nothing
    os.makedirs(rec)
    with open(os.path.join(rec, "manifest.json"), "w") as f:
        f.write("{}")
    assert fit.ensure_records(cfg, poll_s=0.05).endswith("manifest.json")


def test_a_worker_starts_from_a_copy_of_the_chiefs_run(tmp_path,
                                                       monkeypatch):
    from kaggle_tf import config as config_lib
    from kaggle_tf.training import run

    out = tmp_path / "out"
    (out / "fold0" / "backup" / "stage0").mkdir(parents=True)
    (out / "fold0" / "backup" / "stage0" / "state.json").write_text("{}")
    (out / "fold0" / "ckpt.tmp-99.keras").write_text("x")
    cfg = config_lib.load(CONFIG, _overrides("r", "q", str(out)))
    seen = {}

    def fake_run(worker_cfg, folds):
        seen["dir"] = worker_cfg.output_dir
        seen["files"] = _files(worker_cfg.output_dir)
        return {}

    monkeypatch.setattr(run, "_run", fake_run)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    _worker_env(monkeypatch, 1)
    run.run(cfg, 0)
    assert seen["dir"] != str(out)
    assert seen["files"] == ["fold0/backup/stage0/state.json"]
    assert not os.path.exists(seen["dir"])          # removed afterwards
    assert _files(out) == ["fold0/backup/stage0/state.json",
                           "fold0/ckpt.tmp-99.keras"]   # untouched


def test_a_copy_that_sees_the_chief_remove_files_is_taken_again(
        tmp_path, monkeypatch):
    """The chief removes a finished stage's backup and writes its next
    state while a worker copies its run: the worker's copy is the new
    state, not a mix of both."""
    import shutil

    from kaggle_tf import layout

    src, dst = tmp_path / "run", tmp_path / "copy"
    (src / "fold0" / "backup" / "stage0").mkdir(parents=True)
    (src / "fold0" / "backup" / "stage0" / "state.json").write_text("{}")
    (src / "fold0" / "history.csv").write_text("epoch\n0\n")
    dst.mkdir()
    real_copy = shutil.copy2
    calls = []

    def chief_moves_on(source, target):
        calls.append(os.path.relpath(source, src))
        if calls.count(os.path.join("fold0", "history.csv")) == 1 \
                and source.endswith("history.csv"):
            shutil.rmtree(src / "fold0" / "backup")
            (src / "fold0" / "stage0.done").write_text("")
            (src / "fold0" / "history.csv").write_text("epoch\n0\n1\n")
        return real_copy(source, target)

    monkeypatch.setattr(shutil, "copy2", chief_moves_on)
    vanished = layout.copy_run(str(src), str(dst), wait_s=0.0)
    assert vanished == []
    assert _files(dst) == _files(src) == ["fold0/history.csv",
                                          "fold0/stage0.done"]
    assert (dst / "fold0" / "history.csv").read_text() == "epoch\n0\n1\n"
    # Backup copied before history or not, the first copy was retaken.
    assert len(calls) > 2


def test_a_copy_of_a_run_that_keeps_changing_says_what_vanished(tmp_path,
                                                                monkeypatch):
    import shutil

    from kaggle_tf import layout

    src, dst = tmp_path / "run", tmp_path / "copy"
    src.mkdir()
    dst.mkdir()
    (src / "a.json").write_text("{}")

    def always_gone(source, target):
        raise FileNotFoundError(source)

    monkeypatch.setattr(shutil, "copy2", always_gone)
    assert layout.copy_run(str(src), str(dst), attempts=2,
                           wait_s=0.0) == ["a.json"]
