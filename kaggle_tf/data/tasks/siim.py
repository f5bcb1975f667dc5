"""SIIM-ACR records -> examples: 8-bit X-ray PNG, one-class mask.

The grayscale image is repeated to `cfg.data.channels` channels (3 for
ImageNet encoders); `labels` is [has pneumothorax].

Example:

>>> sorted(features("train"))
['fold', 'image/encoded', 'image/id', 'labels', 'mask/encoded']
"""

import tensorflow as tf

from kaggle_tf.data import records
from tfrecords_tools import schema
from tfrecords_tools.competitions.siim import CLASSES

KIND = "segmentation"


def features(split: str) -> dict:
    """The parse spec of a train or test record."""
    spec = {
        schema.ID: tf.io.FixedLenFeature([], tf.string),
        schema.IMAGE: tf.io.FixedLenFeature([1], tf.string),
        schema.FOLD: tf.io.FixedLenFeature([], tf.int64,
                                           default_value=schema.TEST_FOLD),
    }
    if split == "train":
        spec[schema.MASK] = tf.io.FixedLenFeature([], tf.string)
        spec[schema.LABELS] = tf.io.FixedLenFeature([len(CLASSES)],
                                                    tf.float32)
    return spec


def decode(parsed: dict, cfg, split: str, manifest: dict = None) -> dict:
    """A parsed record -> `images`, `segmentation_masks`, `labels`, meta."""
    size = cfg.data.image_size
    stored = (manifest or {}).get("image_size")
    image = records.decode_image(parsed[schema.IMAGE][0], 1)
    image = records.resize_image(image, size, stored)
    out = {
        "images": tf.tile(image, [1, 1, cfg.data.channels]),
        "id": parsed[schema.ID],
        "fold": parsed[schema.FOLD],
    }
    if split == "train":
        mask = records.decode_mask(parsed[schema.MASK], len(CLASSES))
        mask = records.resize_mask(mask, size, stored)
        out["segmentation_masks"] = tf.cast(mask, tf.float32)
        out["labels"] = tf.ensure_shape(parsed[schema.LABELS],
                                        (len(CLASSES),))
    return out
