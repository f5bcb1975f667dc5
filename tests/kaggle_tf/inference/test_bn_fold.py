"""BatchNormalization folded into the preceding Conv2D: same outputs."""

import keras
import numpy as np

from kaggle_tf import models
from kaggle_tf.inference import bn_fold as fold


def randomize_batch_norms(model, seed=0):
    """Non-trivial moving statistics, gamma and beta everywhere."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize_batch_norms(layer, seed + 1)
        elif isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                rng.normal(0, 0.2, beta.shape).astype("float32"),
                rng.normal(0, 0.2, mean.shape).astype("float32"),
                rng.uniform(0.5, 2.0, var.shape).astype("float32")])


def test_unet_folds_every_batch_norm():
    keras.utils.set_random_seed(0)
    model = models.Unet("test_resnet", classes=3, input_shape=(64, 64, 3),
                        decoder_channels=(32, 16, 16, 8, 8))
    randomize_batch_norms(model)
    fast = fold.fold_batch_norms(model)
    assert fold.count_batch_norms(model) > 20
    assert fold.count_batch_norms(fast) == 0
    x = np.random.default_rng(1).uniform(0, 1, (2, 64, 64, 3)).astype(
        "float32")
    want = keras.ops.convert_to_numpy(model(x, training=False))
    got = keras.ops.convert_to_numpy(fast(x, training=False))
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=1e-4,
                               atol=1e-5 * np.abs(want).max())
    # The original model is untouched.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(x, training=False)), want)


def test_batch_norm_not_after_a_conv_is_kept():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 2))
    a = keras.layers.Conv2D(4, 3, padding="same", use_bias=True)(inp)
    b = keras.layers.BatchNormalization()(a)           # folds (bias too)
    c = keras.layers.Add()([b, keras.layers.Conv2D(4, 1)(inp)])
    d = keras.layers.BatchNormalization()(c)           # after an Add: kept
    pooled = keras.layers.GlobalAveragePooling2D()(d)
    out = keras.layers.BatchNormalization()(pooled)    # on a vector: kept
    model = keras.Model(inp, out)
    randomize_batch_norms(model)
    fast = fold.fold_batch_norms(model)
    assert fold.count_batch_norms(fast) == 2
    x = np.random.default_rng(2).normal(size=(3, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fast(x)),
        keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-5)
