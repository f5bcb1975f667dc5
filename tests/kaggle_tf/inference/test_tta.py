import numpy as np
import keras
import pytest

from kaggle_tf.inference import tta


def conv_model(shape=(16, 16, 3), classes=2, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(classes, 5, padding="same")(x)
    return keras.Model(inp, x)


def np_d4(x, k):
    t, r = divmod(k, 4)
    if t:
        x = np.transpose(x, (0, 2, 1, 3))
    return np.rot90(x, r, axes=(1, 2))


def np_d4_inv(x, k):
    t, r = divmod(k, 4)
    x = np.rot90(x, -r, axes=(1, 2))
    if t:
        x = np.transpose(x, (0, 2, 1, 3))
    return x


def test_d4_matches_numpy_group():
    x = np.random.rand(2, 5, 5, 3).astype("float32")
    for k in range(8):
        got = keras.ops.convert_to_numpy(tta.TTATransform(k)(x))
        np.testing.assert_array_equal(got, np_d4(x, k))
        back = keras.ops.convert_to_numpy(
            tta.TTATransform(k, inverse=True)(got))
        np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("mode", ["hflip", "vflip", "d4"])
def test_tta_equals_mean_of_inverted_passes(mode):
    model = conv_model()
    x = np.random.rand(2, 16, 16, 3).astype("float32")
    wrapped = tta.wrap(model, mode, activation="sigmoid")
    got = keras.ops.convert_to_numpy(wrapped(x))
    sig = lambda v: 1 / (1 + np.exp(-np.asarray(v)))  # noqa: E731
    if mode == "hflip":
        passes = [sig(model(x)), sig(model(x[:, :, ::-1]))[:, :, ::-1]]
    elif mode == "vflip":
        passes = [sig(model(x)), sig(model(x[:, ::-1]))[:, ::-1]]
    else:
        passes = [np_d4_inv(sig(model(np.ascontiguousarray(np_d4(x, k)))), k)
                  for k in range(8)]
    np.testing.assert_allclose(got, np.mean(passes, axis=0), atol=1e-5)


def test_rotation_equivariant_model_is_unchanged_by_d4():
    # A 1x1 conv commutes with every D4 transform: TTA changes nothing.
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    x = np.random.rand(2, 8, 8, 3).astype("float32")
    plain = keras.ops.convert_to_numpy(model(x))
    wrapped = keras.ops.convert_to_numpy(tta.wrap(model, "d4")(x))
    np.testing.assert_allclose(wrapped, plain, atol=1e-5)
    # ... whereas an asymmetric model is changed.
    asym = conv_model(shape=(8, 8, 3))
    a = keras.ops.convert_to_numpy(asym(x))
    b = keras.ops.convert_to_numpy(tta.wrap(asym, "d4")(x))
    assert np.abs(a - b).max() > 1e-3


def test_classification_outputs_are_averaged_without_inverse():
    inp = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(flat))
    x = np.random.rand(2, 8, 8, 1).astype("float32")
    got = keras.ops.convert_to_numpy(tta.wrap(model, "hflip")(x))
    ref = (np.asarray(model(x)) + np.asarray(model(x[:, :, ::-1]))) / 2
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_wrapped_model_round_trips_through_keras_file(tmp_path):
    model = conv_model()
    wrapped = tta.wrap(model, "d4", activation="sigmoid")
    x = np.random.rand(1, 16, 16, 3).astype("float32")
    path = str(tmp_path / "tta.keras")
    wrapped.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(wrapped(x)),
                               atol=1e-6)


def test_unknown_mode():
    with pytest.raises(ValueError, match="d4"):
        tta.wrap(conv_model(), "rot45")
