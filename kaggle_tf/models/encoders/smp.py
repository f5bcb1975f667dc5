"""Encoders in segmentation_models_pytorch's own layouts (smp checkpoints).

Most smp encoders are timm's (`resnet34`, `resnet50`, `tu-<timm name>`) and
load into the timm-named encoders. A few differ from timm's
`features_only` pyramid or names, so a whole smp `Unet` / `FPN` checkpoint
needs an encoder of its own:

* `se_resnext50_32x4d` is Cadene's `pretrainedmodels` SENet, which is
  timm's `legacy_seresnext50_32x4d`: keys `layer0.conv1`,
  `layer1.0.se_module.fc1`, and a stem max pool with `ceil_mode=True` and
  no padding (timm's `seresnext50_32x4d` pads by 1: other windows).
  Registered here as `legacy_seresnext50_32x4d` (timm's name and keys).
* `densenet121`: smp takes the stride 4-16 features after each
  transition's BatchNorm-ReLU (timm: before it) and the stride-32 one
  from `norm5` without its ReLU.
  Registered as `smp-densenet121` (timm / torchvision keys).
* `efficientnet-bN` is lukemelas' EfficientNet-PyTorch: keys `_conv_stem`,
  `_blocks.<n>._depthwise_conv`..., TensorFlow padding computed once for
  the variant's image size (`Conv2dStaticSamePadding`: 224 for B0, 240,
  260, 300, 380, 456, 528, 600 for B7) and kept for every input size,
  BatchNorm epsilon 1e-3, the stem output as the stride-2 feature and
  smp's `out_indexes` blocks as the others. Registered as
  `smp-efficientnet-bN` (B0-B7), built with exactly that fixed padding
  (`efficientnet.efficientnet(static_size=...)`): where the variant's
  size halves to an odd size (B1's 240 -> 15 before the stride-32 block)
  it is not TensorFlow's "same" for the actual input, and smp's maps are
  what these give.
* `timm-efficientnet-bN` is timm's `efficientnet_bN` (symmetric padding,
  epsilon 1e-5, timm's keys) with the stem output as the stride-2 feature.
  Registered as `smp-timm-efficientnet-bN`.

The `smp-*` encoders are no timm models (`timm_name` is None); their
weights are smp's encoder weights (smp-hub), with the keys described above.

`SMP_ENCODERS` maps smp's encoder names to these registry names;
`smp_encoder_name` resolves one (also `tu-<name>`).

Example:

>>> from kaggle_tf.models.encoders import smp
>>> smp.smp_encoder_name("se_resnext50_32x4d")
'legacy_seresnext50_32x4d'
"""

import keras
from keras import layers

from kaggle_tf.models import blocks
from kaggle_tf.models.encoders import densenet as densenet_family
from kaggle_tf.models.encoders import efficientnet as effnet
from kaggle_tf.models.encoders import resnet as resnet_family
from kaggle_tf.models.encoders.registry import ENCODERS
from kaggle_tf.models.encoders.registry import register_encoder
from kaggle_tf.models.torch_layout import mapping_by_layer_names

# smp encoder name -> registry name (tu-<name> maps to <name>).
SMP_ENCODERS = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "se_resnext50_32x4d": "legacy_seresnext50_32x4d",
    "densenet121": "smp-densenet121",
    **{f"efficientnet-{v}": f"smp-efficientnet-{v}"
       for v in effnet.SCALING},
    **{f"timm-efficientnet-{v}": f"smp-timm-efficientnet-{v}"
       for v in effnet.SCALING},
}


def smp_encoder_name(name):
    """The registry encoder that loads smp's encoder `name`.

    Args:
        name: an smp `encoder_name` (`"resnet34"`, `"efficientnet-b0"`,
            `"tu-convnext_tiny"`, ...).

    Returns:
        A name from `encoders.names()`.

    Example:

    >>> smp_encoder_name("tu-resnet18")
    'resnet18'
    """
    if name in SMP_ENCODERS:
        return SMP_ENCODERS[name]
    if name.startswith("tu-") and name[3:] in ENCODERS:
        return name[3:]
    supported = sorted(SMP_ENCODERS) + ["tu-" + n for n in sorted(ENCODERS)
                                        if "-" not in n]
    raise ValueError(
        f"smp encoder {name!r} has no kaggle_tf counterpart. Supported smp "
        f"encoders: {', '.join(supported)}. Received: encoder_name={name!r}")


# --- legacy_seresnext50_32x4d (smp se_resnext50_32x4d) ---

def _legacy_key(timm_key):
    """`conv1.weight` -> `layer0.conv1.weight`; `.se.` -> `.se_module.`."""
    if timm_key.startswith(("conv1.", "bn1.")):
        return "layer0." + timm_key
    return timm_key.replace(".se.", ".se_module.")


def legacy_senet_mapping(model):
    """Cadene / timm-legacy keys -> variables."""
    return {_legacy_key(k): v for k, v in mapping_by_layer_names(
        model).items()}


@register_encoder("legacy_seresnext50_32x4d",
                  channels=(64, 256, 512, 1024, 2048),
                  timm_name="legacy_seresnext50_32x4d",
                  torch_mapping=legacy_senet_mapping,
                  first_conv="layer0.conv1.weight",
                  ignore_prefixes=("last_linear.",))
def legacy_seresnext50_32x4d(input_shape):
    """SE-ResNeXt-50 32x4d, Cadene's layout (timm
    `legacy_seresnext50_32x4d`, smp `se_resnext50_32x4d`)."""
    inputs = keras.Input(shape=input_shape, name="images")
    x = blocks.conv2d(inputs, 64, 7, strides=2, name="conv1")
    x = blocks.batch_norm(x, name="bn1")
    x = layers.ReLU(name="act1")(x)
    pyramid = {"P1": x}
    # MaxPool2d(3, 2, ceil_mode=True): one extra row / column at the end;
    # after the ReLU, zeros are as good as -inf.
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name="maxpool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    for stage, (planes, depth) in enumerate(zip((64, 128, 256, 512),
                                                (3, 4, 6, 3))):
        stage_name = f"layer{stage + 1}"
        strides = 1 if stage == 0 else 2
        out = planes * 4
        downsample = resnet_family._downsample(
            out, strides, False, f"{stage_name}_0_downsample")
        for index in range(depth):
            x = resnet_family.bottleneck_block(
                x, planes, strides, downsample if index == 0 else None,
                cardinality=32, base_width=4, attn="se",
                name=f"{stage_name}_{index}")
            strides = 1
        pyramid[f"P{stage + 2}"] = x
    return keras.Model(inputs, pyramid, name="legacy_seresnext50_32x4d")


# --- smp-densenet121 ---

@register_encoder("smp-densenet121", channels=(64, 256, 512, 1024, 1024),
                  timm_name=None,
                  torch_mapping=densenet_family.torch_mapping,
                  first_conv="features.conv0.weight")
def smp_densenet121(input_shape):
    """DenseNet-121 with smp's pyramid (P2-P4 after the transitions'
    BN-ReLU, P5 = `norm5` before its ReLU)."""
    base = densenet_family.densenet121(input_shape)
    outputs = dict(base.output)
    for level in (2, 3, 4):
        outputs[f"P{level}"] = base.get_layer(
            f"features_transition{level - 1}_norm_act").output
    outputs["P5"] = base.get_layer("features_norm5").output
    return keras.Model(base.input, outputs, name="smp_densenet121")


# --- smp-efficientnet-b0 (lukemelas) and smp-timm-efficientnet-bN ---

def _stage_repeats(depth_multiplier):
    return [effnet.scale_depth(row[1], depth_multiplier)
            for row in effnet.STAGES]


def _block_output(model, stage, index):
    for suffix in ("add", "bn3", "bn2"):
        name = f"blocks_{stage}_{index}_{suffix}"
        try:
            return model.get_layer(name).output
        except ValueError:
            continue
    raise ValueError(f"no output layer for block {stage}.{index}")


def _flat_to_stage(repeats):
    """Flat block index -> (stage, index in stage)."""
    return [(s, i) for s, n in enumerate(repeats) for i in range(n)]


# smp's out_indexes (flat block indices of P2..P5), as smp 0.6 lists them.
_LUKEMELAS_OUT_INDEXES = {
    "b0": (2, 4, 8, 15),
    "b1": (4, 7, 15, 22),
    "b2": (4, 7, 15, 22),
    "b3": (4, 7, 17, 25),
    "b4": (5, 9, 21, 31),
    "b5": (7, 12, 26, 38),
    "b6": (8, 14, 30, 44),
    "b7": (10, 17, 37, 54),
}
# lukemelas' `efficientnet_params` image sizes: its static padding's.
LUKEMELAS_IMAGE_SIZES = {"b0": 224, "b1": 240, "b2": 260, "b3": 300,
                         "b4": 380, "b5": 456, "b6": 528, "b7": 600}

_LUKEMELAS_DS = {"conv_dw": "_depthwise_conv", "bn1": "_bn1",
                 "se.conv_reduce": "_se_reduce",
                 "se.conv_expand": "_se_expand", "conv_pw": "_project_conv",
                 "bn2": "_bn2"}
_LUKEMELAS_IR = {"conv_pw": "_expand_conv", "bn1": "_bn0",
                 "conv_dw": "_depthwise_conv", "bn2": "_bn1",
                 "se.conv_reduce": "_se_reduce",
                 "se.conv_expand": "_se_expand", "conv_pwl": "_project_conv",
                 "bn3": "_bn2"}


def lukemelas_key(timm_key, depth_multiplier=1.0):
    """timm EfficientNet key -> lukemelas' (`blocks.1.0.conv_dw.weight` ->
    `_blocks.1._depthwise_conv.weight`).

    Example:

    >>> lukemelas_key("blocks.1.1.bn3.weight")
    '_blocks.2._bn2.weight'
    """
    if timm_key.startswith("conv_stem."):
        return "_" + timm_key
    if timm_key.startswith("bn1."):
        return "_bn0." + timm_key[len("bn1."):]
    parts = timm_key.split(".")
    stage, index = int(parts[1]), int(parts[2])
    repeats = _stage_repeats(depth_multiplier)
    flat = sum(repeats[:stage]) + index
    module, tensor = ".".join(parts[3:-1]), parts[-1]
    table = _LUKEMELAS_DS if effnet.STAGES[stage][0] == "ds" else (
        _LUKEMELAS_IR)
    return f"_blocks.{flat}.{table[module]}.{tensor}"


def _lukemelas_mapping(depth_multiplier):
    def mapping(model):
        return {lukemelas_key(k, depth_multiplier): v
                for k, v in effnet.torch_mapping(model).items()}

    return mapping


def _register_lukemelas(variant):
    channel_multiplier, depth_multiplier = effnet.SCALING[variant]
    out_indexes = _LUKEMELAS_OUT_INDEXES[variant]
    name = f"smp-efficientnet-{variant}"

    def build(input_shape):
        base = effnet.efficientnet(
            input_shape, channel_multiplier, depth_multiplier,
            tf_padding=True, static_size=LUKEMELAS_IMAGE_SIZES[variant],
            name=name.replace("-", "_"))
        where = _flat_to_stage(_stage_repeats(depth_multiplier))
        outputs = {"P1": base.get_layer("bn1_act").output}
        for level, flat in enumerate(out_indexes):
            outputs[f"P{level + 2}"] = _block_output(base, *where[flat])
        return keras.Model(base.input, outputs, name=name.replace("-", "_"))

    channels = (effnet.round_channels(effnet.STEM_CHANNELS,
                                      channel_multiplier),)
    repeats = _stage_repeats(depth_multiplier)
    where = _flat_to_stage(repeats)
    channels += tuple(effnet.round_channels(
        effnet.STAGES[where[flat][0]][5], channel_multiplier)
        for flat in out_indexes)
    build.__name__ = name.replace("-", "_")
    build.__doc__ = (f"lukemelas EfficientNet-{variant.upper()} "
                     f"(smp `{name[4:]}`).")
    register_encoder(name, channels=channels, timm_name=None,
                     torch_mapping=_lukemelas_mapping(depth_multiplier),
                     first_conv="_conv_stem.weight",
                     ignore_prefixes=("_conv_head.", "_bn1.", "_fc."))(build)
    return build


def _register_timm_efficientnet(variant):
    channel_multiplier, depth_multiplier = effnet.SCALING[variant]
    name = f"smp-timm-efficientnet-{variant}"

    def build(input_shape):
        base = effnet.efficientnet(input_shape, channel_multiplier,
                                   depth_multiplier, tf_padding=False,
                                   name=name.replace("-", "_"))
        outputs = dict(base.output)
        outputs["P1"] = base.get_layer("bn1_act").output
        return keras.Model(base.input, outputs, name=name.replace("-", "_"))

    channels = (effnet.round_channels(effnet.STEM_CHANNELS,
                                      channel_multiplier),)
    channels += effnet._channels(channel_multiplier)[1:]
    build.__name__ = name.replace("-", "_")
    build.__doc__ = (f"timm EfficientNet-{variant.upper()} with smp's "
                     f"pyramid (smp `{name[4:]}`).")
    register_encoder(name, channels=channels, timm_name=None,
                     torch_mapping=effnet.torch_mapping,
                     first_conv="conv_stem.weight",
                     ignore_prefixes=effnet.HEAD_PREFIXES)(build)
    return build


for _variant in effnet.SCALING:
    _register_lukemelas(_variant)
    _register_timm_efficientnet(_variant)

__all__ = ["SMP_ENCODERS", "lukemelas_key", "smp_encoder_name"]
