"""SIIM-ACR records -> examples: 8-bit X-ray PNG, one-class mask.

The grayscale image is repeated to `cfg.data.channels` channels (3 for
ImageNet encoders); `labels` is [has pneumothorax].

Example:

>>> sorted(features("train"))
['fold', 'image/encoded', 'image/id', 'labels', 'mask/encoded']
"""

from kaggle_tf.data import records
from tfrecords_tools.competitions.siim import CLASSES

KIND = "segmentation"


def features(split: str) -> dict:
    """The parse spec of a train or test record."""
    return records.segmentation_features(split, len(CLASSES))


def decode(parsed: dict, cfg, split: str, manifest: dict = None) -> dict:
    """A parsed record -> `images`, `segmentation_masks`, `labels`, meta."""
    return records.segmentation_example(parsed, cfg, split, manifest,
                                        len(CLASSES), 1)
