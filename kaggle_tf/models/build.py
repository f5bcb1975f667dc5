"""`build(model_cfg, input_shape)`: the `model` config section -> a model.

Dispatches on `model_cfg.arch` (`unet`, `fpn`, `classifier`,
`series_classifier`, `sequence`); the config keys are the builders'
arguments. `config_keys(arch)` lists every `model` key an arch takes (the
config rejects the others). `is_classifier(arch)` says which archs are
image classifiers (one image -> `(batch, classes)`), for code that treats
them alike.
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

# Config keys each architecture's builder takes (besides `input_shape`),
# named as its arguments.
_KEYS = {
    "unet": ("encoder", "classes", "encoder_weights", "decoder_channels",
             "decoder_attention", "aux_head"),
    "fpn": ("encoder", "classes", "encoder_weights", "aux_head"),
    "classifier": ("encoder", "classes", "head", "dropout",
                   "encoder_weights"),
    "series_classifier": ("encoder", "series_channels", "shared_encoder",
                          "classes", "head", "dropout", "encoder_weights"),
    "sequence": ("classes", "rnn", "units", "num_layers", "bidirectional",
                 "dropout", "residual", "encoder", "encoder_weights"),
}

# Keys of every arch: what to build, and what inference and export apply.
COMMON_KEYS = ("arch", "activation")

# Keys an arch's trainer reads beside its builder's.
_TRAINER_KEYS = {"sequence": ("embedding_model",)}
# Keys every arch's trainer reads (uptraining from another run).
_INIT_KEYS = ("init_from", "init_skip_mismatch")

# A sequence model on embeddings (`embedding_dim` given) has no encoder.
_ENCODER_KEYS = ("encoder", "encoder_weights")


def config_keys(arch):
    """Every `model` config key that `arch` takes.

    Example:

    >>> "decoder_channels" in config_keys("classifier")
    False
    >>> "units" in config_keys("sequence")
    True
    """
    if arch not in _KEYS:
        raise ValueError(
            f"model.arch must be one of {', '.join(ARCHITECTURES)}. "
            f"Received: arch={arch!r}")
    return (COMMON_KEYS + _KEYS[arch] + _TRAINER_KEYS.get(arch, ())
            + _INIT_KEYS)


# Image classifiers: one image in, `(batch, classes)` logits out.
CLASSIFIERS = ("classifier", "series_classifier")


# What each architecture outputs: per-pixel "masks" (segmentation),
# per-image "labels" (classifiers) or per-slice "series" labels.
OUTPUTS = {"unet": "masks", "fpn": "masks", "classifier": "labels",
           "series_classifier": "labels", "sequence": "series"}


def output_kind(arch):
    """`"masks"`, `"labels"` or `"series"`: what `arch` predicts.

    Example:

    >>> output_kind("fpn"), output_kind("classifier")
    ('masks', 'labels')
    """
    if arch not in OUTPUTS:
        raise ValueError(f"model.arch must be one of {', '.join(OUTPUTS)}. "
                         f"Received: arch={arch!r}")
    return OUTPUTS[arch]


def family(arch):
    """`"image"` (one image -> masks or labels) or `"series"` (a series of
    slices -> per-slice labels): which trainer, predictor and exporter
    serve `arch`.

    Example:

    >>> family("unet"), family("sequence")
    ('image', 'series')
    """
    return "series" if output_kind(arch) == "series" else "image"


def is_classifier(arch):
    """Whether `arch` (a `model.arch` value) is an image classifier.

    Example:

    >>> is_classifier("series_classifier"), is_classifier("unet")
    (True, False)
    """
    return arch in CLASSIFIERS


def build(model_cfg, input_shape, activation=None, **extra):
    """Builds the model a config's `model` section describes.

    Models output logits: `model_cfg.activation` is what inference and
    export apply, so it is only passed on when asked for.

    Args:
        model_cfg: a `config.schema.ModelConfig` (or an object with the
            same attributes).
        input_shape: `(height, width, channels)` of one image (for
            `sequence`: of one slice, or None on embeddings).
        activation: None (logits, the default), or `"sigmoid"` /
            `"softmax"` (e.g. `model_cfg.activation` for export).
        **extra: builder arguments that are not config keys, e.g.
            `embedding_dim` of a `sequence` model on embeddings (then the
            config's `encoder` and `encoder_weights` are not used: the
            slices come embedded by `model.embedding_model`).

    Returns:
        A `keras.Model`.

    Example:

    >>> from kaggle_tf import config
    >>> cfg = config.load("configs/steel.json")
    >>> model = build(cfg.model, (*cfg.data.image_size, cfg.data.channels))
    >>> seq = config.load("configs/rsna_ich_seq.json")
    >>> lstm = build(seq.model, None, embedding_dim=2048)
    """
    arch = getattr(model_cfg, "arch", None)
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"model.arch must be one of {', '.join(ARCHITECTURES)}. "
            f"Received: arch={arch!r}")
    builder = ARCHITECTURES[arch]
    params = inspect.signature(builder).parameters
    keys = _KEYS[arch]
    if arch == "sequence" and extra.get("embedding_dim") is not None:
        keys = tuple(k for k in keys if k not in _ENCODER_KEYS)
    for name in extra:
        if name in keys or name in COMMON_KEYS or name == "input_shape":
            raise ValueError(
                f"{name} comes from the config (model.{name}) or the "
                f"input_shape argument. Received: {name}={extra[name]!r}")
        if name not in params:
            raise ValueError(
                f"model.arch={arch!r} ({builder.__name__}) takes no {name}. "
                f"Received: {name}={extra[name]!r}")
    kwargs = {k: getattr(model_cfg, k) for k in keys}
    if "decoder_channels" in kwargs:
        kwargs["decoder_channels"] = tuple(kwargs["decoder_channels"])
    if "series_channels" in kwargs:
        if kwargs["series_channels"] is None:
            raise ValueError(
                "model.series_channels is null; the task plugin "
                "(kaggle_tf.tasks) fills it from data.stack_slices "
                "(rsna_lumbar), else set it. Received: series_channels=None")
        kwargs["series_channels"] = tuple(kwargs["series_channels"])
    kwargs["input_shape"] = (None if input_shape is None
                             else tuple(input_shape))
    if activation is not None:
        if "activation" not in params:
            raise ValueError(
                f"model.arch={arch!r} takes no activation. Received: "
                f"activation={activation!r}")
        kwargs["activation"] = activation
    kwargs.update(extra)
    return builder(**kwargs)
