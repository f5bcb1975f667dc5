"""Where the augmenter runs: tf.data map graphs, Keras models, XLA.

The SIIM 1st-place list must trace to pure TF (no PyFunc / EagerPyFunc in
the map function, nested functions included) and compile with XLA, both as
the tf.data map (placement "dataset") and inside a `jit_compile=True`
train step (placement "model", the nearest proxy for a TPU on a CPU).
"""

import math
import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf.augment import Augmenter
from kaggle_tf.augment import from_albumentations

from augment_helpers import blob_mask
from augment_helpers import smooth_image

SIIM = "configs/transforms/siim_1st.json"
PY_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def _op_types(graph_def):
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


def _batches(n=4):
    images = np.stack([smooth_image(seed=i) for i in range(n)])
    masks = np.stack([blob_mask(seed=i) for i in range(n)])[..., None]
    labels = np.ones((n, 1), "float32")
    return tf.data.Dataset.from_tensor_slices(
        {"images": images, "segmentation_masks": masks,
         "labels": labels}).repeat().batch(4, drop_remainder=True)


def _map_graph(ds):
    return ds._map_func.function.graph.as_graph_def()


def test_tf_data_map_is_pure_tf_and_xla():
    augmenter = from_albumentations(SIIM, seed=0)
    assert augmenter.xla_compatible and augmenter._runner.jit_compile
    ds = _batches().map(lambda b: augmenter(b, training=True),
                        num_parallel_calls=2)
    types = _op_types(_map_graph(ds))
    assert not types & PY_OPS
    graph = _map_graph(ds)
    must_compile = [f for f in graph.library.function
                    if f.attr.get("_XlaMustCompile") is not None
                    and f.attr["_XlaMustCompile"].b]
    assert must_compile, "the augmentation is not an XLA function"
    # Running it compiles it: an op without an XLA kernel would raise.
    out = next(iter(ds))
    assert out["images"].shape == (4, 48, 64, 3)
    np.testing.assert_array_equal(out["labels"], np.ones((4, 1)))


def test_cpu_fallback_is_the_only_pyfunc():
    with pytest.warns(UserWarning, match="TPU"):
        augmenter = from_albumentations(
            [{"__class_fullname__": "Blur", "p": 1.0, "blur_limit": [3, 3]}],
            seed=0, allow_cpu_fallback=True)
    assert not augmenter.xla_compatible
    ds = _batches().map(lambda b: augmenter(b, training=True))
    assert _op_types(_map_graph(ds)) & PY_OPS
    out = next(iter(ds))
    assert out["images"].shape == (4, 48, 64, 3)


class AugmentedSegmenter(keras.Model):
    """A tiny segmenter whose train step augments images and masks."""

    def __init__(self, augmenter, **kwargs):
        super().__init__(**kwargs)
        self.augmenter = augmenter
        self.conv = keras.layers.Conv2D(1, 3, padding="same")

    def build(self, input_shape):
        self.conv.build(input_shape)
        super().build(input_shape)

    def call(self, images):
        return self.conv(images)

    def train_step(self, data):
        images, masks = data
        batch = self.augmenter({"images": images,
                                "segmentation_masks": masks}, training=True)
        images, masks = batch["images"], batch["segmentation_masks"]
        with tf.GradientTape() as tape:
            logits = self(images, training=True)
            loss = self.compute_loss(x=images, y=masks, y_pred=logits)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return {"loss": loss}


def test_model_train_step_is_pure_tf_and_compiles_with_xla():
    augmenter = from_albumentations(SIIM, seed=0, placement="model")
    model = AugmentedSegmenter(augmenter)
    model.compile(optimizer="adam",
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  jit_compile=True)
    images = np.stack([smooth_image(32, 32, seed=i) for i in range(4)])
    masks = np.stack([blob_mask(32, 32, seed=i) for i in range(4)])[
        ..., None]
    model(images[:1])
    step = tf.function(model.train_step, jit_compile=True)
    spec = (tf.TensorSpec([2, 32, 32, 3]), tf.TensorSpec([2, 32, 32, 1]))
    graph = step.get_concrete_function(spec).graph.as_graph_def()
    types = _op_types(graph)
    assert not types & PY_OPS
    assert "ImageProjectiveTransformV3" not in types
    # Keras' own jit_compile=True train function.
    history = model.fit(images, masks, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    logs = step((tf.constant(images[:2]), tf.constant(masks[:2])))
    assert np.isfinite(float(logs["loss"]))


def test_model_placement_is_identity_at_inference(tmp_path):
    augmenter = from_albumentations(SIIM, seed=0, placement="model")
    inputs = keras.Input((32, 32, 3))
    conv = keras.layers.Conv2D(2, 3, padding="same")
    model = keras.Model(inputs, conv(augmenter(inputs)))
    images = np.stack([smooth_image(32, 32, seed=i) for i in range(3)])
    expected = conv(images).numpy()
    np.testing.assert_array_equal(model.predict(images, verbose=0),
                                  expected)
    np.testing.assert_array_equal(model(images, training=False), expected)
    assert not np.allclose(model(images, training=True), expected)
    batch = {"images": images}
    np.testing.assert_array_equal(
        augmenter(batch, training=False)["images"], batch["images"])


def test_keras_file_round_trip(tmp_path):
    augmenter = from_albumentations(SIIM, seed=5, placement="model")
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(augmenter(inputs)))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = [lay for lay in loaded.layers if isinstance(lay, Augmenter)][0]
    assert layer.get_config()["transforms"] == augmenter.transforms
    assert layer.seed == 5 and layer.placement == "model"
    images = np.stack([smooth_image(32, 32, seed=i) for i in range(2)])
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               model.predict(images, verbose=0), atol=1e-6)
    # A fresh process only needs `import kaggle_tf.augment`.
    code = ("import keras, kaggle_tf.augment; "
            f"m = keras.saving.load_model({path!r}); "
            "print(type(m.layers[1]).__name__)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = subprocess.run([sys.executable, "-c", code], env=env,
                                capture_output=True, text=True, cwd=root,
                                timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("Augmenter")


def test_config_round_trip_gives_same_batches():
    augmenter = from_albumentations(SIIM, seed=3, placement="model")
    clone = Augmenter.from_config(augmenter.get_config())
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(augmenter))
    images = np.stack([smooth_image(seed=i) for i in range(4)])
    a = augmenter({"images": images})["images"]
    np.testing.assert_array_equal(a, clone({"images": images})["images"])
    np.testing.assert_array_equal(a, revived({"images": images})["images"])


def _largest_constant(hlo_text):
    """Elements of the largest array literal in an HLO module's text."""
    largest = 0
    for dims in re.findall(r"= \w+\[([\d,]*)\]\{[\d,]*\} constant\(", hlo_text):
        largest = max(largest, math.prod(int(d) for d in dims.split(",") if d))
    return largest


def test_the_compiled_list_holds_no_image_sized_constants():
    # Without `warp.runtime_zero` XLA folds the pixel grid and every
    # coordinate computed from it into literals: ~200 MB of them for the
    # SIIM list at 1024 x 1024, and a compiler peak of over 6 GB.
    augmenter = from_albumentations(SIIM, seed=0)
    height, width = 48, 64
    data = {"images": tf.zeros([2, height, width, 3]),
            "masks": tf.zeros([2, height, width, 1])}
    hlo = augmenter._runner._core.experimental_get_compiler_ir(
        data, tf.constant([1, 2]))(stage="optimized_hlo")
    assert _largest_constant(hlo) < height * width
