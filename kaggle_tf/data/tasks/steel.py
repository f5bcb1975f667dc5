"""Severstal records -> examples: JPEG image, 4-class bit-packed mask.

Example:

>>> spec = features("train")
>>> sorted(spec)
['fold', 'image/encoded', 'image/id', 'labels', 'mask/encoded']
"""

from kaggle_tf.data import records

CLASSES = ("1", "2", "3", "4")
KIND = "segmentation"


def features(split: str) -> dict:
    """The parse spec of a train or test record."""
    return records.segmentation_features(split, len(CLASSES))


def decode(parsed: dict, cfg, split: str, manifest: dict = None) -> dict:
    """A parsed record -> `images`, `segmentation_masks`, `labels`, meta."""
    return records.segmentation_example(parsed, cfg, split, manifest,
                                        len(CLASSES), cfg.data.channels)
