import json
import os

import keras
import numpy as np

from kaggle_tf.training import callbacks as cbs
from kaggle_tf import layout
from kaggle_tf.training import stages


def tiny_model(seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Dense(2)(inp))


def drive(cb, model, scores):
    cb.set_model(model)
    for epoch, score in enumerate(scores):
        cb.on_epoch_end(epoch, {"val_kaggle_metric": score})


def test_top_k_keeps_the_k_best_by_the_metric(tmp_path):
    model = tiny_model(0)
    cb = cbs.TopKCheckpoint(str(tmp_path), "val_kaggle_metric", "max", k=3)
    scores = [0.50, 0.70, 0.60, 0.65, 0.40, 0.80]
    drive(cb, model, scores)
    entries = json.loads((tmp_path / "checkpoints.json").read_text())
    assert [e["score"] for e in entries] == [0.80, 0.70, 0.65]
    assert [e["epoch"] for e in entries] == [5, 1, 3]
    kept = sorted(f for f in os.listdir(tmp_path) if f.startswith("ckpt-"))
    assert kept == sorted(e["file"] for e in entries)
    assert (tmp_path / "best.keras").exists()
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_top_k_min_mode(tmp_path):
    cb = cbs.TopKCheckpoint(str(tmp_path), "val_kaggle_metric", "min", k=2)
    drive(cb, tiny_model(0), [0.3, 0.1, 0.2, 0.5])
    entries = layout.read_checkpoints(str(tmp_path))
    assert [e["score"] for e in entries] == [0.1, 0.2]


def test_average_of_checkpoints_is_the_mean_of_weights(tmp_path):
    weights = []
    for i, seed in enumerate([1, 2, 3]):
        m = tiny_model(seed)
        cbs.save_model(m, str(tmp_path / f"ckpt-{i}.keras"))
        weights.append(m.get_weights())
    layout.write_json(str(tmp_path / "checkpoints.json"),
                   [{"file": f"ckpt-{i}.keras", "score": 1.0 - i / 10,
                     "epoch": i, "stage": 0} for i in range(3)])
    out = stages.average_checkpoints(str(tmp_path), str(tmp_path / "a.keras"))
    avg = keras.saving.load_model(out).get_weights()
    for j in range(len(avg)):
        np.testing.assert_allclose(
            avg[j], np.mean([w[j] for w in weights], axis=0), rtol=1e-6)


def test_stage_lr_sets_cosine_per_batch():
    model = tiny_model(0)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    cb = cbs.StageLR("cosine", 1.0, epochs=2, steps_per_epoch=4)
    cb.set_model(model)
    seen = []
    for epoch in range(2):
        cb.on_epoch_begin(epoch)
        for batch in range(4):
            cb.on_train_batch_begin(batch)
            seen.append(float(model.optimizer.learning_rate))
    t = np.arange(8) / 4
    np.testing.assert_allclose(seen, 0.5 * (1 + np.cos(np.pi * t / 2)),
                               rtol=1e-6)


def test_plot_history_writes_png(tmp_path):
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,stage,loss,val_loss,kaggle_metric,"
                   "val_kaggle_metric,lr\n1,0,1.0,1.1,0.2,0.3,0.001\n"
                   "2,0,0.8,0.9,0.4,0.5,0.0005\n")
    out = cbs.plot_history(str(csv), str(tmp_path / "history.png"))
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_nan_guard_stops_with_a_message():
    model = tiny_model(0)
    guard = cbs.NaNGuard()
    guard.set_model(model)
    model.stop_training = False
    guard.on_train_batch_end(0, {"loss": 0.5})
    assert not model.stop_training and guard.message is None
    guard.on_train_batch_end(3, {"loss": float("nan")})
    assert model.stop_training
    assert "batch 3" in guard.message and "optimizer.lr" in guard.message
