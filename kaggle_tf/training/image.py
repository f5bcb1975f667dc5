"""The trainer of image models: U-Net / FPN, classifiers, series classifiers.

`train_fold(cfg, fold)` streams the other folds' records through
`kaggle_tf.data.pipeline` (augmentation in the dataset or in the model,
the sliding sample rate per stage or per epoch) and runs the shared stage
loop (`training.stages`); `evaluate_fold` predicts the fold's validation
images into `oof.npz` and scores them with the task's Kaggle metric.

Example:

>>> model = build_model(cfg)                      # doctest: +SKIP
>>> fold_dir = train_fold(cfg, 0)                 # doctest: +SKIP
"""

import math
import os

import keras
import tensorflow as tf

from kaggle_tf import checkpoints
from kaggle_tf import augment
from kaggle_tf import layout
from kaggle_tf import models
from kaggle_tf import tasks
from kaggle_tf.config import ConfigError
from kaggle_tf.data import accelerator_input
from kaggle_tf.data import pipeline
from kaggle_tf.data import sampling
from kaggle_tf.training import augmented
from kaggle_tf.training import oof as oof_lib
from kaggle_tf.training import optimizers
from kaggle_tf.training import stages
from kaggle_tf.training import distribution
from kaggle_tf.training.distribution import get_strategy


def input_shape(cfg):
    h, w = cfg.data.image_size
    return (h, w, cfg.data.channels)


def model_config(cfg):
    """`cfg.model` with the task's defaults filled in (e.g. RSNA lumbar's
    series_channels from data.stack_slices)."""
    return tasks.get(cfg.task).model_config(cfg)


def build_model(cfg):
    """The config's model, in the layout of the task's targets (RSNA
    lumbar's logits come out as (25, 3))."""
    task = tasks.get(cfg.task)
    return task.adapt_model(models.build(model_config(cfg),
                                         input_shape(cfg)))


def set_encoder_trainable(model, trainable):
    """Freezes or unfreezes the layers of the model's encoder."""
    stages.set_encoder_trainable(model, trainable)


def _epoch_steps(cfg, folds, batch_size):
    """`train.steps_per_epoch`, else the epoch's examples (pseudo-labelled
    ones included, `pipeline.training_examples`) // batch."""
    if pipeline.count_records(cfg, folds) == 0:
        raise ValueError(f"no training records in folds {folds} of "
                         f"{cfg.data.records_dir}")
    if cfg.train.steps_per_epoch:
        return cfg.train.steps_per_epoch
    return max(pipeline.training_examples(cfg, folds) // batch_size, 1)


def _sample_rate_setup(cfg, stage):
    """(rate for make_dataset, callbacks) of a stage's sliding sample rate."""
    if stage.sample_rate is not None:
        return stage.sample_rate, []
    if cfg.sampling.schedule:
        rate = tf.Variable(cfg.sampling.schedule[0], trainable=False,
                           dtype="float32")
        return rate, [sampling.SampleRateScheduler(rate,
                                                   cfg.sampling.schedule)]
    return None, []


def augmenter_of(cfg):
    """The config's augmenter, or None (relative transform paths are
    looked up next to the config)."""
    if not cfg.augment.transforms:
        return None
    base = os.path.dirname(cfg.source) if cfg.source else None
    return augment.build(cfg.augment, base_dir=base)


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


def check_config(cfg):
    """Refuses, before anything trains, what the Keras backend cannot run.

    Under JAX (`KERAS_BACKEND=jax`) the augmentation ops (TensorFlow) run
    in `tf.data` only, and the strategies are `keras.distribution`'s.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    if cfg.augment.transforms and cfg.augment.placement == "model":
        raise ConfigError(
            "augment.placement='model' runs the TensorFlow augmentation ops "
            f"in the train step, which KERAS_BACKEND={backend} cannot "
            "compile; use augment.placement='dataset' (tf.data on the host)")
    if cfg.train.strategy in distribution.TF_STRATEGIES:
        get_strategy(cfg.train.strategy)   # raises, naming the key


def _on_tpu(strategy):
    """Whether `strategy` runs on TPU cores (TF's TPUStrategy or JAX)."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    return getattr(strategy, "platform", None) == "tpu"


def setup(cfg):
    """Seeds, determinism and the mixed-precision policy of a fold."""
    keras.utils.set_random_seed(cfg.seed)
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    if cfg.train.mixed_precision:
        keras.mixed_precision.set_global_policy(cfg.train.mixed_precision)


def _validated_examples(cfg, fold, strategy):
    """How many of fold `fold`'s images the per-epoch validation sees.

    All of them, except under a JAX distribution over n > 1 devices, where
    every validation batch must split over the devices
    (`pipeline.divisible_batches`): then the fold's count rounded down to
    a multiple of n (fewer than n images left out of the epoch's
    `val_kaggle_metric`; `oof.npz` and `metrics.json` are predicted
    outside that loop and hold every image).

    Raises:
        ConfigError: the fold has fewer images than devices.
    """
    count = pipeline.count_records(cfg, [fold])
    devices = strategy.num_replicas_in_sync
    if not isinstance(strategy, distribution.KerasDistribution) or \
            devices < 2:
        return count
    if count < devices:
        raise ConfigError(
            f"`train.strategy`: fold {fold} has {count} validation images, "
            f"fewer than the {devices} devices that share each batch; use "
            "fewer `data.folds` or train.strategy='default'")
    return count - count % devices


def train_fold(cfg, fold):
    """Trains fold `fold` through every stage; returns the fold folder."""
    run = layout.RunLayout.of(cfg)
    fold_dir = run.fold_dir(fold)
    os.makedirs(fold_dir, exist_ok=True)
    setup(cfg)
    strategy = get_strategy(cfg.train.strategy)
    batch = cfg.train.batch_size * strategy.num_replicas_in_sync
    train_folds = [f for f in range(cfg.data.folds) if f != fold]
    steps = _epoch_steps(cfg, train_folds, batch)
    augmenter = augmenter_of(cfg)
    in_model = augmenter is not None and cfg.augment.placement == "model"
    on_tpu = _on_tpu(strategy)
    with strategy.scope():
        model = build_model(cfg)
        distribution.sync_batchnorm(cfg, model, strategy)
        if in_model:
            model = augmented.wrap(model, augmenter)
    task = tasks.get(cfg.task)

    def compile_model(model, stage, lr, loss):
        with strategy.scope():
            model.compile(
                optimizer=optimizers.make_optimizer(cfg, lr, model),
                loss=loss, metrics=task.metrics(cfg),
                jit_compile=_jit(cfg, augmenter if in_model else None))

    def data_for_stage(stage, first_epoch):
        rate, rate_callbacks = _sample_rate_setup(cfg, stage)
        train_ds = pipeline.make_dataset(
            cfg, train_folds, training=True, sample_rate=rate,
            augmenter=None if in_model else augmenter, batch_size=batch,
            epoch_examples=steps * batch, first_epoch=first_epoch)
        val_ds = pipeline.to_keras(pipeline.make_dataset(
            cfg, [fold], training=False, batch_size=batch), cfg)
        val_count = _validated_examples(cfg, fold, strategy)
        total = pipeline.count_records(cfg, [fold])
        if val_count < total:
            devices = strategy.num_replicas_in_sync
            print(f"fold {fold}: each epoch validates {val_count} of "
                  f"{total} images (batches cut to a multiple of the "
                  f"{devices} devices); oof.npz holds all {total}")
            val_ds = pipeline.divisible_batches(val_ds, devices)
        if on_tpu:
            accelerator_input.check(train_ds, strategy.num_replicas_in_sync)
        # Repeated: each epoch's validation takes `validation_steps`
        # batches where the previous one stopped, one pass of the fold by
        # default. (Ending instead, a distributed iterator stops the next
        # epoch's validation with StopIteration under multi-worker.)
        return stages.StageData(
            train=pipeline.shard_by_example(pipeline.to_keras(train_ds, cfg)),
            validation=pipeline.shard_by_example(val_ds.repeat()),
            steps=steps,
            validation_steps=cfg.train.validation_steps or max(
                math.ceil(val_count / batch), 1),
            callbacks=rate_callbacks)

    return stages.fit_stages(cfg, fold, model, fold_dir, compile_model,
                             data_for_stage)


def evaluate_fold(cfg, fold, fold_dir):
    """Predicts the fold's validation images; writes oof.npz, metrics.json."""
    path = layout.RunLayout.of(cfg).checkpoint(fold)
    model = checkpoints.load_model(path, compile=False)
    val_ds = pipeline.make_dataset(cfg, [fold], training=False,
                                   batch_size=cfg.train.batch_size,
                                   with_meta=True)
    ids, probs, truth = oof_lib.predict_dataset(model, val_ds, cfg)
    oof_lib.save(os.path.join(fold_dir, layout.OOF), ids, probs, truth)
    score = tasks.score(cfg.task, truth, probs, cfg)
    return stages.fold_result(cfg, fold, fold_dir, path, ids, score)
