"""The encoder registry: name -> builder, pyramid channels, timm weight map.

Every encoder is a plain function `build_fn(input_shape) -> keras.Model`
whose outputs are a dict `{"P1": ..., "P5": ...}` of feature maps at strides
2, 4, 8, 16, 32 (timm's `features_only` order). Decoders size themselves
from `spec(name).channels`.

An encoder also says how timm's state dict maps onto it:
`torch_mapping(model) -> {timm_key: (keras_variable, kind)}` where `kind`
is one of `WEIGHT_KINDS` (`models.torch_layout` converts each kind);
`models.weights.load_torch_state_dict` does the rest.

`Encoder` wraps what `build_fn` returns into a model that remembers its
registry name (`encoder_name`), so that a full model holding it as the
nested layer `"encoder"` can be found, frozen, saved and reloaded, and loaded
with timm weights.
"""

import dataclasses
from typing import Callable
from typing import Optional

import keras

# How a PyTorch tensor becomes a Keras variable value (see `layout`).
from kaggle_tf.models.torch_layout import WEIGHT_KINDS  # noqa: F401


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """What the registry knows about one encoder."""

    name: str
    build_fn: Callable
    channels: tuple
    strides: tuple = (2, 4, 8, 16, 32)
    timm_name: Optional[str] = None
    torch_mapping: Optional[Callable] = None
    first_conv: Optional[str] = None
    # timm keys (prefixes) that exist in the state dict but have no
    # counterpart in the pyramid (e.g. a final head norm); never "unexpected".
    ignore_prefixes: tuple = ()
    # True when P_i is exactly ceil(size / stride_i) for any input size
    # (padded convs). Valid-padded networks (Inception, Xception) have
    # smaller maps at the same nominal strides: classifiers only.
    aligned: bool = True
    # The smallest input height / width the network accepts (None: 32).
    min_input_size: Optional[int] = None
    # What timm's full model computes between P5 and its classifier
    # (`Classifier(head="timm")`): None (a global average pool), or a dict
    # `{"kind": "norm"}` (pool, then LayerNorm `head.norm`: ConvNeXt,
    # EdgeNeXt) or `{"kind": "conv_head", "channels", "epsilon",
    # "activation"}` (1x1 `conv_head`, BatchNorm `bn2` and activation
    # before the pool: EfficientNet, MobileNet-V2). Kept as sorted
    # `(key, value)` pairs (the spec stays hashable): `dict(...)` it.
    timm_head: Optional[tuple] = None

    @property
    def segmentation_ready(self):
        """True when U-Net / FPN decoders can use the pyramid: five levels
        at strides 2..32, each exactly the input size over its stride."""
        return self.aligned and self.strides == (2, 4, 8, 16, 32)


ENCODERS = {}


def register_encoder(name, channels, timm_name=None, torch_mapping=None,
                     first_conv=None, strides=(2, 4, 8, 16, 32),
                     ignore_prefixes=(), aligned=True, min_input_size=None,
                     timm_head=None):
    """Decorator: registers `build_fn(input_shape)` under `name`.

    Args:
        name: the encoder name users write (`model.encoder`).
        channels: channels of P1..P5.
        timm_name: the timm model whose state dict loads into it.
        torch_mapping: `fn(model) -> {timm_key: (variable, kind)}`.
        first_conv: timm key of the stem conv weight, adapted when the
            input channel count differs (as timm's `adapt_input_conv`).
        strides: strides of P1..P5 relative to the input.
        ignore_prefixes: timm key prefixes the loader skips silently
            (beyond the classifier keys it always skips).
        aligned: False when the maps are not exactly `size / stride`
            (valid padding); such encoders serve classifiers only.
        min_input_size: the smallest input height / width it accepts.
        timm_head: timm's layers between P5 and its classifier (see
            `EncoderSpec.timm_head`). Defaults to `None` (a pool only).
    """

    def wrap(build_fn):
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} is registered twice")
        ENCODERS[name] = EncoderSpec(
            name=name, build_fn=build_fn, channels=tuple(channels),
            strides=tuple(strides), timm_name=timm_name,
            torch_mapping=torch_mapping, first_conv=first_conv,
            ignore_prefixes=tuple(ignore_prefixes), aligned=bool(aligned),
            min_input_size=min_input_size,
            timm_head=None if timm_head is None else tuple(
                sorted(dict(timm_head).items())))
        return build_fn

    return wrap


def check_segmentation_ready(name, model="U-Net / FPN"):
    """Raises a `ValueError` when encoder `name` cannot feed a decoder.

    Example:

    >>> check_segmentation_ready("resnet34")
    """
    entry = spec(name)
    if entry.segmentation_ready:
        return
    if not entry.aligned:
        why = ("its feature maps come from unpadded ('valid') convolutions, "
               "so they are smaller than input / stride and do not line up "
               "with the decoder's upsampling")
    else:
        why = ("a U-Net / FPN decoder needs five levels at strides "
               "(2, 4, 8, 16, 32)")
    raise ValueError(
        f"encoder {name!r} (strides {entry.strides}) serves classifiers "
        f"only: {why}. Use it in `Classifier`, or pick another encoder for "
        f"{model}. Received: encoder={name!r}")


def names():
    """Every registered encoder name, sorted."""
    return sorted(ENCODERS)


def spec(name):
    """The `EncoderSpec` of `name`; unknown names list the choices."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise ValueError(
            f"unknown encoder {name!r}. Choices: {', '.join(names())}"
        ) from None


@keras.saving.register_keras_serializable(package="kaggle_tf")
class Encoder(keras.Model):
    """A registered encoder as a functional model with outputs P1..P5.

    Its outputs are the dict `{"P1": ..., "P5": ...}` (strides 2..32). It
    remembers `encoder_name`; its config is its constructor args, so a saved
    model rebuilds it from the registry (as keras-hub backbones do) and then
    restores the variables by their fixed layer names.

    Args:
        encoder_name: a registered encoder name.
        input_shape: `(height, width, channels)`. Defaults to
            `(None, None, 3)`.
        name: the model name. Defaults to `"encoder"`.
        **kwargs: passed to `keras.Model` (`trainable`, `dtype`).

    Example:

    >>> enc = Encoder("resnet18", input_shape=(64, 64, 3))
    >>> sorted(enc.output)
    ['P1', 'P2', 'P3', 'P4', 'P5']
    """

    def __init__(self, encoder_name, input_shape=(None, None, 3),
                 name="encoder", **kwargs):
        entry = spec(encoder_name)
        input_shape = _check_input_shape(input_shape)
        smallest = entry.min_input_size
        if smallest and any(d is not None and d < smallest
                            for d in input_shape[:2]):
            raise ValueError(
                f"encoder {encoder_name!r} needs inputs of at least "
                f"{smallest}x{smallest}. Received: "
                f"input_shape={input_shape!r}")
        built = entry.build_fn(input_shape)
        outputs = built.output
        if not isinstance(outputs, dict):
            outputs = {f"P{i + 1}": t for i, t in enumerate(outputs)}
        super().__init__(inputs=built.input, outputs=outputs, name=name,
                         **kwargs)
        self.encoder_name = encoder_name
        self.image_shape = input_shape

    @property
    def channels(self):
        """Channels of P1..P5 (from the registry)."""
        return spec(self.encoder_name).channels

    @property
    def strides(self):
        """Strides of P1..P5 (from the registry)."""
        return spec(self.encoder_name).strides

    def get_config(self):
        return {
            "encoder_name": self.encoder_name,
            "input_shape": list(self.image_shape),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _check_input_shape(input_shape):
    try:
        shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = None
    if shape is None or len(shape) != 3 or shape[-1] is None or any(
            d is not None and d < 1 for d in shape):
        raise ValueError(
            "input_shape must be (height, width, channels) with a known "
            f"channel count. Received: input_shape={input_shape!r}")
    return shape
