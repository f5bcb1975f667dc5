"""HPA records -> examples: RGBY channels, 28-dim multi-hot labels.

A record holds the red, green, blue and yellow PNGs as stored.
`cfg.data.channels` = 4 gives RGBY; 3 gives RGB (yellow left out).

Example:

>>> sorted(features("train"))
['fold', 'image/encoded', 'image/id', 'labels']
"""

import tensorflow as tf

from kaggle_tf.data import records
from tfrecords_tools import schema
from tfrecords_tools.competitions.protein import CLASSES
from tfrecords_tools.competitions.protein import COLORS

KIND = "classification"


def features(split: str) -> dict:
    """The parse spec of a train or test record."""
    spec = {
        schema.ID: tf.io.FixedLenFeature([], tf.string),
        schema.IMAGE: tf.io.FixedLenFeature([len(COLORS)], tf.string),
        schema.FOLD: tf.io.FixedLenFeature([], tf.int64,
                                           default_value=schema.TEST_FOLD),
    }
    if split == "train":
        spec[schema.LABELS] = tf.io.FixedLenFeature([len(CLASSES)],
                                                    tf.float32)
    return spec


def decode(parsed: dict, cfg, split: str, manifest: dict = None) -> dict:
    """A parsed record -> `images` (H, W, 3 or 4), `labels`, meta."""
    channels = cfg.data.channels
    if channels not in (3, 4):
        raise ValueError(f"protein images have 4 channels (RGBY) or 3 "
                         f"(RGB): data.channels must be 3 or 4. Received: "
                         f"{channels}")
    image = records.decode_images(parsed[schema.IMAGE], channels)
    out = {
        "images": records.resize_image(image, cfg.data.image_size,
                                       (manifest or {}).get("image_size")),
        "id": parsed[schema.ID],
        "fold": parsed[schema.FOLD],
    }
    if split == "train":
        out["labels"] = tf.ensure_shape(parsed[schema.LABELS],
                                        (len(CLASSES),))
    return out
