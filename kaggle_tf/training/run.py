"""K-fold training driven by a config: stages, checkpoints, out-of-fold.

`run(cfg, folds)` trains each fold against its validation fold and writes
`<output_dir>/fold<K>/`:

- `best.keras` (and the top-k `ckpt-*.keras`, listed in `checkpoints.json`),
- `history.csv` and `history.png` (learning curves),
- `oof.npz` (`ids`, `probs`, `truth` of the fold's validation images),
- `metrics.json` (the Kaggle metric on those images).

A fold whose `metrics.json` exists is finished and skipped; an interrupted
fold resumes at the stage and epoch it was in (`BackupAndRestore`).
With all folds done, `<output_dir>/oof.npz` and `metrics.json` gather them.
"""

import dataclasses
import json
import math
import os
import shutil
import time

import keras
import numpy as np

from kaggle_tf import config as config_lib
from kaggle_tf import losses
from kaggle_tf import metrics
from kaggle_tf import models
from kaggle_tf.data import pipeline
from kaggle_tf.metrics import kaggle as kaggle_metrics
from kaggle_tf.training import augmented
from kaggle_tf.training import callbacks as cbs
from kaggle_tf.training import oof as oof_lib
from kaggle_tf.training import optimizers
from kaggle_tf.training.distribution import get_strategy

SEGMENTATION_TASKS = ("steel", "siim")


def is_segmentation(cfg):
    return cfg.model.arch in ("unet", "fpn")


def input_shape(cfg):
    h, w = cfg.data.image_size
    return (h, w, cfg.data.channels)


def resolve_stages(cfg):
    """`schedule.stages`, or one constant stage from `train`/`optimizer`."""
    if cfg.schedule.stages:
        return list(cfg.schedule.stages)
    from kaggle_tf.config.schema import StageConfig

    return [StageConfig(epochs=cfg.train.epochs, lr=cfg.optimizer.lr,
                        scheduler="constant")]


def make_optimizer(cfg, lr, model=None):
    """The optimizer of `cfg.optimizer` at learning rate `lr`.

    Gradient accumulation, EMA and clipping use Keras' built-in options;
    `optimizer.encoder_lr_mult` gives the encoder its own rate (see
    `training.optimizers`).
    """
    return optimizers.make_optimizer(cfg, lr, model)


def model_config(cfg):
    """`cfg.model`, with a `series_classifier`'s null `series_channels`
    filled from `data.stack_slices` in channel order (rsna_lumbar)."""
    if (cfg.model.arch == "series_classifier"
            and cfg.model.series_channels is None):
        from kaggle_tf.data.tasks import rsna_lumbar

        return dataclasses.replace(cfg.model,
                                   series_channels=rsna_lumbar.stack_sizes(cfg))
    return cfg.model


def build_model(cfg):
    """The config's model; RSNA lumbar logits come out as (25, 3)."""
    model = models.build(model_config(cfg), input_shape(cfg))
    if cfg.task == "rsna_lumbar" and model.output.shape[-1] == 75:
        logits = keras.layers.Reshape((25, 3), name="severity_logits")(
            model.output)
        model = keras.Model(model.input, logits, name=model.name)
    return model


def set_encoder_trainable(model, trainable):
    """Freezes or unfreezes the layers of the model's encoder."""
    found = False
    for layer in augmented.unwrap(model).layers:
        if layer.name == "encoder" or layer.name.startswith("encoder"):
            layer.trainable = trainable
            found = True
    if not found:
        raise ValueError(
            f"`freeze_encoder`: model {model.name!r} has no layer named "
            "'encoder*'")


def _epoch_steps(cfg, folds, batch_size):
    n = pipeline.count_records(cfg, folds)
    if n == 0:
        raise ValueError(f"no training records in folds {folds} of "
                         f"{cfg.data.records_dir}")
    if cfg.train.steps_per_epoch:
        return cfg.train.steps_per_epoch
    return max(n // batch_size, 1)


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


def _copy_weights_from(model, path):
    source = keras.saving.load_model(path, compile=False)
    augmented.unwrap(model).set_weights(source.get_weights())


def _sample_rate_setup(cfg, stage):
    """(rate for make_dataset, callbacks) of a stage's sliding sample rate."""
    if stage.sample_rate is not None:
        return stage.sample_rate, []
    if cfg.sampling.schedule:
        import tensorflow as tf

        from kaggle_tf.data import sampling

        rate = tf.Variable(cfg.sampling.schedule[0], trainable=False,
                           dtype="float32")
        return rate, [sampling.SampleRateScheduler(rate,
                                                   cfg.sampling.schedule)]
    return None, []


def _augmenter(cfg):
    if not cfg.augment.transforms:
        return None
    from kaggle_tf import augment

    base = os.path.dirname(cfg.source) if cfg.source else None
    return augment.build(cfg.augment, base_dir=base)


def monitor_mode(cfg):
    """`callbacks.mode`, or the direction of the task's Kaggle metric."""
    if cfg.callbacks.mode is not None:
        return cfg.callbacks.mode
    return "max" if kaggle_metrics.higher_is_better(cfg.task) else "min"


def _jit(cfg, in_model_augmenter=None):
    """`train.jit_compile`, off when an in-model augmenter cannot compile."""
    jit = cfg.train.jit_compile
    if in_model_augmenter is not None and jit is not False and not getattr(
            in_model_augmenter, "xla_compatible", True):
        if jit is True:
            print("train.jit_compile: the in-model augmenter has ops XLA "
                  "cannot compile; training without XLA", flush=True)
        return False
    return jit


def train_fold(cfg, fold):
    """Trains fold `fold` through every stage; returns the fold folder."""
    fold_dir = os.path.join(cfg.output_dir, f"fold{fold}")
    os.makedirs(fold_dir, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.train.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    if cfg.train.mixed_precision:
        keras.mixed_precision.set_global_policy(cfg.train.mixed_precision)
    strategy = get_strategy(cfg.train.strategy)
    batch = cfg.train.batch_size * strategy.num_replicas_in_sync
    train_folds = [f for f in range(cfg.data.folds) if f != fold]
    steps = _epoch_steps(cfg, train_folds, batch)
    augmenter = _augmenter(cfg)
    in_model = augmenter is not None and cfg.augment.placement == "model"
    with strategy.scope():
        model = build_model(cfg)
        if in_model:
            model = augmented.wrap(model, augmenter)
    history_path = os.path.join(fold_dir, "history.csv")
    epoch_offset = 0
    stages = resolve_stages(cfg)
    for s, stage in enumerate(stages):
        done_marker = os.path.join(fold_dir, f"stage{s}.done")
        stage_weights = os.path.join(fold_dir, f"stage{s}.weights.h5")
        if os.path.exists(done_marker):
            epoch_offset += stage.epochs
            continue
        best = os.path.join(fold_dir, "best.keras")
        if s > 0:
            prev = os.path.join(fold_dir, f"stage{s - 1}.weights.h5")
            if stage.from_previous_best and os.path.exists(best):
                _copy_weights_from(model, best)
            elif os.path.exists(prev):
                model.load_weights(prev)
        if stage.freeze_encoder or s > 0:
            set_encoder_trainable(model, not stage.freeze_encoder)
        lr = stage.lr if stage.lr is not None else cfg.optimizer.lr
        loss_cfg = cfg.loss
        if stage.loss_weights is not None:
            loss_cfg = dataclasses.replace(cfg.loss,
                                           weights=stage.loss_weights)
        rate, rate_callbacks = _sample_rate_setup(cfg, stage)
        with strategy.scope():
            model.compile(
                optimizer=make_optimizer(cfg, lr, model),
                loss=losses.build(loss_cfg),
                metrics=metrics.build(cfg.task, cfg),
                jit_compile=_jit(cfg, augmenter if in_model else None))
        train_ds = pipeline.make_dataset(
            cfg, train_folds, training=True, sample_rate=rate,
            augmenter=None if in_model else augmenter, batch_size=batch)
        val_ds = pipeline.make_dataset(cfg, [fold], training=False,
                                       batch_size=batch)
        callbacks = [
            cbs.NaNGuard(),
            cbs.StageLR(stage.scheduler, lr, stage.epochs, steps,
                        min_lr=stage.min_lr,
                        restart_epochs=stage.restart_epochs),
            cbs.TopKCheckpoint(fold_dir, cfg.callbacks.monitor,
                               monitor_mode(cfg), cfg.callbacks.top_k,
                               epoch_offset=epoch_offset, stage=s),
            HistoryLogger(history_path, s, epoch_offset),
            *rate_callbacks,
        ]
        if stage.scheduler == "reduce_on_plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(
                monitor=cfg.callbacks.monitor, mode=monitor_mode(cfg),
                factor=stage.factor, patience=stage.patience,
                min_lr=stage.min_lr))
        if cfg.callbacks.early_stopping_patience:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor=cfg.callbacks.monitor, mode=monitor_mode(cfg),
                patience=cfg.callbacks.early_stopping_patience))
        if cfg.callbacks.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(
                os.path.join(fold_dir, "logs")))
        if cfg.callbacks.backup:
            callbacks.append(keras.callbacks.BackupAndRestore(
                os.path.join(fold_dir, "backup", f"stage{s}"),
                double_checkpoint=True, delete_checkpoint=False))
        print(f"fold {fold} stage {s}: {stage.epochs} epoch(s) x {steps} "
              f"steps, lr {lr:g} ({stage.scheduler})", flush=True)
        model.fit(
            pipeline.to_keras(train_ds, cfg),
            validation_data=pipeline.to_keras(val_ds, cfg),
            epochs=stage.epochs, steps_per_epoch=steps,
            validation_steps=cfg.train.validation_steps or max(
                math.ceil(pipeline.count_records(cfg, [fold]) / batch), 1),
            callbacks=callbacks, verbose=cfg.train.verbose, shuffle=False)
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
    if os.path.exists(history_path):
        cbs.plot_history(history_path,
                         os.path.join(fold_dir, "history.png"))
    if cfg.callbacks.average_top_k:
        average_checkpoints(fold_dir, os.path.join(fold_dir, "avg.keras"))
    shutil.rmtree(os.path.join(fold_dir, "backup"), ignore_errors=True)
    return fold_dir


def average_checkpoints(fold_dir, out_path):
    """Averages the weights of the top-k checkpoints into `out_path`."""
    entries = cbs.read_checkpoints(fold_dir)
    if not entries:
        raise FileNotFoundError(f"no checkpoints listed in {fold_dir}")
    models_ = [keras.saving.load_model(os.path.join(fold_dir, e["file"]),
                                       compile=False) for e in entries]
    weights = [m.get_weights() for m in models_]
    mean = [np.mean([w[i] for w in weights], axis=0).astype(weights[0][i].dtype)
            for i in range(len(weights[0]))]
    models_[0].set_weights(mean)
    cbs.save_model(models_[0], out_path)
    return out_path


def fold_checkpoint(cfg, fold_dir):
    """The checkpoint that represents a fold: the average or the best."""
    avg = os.path.join(fold_dir, "avg.keras")
    if cfg.callbacks.average_top_k and os.path.exists(avg):
        return avg
    return os.path.join(fold_dir, "best.keras")


def evaluate_fold(cfg, fold, fold_dir):
    """Predicts the fold's validation images; writes oof.npz, metrics.json."""
    path = fold_checkpoint(cfg, fold_dir)
    model = keras.saving.load_model(path, compile=False)
    val_ds = pipeline.make_dataset(cfg, [fold], training=False,
                                   batch_size=cfg.train.batch_size,
                                   with_meta=True)
    ids, probs, truth = oof_lib.predict_dataset(model, val_ds, cfg)
    oof_lib.save(os.path.join(fold_dir, "oof.npz"), ids, probs, truth)
    score = kaggle_metrics.score(cfg.task, truth, probs, cfg)
    result = {"fold": fold, "checkpoint": os.path.basename(path),
              "images": int(len(ids)), "kaggle_metric": float(score),
              "checkpoints": cbs.read_checkpoints(fold_dir)}
    cbs.write_json(os.path.join(fold_dir, "metrics.json"), result)
    return result


def run(cfg, folds="all"):
    """Trains and evaluates folds; returns {fold: metrics dict}.

    Args:
        cfg: a validated `Config`.
        folds: "all" or an int fold index.
    """
    os.makedirs(cfg.output_dir, exist_ok=True)
    config_lib.save(cfg, os.path.join(cfg.output_dir, "config.resolved.json"))
    if folds == "all":
        fold_list = list(range(cfg.data.folds))
    else:
        fold_list = [int(folds)]
        if not 0 <= fold_list[0] < cfg.data.folds:
            raise config_lib.ConfigError(
                f"--fold must be in 0..{cfg.data.folds - 1} or 'all'. "
                f"Received: {folds}")
    results = {}
    for fold in fold_list:
        fold_dir = os.path.join(cfg.output_dir, f"fold{fold}")
        done = os.path.join(fold_dir, "metrics.json")
        if os.path.exists(done):
            with open(done, encoding="utf-8") as f:
                results[fold] = json.load(f)
            print(f"fold {fold}: done before "
                  f"(kaggle_metric {results[fold]['kaggle_metric']:.5f})")
            continue
        start = time.time()
        train, evaluate = train_fold, evaluate_fold
        if cfg.model.arch == "sequence":
            from kaggle_tf.training import sequence

            train, evaluate = sequence.train_fold, sequence.evaluate_fold
        train(cfg, fold)
        results[fold] = evaluate(cfg, fold, fold_dir)
        print(f"fold {fold}: kaggle_metric "
              f"{results[fold]['kaggle_metric']:.5f} "
              f"({time.time() - start:.0f} s)", flush=True)
    done_folds = [k for k in range(cfg.data.folds) if os.path.exists(
        os.path.join(cfg.output_dir, f"fold{k}", "oof.npz"))]
    if len(done_folds) == cfg.data.folds:
        gather(cfg)
    return results


def gather(cfg):
    """Joins every fold's oof.npz into `<output_dir>/oof.npz` and scores it.
    """
    paths = [os.path.join(cfg.output_dir, f"fold{k}", "oof.npz")
             for k in range(cfg.data.folds)]
    ids, probs, truth = oof_lib.concatenate(paths)
    oof_lib.save(os.path.join(cfg.output_dir, "oof.npz"), ids, probs, truth)
    per_fold = {}
    for k in range(cfg.data.folds):
        with open(os.path.join(cfg.output_dir, f"fold{k}", "metrics.json"),
                  encoding="utf-8") as f:
            per_fold[str(k)] = json.load(f)["kaggle_metric"]
    overall = float(kaggle_metrics.score(cfg.task, truth, probs, cfg))
    result = {"task": cfg.task, "kaggle_metric": overall,
              "folds": per_fold, "images": int(len(ids))}
    cbs.write_json(os.path.join(cfg.output_dir, "metrics.json"), result)
    print(f"out-of-fold kaggle_metric over {len(ids)} images: "
          f"{overall:.5f}")
    return result
