"""Training callbacks: stage LR, top-k checkpoints by the Kaggle metric,
learning curves as PNG, and a NaN stop that says what happened."""

import math
import os

import keras
import numpy as np

from kaggle_tf import layout
from tfrecords_tools import faults
from kaggle_tf.training import distribution
from kaggle_tf.training import schedules


class StageLR(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every batch of a stage.

    Args:
        scheduler: a name from `schedules.SCHEDULERS`.
        base_lr: the stage's learning rate.
        epochs: the stage's epochs.
        steps_per_epoch: batches per epoch.
        min_lr, restart_epochs: see `schedules.lr_at`.
    """

    def __init__(self, scheduler, base_lr, epochs, steps_per_epoch,
                 min_lr=0.0, restart_epochs=1, initial_epoch=0):
        super().__init__()
        self.scheduler = scheduler
        self.base_lr = base_lr
        self.epochs = epochs
        self.steps = max(int(steps_per_epoch), 1)
        self.min_lr = min_lr
        self.restart_epochs = restart_epochs
        self.initial_epoch = initial_epoch
        self._epoch = 0
        self.history = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch - self.initial_epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.scheduler == "reduce_on_plateau":
            return
        t = self._epoch + batch / self.steps
        lr = schedules.lr_at(self.scheduler, self.base_lr, t, self.epochs,
                             self.min_lr, self.restart_epochs)
        self.model.optimizer.learning_rate.assign(lr)

    def on_epoch_end(self, epoch, logs=None):
        lr = float(keras.ops.convert_to_numpy(
            self.model.optimizer.learning_rate))
        self.history.append(lr)
        if logs is not None:
            logs["lr"] = lr


def _better(mode, a, b):
    return a > b if mode == "max" else a < b


class TopKCheckpoint(keras.callbacks.Callback):
    """Keeps the `k` best checkpoints by `monitor` (the Kaggle metric).

    Files: `<directory>/ckpt-e{epoch:03d}.keras` for the kept ones,
    `best.keras` for the best, and `checkpoints.json` listing them with their
    scores, best first. Each file is written under a temporary name and
    renamed, so a killed run never leaves a checkpoint that looks complete.

    Args:
        directory: the fold's output folder.
        monitor: a key of the epoch logs, e.g. `"val_kaggle_metric"`.
        mode: `"max"` or `"min"`.
        k: how many to keep.
        epoch_offset: added to Keras' epoch index (for staged training).
    """

    def __init__(self, directory, monitor="val_kaggle_metric", mode="max",
                 k=1, epoch_offset=0, stage=0):
        super().__init__()
        self.directory = directory
        self.monitor = monitor
        self.mode = mode
        self.k = k
        self.epoch_offset = epoch_offset
        self.stage = stage
        self.index_path = os.path.join(directory, layout.CHECKPOINTS)
        self.entries = layout.read_checkpoints(directory)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(
                f"`callbacks.monitor` is {self.monitor!r} but the epoch logs "
                f"have only {sorted(logs)}")
        score = float(logs[self.monitor])
        if math.isnan(score):
            return
        epoch_id = epoch + self.epoch_offset
        worst = self.entries[-1]["score"] if self.entries else None
        if len(self.entries) >= self.k and not _better(self.mode, score,
                                                        worst):
            return
        name = f"ckpt-s{self.stage}-e{epoch_id:03d}.keras"
        save_model(self.model, os.path.join(self.directory, name))
        self.entries = [e for e in self.entries if e["file"] != name]
        self.entries.append({"file": name, "score": score,
                             "epoch": epoch_id, "stage": self.stage})
        self.entries.sort(key=lambda e: e["score"],
                          reverse=(self.mode == "max"))
        for dropped in self.entries[self.k:]:
            path = os.path.join(self.directory, dropped["file"])
            if os.path.exists(path):
                os.remove(path)
        self.entries = self.entries[:self.k]
        if self.entries[0]["file"] == name:
            save_model(self.model, os.path.join(self.directory, layout.BEST))
        layout.write_json(self.index_path, self.entries)


def save_model(model, path):
    """`model.save(path)` through a temporary name and an atomic rename."""
    tmp = f"{path[:-len('.keras')]}.tmp-{os.getpid()}.keras"
    with distribution.portable_batchnorm(model):
        model.save(tmp)
    faults.point("checkpoint")
    os.replace(tmp, path)


class NaNGuard(keras.callbacks.Callback):
    """Stops training on a NaN/inf loss with a message that says where."""

    def __init__(self):
        super().__init__()
        self.message = None

    def on_train_batch_end(self, batch, logs=None):
        faults.point("batch")
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.message = (
                f"loss became {loss} at batch {batch}; lower the learning "
                "rate (optimizer.lr / schedule.stages[*].lr), set "
                "optimizer.clipnorm, or check the inputs for NaN")
            print(f"\nTerminateOnNaN: {self.message}")
            self.model.stop_training = True


def plot_history(csv_path, png_path):
    """Draws every metric of `history.csv` (train and val) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(csv_path)
    if df.empty:
        return None
    names = [c for c in df.columns
             if c not in ("epoch", "stage", "lr") and not c.startswith("val_")]
    cols = len(names) + ("lr" in df.columns)
    fig, axes = plt.subplots(1, cols, figsize=(4 * cols, 3.2), squeeze=False)
    x = np.arange(1, len(df) + 1)
    for ax, name in zip(axes[0], names):
        ax.plot(x, df[name], "o-", label="train")
        if f"val_{name}" in df.columns:
            ax.plot(x, df[f"val_{name}"], "o-", label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    if "lr" in df.columns:
        ax = axes[0][-1]
        ax.plot(x, df["lr"], "o-")
        ax.set_yscale("log")
        ax.set_title("learning rate")
        ax.set_xlabel("epoch")
    fig.tight_layout()
    tmp = f"{png_path[:-4]}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
