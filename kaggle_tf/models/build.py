"""`build(model_cfg, input_shape)`: the `model` config section -> a model.

Dispatches on `model_cfg.arch` (`unet`, `fpn`, `classifier`,
`series_classifier`, `sequence`); the config keys are the builders'
arguments. `is_classifier(arch)` says which archs are image classifiers
(one image -> `(batch, classes)`), for code that treats them alike.
"""

import inspect

from kaggle_tf.models.classifier import Classifier
from kaggle_tf.models.classifier import SeriesClassifier
from kaggle_tf.models.decoders.fpn import FPN
from kaggle_tf.models.decoders.unet import Unet
from kaggle_tf.models.sequence import SequenceModel

ARCHITECTURES = {
    "unet": Unet,
    "fpn": FPN,
    "classifier": Classifier,
    "series_classifier": SeriesClassifier,
    "sequence": SequenceModel,
}

# Config keys each architecture takes (besides `input_shape`).
_KEYS = {
    "unet": ("encoder", "classes", "encoder_weights", "decoder_channels",
             "decoder_attention", "aux_head"),
    "fpn": ("encoder", "classes", "encoder_weights", "aux_head"),
    "classifier": ("encoder", "classes", "head", "dropout",
                   "encoder_weights"),
    "series_classifier": ("encoder", "series_channels", "shared_encoder",
                          "classes", "head", "dropout", "encoder_weights"),
}

# Image classifiers: one image in, `(batch, classes)` logits out.
CLASSIFIERS = ("classifier", "series_classifier")


def is_classifier(arch):
    """Whether `arch` (a `model.arch` value) is an image classifier.

    Example:

    >>> is_classifier("series_classifier"), is_classifier("unet")
    (True, False)
    """
    return arch in CLASSIFIERS


def build(model_cfg, input_shape, activation=None):
    """Builds the model a config's `model` section describes.

    Models output logits: `model_cfg.activation` is what inference and
    export apply, so it is only passed on when asked for.

    Args:
        model_cfg: a `config.schema.ModelConfig` (or an object with the
            same attributes).
        input_shape: `(height, width, channels)` of one image (for
            `sequence`: what its builder takes).
        activation: None (logits, the default), or `"sigmoid"` /
            `"softmax"` (e.g. `model_cfg.activation` for export).

    Returns:
        A `keras.Model`.

    Example:

    >>> from kaggle_tf import config
    >>> cfg = config.load("configs/steel.json")
    >>> model = build(cfg.model, (*cfg.data.image_size, cfg.data.channels))
    """
    arch = getattr(model_cfg, "arch", None)
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"model.arch must be one of {', '.join(ARCHITECTURES)}. "
            f"Received: arch={arch!r}")
    builder = ARCHITECTURES[arch]
    params = inspect.signature(builder).parameters
    if arch in _KEYS:
        keys = _KEYS[arch]
    else:
        # A builder whose argument names are config keys takes them all.
        keys = [k for k in params if hasattr(model_cfg, k)
                and k not in ("arch", "activation")]
    kwargs = {k: getattr(model_cfg, k) for k in keys}
    if "decoder_channels" in kwargs:
        kwargs["decoder_channels"] = tuple(kwargs["decoder_channels"])
    if "series_channels" in kwargs:
        if kwargs["series_channels"] is None:
            raise ValueError(
                "model.series_channels is null; `training.run.build_model` "
                "fills it from data.stack_slices (rsna_lumbar), else set "
                "it. Received: series_channels=None")
        kwargs["series_channels"] = tuple(kwargs["series_channels"])
    kwargs["input_shape"] = tuple(input_shape)
    if activation is not None:
        if "activation" not in params:
            raise ValueError(
                f"model.arch={arch!r} takes no activation. Received: "
                f"activation={activation!r}")
        kwargs["activation"] = activation
    return builder(**kwargs)
