"""ResNet / ResNeXt / SE-ResNeXt encoders in timm's layout.

Registered here: `resnet18`, `resnet34`, `resnet50`, `resnext50_32x4d`,
`resnext101_32x4d`, `resnext101_32x8d` (SE-ResNeXt is in `senet`).

One configurable builder, `resnet(...)`, covers every variant (as timm's
`ResNet` class): basic or bottleneck blocks, grouped 3x3 convs
(`cardinality`, `base_width`), squeeze-and-excitation, the plain 7x7 stem or
the "deep" 3x3 stem, and avg-pool downsampling (`avg_down`, ResNet-D).

Layers are named after timm's modules with `.` written `_`
(`layer1.0.conv1` -> `layer1_0_conv1`), so timm's state dict maps onto them
by name. The pyramid is timm's `features_only` output: P1 = `act1`
(stride 2), P2..P5 = `layer1`..`layer4`.

Example:

>>> from kaggle_tf.models import encoders
>>> enc = encoders.build("resnet34", input_shape=(64, 64, 3))
>>> enc.output["P5"].shape
(None, 2, 2, 512)
"""

import math

import keras
from keras import layers

from kaggle_tf.models import blocks
from kaggle_tf.models.encoders.registry import register_encoder
from kaggle_tf.models.torch_layout import mapping_by_layer_names

BASIC = "basic"
BOTTLENECK = "bottleneck"
EXPANSION = {BASIC: 1, BOTTLENECK: 4}


def make_divisible(value, divisor=8):
    """timm's `make_divisible(v, divisor, round_limit=0.)`."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def basic_block(x, planes, strides, downsample, attn=None, name=None):
    """timm's `BasicBlock`: two 3x3 convs, residual add, ReLU."""
    shortcut = x
    y = blocks.conv2d(x, planes, 3, strides=strides, name=f"{name}_conv1")
    y = blocks.batch_norm(y, name=f"{name}_bn1")
    y = layers.ReLU(name=f"{name}_act1")(y)
    y = blocks.conv2d(y, planes, 3, name=f"{name}_conv2")
    y = blocks.batch_norm(y, zero_init=True, name=f"{name}_bn2")
    if attn == "se":
        y = blocks.squeeze_excite(y, make_divisible(planes / 16),
                                  name=f"{name}_se")
    if downsample is not None:
        shortcut = downsample(x)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_act2")(y)


def bottleneck_block(x, planes, strides, downsample, cardinality=1,
                     base_width=64, attn=None, name=None):
    """timm's `Bottleneck`: 1x1, grouped 3x3 (stride here), 1x1 x4."""
    width = int(math.floor(planes * (base_width / 64)) * cardinality)
    out = planes * EXPANSION[BOTTLENECK]
    shortcut = x
    y = blocks.conv2d(x, width, 1, name=f"{name}_conv1")
    y = blocks.batch_norm(y, name=f"{name}_bn1")
    y = layers.ReLU(name=f"{name}_act1")(y)
    y = blocks.conv2d(y, width, 3, strides=strides, groups=cardinality,
                      name=f"{name}_conv2")
    y = blocks.batch_norm(y, name=f"{name}_bn2")
    y = layers.ReLU(name=f"{name}_act2")(y)
    y = blocks.conv2d(y, out, 1, name=f"{name}_conv3")
    y = blocks.batch_norm(y, zero_init=True, name=f"{name}_bn3")
    if attn == "se":
        y = blocks.squeeze_excite(y, make_divisible(out / 16),
                                  name=f"{name}_se")
    if downsample is not None:
        shortcut = downsample(x)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_act3")(y)


def _downsample(filters, strides, avg_down, name):
    """timm's `downsample_conv` (1x1 strided) or `downsample_avg`."""

    def apply(x):
        if avg_down:
            if strides != 1:
                # AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False):
                # "same" pads at the end only and averages real pixels.
                x = layers.AveragePooling2D(2, strides=strides,
                                            padding="same",
                                            name=f"{name}_0")(x)
            x = blocks.conv2d(x, filters, 1, name=f"{name}_1")
            return blocks.batch_norm(x, name=f"{name}_2")
        x = blocks.conv2d(x, filters, 1, strides=strides, name=f"{name}_0")
        return blocks.batch_norm(x, name=f"{name}_1")

    return apply


def resnet(input_shape, block_types, depths, channels=(64, 128, 256, 512),
           stem_width=64, stem_type="", avg_down=False, cardinality=1,
           base_width=64, attn=None, name="resnet"):
    """Builds a ResNet-family encoder with outputs `{"P1".."P5"}`.

    Args:
        input_shape: `(height, width, channels)`.
        block_types: `"basic"` / `"bottleneck"`, one for all stages or one
            per stage.
        depths: blocks per stage (4 values).
        channels: `planes` per stage. Defaults to `(64, 128, 256, 512)`.
        stem_width: deep-stem width. Defaults to `64`.
        stem_type: `""` (7x7 conv) or `"deep"` (three 3x3 convs).
        avg_down: avg-pool shortcut downsampling (ResNet-D).
        cardinality: groups of the bottleneck 3x3 conv (ResNeXt).
        base_width: bottleneck width per group. Defaults to `64`.
        attn: None or `"se"` (squeeze-and-excitation in every block).
        name: the model name.

    Returns:
        A functional `keras.Model`.

    Example:

    >>> model = resnet((64, 64, 3), "basic", (2, 2, 2, 2))
    """
    if isinstance(block_types, str):
        block_types = (block_types,) * 4
    for block_type in block_types:
        if block_type not in EXPANSION:
            raise ValueError(
                f"block_types must be 'basic' or 'bottleneck'. Received: "
                f"block_types={block_types!r}")
    if stem_type not in ("", "deep"):
        raise ValueError(
            f"stem_type must be '' or 'deep'. Received: stem_type="
            f"{stem_type!r}")
    inputs = keras.Input(shape=input_shape, name="images")

    # --- stem ---
    if stem_type == "deep":
        inplanes = stem_width * 2
        x = blocks.conv2d(inputs, stem_width, 3, strides=2, name="conv1_0")
        x = blocks.batch_norm(x, name="conv1_1")
        x = layers.ReLU(name="conv1_2")(x)
        x = blocks.conv2d(x, stem_width, 3, name="conv1_3")
        x = blocks.batch_norm(x, name="conv1_4")
        x = layers.ReLU(name="conv1_5")(x)
        x = blocks.conv2d(x, inplanes, 3, name="conv1_6")
    else:
        inplanes = 64
        x = blocks.conv2d(inputs, inplanes, 7, strides=2, name="conv1")
    x = blocks.batch_norm(x, name="bn1")
    x = layers.ReLU(name="act1")(x)
    pyramid = {"P1": x}
    x = blocks.max_pool_3x3_s2(x, name="maxpool")

    # --- stages ---
    for stage, (block_type, planes, depth) in enumerate(
            zip(block_types, channels, depths)):
        stage_name = f"layer{stage + 1}"
        strides = 1 if stage == 0 else 2
        out = planes * EXPANSION[block_type]
        downsample = None
        if strides != 1 or inplanes != out:
            downsample = _downsample(out, strides, avg_down,
                                     f"{stage_name}_0_downsample")
        for index in range(depth):
            block_name = f"{stage_name}_{index}"
            if block_type == BASIC:
                x = basic_block(x, planes, strides, downsample, attn=attn,
                                name=block_name)
            else:
                x = bottleneck_block(x, planes, strides, downsample,
                                     cardinality=cardinality,
                                     base_width=base_width, attn=attn,
                                     name=block_name)
            strides, downsample = 1, None
            inplanes = out
        pyramid[f"P{stage + 2}"] = x
    return keras.Model(inputs, pyramid, name=name)


def torch_mapping(model):
    """timm's keys -> variables, derived from the timm-style layer names."""
    return mapping_by_layer_names(model)


@register_encoder("resnet18", channels=(64, 64, 128, 256, 512),
                  timm_name="resnet18", torch_mapping=torch_mapping,
                  first_conv="conv1.weight")
def resnet18(input_shape):
    """ResNet-18 (timm `resnet18`)."""
    return resnet(input_shape, BASIC, (2, 2, 2, 2), name="resnet18")


@register_encoder("resnet34", channels=(64, 64, 128, 256, 512),
                  timm_name="resnet34", torch_mapping=torch_mapping,
                  first_conv="conv1.weight")
def resnet34(input_shape):
    """ResNet-34 (timm `resnet34`)."""
    return resnet(input_shape, BASIC, (3, 4, 6, 3), name="resnet34")


@register_encoder("resnet50", channels=(64, 256, 512, 1024, 2048),
                  timm_name="resnet50", torch_mapping=torch_mapping,
                  first_conv="conv1.weight")
def resnet50(input_shape):
    """ResNet-50 (timm `resnet50`)."""
    return resnet(input_shape, BOTTLENECK, (3, 4, 6, 3), name="resnet50")


def _register_resnext(name, depths, base_width):
    def build(input_shape):
        return resnet(input_shape, BOTTLENECK, depths, cardinality=32,
                      base_width=base_width, name=name)

    build.__name__ = name
    build.__doc__ = f"ResNeXt (timm `{name}`): 32 groups of width " \
        f"{base_width}."
    register_encoder(name, channels=(64, 256, 512, 1024, 2048),
                     timm_name=name, torch_mapping=torch_mapping,
                     first_conv="conv1.weight")(build)
    return build


resnext50_32x4d = _register_resnext("resnext50_32x4d", (3, 4, 6, 3), 4)
resnext101_32x4d = _register_resnext("resnext101_32x4d", (3, 4, 23, 3), 4)
resnext101_32x8d = _register_resnext("resnext101_32x8d", (3, 4, 23, 3), 8)
