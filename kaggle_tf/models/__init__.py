"""Models: encoders -> decoders/heads -> logits.

    image (B, H, W, C)
      -> encoders.build(name)        feature pyramid {"P1".."P5"}
      -> Unet / FPN decoder          masks logits (B, H, W, classes)
      -> Classifier head             labels logits (B, classes)
      -> SeriesClassifier            one encoder per slice stack (channel
                                     groups), pooled, concatenated, logits
      -> SequenceModel               per-slice labels logits (B, T, classes)

Every model outputs logits (float32, also under mixed precision) unless an
`activation` is asked for (export). `weights.load_torch_state_dict` loads
timm state dicts into the encoder of any of them (`torch_layout` converts the
tensors); `build(model_cfg, input_shape)` builds from the `model` section
of a config.

Example:

>>> from kaggle_tf import models
>>> model = models.Unet("resnet34", classes=4, input_shape=(256, 1600, 3))
"""

from kaggle_tf.models import encoders
from kaggle_tf.models import torch_layout
from kaggle_tf.models import weights
from kaggle_tf.models.build import build
from kaggle_tf.models.classifier import Classifier
from kaggle_tf.models.classifier import SeriesClassifier
from kaggle_tf.models.decoders import FPN
from kaggle_tf.models.decoders import Unet
from kaggle_tf.models.sequence import SequenceModel

__all__ = ["Classifier", "FPN", "SequenceModel", "SeriesClassifier", "Unet",
           "build", "encoders", "torch_layout", "weights"]
