"""FusedBatchNorm: Keras BatchNormalization's values, TensorFlow's fused
kernel in training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf.models import Unet
from kaggle_tf.models.fused_batch_norm import FusedBatchNorm
from model_helpers import allocator_probe


def _pair(shape=(2, 9, 7, 5), **kwargs):
    rng = np.random.RandomState(0)
    x = tf.constant((rng.randn(*shape) * 3 + 1).astype("float32"))
    keras_bn = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9,
                                               **kwargs)
    fused = FusedBatchNorm(epsilon=1e-5, momentum=0.9, **kwargs)
    for layer in (keras_bn, fused):
        layer.build(x.shape)
        weights = [np.linspace(0.5, 2.0, shape[-1]),
                   np.linspace(-1.0, 1.0, shape[-1]),
                   np.linspace(-0.2, 0.2, shape[-1]),
                   np.linspace(0.8, 1.2, shape[-1])]
        if not kwargs.get("scale", True):
            weights.pop(0)
        if not kwargs.get("center", True):
            weights.pop(1 if kwargs.get("scale", True) else 0)
        layer.set_weights([w.astype("float32") for w in weights])
    return x, keras_bn, fused


def _step(layer, x, training=True):
    upstream = tf.sin(tf.reshape(tf.range(tf.size(x), dtype="float32"),
                                 x.shape))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, "float32") * upstream)
    return [y] + tape.gradient(loss, [x] + layer.trainable_variables)


def _graph(fn, *args):
    return tf.function(fn).get_concrete_function(*args).graph


def _ops(fn, *args):
    return {op.type for op in _graph(fn, *args).get_operations()}


@pytest.mark.parametrize("mode", ["eager", "traced", "xla"])
@pytest.mark.parametrize("kwargs", [{}, {"center": False},
                                    {"scale": False}])
def test_training_equals_keras_batch_norm(mode, kwargs):
    """Outputs, input and weight gradients and the moving statistics after
    two steps equal Keras' layer; the moving statistics also equal numpy's
    (Keras' rule: biased batch variance, `momentum` on the old value)."""
    x, keras_bn, fused = _pair(**kwargs)
    moving = [w.numpy() for w in (keras_bn.moving_mean,
                                  keras_bn.moving_variance)]
    run = _step if mode == "eager" else tf.function(
        _step, jit_compile=mode == "xla")
    for _ in range(2):
        want, got = run(keras_bn, x), run(fused, x)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g.numpy(), w.numpy(), atol=2e-5,
                                   rtol=1e-5)
    data = x.numpy().reshape(-1, x.shape[-1])
    for _ in range(2):
        moving = [moving[0] * 0.9 + data.mean(0) * 0.1,
                  moving[1] * 0.9 + data.var(0) * 0.1]
    for layer in (keras_bn, fused):
        np.testing.assert_allclose(layer.moving_mean.numpy(), moving[0],
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance.numpy(), moving[1],
                                   rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_reads_the_input_in_its_dtype(policy):
    """Under a mixed policy the fused op takes the half-precision input
    itself (no float32 cast of it in the graph), gives the compute dtype
    and Keras' values; statistics stay float32."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        x, keras_bn, fused = _pair()
        x = tf.cast(x, keras.config.dtype_policy().compute_dtype)
        want, got = _step(keras_bn, x), _step(fused, x)
        graph = _graph(lambda t: fused(t, training=True), x)
    finally:
        keras.config.set_dtype_policy(previous)
    assert got[0].dtype == x.dtype
    assert fused.moving_mean.dtype == "float32"
    ops = graph.get_operations()
    assert "FusedBatchNormV3" in {op.type for op in ops}
    full_size_casts = [op.name for op in ops if op.type == "Cast"
                       and op.outputs[0].shape.rank == 4]
    assert not full_size_casts
    np.testing.assert_allclose(tf.cast(got[0], "float32").numpy(),
                               tf.cast(want[0], "float32").numpy(),
                               atol=0.05)
    for w, g in zip(want[1:], got[1:]):
        np.testing.assert_allclose(tf.cast(g, "float32").numpy(),
                                   tf.cast(w, "float32").numpy(),
                                   atol=0.05, rtol=0.02)
    np.testing.assert_allclose(fused.moving_variance.numpy(),
                               keras_bn.moving_variance.numpy(), rtol=1e-3)


def test_fused_kernel_in_training_only():
    """Training on a 4D input runs FusedBatchNormV3 (and its one-op
    gradient); inference, masks, other ranks, synchronized and renorm
    layers run Keras' own ops, with Keras' values."""
    x, keras_bn, fused = _pair()
    assert "FusedBatchNormV3" in _ops(lambda t: fused(t, training=True), x)

    def train_grad(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = fused(t, training=True)
        return tape.gradient(y, t)
    assert "FusedBatchNormGradV3" in _ops(train_grad, x)
    assert "FusedBatchNormV3" not in _ops(lambda t: fused(t, training=False),
                                          x)
    np.testing.assert_allclose(fused(x, training=False).numpy(),
                               keras_bn(x, training=False).numpy(), atol=1e-6)

    seq = tf.constant(np.random.RandomState(1).randn(2, 6, 5), "float32")
    layer = FusedBatchNorm()
    assert "FusedBatchNormV3" not in _ops(lambda t: layer(t, training=True),
                                          seq)
    mask = tf.constant([[True] * 4 + [False] * 2] * 2)
    layer = FusedBatchNorm()
    layer.build(seq.shape)
    assert "FusedBatchNormV3" not in _ops(
        lambda t: layer(t, training=True, mask=mask), seq)
    for kwargs in ({"synchronized": True}, {"renorm": True}):
        layer = FusedBatchNorm(**kwargs)
        assert "FusedBatchNormV3" not in _ops(
            lambda t: layer(t, training=True), x), kwargs


def test_models_use_it_and_it_round_trips(tmp_path):
    """The U-Net's BatchNorms are FusedBatchNorm (a BatchNormalization:
    the weight mapping and BatchNorm folding find them); a `.keras` file
    round-trips with equal outputs."""
    model = Unet("resnet18", classes=2, input_shape=(64, 64, 3))
    norms = [layer for layer in model._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(isinstance(n, FusedBatchNorm) for n in norms)
    x = np.random.RandomState(0).rand(1, 64, 64, 3).astype("float32")
    model.compile(keras.optimizers.SGD(1e-2), "mse")
    model.fit(x, np.ones((1, 64, 64, 2), "float32"), epochs=1, verbose=0)
    assert float(np.abs(norms[0].moving_mean.numpy()).max()) > 0
    path = str(tmp_path / "unet.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert all(isinstance(layer, FusedBatchNorm)
               for layer in loaded._flatten_layers()
               if isinstance(layer, keras.layers.BatchNormalization))
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)


def test_mixed_precision_step_keeps_less():
    """Six conv -> BatchNorm -> ReLU layers at 64x64x32, batch 4, under
    mixed_bfloat16, one traced training step (SGD): Keras' layer keeps a
    float32 copy of every BatchNorm input (2 MB each, twice the bfloat16
    conv output) for its gradient; the fused one reads the bfloat16
    input. The allocator peak above the state falls from 31.1 to 23.2 MB
    with oneDNN's kernels (x86 CPUs with AVX-512), from 58.4 to 55.0 MB
    with TensorFlow's own (oneDNN off, as on AVX2-only CPUs: its fused
    kernels convert to float32 inside the op); asserted: by at least one
    of those copies."""
    code = """
from kaggle_tf.models.fused_batch_norm import FusedBatchNorm
keras.config.set_dtype_policy("mixed_bfloat16")
x = np.random.RandomState(0).rand(4, 64, 64, 32).astype("float32")
def transient(norm):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 32))
    h = inputs
    for i in range(6):
        h = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(h)
        h = norm(epsilon=1e-5)(h)
        h = keras.layers.ReLU()(h)
    model = keras.Model(inputs, h)
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return step_transient(model, x, x, warmup=1)
print(json.dumps({"keras": transient(keras.layers.BatchNormalization),
                  "fused": transient(FusedBatchNorm)}))
"""
    got = allocator_probe(code)
    copy = 4 * 64 * 64 * 32 * 4
    assert got["fused"] <= got["keras"] - copy, got
