"""A mixed-precision checkpoint loaded to compute in float32 (what the
ONNX and TFLite exports use)."""

import keras
import numpy as np

from kaggle_tf import checkpoints
from kaggle_tf.models import Unet


def _unet():
    return Unet(encoder="test_resnet", classes=2, input_shape=(64, 64, 3),
                decoder_channels=(8, 8, 8, 4, 4))


def test_mixed_precision_checkpoint_loads_as_float32(tmp_path):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = _unet()
    finally:
        keras.config.set_dtype_policy(previous)
    rng = np.random.default_rng(0)
    for v in mixed.weights:
        value = (rng.uniform(0.5, 1.5, v.shape) if "variance" in v.path
                 else rng.normal(0, 0.1, v.shape))
        v.assign(value.astype(v.dtype))
    path = str(tmp_path / "mixed.keras")
    mixed.save(path)
    assert any(layer.compute_dtype == "float16"
               for layer in mixed._flatten_layers())

    plain = checkpoints.load_model(path)
    assert any(layer.compute_dtype == "float16"
               for layer in plain._flatten_layers())
    fp32 = checkpoints.load_model(path, float32=True)
    assert all(layer.compute_dtype == "float32"
               for layer in fp32._flatten_layers())
    # The reference: the same architecture built in float32, same weights.
    ref = _unet()
    ref.set_weights(mixed.get_weights())
    images = rng.uniform(size=(2, 64, 64, 3)).astype(np.float32)
    got = np.asarray(fp32(images, training=False))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.asarray(ref(images, training=False)),
                               atol=1e-6)
    # float16 computes differently: the copy did not keep the policy.
    half = np.asarray(mixed(images, training=False), np.float32)
    assert np.abs(half - got).max() > 1e-6
    # A float32 model comes back as it is.
    assert checkpoints.to_float32(ref) is ref
