"""Distribution strategies: `train.strategy` -> a strategy for the backend.

On TensorFlow (`KERAS_BACKEND=tensorflow`, the default), "auto" picks a TPU
when a TPU resolver finds one, else Mirrored over the visible GPUs when
there are several, else the default strategy. "multiworker" reads the
cluster from `TF_CONFIG`.

On JAX (`KERAS_BACKEND=jax`: Kaggle's TPU kernels, whose TensorFlow is
CPU-only), "auto" is `keras.distribution.DataParallel` over every JAX
device (the TPU cores of a TPU VM) when there are several, else one
device; "default" is one device. The TF strategies are refused there.

Both kinds answer `num_replicas_in_sync` and `scope()`, which is all the
trainers use; `is_chief(strategy)` says whether this process writes.
"""

import contextlib
import json
import os

import keras
import tensorflow as tf

from kaggle_tf.config import ConfigError

TF_STRATEGIES = ("mirrored", "tpu", "multiworker")


class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose `reduce` takes Keras' structures.

    Keras 3's `fit` reduces nested logs and scalar values (with `axis=0`)
    through `strategy.reduce`, which the multi-worker strategy rejects
    (keras-team/keras#20585): reduce leaf by leaf, scalars without an axis.
    """

    def reduce(self, reduce_op, value, axis=None):
        def one(v):
            first = v.values[0] if isinstance(
                v, tf.distribute.DistributedValues) else v
            rank = getattr(getattr(first, "shape", None), "rank", None)
            return super(MultiWorkerStrategy, self).reduce(
                reduce_op, v, axis=None if rank == 0 else axis)

        return tf.nest.map_structure(one, value)


def _tpu_strategy():
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


class KerasDistribution:
    """A `keras.distribution` (JAX) behind the strategy interface.

    Creating it sets the global distribution (Keras' JAX trainer reads it
    in `fit`/`predict` to shard the batches and lay out the variables);
    `scope()` is that distribution's scope, or a no-op for one device.

    Args:
        distribution: a `keras.distribution.Distribution`, or None for
            one device.
    """

    def __init__(self, distribution=None):
        self.distribution = distribution
        if distribution is None:
            self.num_replicas_in_sync = 1
        else:
            self.num_replicas_in_sync = int(
                distribution.device_mesh.devices.size)
        keras.distribution.set_distribution(distribution)

    @property
    def platform(self):
        """The JAX platform of the devices: "cpu", "gpu" or "tpu"."""
        return keras.distribution.list_devices()[0].split(":")[0].lower()

    def scope(self):
        if self.distribution is None:
            return contextlib.nullcontext()
        return self.distribution.scope()


def is_chief(strategy=None):
    """Whether this process writes the run's files.

    Under `MultiWorkerMirroredStrategy` every worker runs the same fit; the
    chief (the "chief" task, else worker 0 in `TF_CONFIG`) writes, the
    others write to temporary folders (`layout.worker_dir`) they remove.
    """
    extended = getattr(strategy, "extended", None)
    if extended is not None and hasattr(extended, "should_checkpoint"):
        return bool(extended.should_checkpoint)
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        return True
    task = json.loads(tf_config).get("task", {})
    cluster = json.loads(tf_config).get("cluster", {})
    if task.get("type") == "chief":
        return True
    if "chief" in cluster:
        return False
    return task.get("type", "worker") == "worker" and \
        int(task.get("index", 0)) == 0


def _batchnorm_layers(model):
    return [layer for layer in model._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization)]


def sync_batchnorm(cfg, model, strategy):
    """Makes the model's BatchNorm statistics global when
    `train.sync_batchnorm` asks for it and `strategy` is a TensorFlow one
    of several replicas (`synchronized=True`: the batch moments are
    all-reduced). Returns the number of layers changed.

    JAX's DataParallel needs nothing: its train step sees the global
    batch, sharded, so the moments are over every replica's share.
    Checkpoints stay portable: `portable_batchnorm` saves them
    unsynchronized (a synchronized BatchNorm does not load on JAX).
    """
    if (not cfg.train.sync_batchnorm or strategy.num_replicas_in_sync < 2
            or keras.backend.backend() != "tensorflow"):
        return 0
    layers = _batchnorm_layers(model)
    for layer in layers:
        layer.synchronized = True
    return len(layers)


@contextlib.contextmanager
def portable_batchnorm(model):
    """Within: the model's BatchNorm layers are unsynchronized (what its
    saved config says), restored on exit."""
    synced = [layer for layer in _batchnorm_layers(model)
              if layer.synchronized]
    for layer in synced:
        layer.synchronized = False
    try:
        yield model
    finally:
        for layer in synced:
            layer.synchronized = True


def _jax_strategy(name):
    if name in TF_STRATEGIES:
        raise ConfigError(
            f"`train.strategy` {name!r} is a TensorFlow strategy; under "
            f"KERAS_BACKEND={keras.backend.backend()} use train.strategy="
            "'auto' (keras.distribution.DataParallel over the JAX devices) "
            "or 'default' (one device)")
    devices = keras.distribution.list_devices()
    if name == "default" or len(devices) < 2:
        return KerasDistribution(None)
    return KerasDistribution(keras.distribution.DataParallel(devices=devices))


def get_strategy(name="auto"):
    """Returns the strategy named by `train.strategy` for the backend.

    >>> get_strategy("default").num_replicas_in_sync
    1
    """
    if name not in ("auto", "default") + TF_STRATEGIES:
        raise ValueError(f"unknown `train.strategy` {name!r}. Choices: auto, "
                         "default, mirrored, tpu, multiworker")
    if keras.backend.backend() != "tensorflow":
        return _jax_strategy(name)
    if name == "tpu":
        return _tpu_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return MultiWorkerStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    try:
        return _tpu_strategy()
    except (ValueError, RuntimeError, tf.errors.NotFoundError):
        pass
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
