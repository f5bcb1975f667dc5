"""The encoder registry: name -> builder, pyramid channels, timm weight map.

Every encoder is a plain function `build_fn(input_shape) -> keras.Model`
whose outputs are a dict `{"P1": ..., "P5": ...}` of feature maps at strides
2, 4, 8, 16, 32 (timm's `features_only` order). Decoders size themselves
from `spec(name).channels`.

An encoder also says how timm's state dict maps onto it:
`torch_mapping(model) -> {timm_key: (keras_variable, kind)}` where `kind`
is one of `WEIGHT_KINDS`; `models.weights.load_torch_state_dict` does the
rest.
"""

import dataclasses
from typing import Callable
from typing import Optional

# How a PyTorch tensor becomes a Keras variable value.
#   conv:      (out, in, kh, kw)      -> (kh, kw, in, out)
#   depthwise: (ch * m, 1, kh, kw)    -> (kh, kw, ch, m)
#   dense:     (out, in)              -> (in, out)
#   plain:     as is (biases, BN gamma/beta/running stats, scalars)
WEIGHT_KINDS = ("conv", "depthwise", "dense", "plain")


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


ENCODERS = {}


def register_encoder(name, channels, timm_name=None, torch_mapping=None,
                     first_conv=None, strides=(2, 4, 8, 16, 32)):
    """Decorator: registers `build_fn(input_shape)` under `name`.

    Args:
        name: the encoder name users write (`model.encoder`).
        channels: channels of P1..P5.
        timm_name: the timm model whose state dict loads into it.
        torch_mapping: `fn(model) -> {timm_key: (variable, kind)}`.
        first_conv: timm key of the stem conv weight, adapted when the
            input channel count differs (as timm's `adapt_input_conv`).
    """

    def wrap(build_fn):
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} is registered twice")
        ENCODERS[name] = EncoderSpec(
            name=name, build_fn=build_fn, channels=tuple(channels),
            strides=tuple(strides), timm_name=timm_name,
            torch_mapping=torch_mapping, first_conv=first_conv)
        return build_fn

    return wrap


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
