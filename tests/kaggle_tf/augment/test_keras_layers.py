"""What Keras 3's augmentation layers do with our batches (what the
KerasLayer op relies on), and the op itself."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf.augment import ops
from kaggle_tf.augment.ops.keras_layers import XLA_SAFE

from augment_helpers import blob_mask
from augment_helpers import smooth_image

CONFIGS = {
    "RandomFlip": {"mode": "horizontal"},
    "RandomRotation": {"factor": 0.2},
    "RandomZoom": {"height_factor": 0.3},
    "RandomTranslation": {"height_factor": 0.2, "width_factor": 0.2},
    "RandomShear": {"x_factor": 0.3, "y_factor": 0.3},
    "RandomPerspective": {"factor": 1.0, "scale": 0.5},
    "RandomElasticTransform": {"factor": 1.0, "scale": 1.0},
    "RandomErasing": {"factor": 1.0, "scale": (0.1, 0.3),
                      "value_range": (0, 1)},
    "RandomBrightness": {"factor": 0.3, "value_range": (0, 1)},
    "RandomContrast": {"factor": 0.3, "value_range": (0, 1)},
}
GEOMETRIC = {"RandomFlip", "RandomRotation", "RandomZoom",
             "RandomTranslation", "RandomShear", "RandomPerspective",
             "RandomElasticTransform"}


def _batch(n=4):
    images = np.repeat(smooth_image(32, 32)[None], n, 0)
    masks = np.repeat(blob_mask(32, 32)[None, ..., None], n, 0)
    return {"images": images, "segmentation_masks": masks,
            "labels": np.eye(n, dtype="float32")}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_keras_layer_on_dicts(name):
    def make():
        return getattr(keras.layers, name)(seed=3, **CONFIGS[name])

    batch = _batch()
    out = make()(dict(batch), training=True)
    masks = np.asarray(out["segmentation_masks"])
    # Masks: nearest sampling keeps them binary; photometric leaves them.
    assert set(np.unique(masks)) <= {0.0, 1.0}
    if name in GEOMETRIC:
        assert not np.array_equal(masks, batch["segmentation_masks"])
    else:
        np.testing.assert_array_equal(masks, batch["segmentation_masks"])
    # Labels pass through; parameters are per sample; seeds repeat.
    np.testing.assert_array_equal(out["labels"], batch["labels"])
    images = np.asarray(out["images"])
    assert len({x.tobytes() for x in images}) >= 2
    again = make()(dict(batch), training=True)
    np.testing.assert_array_equal(images, again["images"])
    # Inside tf.data.
    layer = make()
    ds = tf.data.Dataset.from_tensors(batch).map(
        lambda b: layer(b, training=True))
    assert next(iter(ds))["images"].shape == (4, 32, 32, 3)


@pytest.mark.parametrize("name", ["RandomFlip", "RandomRotation"])
def test_xla_table_is_right(name):
    layer = getattr(keras.layers, name)(seed=1, **CONFIGS[name])
    fn = tf.function(lambda x: layer(x, training=True), jit_compile=True)
    x = tf.constant(_batch()["images"])
    if XLA_SAFE[name]:
        assert fn(x).shape == x.shape
    else:
        with pytest.raises(tf.errors.InvalidArgumentError):
            fn(x)


def test_keras_layer_op_gates_with_p():
    op = ops.KerasLayer("RandomFlip", {"mode": "vertical"}, p=0.5)
    assert op.xla_safe
    tree = ops.Compose([op])
    tree.assign_indices()
    op.make_layer(0)
    pattern = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
    data = {"images": tf.constant(np.repeat(pattern, 2000, 0))}
    out = ops.run(tree, data, tf.constant([1, 2]), per_sample=False)
    changed = np.any(out["images"].numpy() != pattern, axis=(1, 2, 3))
    # p = 0.5 of RandomFlip's own 0.5.
    assert abs(changed.mean() - 0.25) < 0.05
    with pytest.raises(ValueError, match="seed"):
        ops.KerasLayer("RandomFlip", {"seed": 1})
    with pytest.raises(ValueError, match="one of"):
        ops.KerasLayer("RandomBlur")
