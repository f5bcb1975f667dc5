"""Encoders: backbones that return a feature pyramid `{"P1".."P5"}`.

Each encoder is registered by name (`names()`), built as an `Encoder`
(a functional model whose outputs are the maps at strides 2..32, exactly
timm's `features_only` outputs) and loads timm's PyTorch state dicts with
`kaggle_tf.models.weights.load_torch_state_dict`.

Why our own encoders rather than keras-hub or kimm backbones:

* keras-hub requires `tensorflow-text` pinned to the previous TensorFlow
  minor release (plus kagglehub, sentencepiece, tokenizers); on a Kaggle
  kernel that pulls a second, mismatched TensorFlow. Its ResNet backbone
  exposes only P2..P5 (no stride-2 map for the U-Net's last skip) and has
  no SE-ResNeXt.
* kimm depends on Keras only, but its feature names and weights are its
  own (downloaded from its releases), not timm's state dicts, which are
  what Kaggle users keep offline.
* Writing the few families we need keeps layer names equal to timm's
  module paths, so any timm checkpoint loads by name, with one error
  listing every mismatch.

>>> from kaggle_tf.models import encoders
>>> "resnet34" in encoders.names()
True
>>> backbone = encoders.build("resnet34", input_shape=(64, 64, 3))
"""

# Importing a family module registers its encoders.
from kaggle_tf.models.encoders import convnext  # noqa: F401
from kaggle_tf.models.encoders import densenet  # noqa: F401
from kaggle_tf.models.encoders import edgenext  # noqa: F401
from kaggle_tf.models.encoders import efficientnet  # noqa: F401
from kaggle_tf.models.encoders import inception  # noqa: F401
from kaggle_tf.models.encoders import resnet  # noqa: F401
from kaggle_tf.models.encoders import senet  # noqa: F401
from kaggle_tf.models.encoders import smp  # noqa: F401
from kaggle_tf.models.encoders import testing  # noqa: F401
from kaggle_tf.models.encoders import xception  # noqa: F401
from kaggle_tf.models.encoders.registry import ENCODERS
from kaggle_tf.models.encoders.registry import Encoder
from kaggle_tf.models.encoders.registry import check_segmentation_ready
from kaggle_tf.models.encoders.registry import names
from kaggle_tf.models.encoders.registry import register_encoder
from kaggle_tf.models.encoders.registry import spec
from kaggle_tf.models.encoders.sources import pretrained_source
from kaggle_tf.models import pretrained


def build(name, input_shape=(None, None, 3), weights=None,
          model_name="encoder"):
    """Builds encoder `name`; its outputs are `{"P1": ..., "P5": ...}`.

    Args:
        name: a name from `names()`.
        input_shape: `(height, width, channels)`; any channel count.
        weights: None, `"imagenet"`, `"hf://<repo_id>"`, a local `.pth` /
            `.safetensors` / `.weights.h5` file or a directory holding one
            (`kaggle_tf.models.pretrained`), or a dict of arrays holding
            timm's state dict for this encoder. The resolved source is kept
            as `encoder.weight_source` (None without weights): its
            `stats(channels)` is the input normalization the full models
            put first.
        model_name: the Keras model name. Defaults to `"encoder"`, the name
            full models give their nested encoder.

    Returns:
        An `Encoder` (a functional `keras.Model`) whose `encoder_name` is
        `name`.

    Example:

    >>> enc = build("resnet34", input_shape=(64, 64, 3))
    >>> [enc.output[k].shape[-1] for k in ("P1", "P5")]
    [64, 512]
    """
    encoder = Encoder(name, input_shape=input_shape, name=model_name)
    encoder.weight_source = pretrained.load_encoder_weights(encoder, weights)
    return encoder


__all__ = ["ENCODERS", "Encoder", "build", "check_segmentation_ready",
           "names", "pretrained_source", "register_encoder", "spec"]
