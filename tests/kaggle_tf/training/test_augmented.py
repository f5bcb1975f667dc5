"""Augmentation in the train step: equal to pre-augmented data, XLA, no
Python ops, identity at inference, plain model in checkpoints."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kaggle_tf.training import augmented
from kaggle_tf.training import callbacks as cbs
from kaggle_tf.training import optimizers

PY_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


class AlwaysFlip(keras.layers.Layer):
    """A stand-in augmenter: flips images and masks left-right."""

    def call(self, data, training=True):
        if not training:
            return data
        return {k: ops.flip(v, axis=2) if k in ("images",
                                               "segmentation_masks") else v
                for k, v in data.items()}


def tiny_segmenter(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3), name="images")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                            name="encoder_conv")(inputs)
    outputs = keras.layers.Conv2D(2, 3, padding="same", name="masks")(x)
    return keras.Model(inputs, outputs, name="tiny_unet")


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 3)).astype("float32")
    # Asymmetric masks, so a flip changes the loss.
    m = np.zeros((4, 16, 16, 2), "float32")
    m[:, 2:9, 1:6, 0] = 1.0
    m[:, 8:14, 3:12, 1] = 1.0
    return x, m


def _compile(model):
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  jit_compile=True)
    return model


def _fit(model, x, m, epochs=2):
    return model.fit(x, m, batch_size=4, epochs=epochs, shuffle=False,
                     verbose=0)


def _graph_ops(concrete):
    graph_def = concrete.graph.as_graph_def()
    names = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        names.update(node.op for node in function.node_def)
    return names


def _real_flip():
    """kaggle_tf.augment's HorizontalFlip(p=1), placement "model"."""
    augment = pytest.importorskip("kaggle_tf.augment")
    return augment.build({
        "transforms": [{"__class_fullname__": "HorizontalFlip", "p": 1.0}],
        "placement": "model", "seed": 0})


@pytest.mark.parametrize("which", ["stand_in", "kaggle_tf.augment"])
def test_train_step_equals_training_on_flipped_data(which):
    """Two XLA steps with an always-flip augmenter == two on flipped data;
    the compiled train step has no Python op."""
    aug = AlwaysFlip() if which == "stand_in" else _real_flip()
    x, m = _data()
    flipped_x, flipped_m = x[:, :, ::-1], m[:, :, ::-1]
    wrapped = _compile(augmented.wrap(tiny_segmenter(), aug))
    plain = _compile(tiny_segmenter())
    h_wrapped = _fit(wrapped, x, m)
    h_plain = _fit(plain, flipped_x, flipped_m)
    assert wrapped.jit_compile is True
    np.testing.assert_allclose(h_wrapped.history["loss"],
                               h_plain.history["loss"], rtol=1e-5)
    for a, b in zip(augmented.unwrap(wrapped).get_weights(),
                    plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Training on the unflipped data would have given other weights.
    other = _compile(tiny_segmenter())
    _fit(other, x, m)
    assert not np.allclose(other.get_weights()[0], plain.get_weights()[0])
    # The XLA train step holds the augmenter's ops and no Python call.
    step = tf.function(wrapped.train_step, jit_compile=True)
    concrete = step.get_concrete_function(
        (tf.TensorSpec(x.shape), tf.TensorSpec(m.shape)))
    names = _graph_ops(concrete)
    assert {"ReverseV2", "Conv2DBackpropFilter"} <= names
    assert not names & PY_OPS, sorted(names & PY_OPS)


def test_inference_is_the_plain_model():
    x, m = _data()
    wrapped = _compile(augmented.wrap(tiny_segmenter(), AlwaysFlip()))
    _fit(wrapped, x, m, epochs=1)
    inner = augmented.unwrap(wrapped)
    np.testing.assert_allclose(wrapped.predict(x, verbose=0),
                               inner.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(wrapped(x)),
                               np.asarray(inner(x)), rtol=1e-6)
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    want = float(loss(m, inner(x)))
    got = wrapped.evaluate(x, m, batch_size=4, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_the_graph_check_sees_python_ops():
    @tf.function
    def with_py(x):
        return tf.py_function(lambda v: v * 2, [x], tf.float32)

    concrete = with_py.get_concrete_function(tf.TensorSpec((2,)))
    assert _graph_ops(concrete) & PY_OPS


def test_checkpoints_hold_the_plain_model(tmp_path):
    x, m = _data()
    wrapped = _compile(augmented.wrap(tiny_segmenter(), AlwaysFlip()))
    _fit(wrapped, x, m, epochs=1)
    path = str(tmp_path / "best.keras")
    cbs.save_model(wrapped, path)       # what TopKCheckpoint does
    loaded = keras.saving.load_model(path, compile=False)
    assert not isinstance(loaded, augmented.AugmentedModel)
    assert loaded.name == "tiny_unet"
    assert [l.name for l in loaded.layers] == \
        [l.name for l in augmented.unwrap(wrapped).layers]
    for a, b in zip(loaded.get_weights(),
                    augmented.unwrap(wrapped).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_weights_round_trip_keeps_the_optimizer_state(tmp_path):
    """save_weights/load_weights on the wrapper (BackupAndRestore)."""
    x, m = _data()
    first = augmented.wrap(tiny_segmenter(), AlwaysFlip())
    first.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    _fit(first, x, m, epochs=1)
    path = str(tmp_path / "latest.weights.h5")
    first.save_weights(path)
    second = augmented.wrap(tiny_segmenter(seed=1), AlwaysFlip())
    second.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    second.optimizer.build(second.trainable_variables)
    second.load_weights(path)
    for a, b in zip(first.optimizer.variables, second.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for model in (first, second):
        _fit(model, x, m, epochs=1)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_augment_batch_targets():
    """Masks move with the images; labels and aux labels stay."""
    x, m = _data()
    labels = np.arange(8, dtype="float32").reshape(4, 2)
    aug = AlwaysFlip()
    new_x, new_y = augmented.augment_batch(aug, x, labels)
    np.testing.assert_array_equal(new_x, x[:, :, ::-1])
    np.testing.assert_array_equal(new_y, labels)
    new_x, new_y = augmented.augment_batch(
        aug, {"images": x}, {"masks": m, "labels": labels})
    np.testing.assert_array_equal(new_x["images"], x[:, :, ::-1])
    np.testing.assert_array_equal(new_y["masks"], m[:, :, ::-1])
    np.testing.assert_array_equal(new_y["labels"], labels)
    assert augmented.wrap(tiny_segmenter(), None).name == "tiny_unet"
    # The encoder of a wrapped model is the plain model's.
    wrapped = augmented.wrap(tiny_segmenter(), aug)
    assert optimizers.encoder_variable_paths(wrapped) == [
        "encoder_conv/bias", "encoder_conv/kernel"]


def test_wrapper_config_round_trip():
    wrapped = augmented.wrap(tiny_segmenter(), _real_flip())
    blob = keras.saving.serialize_keras_object(wrapped)
    assert blob["registered_name"] == "kaggle_tf>AugmentedModel"
    again = keras.saving.deserialize_keras_object(blob)
    assert isinstance(again, augmented.AugmentedModel)
    assert again.inner_model.name == "tiny_unet"
