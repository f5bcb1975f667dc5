"""Two `python -m kaggle_tf.fit` workers on localhost: only the chief writes.

Both workers train the same steel fold under `train.strategy=multiworker`
(`TF_CONFIG` names both, loopback ports picked free; worker 0 is the
chief). The chief writes checkpoints, history, OOF and metrics to
`output_dir`; worker 1 trains and evaluates in a temporary folder (under its
own `TMPDIR` here) and removes it. The records are converted once before,
so the workers do not convert concurrently.
"""

import json
import os
import re
import sys

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
    from tfrecords_tools import convert
    from tfrecords_tools import sample

    raw, rec = str(tmp_path / "raw"), str(tmp_path / "rec")
    out = str(tmp_path / "out")
    assert sample.main(["--task", "steel", "--out", raw, "--n", "8",
                        "--size", "32x64", "--seed", "0"]) == 0
    sets = [a for o in _overrides(raw, rec, out) for a in ("--set", o)]
    assert convert.main(["--config", CONFIG, "--quiet", *sets]) == 0

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
