"""EfficientNet-B0..B7 (both padding flavours) and MobileNet-V2 encoders.

timm ships each EfficientNet twice, with the same module names:

* `tf_efficientnet_bN` (registered here as `tf_efficientnet_bN`): the
  original Google graph, TensorFlow "same" padding (asymmetric for strided
  convs, depending on the input size) and BatchNorm epsilon 1e-3. Google's
  checkpoints, the noisy-student `tf_efficientnet_bN_ns` / `.ns_jft_in1k`
  weights that most Kaggle solutions of 2019-2021 start from, and smp's
  `timm-efficientnet-bN` encoders use it. Keras' own `"same"` padding is
  exactly TensorFlow's, so these are plain `"same"` convolutions.
* `efficientnet_bN` (registered as `efficientnet_bN`): timm's own PyTorch
  training, symmetric padding (`kernel_size // 2`, done here with
  `ZeroPadding2D` + `"valid"` for strided convs) and epsilon 1e-5.

Load a checkpoint into the encoder of the same name; the keys are the
same, the numbers are not interchangeable.

Blocks follow timm's `_gen_efficientnet`: a 3x3 stride-2 stem, a depthwise
separable block (`ds`), then inverted residual blocks (`ir`: 1x1 expand,
depthwise kxk, squeeze-and-excitation with SiLU, 1x1 project), SiLU
everywhere. Channels scale by `round_channels` and depths by timm's
`_scale_stage_depth` ("ceil"). Layers are named after timm's modules
(`blocks.1.0.conv_dw` -> `blocks_1_0_conv_dw`).

MobileNet-V2 (`mobilenetv2_100`) is the same generator with another
arch_def (`MOBILENET_V2_STAGES`): 3x3 kernels, no squeeze-and-excitation,
ReLU6, symmetric padding, epsilon 1e-5; its pyramid channels are
(16, 24, 32, 96, 320).

The pyramid is timm's `features_only` output: the last block of stages
0, 1, 2, 4 and 6 (strides 2, 4, 8, 16, 32); for B0 the channels are
(16, 24, 40, 112, 320). timm's `conv_head` / `bn2` are not part of it.

Example:

>>> from kaggle_tf.models import encoders
>>> enc = encoders.build("tf_efficientnet_b0", input_shape=(64, 64, 3))
>>> enc.output["P5"].shape
(None, 2, 2, 320)
"""

import math
import re

import keras
from keras import layers

from kaggle_tf.models.encoders.registry import register_encoder
from kaggle_tf.models.fused_batch_norm import FusedBatchNorm
from kaggle_tf.models.ordered_conv import OrderedConv2D
from kaggle_tf.models.torch_layout import mapping_by_layer_names

# timm's `_gen_efficientnet` arch_def, one row per stage:
# (block type, repeats, kernel size, stride, expansion ratio, out channels).
# Every block has squeeze-and-excitation with ratio 0.25 of its input.
STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
SE_RATIO = 0.25
STEM_CHANNELS = 32
# (channel multiplier, depth multiplier), as in timm and the paper.
SCALING = {
    "b0": (1.0, 1.0),
    "b1": (1.0, 1.1),
    "b2": (1.1, 1.2),
    "b3": (1.2, 1.4),
    "b4": (1.4, 1.8),
    "b5": (1.6, 2.2),
    "b6": (1.8, 2.6),
    "b7": (2.0, 3.1),
}
# timm's `_gen_mobilenet_v2` arch_def: the same block types, 3x3 kernels
# only, no squeeze-and-excitation, ReLU6 (timm `mobilenetv2_100`).
MOBILENET_V2_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 3, 3, 2, 6, 32),
    ("ir", 4, 3, 2, 6, 64),
    ("ir", 3, 3, 1, 6, 96),
    ("ir", 3, 3, 2, 6, 160),
    ("ir", 1, 3, 1, 6, 320),
)
# BatchNorm epsilon: timm's PyTorch default, and TensorFlow's for `tf_`.
BN_EPSILON = 1e-5
TF_BN_EPSILON = 1e-3
BN_MOMENTUM = 0.9
# timm keys of the full model that the pyramid does not use.
HEAD_PREFIXES = ("conv_head.", "bn2.")
HEAD_CHANNELS = 1280  # timm's `num_features` before channel scaling


def timm_head(channel_multiplier, epsilon, activation="silu"):
    """timm's `conv_head` -> `bn2` -> activation, for `Classifier(head=
    "timm")` (`EncoderSpec.timm_head`)."""
    return {"kind": "conv_head", "epsilon": epsilon,
            "activation": activation,
            "channels": round_channels(HEAD_CHANNELS, channel_multiplier)}


def make_divisible(value, divisor=8, round_limit=0.9):
    """timm's `make_divisible` (never rounds down by more than 10%)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def round_channels(channels, multiplier):
    """timm's `round_channels`: `channels * multiplier` to a multiple of 8."""
    if not multiplier:
        return channels
    return make_divisible(channels * multiplier)


def scale_depth(repeats, multiplier):
    """timm's `_scale_stage_depth` for a one-definition stage ("ceil")."""
    return int(math.ceil(repeats * multiplier))


def pyramid_stages(stages=STAGES):
    """Indices of the stages whose output is a pyramid level.

    A stage is a level when the next stage halves the resolution, or when
    it is the last one (timm's `feature_location="bottleneck"`).

    Example:

    >>> pyramid_stages()
    (0, 1, 2, 4, 6)
    """
    last = len(stages) - 1
    return tuple(i for i in range(len(stages))
                 if i == last or stages[i + 1][3] > 1)


def static_same_padding(size, kernel_size, strides):
    """lukemelas' `Conv2dStaticSamePadding`: TensorFlow's "same" padding
    for a fixed input `size`, as `(before, after)` pixels.

    Example:

    >>> static_same_padding(15, 5, 2)
    (2, 2)
    >>> static_same_padding(16, 5, 2)
    (1, 2)
    """
    out = -(-size // strides)
    total = max((out - 1) * strides + kernel_size - size, 0)
    return total // 2, total - total // 2


def _conv(x, filters, kernel_size, strides=1, depthwise=False,
          use_bias=False, tf_padding=False, static_size=None, name=None):
    """A conv padded as timm pads it (TF "same" or symmetric), or, with
    `static_size`, as lukemelas' static padding for that input size.

    Full convs are `OrderedConv2D` (their gradient reads the kernel and
    input late under XLA and JAX; a symmetric pad inside the conv);
    depthwise ones Keras' `DepthwiseConv2D`."""
    explicit = 0
    if static_size is not None and kernel_size > 1:
        pad = static_same_padding(static_size, kernel_size, strides)
        if any(pad):
            x = layers.ZeroPadding2D((pad, pad), name=f"{name}_pad")(x)
        padding = "valid"
    elif tf_padding or strides == 1:
        # Stride 1, odd kernel: "same" is symmetric, as in PyTorch. With
        # `tf_padding` it is TensorFlow's "same", as timm's `Conv2dSame`.
        padding = "same"
    elif not depthwise:
        padding, explicit = "valid", kernel_size // 2
    else:
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    if depthwise:
        return layers.DepthwiseConv2D(kernel_size, strides=strides,
                                      padding=padding, use_bias=use_bias,
                                      name=name)(x)
    return OrderedConv2D(filters, kernel_size, strides=strides,
                         padding=padding, explicit_padding=explicit,
                         use_bias=use_bias, name=name)(x)


def _bn(x, epsilon, activation="silu", name=None):
    """timm's `BatchNormAct2d` (BatchNorm, then `activation` unless None)."""
    x = FusedBatchNorm(epsilon=epsilon, momentum=BN_MOMENTUM, name=name)(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_act")(x)
    return x


def squeeze_excite(x, reduced_channels, name=None):
    """timm's EfficientNet `SqueezeExcite`: mean, 1x1, SiLU, 1x1, sigmoid.

    Layers `{name}_conv_reduce` / `{name}_conv_expand` are timm's
    `se.conv_reduce` / `se.conv_expand` (1x1 convs with bias).

    Example:

    >>> y = squeeze_excite(keras.Input((8, 8, 96)), 4, name="se")
    """
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = layers.Conv2D(reduced_channels, 1, use_bias=True,
                      name=f"{name}_conv_reduce")(s)
    s = layers.Activation("silu", name=f"{name}_act1")(s)
    s = layers.Conv2D(channels, 1, use_bias=True,
                      name=f"{name}_conv_expand")(s)
    s = layers.Activation("sigmoid", name=f"{name}_gate")(s)
    return layers.Multiply(name=name)([x, s])


def depthwise_separable_block(x, filters, kernel_size, strides, epsilon,
                              tf_padding, activation="silu",
                              se_ratio=SE_RATIO, static_size=None,
                              name=None):
    """timm's `DepthwiseSeparableConv`: dw kxk, BN-act, SE, 1x1, BN."""
    in_channels = x.shape[-1]
    shortcut = x
    y = _conv(x, None, kernel_size, strides, depthwise=True,
              tf_padding=tf_padding, static_size=static_size,
              name=f"{name}_conv_dw")
    y = _bn(y, epsilon, activation, name=f"{name}_bn1")
    if se_ratio:
        y = squeeze_excite(y, round(in_channels * se_ratio),
                           name=f"{name}_se")
    y = _conv(y, filters, 1, name=f"{name}_conv_pw")
    y = _bn(y, epsilon, activation=None, name=f"{name}_bn2")
    if strides == 1 and in_channels == filters:
        y = layers.Add(name=f"{name}_add")([y, shortcut])
    return y


def inverted_residual_block(x, filters, kernel_size, strides, expansion,
                            epsilon, tf_padding, activation="silu",
                            se_ratio=SE_RATIO, static_size=None, name=None):
    """timm's `InvertedResidual`: 1x1 expand, dw kxk, SE, 1x1 project."""
    in_channels = x.shape[-1]
    mid_channels = make_divisible(in_channels * expansion)
    shortcut = x
    y = _conv(x, mid_channels, 1, name=f"{name}_conv_pw")
    y = _bn(y, epsilon, activation, name=f"{name}_bn1")
    y = _conv(y, None, kernel_size, strides, depthwise=True,
              tf_padding=tf_padding, static_size=static_size,
              name=f"{name}_conv_dw")
    y = _bn(y, epsilon, activation, name=f"{name}_bn2")
    if se_ratio:
        # timm divides the SE ratio by the expansion: SE width from the
        # block input.
        y = squeeze_excite(y, round(mid_channels * (se_ratio / expansion)),
                           name=f"{name}_se")
    y = _conv(y, filters, 1, name=f"{name}_conv_pwl")
    y = _bn(y, epsilon, activation=None, name=f"{name}_bn3")
    if strides == 1 and in_channels == filters:
        y = layers.Add(name=f"{name}_add")([y, shortcut])
    return y


def efficientnet(input_shape, channel_multiplier=1.0, depth_multiplier=1.0,
                 tf_padding=False, stages=STAGES, activation="silu",
                 se_ratio=SE_RATIO, static_size=None, name="efficientnet"):
    """Builds an EfficientNet encoder with outputs `{"P1".."P5"}`.

    Args:
        input_shape: `(height, width, channels)`; any channel count.
        channel_multiplier: width scaling (1.0 for B0). Defaults to `1.0`.
        depth_multiplier: depth scaling (1.0 for B0). Defaults to `1.0`.
        tf_padding: TensorFlow "same" padding and BatchNorm epsilon 1e-3
            (timm's `tf_efficientnet_*`) instead of symmetric padding and
            epsilon 1e-5 (timm's `efficientnet_*`). Defaults to `False`.
        stages: the arch_def rows, `(block type, repeats, kernel size,
            stride, expansion, channels)`. Defaults to EfficientNet's
            `STAGES`; `MOBILENET_V2_STAGES` gives MobileNet-V2.
        activation: every activation but the SE gate's. Defaults to
            `"silu"` (`"relu6"` for MobileNet-V2).
        se_ratio: squeeze-and-excitation width over the block input; 0 or
            None for none. Defaults to `0.25`.
        static_size: lukemelas' EfficientNet-PyTorch (smp's
            `efficientnet-bN`) pads every conv for one fixed image size,
            its variant's (224 for B0 ... 600 for B7), whatever the input:
            TensorFlow's "same" for that size (`static_same_padding`),
            which differs from it where the fixed size halves to an odd
            size and the input's does not. Given, the convs pad so (with
            `tf_padding`'s epsilon 1e-3). Defaults to `None`.
        name: the model name.

    Returns:
        A functional `keras.Model`.

    Example:

    >>> model = efficientnet((64, 64, 3), 1.0, 1.1, tf_padding=True)
    >>> model.output["P4"].shape
    (None, 4, 4, 112)
    """
    epsilon = TF_BN_EPSILON if tf_padding or static_size else BN_EPSILON
    inputs = keras.Input(shape=input_shape, name="images")
    size = static_size  # the fixed size the static padding is made for

    # --- stem ---
    x = _conv(inputs, round_channels(STEM_CHANNELS, channel_multiplier), 3,
              strides=2, tf_padding=tf_padding, static_size=size,
              name="conv_stem")
    x = _bn(x, epsilon, activation, name="bn1")
    size = size and -(-size // 2)

    # --- stages ---
    levels = pyramid_stages(stages)
    pyramid = {}
    for stage, (block_type, repeats, kernel_size, strides, expansion,
                channels) in enumerate(stages):
        filters = round_channels(channels, channel_multiplier)
        for index in range(scale_depth(repeats, depth_multiplier)):
            block_name = f"blocks_{stage}_{index}"
            block_strides = strides if index == 0 else 1
            if block_type == "ds":
                x = depthwise_separable_block(
                    x, filters, kernel_size, block_strides, epsilon,
                    tf_padding, activation, se_ratio, static_size=size,
                    name=block_name)
            else:
                x = inverted_residual_block(
                    x, filters, kernel_size, block_strides, expansion,
                    epsilon, tf_padding, activation, se_ratio,
                    static_size=size, name=block_name)
            size = size and -(-size // block_strides)
        if stage in levels:
            pyramid[f"P{len(pyramid) + 1}"] = x
    return keras.Model(inputs, pyramid, name=name)


# Module names of timm's that contain an underscore.
_TIMM_WORDS = re.compile(r"conv\.(stem|dw|pwl|pw|reduce|expand|head)\b")


def timm_module_name(layer_name):
    """`blocks_1_0_se_conv_reduce` -> `blocks.1.0.se.conv_reduce`.

    Example:

    >>> timm_module_name("blocks_1_0_conv_pwl")
    'blocks.1.0.conv_pwl'
    """
    return _TIMM_WORDS.sub(r"conv_\1", layer_name.replace("_", "."))


def torch_mapping(model):
    """timm's keys -> variables, derived from the timm-style layer names."""
    return mapping_by_layer_names(model, rename=timm_module_name)


def _channels(channel_multiplier, stages=STAGES):
    return tuple(round_channels(stages[i][5], channel_multiplier)
                 for i in pyramid_stages(stages))


def _register(variant, tf_padding):
    channel_multiplier, depth_multiplier = SCALING[variant]
    name = f"{'tf_' if tf_padding else ''}efficientnet_{variant}"

    def build(input_shape):
        return efficientnet(input_shape, channel_multiplier,
                            depth_multiplier, tf_padding=tf_padding,
                            name=name)

    build.__name__ = name
    build.__doc__ = (
        f"EfficientNet-{variant.upper()} (timm `{name}`, "
        f"{'TF same' if tf_padding else 'symmetric'} padding).")
    register_encoder(name, channels=_channels(channel_multiplier),
                     timm_name=name, torch_mapping=torch_mapping,
                     first_conv="conv_stem.weight",
                     ignore_prefixes=HEAD_PREFIXES,
                     timm_head=timm_head(
                         channel_multiplier,
                         TF_BN_EPSILON if tf_padding else BN_EPSILON))(build)
    return build


efficientnet_b0 = _register("b0", tf_padding=False)
efficientnet_b1 = _register("b1", tf_padding=False)
efficientnet_b2 = _register("b2", tf_padding=False)
efficientnet_b3 = _register("b3", tf_padding=False)
efficientnet_b4 = _register("b4", tf_padding=False)
tf_efficientnet_b0 = _register("b0", tf_padding=True)
tf_efficientnet_b1 = _register("b1", tf_padding=True)
tf_efficientnet_b2 = _register("b2", tf_padding=True)
tf_efficientnet_b3 = _register("b3", tf_padding=True)
tf_efficientnet_b4 = _register("b4", tf_padding=True)
efficientnet_b5 = _register("b5", tf_padding=False)
efficientnet_b6 = _register("b6", tf_padding=False)
efficientnet_b7 = _register("b7", tf_padding=False)
tf_efficientnet_b5 = _register("b5", tf_padding=True)
tf_efficientnet_b6 = _register("b6", tf_padding=True)
tf_efficientnet_b7 = _register("b7", tf_padding=True)


@register_encoder("mobilenetv2_100", channels=_channels(1.0,
                                                        MOBILENET_V2_STAGES),
                  timm_name="mobilenetv2_100", torch_mapping=torch_mapping,
                  first_conv="conv_stem.weight",
                  ignore_prefixes=HEAD_PREFIXES,
                  timm_head=timm_head(1.0, BN_EPSILON, "relu6"))
def mobilenetv2_100(input_shape):
    """MobileNet-V2 1.0 (timm `mobilenetv2_100`, symmetric padding)."""
    return efficientnet(input_shape, 1.0, 1.0, stages=MOBILENET_V2_STAGES,
                        activation="relu6", se_ratio=None,
                        name="mobilenetv2_100")
