"""The augmenter and the sample rate inside `kaggle_tf.data.pipeline`."""

import numpy as np
import tensorflow as tf

from kaggle_tf.augment import from_albumentations
from kaggle_tf.data import pipeline

SPEC = [{"__class_fullname__": "HorizontalFlip", "p": 0.5},
        {"__class_fullname__": "ShiftScaleRotate", "p": 0.5,
         "border_mode": 4},
        {"__class_fullname__": "RandomGamma", "p": 0.3}]


def test_make_dataset_with_augmenter_and_sample_rate(steel_records):
    cfg, _ = steel_records
    augmenter = from_albumentations(SPEC, seed=0)
    rate = tf.Variable(1.0, trainable=False)
    ds = pipeline.make_dataset(cfg, [0, 1, 2, 3], training=True,
                               sample_rate=rate, augmenter=augmenter,
                               batch_size=4)
    batch = next(iter(ds))
    h, w = cfg.data.image_size
    assert batch["images"].shape == (4, h, w, 3)
    masks = batch["segmentation_masks"].numpy()
    assert set(np.unique(masks)) <= {0.0, 1.0}
    # rate 1.0: every example has a defect.
    assert np.all(masks.reshape(4, -1).max(axis=1) == 1.0)
    assert float(tf.reduce_max(batch["images"])) <= 1.0


def test_unknown_spatial_shapes_in_a_model_graph():
    augmenter = from_albumentations(SPEC, seed=0, placement="model")
    fn = tf.function(lambda x: augmenter({"images": x}),
                     input_signature=[tf.TensorSpec([None, None, None, 3])])
    out = fn(tf.random.uniform((2, 24, 40, 3)))
    assert out["images"].shape == (2, 24, 40, 3)
