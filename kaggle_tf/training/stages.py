"""The stage loop every trainer shares: stages, checkpoints, resume.

`fit_stages` trains one fold through `schedule.stages` (or one constant
stage of `train.epochs`). For each stage it:

0. (a fresh fold with `model.init_from`) loads another run's weights
   (`training.warm_start`);
1. starts from the previous stage's best checkpoint
   (`from_previous_best`, else its last weights), freezes or unfreezes
   the encoder (`freeze_encoder`), picks the stage's LR and loss weights;
2. compiles (the trainer's `compile_model`), asks the trainer for the
   stage's data (`data_for_stage`: the sliding sample rate lives there);
3. fits with the callbacks of `stage_callbacks`: NaN stop, the stage's LR
   schedule or ReduceLROnPlateau, top-k checkpoints by the Kaggle metric,
   history.csv, early stopping, TensorBoard, BackupAndRestore;
4. marks the stage done (`stage<S>.done` + `stage<S>.weights.h5`).

A killed run started again resumes at the stage and epoch it was in; a
finished stage is skipped. Afterwards: history.png, the top-k average
(`callbacks.average_top_k`), and the backups removed.
"""

import dataclasses
import importlib.util
import os
import shutil

import keras
import numpy as np

from kaggle_tf import checkpoints
from kaggle_tf import layout
from kaggle_tf import losses
from kaggle_tf import tasks
from kaggle_tf.config import ConfigError
from kaggle_tf.config.schema import StageConfig
from kaggle_tf.training import augmented
from kaggle_tf.training import callbacks as cbs
from kaggle_tf.training import heap
from kaggle_tf.training import warm_start


@dataclasses.dataclass
class StageData:
    """What a trainer gives `fit_stages` for one stage.

    Attributes:
        train, validation: what `model.fit` takes as `x` and
            `validation_data`.
        steps: training steps per epoch.
        validation_steps: None when `validation` has a length.
        callbacks: the trainer's own callbacks (sample rate schedule, a
            metric computed on whole validation series, ...), run before
            the checkpoint callbacks.
        note: words for the stage's start line.
    """

    train: object
    validation: object
    steps: int
    validation_steps: object = None
    callbacks: list = dataclasses.field(default_factory=list)
    note: str = ""


def resolve_stages(cfg):
    """`schedule.stages`, or one constant stage from `train`/`optimizer`."""
    if cfg.schedule.stages:
        return list(cfg.schedule.stages)
    return [StageConfig(epochs=cfg.train.epochs, lr=cfg.optimizer.lr,
                        scheduler="constant")]


def monitor_mode(cfg):
    """`callbacks.mode`, or the direction of the task's Kaggle metric."""
    if cfg.callbacks.mode is not None:
        return cfg.callbacks.mode
    return "max" if tasks.higher_is_better(cfg.task) else "min"


def stage_loss(cfg, stage):
    """The stage's loss: `cfg.loss` with the stage's `loss_weights`."""
    loss_cfg = cfg.loss
    if stage.loss_weights is not None:
        loss_cfg = dataclasses.replace(cfg.loss, weights=stage.loss_weights)
    return losses.build(loss_cfg)


def stage_lr(cfg, stage):
    return stage.lr if stage.lr is not None else cfg.optimizer.lr


def set_encoder_trainable(model, trainable, prefixes=("encoder",)):
    """Freezes or unfreezes the layers named `<prefix>*` (the encoder)."""
    found = False
    for layer in augmented.unwrap(model).layers:
        if layer.name.startswith(tuple(prefixes)):
            layer.trainable = trainable
            found = True
    if not found:
        raise ValueError(
            f"`freeze_encoder`: model {model.name!r} has no layer named "
            f"{' or '.join(p + '*' for p in prefixes)}")


def copy_weights_from(model, path):
    """Loads the weights of the `.keras` file `path` into `model`."""
    source = checkpoints.load_model(path, compile=False)
    augmented.unwrap(model).set_weights(source.get_weights())


class HistoryLogger(keras.callbacks.Callback):
    """Appends one row per epoch (global epoch, stage, lr, logs) to a CSV."""

    def __init__(self, path, stage, epoch_offset):
        super().__init__()
        self.path = path
        self.stage = stage
        self.epoch_offset = epoch_offset

    def on_epoch_end(self, epoch, logs=None):
        import pandas as pd

        row = {"epoch": epoch + self.epoch_offset + 1, "stage": self.stage}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        if "lr" not in row:
            row["lr"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))
        df = pd.DataFrame([row])
        if os.path.exists(self.path):
            old = pd.read_csv(self.path)
            old = old[old["epoch"] != row["epoch"]]
            df = pd.concat([old, df], ignore_index=True)
        tmp = f"{self.path}.tmp-{os.getpid()}"
        df.to_csv(tmp, index=False)
        os.replace(tmp, self.path)


def check_tensorboard():
    """`callbacks.tensorboard` needs the tensorboard package, which
    tensorflow-cpu does not bring."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("`callbacks.tensorboard` needs the tensorboard "
                          "package: pip install tensorboard (or set "
                          "callbacks.tensorboard false)")


def backup_epoch(fold_dir, s):
    """The epoch (within stage `s`) that its backup resumes at, 0 without
    one (Keras' BackupAndRestore records it after each epoch)."""
    path = os.path.join(fold_dir, "backup", f"stage{s}",
                        "training_metadata.json")
    if not os.path.exists(path):
        return 0
    try:
        return int(layout.read_json(path)["epoch"])
    except (ValueError, KeyError, TypeError):
        return 0


def stage_callbacks(cfg, fold_dir, s, stage, steps, epoch_offset,
                    extra=()):
    """The callbacks of stage `s` (NaNGuard first)."""
    lr = stage_lr(cfg, stage)
    mode = monitor_mode(cfg)
    callbacks = [
        cbs.NaNGuard(),
        heap.TrimHeapWhileCompiling(),
        cbs.StageLR(stage.scheduler, lr, stage.epochs, steps,
                    min_lr=stage.min_lr, restart_epochs=stage.restart_epochs),
        *extra,
        cbs.TopKCheckpoint(fold_dir, cfg.callbacks.monitor, mode,
                           cfg.callbacks.top_k, epoch_offset=epoch_offset,
                           stage=s),
        HistoryLogger(os.path.join(fold_dir, layout.HISTORY), s,
                      epoch_offset),
    ]
    if stage.scheduler == "reduce_on_plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=cfg.callbacks.monitor, mode=mode, factor=stage.factor,
            patience=stage.patience, min_lr=stage.min_lr))
    if cfg.callbacks.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=cfg.callbacks.monitor, mode=mode,
            patience=cfg.callbacks.early_stopping_patience))
    if cfg.callbacks.tensorboard:
        check_tensorboard()
        callbacks.append(keras.callbacks.TensorBoard(
            os.path.join(fold_dir, "logs")))
    if cfg.callbacks.backup:
        callbacks.append(keras.callbacks.BackupAndRestore(
            os.path.join(fold_dir, "backup", f"stage{s}"),
            double_checkpoint=True, delete_checkpoint=False))
    return callbacks


def fit_stages(cfg, fold, model, fold_dir, compile_model, data_for_stage,
               encoder_prefixes=("encoder",)):
    """Trains `model` on fold `fold` through every stage.

    Args:
        cfg: a validated config.
        fold: the validation fold.
        model: the built model (in the strategy's scope if any).
        fold_dir: the fold's folder (`layout.RunLayout.fold_dir`).
        compile_model: `compile_model(model, stage, lr, loss)`, compiles.
        data_for_stage: `data_for_stage(stage, first_epoch) -> StageData`;
            `first_epoch` is the run's epoch (over all stages) the stage's
            data starts at: later than the stage's first when a backup
            resumes it.
        encoder_prefixes: names of the layers `freeze_encoder` freezes.

    Returns:
        `fold_dir`.

    Raises:
        FloatingPointError: the loss became NaN or infinite.
    """
    epoch_offset = 0
    best = os.path.join(fold_dir, layout.BEST)
    fresh = not os.path.exists(os.path.join(fold_dir, "stage0.done")) \
        and backup_epoch(fold_dir, 0) == 0
    if cfg.model.init_from and fresh:
        warm_start.init_model(cfg, fold, model)
    for s, stage in enumerate(resolve_stages(cfg)):
        done_marker = os.path.join(fold_dir, f"stage{s}.done")
        stage_weights = os.path.join(fold_dir, f"stage{s}.weights.h5")
        if os.path.exists(done_marker):
            epoch_offset += stage.epochs
            continue
        if s > 0:
            prev = os.path.join(fold_dir, f"stage{s - 1}.weights.h5")
            if stage.from_previous_best and os.path.exists(best):
                copy_weights_from(model, best)
            elif os.path.exists(prev):
                model.load_weights(prev)
        if stage.freeze_encoder or s > 0:
            set_encoder_trainable(model, not stage.freeze_encoder,
                                  encoder_prefixes)
        lr = stage_lr(cfg, stage)
        compile_model(model, stage, lr, stage_loss(cfg, stage))
        data = data_for_stage(stage, epoch_offset + backup_epoch(fold_dir, s))
        callbacks = stage_callbacks(cfg, fold_dir, s, stage, data.steps,
                                    epoch_offset, data.callbacks)
        print(f"fold {fold} stage {s}: {stage.epochs} epoch(s) x "
              f"{data.steps} steps{data.note}, lr {lr:g} "
              f"({stage.scheduler})", flush=True)
        model.fit(data.train, validation_data=data.validation,
                  epochs=stage.epochs, steps_per_epoch=data.steps,
                  validation_steps=data.validation_steps,
                  callbacks=callbacks, verbose=cfg.train.verbose,
                  shuffle=False)
        nan = callbacks[0].message
        if nan:
            raise FloatingPointError(f"fold {fold} stage {s}: {nan}")
        tmp = f"{stage_weights[:-len('.weights.h5')]}.tmp.weights.h5"
        model.save_weights(tmp)
        os.replace(tmp, stage_weights)
        open(done_marker, "w").close()
        shutil.rmtree(os.path.join(fold_dir, "backup", f"stage{s}"),
                      ignore_errors=True)
        epoch_offset += stage.epochs
    history = os.path.join(fold_dir, layout.HISTORY)
    if os.path.exists(history):
        cbs.plot_history(history, os.path.join(fold_dir, layout.HISTORY_PNG))
    if cfg.callbacks.average_top_k:
        average_checkpoints(fold_dir, os.path.join(fold_dir, layout.AVERAGE))
    shutil.rmtree(os.path.join(fold_dir, "backup"), ignore_errors=True)
    return fold_dir


def average_checkpoints(fold_dir, out_path):
    """Averages the weights of the top-k checkpoints into `out_path`."""
    entries = layout.read_checkpoints(fold_dir)
    if not entries:
        raise FileNotFoundError(f"no checkpoints listed in {fold_dir}")
    models_ = [checkpoints.load_model(os.path.join(fold_dir, e["file"]),
                                       compile=False) for e in entries]
    weights = [m.get_weights() for m in models_]
    mean = [np.mean([w[i] for w in weights], axis=0).astype(weights[0][i].dtype)
            for i in range(len(weights[0]))]
    models_[0].set_weights(mean)
    cbs.save_model(models_[0], out_path)
    return out_path


def fold_result(cfg, fold, fold_dir, checkpoint, ids, score, **extra):
    """Writes the fold's metrics.json; returns its content."""
    result = {"fold": fold, "checkpoint": os.path.basename(checkpoint),
              "images": int(len(ids)), "kaggle_metric": float(score),
              **extra,
              "checkpoints": layout.read_checkpoints(fold_dir)}
    layout.write_json(os.path.join(fold_dir, layout.METRICS), result)
    return result
