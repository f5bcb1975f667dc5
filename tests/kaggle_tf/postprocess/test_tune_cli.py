"""`python -m kaggle_tf.tune`: OOF files -> postprocess.json."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kaggle_tf import tune as tune_cli
from kaggle_tf.metrics import kaggle as metrics
from kaggle_tf.postprocess import thresholds
from kaggle_tf.postprocess import triplet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def write_config(tmp_path, task, **inference):
    cfg = {"task": task, "output_dir": str(tmp_path / "run"),
           "inference": {"thresholds": [0.5], "min_area": [0], **inference}}
    path = tmp_path / f"{task}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def save_oof(folder, ids, probs, truth):
    os.makedirs(folder, exist_ok=True)
    np.savez_compressed(os.path.join(folder, "oof.npz"), ids=ids,
                        probs=probs.astype(np.float16), truth=truth)


def disc_masks(rng, n, size, present=0.5):
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        if rng.random() < present:
            cy, cx = rng.integers(6, size - 6, 2)
            out[i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= 16
    return out


def steel_oof(rng, n=20, size=32):
    """Class 0 perfect for t in [0.2, 0.7); class 1 for t in [0.1, 0.35)
    with a min area in (4, 49] px, because of 4-pixel 0.9 specks."""
    truth = np.stack([disc_masks(rng, n, size), disc_masks(rng, n, size)],
                     axis=-1)
    noise = rng.uniform(0, 1, truth.shape)
    probs = np.where(truth == 1, [0.7, 0.35], 0.0) + noise * [0.2, 0.1]
    for i in np.flatnonzero(truth[..., 1].sum(axis=(1, 2)) == 0):
        probs[i, 1:3, 1:3, 1] = 0.9
    return probs, truth


def test_steel_from_fold_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    probs, truth = steel_oof(rng)
    ids = np.array([f"img{i}" for i in range(len(probs))])
    run = tmp_path / "run"
    save_oof(run / "fold0", ids[:12], probs[:12], truth[:12])
    save_oof(run / "fold1", ids[12:], probs[12:], truth[12:])
    config = write_config(tmp_path, "steel")
    # Pixels at the model's (= the OOF masks') resolution.
    code = tune_cli.main(["--config", config, "--min-areas", "0,2,4,8,16"])
    assert code == 0
    out = json.loads((run / "postprocess.json").read_text())
    assert out["task"] == "steel" and out["triplet"] is None
    assert 0.2 <= out["thresholds"][0] < 0.7
    assert 0.1 <= out["thresholds"][1] < 0.35
    assert out["min_area"] == [0, 8]
    assert out["image_size"] == [32, 32] and out["images"] == 20
    assert out["metric_after"] == 1.0
    # Before: 0.5 everywhere, no min area -> class 1 is mostly missed.
    pred = thresholds.apply(probs.astype(np.float16), 0.5, 0)
    assert out["metric_before"] == pytest.approx(
        metrics.mean_dice(truth, pred))
    assert out["metric_before"] < 0.9
    stdout = capsys.readouterr().out
    assert "mean_dice before" in stdout and "mean_dice after" in stdout
    assert sorted(os.listdir(run)) == ["fold0", "fold1", "postprocess.json"]


def test_siim_triplet(tmp_path):
    rng = np.random.default_rng(1)
    truth = disc_masks(rng, 24, 32)
    probs = rng.uniform(0, 0.2, truth.shape)
    probs[truth == 1] = 0.4
    for i in range(len(truth)):
        if truth[i].any():  # a confident 3 x 3 core in the disc
            ys, xs = np.nonzero(truth[i])
            cy, cx = int(ys.mean()), int(xs.mean())
            probs[i, cy - 1:cy + 2, cx - 1:cx + 2] = 0.9
        else:  # a 6 x 6 decoy at 0.5 in empty images
            probs[i, 2:8, 2:8] = 0.5
    save_oof(tmp_path / "run", np.arange(24).astype(str), probs[..., None],
             truth[..., None])
    config = write_config(tmp_path, "siim")
    assert tune_cli.main(["--config", config]) == 0
    out = json.loads((tmp_path / "run" / "postprocess.json").read_text())
    top, area, bottom = out["triplet"]
    assert out["metric"] == "siim_dice"
    assert out["thresholds"] == [bottom] and out["min_area"] == [area]
    # The core (9 px at 0.9) passes a top > 0.5, the decoys do not; the
    # rims (0.4) need bottom < 0.4, the background (< 0.2) bottom >= 0.2.
    assert 0.5 <= top < 0.9 and 0.2 <= bottom < 0.4
    assert 0 <= area <= 9 and out["image_size"] == [32, 32]
    pred = triplet(probs.astype(np.float16), top, area, bottom)
    assert metrics.siim_dice(truth, pred) == out["metric_after"] == 1.0
    assert out["metric_before"] < 0.9


def test_protein_per_class_thresholds(tmp_path):
    rng = np.random.default_rng(2)
    truth = (rng.random((80, 28)) < 0.3).astype(np.uint8)
    probs = truth * 0.5 + rng.uniform(0, 0.4, truth.shape)
    save_oof(tmp_path / "run", np.arange(80).astype(str), probs, truth)
    config = write_config(tmp_path, "protein",
                          thresholds=[0.45])
    assert tune_cli.main(["--config", config]) == 0
    out = json.loads((tmp_path / "run" / "postprocess.json").read_text())
    assert len(out["thresholds"]) == 28 and out["min_area"] is None
    assert out["metric_after"] == 1.0
    assert all(0.4 <= t < 0.5 for t in out["thresholds"])
    assert out["metric_before"] == pytest.approx(metrics.f1_macro(
        truth, probs.astype(np.float16) > 0.45))


def test_rsna_ich_identity(tmp_path):
    rng = np.random.default_rng(3)
    truth = (rng.random((10, 6)) < 0.3).astype(np.uint8)
    probs = rng.uniform(0.05, 0.95, truth.shape)
    save_oof(tmp_path / "run", np.arange(10).astype(str), probs, truth)
    assert tune_cli.main(["--config", write_config(tmp_path,
                                                   "rsna_ich")]) == 0
    out = json.loads((tmp_path / "run" / "postprocess.json").read_text())
    assert out["thresholds"] is None and out["triplet"] is None
    loss = metrics.rsna_ich_log_loss(truth, probs.astype(np.float16))
    assert out["metric_before"] == out["metric_after"] == pytest.approx(
        loss)


def test_bad_config_key_exits_2_in_one_line(tmp_path):
    config = write_config(tmp_path, "steel")
    save_oof(tmp_path / "run", np.array(["a"]), np.zeros((1, 4, 4, 1)),
             np.zeros((1, 4, 4, 1), np.uint8))
    proc = subprocess.run(
        [sys.executable, "-m", "kaggle_tf.tune", "--config", config,
         "--set", "inference.treshold=0.4"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "inference.treshold" in lines[0] and "steel.json" in lines[0]
    assert not (tmp_path / "run" / "postprocess.json").exists()


def test_config_value_errors_exit_2(tmp_path, capsys):
    save_oof(tmp_path / "run", np.array(["a"]), np.zeros((1, 4, 4, 2)),
             np.zeros((1, 4, 4, 2), np.uint8))
    config = write_config(tmp_path, "steel", thresholds=[0.5, 0.5, 0.5])
    assert tune_cli.main(["--config", config]) == 2
    err = capsys.readouterr().err.strip()
    assert "inference.thresholds" in err and "steel.json" in err
    assert len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as info:
        tune_cli.main(["--config", config, "--set", "task=curling"])
    assert info.value.code == 2
    assert not (tmp_path / "run" / "postprocess.json").exists()


def test_missing_or_bad_oof(tmp_path, capsys):
    config = write_config(tmp_path, "steel")
    assert tune_cli.main(["--config", config]) == 1
    assert "fold*/oof.npz" in capsys.readouterr().err
    os.makedirs(tmp_path / "run")
    np.savez(tmp_path / "run" / "oof.npz", ids=np.array(["a"]),
             probs=np.zeros((1, 4, 4, 1)))
    assert tune_cli.main(["--config", config]) == 1
    err = capsys.readouterr().err
    assert "oof.npz: missing key 'truth'" in err
    assert tune_cli.main(["--config", config, "--thresholds", "a,b"]) == 2
