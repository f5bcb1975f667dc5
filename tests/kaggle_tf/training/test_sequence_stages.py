"""The sequence stage runs the shared stage loop: every stage option of
the image trainer applies (plateau, TensorBoard, backups and resume after
an interruption, freeze_encoder, loss weights).

The slice classifier is not needed: each fold's cached `embeddings.npz`
is written first (toy series where a slice's label depends on the whole
series), so `train_fold` starts at the sequence model.
"""

import json
import os

import keras
import numpy as np
import pandas as pd
import pytest

from kaggle_tf import config as config_lib
from kaggle_tf import layout
from kaggle_tf.training import callbacks as cbs
from kaggle_tf.training import run
from kaggle_tf.training import sequence
from kaggle_tf.training import stages
from series_toys import toy_data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
CONFIG = os.path.join(REPO, "configs", "rsna_ich_seq.json")


def make_cfg(tmp_path, stages_, **extra):
    values = {"output_dir": str(tmp_path / "seq"),
              "model.embedding_model": str(tmp_path / "classifier"),
              "data.folds": 2, "train.batch_size": 4,
              "train.steps_per_epoch": 2, "train.verbose": 0,
              "train.jit_compile": False, "callbacks.top_k": 1,
              "callbacks.average_top_k": False,
              "model.units": 4, "model.num_layers": 1,
              "model.dropout": 0.0, "schedule.stages": stages_}
    values.update(extra)
    cfg = config_lib.load(CONFIG, [f"{k}={json.dumps(v)}"
                                   for k, v in values.items()])
    data = toy_data(n_series=16, length=6)
    for fold in range(2):
        fold_dir = layout.RunLayout.of(cfg).fold_dir(fold)
        os.makedirs(fold_dir, exist_ok=True)
        np.savez(os.path.join(fold_dir, layout.EMBEDDINGS), **data)
    return cfg


class Interrupted(Exception):
    pass


class Spy(cbs.NaNGuard):
    """NaNGuard that records each stage's callbacks, the recurrent
    layers' trainability and epoch starts, and can raise at the n-th."""

    stages = []
    started = []
    raise_at = None

    def on_train_begin(self, logs=None):
        rnn = [l for l in self.model.layers if l.name.startswith("rnn_")]
        Spy.stages.append({
            "callbacks": [type(c).__name__ for c in self._callbacks()],
            "rnn_trainable": [l.trainable for l in rnn],
            "lr": float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate)),
        })

    def _callbacks(self):
        return Spy.current

    def on_epoch_begin(self, epoch, logs=None):
        Spy.started.append(epoch)
        if len(Spy.started) == Spy.raise_at:
            raise Interrupted(f"interrupted at epoch {epoch}")


@pytest.fixture
def spy(monkeypatch):
    Spy.stages, Spy.started, Spy.raise_at, Spy.current = [], [], None, []
    built = []
    real_callbacks = stages.stage_callbacks
    real_loss = stages.stage_loss

    def callbacks(*args, **kwargs):
        Spy.current = real_callbacks(*args, **kwargs)
        return Spy.current

    def loss(cfg, stage):
        built.append(stage.loss_weights)
        return real_loss(cfg, stage)

    monkeypatch.setattr(cbs, "NaNGuard", Spy)
    monkeypatch.setattr(stages, "stage_callbacks", callbacks)
    monkeypatch.setattr(stages, "stage_loss", loss)
    Spy.losses = built
    return Spy


STAGES = [
    {"epochs": 1, "lr": 1e-3, "scheduler": "reduce_on_plateau",
     "freeze_encoder": True, "loss_weights": [2.0, 1.0, 0.0]},
    {"epochs": 2, "lr": 5e-4, "scheduler": "cosine",
     "freeze_encoder": False},
]


def test_every_stage_option_reaches_the_sequence_model(tmp_path, spy):
    cfg = make_cfg(tmp_path, STAGES, **{"callbacks.tensorboard": True})
    fold_dir = sequence.train_fold(cfg, 0)
    assert len(spy.stages) == 2
    first, second = spy.stages
    assert "ReduceLROnPlateau" in first["callbacks"]
    assert "ReduceLROnPlateau" not in second["callbacks"]
    for stage in spy.stages:
        assert {"TensorBoard", "BackupAndRestore", "TopKCheckpoint",
                "SeriesKaggleMetric"} <= set(stage["callbacks"])
    # freeze_encoder freezes the recurrent layers, then unfreezes them.
    assert first["rnn_trainable"] == [False]
    assert second["rnn_trainable"] == [True]
    assert spy.losses == [[2.0, 1.0, 0.0], None]
    assert os.path.isdir(os.path.join(fold_dir, "logs"))
    history = pd.read_csv(os.path.join(fold_dir, layout.HISTORY))
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["stage"].tolist() == [0, 1, 1]
    assert "val_kaggle_metric" in history.columns


def test_an_interrupted_sequence_fold_resumes_where_it_stopped(
        tmp_path, spy):
    cfg = make_cfg(tmp_path, STAGES)
    fold_dir = layout.RunLayout.of(cfg).fold_dir(0)
    # Stage 0 (one epoch), then stage 1's first epoch, stopped at the
    # start of stage 1's second epoch.
    spy.raise_at = 3
    with pytest.raises(Interrupted):
        run.run(cfg, 0)
    assert os.path.exists(os.path.join(fold_dir, "stage0.done"))
    assert not os.path.exists(os.path.join(fold_dir, "stage1.done"))
    assert os.path.isdir(os.path.join(fold_dir, "backup", "stage1"))
    spy.started, spy.raise_at = [], None
    result = run.run(cfg, 0)
    # Only the missing epoch ran: Keras' BackupAndRestore resumed epoch 1.
    assert spy.started == [1]
    history = pd.read_csv(os.path.join(fold_dir, layout.HISTORY))
    assert history["epoch"].tolist() == [1, 2, 3]
    assert not os.path.exists(os.path.join(fold_dir, "backup"))
    assert result[0]["kaggle_metric"] == pytest.approx(
        layout.read_json(os.path.join(fold_dir, layout.METRICS))[
            "kaggle_metric"])
    spy.started = []
    run.run(cfg, 0)        # finished: nothing trains
    assert spy.started == []
