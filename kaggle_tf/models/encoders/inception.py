"""Inception-V3 and Inception-V4 encoders in timm's layout.

Both are built of timm's `ConvNormAct`: a conv without bias, BatchNorm
(epsilon 1e-3) and ReLU, unpadded unless the module says otherwise
(`padding=1`, `(0, 3)`, ...); the explicit padding is a `ZeroPadding2D`
before a `"valid"` conv, so any kernel shape (1x7, 7x1) pads as PyTorch.
A `ConvNormAct` named `m` is the layers `m_conv`, `m_bn`, `m_act` (timm's
`m.conv`, `m.bn`).

* `inception_v3` (timm `inception_v3`): modules `Conv2d_1a_3x3` ..
  `Mixed_7c`; the pool branches average with `count_include_pad=True`
  (zero padding, then an unpadded average). Pyramid = timm's taps
  `Conv2d_2b_3x3`, `Conv2d_4a_3x3`, `Mixed_5d`, `Mixed_6e`, `Mixed_7c`:
  channels (64, 192, 288, 768, 2048).
* `inception_v4` (timm `inception_v4`): one `features` sequence
  (`features.0` .. `features.21`); pool branches average with
  `count_include_pad=False` (Keras' `"same"`). Pyramid = taps
  `features.2`, `.3`, `.9`, `.17`, `.21`: channels
  (64, 160, 384, 1024, 1536).

The strides are nominally 2..32, but unpadded convs make each map smaller
than `size / stride` (75 -> 35, 15, 7, 3, 1 for V3), so both are
registered `aligned=False` (classifiers only) with `min_input_size=75`,
timm's smallest input.

Example:

>>> from kaggle_tf.models import encoders
>>> enc = encoders.build("inception_v3", input_shape=(75, 75, 3))
>>> enc.output["P5"].shape
(None, 1, 1, 2048)
"""

import re

import keras
from keras import layers

from kaggle_tf.models.encoders.registry import register_encoder
from kaggle_tf.models.fused_batch_norm import FusedBatchNorm
from kaggle_tf.models.torch_layout import mapping_by_layer_names

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.9
MIN_INPUT_SIZE = 75


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def conv_norm_act(x, filters, kernel_size, strides=1, padding=0, name=None):
    """timm's `ConvNormAct` (bias-free conv, BN eps 1e-3, ReLU)."""
    pad = _pair(padding)
    if any(pad):
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, _pair(kernel_size), strides=strides,
                      padding="valid", use_bias=False,
                      name=f"{name}_conv")(x)
    x = FusedBatchNorm(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                       name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_act")(x)


def _avg_pool_include_pad(x, name):
    """`F.avg_pool2d(x, 3, stride=1, padding=1)` (zeros counted)."""
    x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return layers.AveragePooling2D(3, strides=1, name=name)(x)


def _max_pool(x, name):
    """`MaxPool2d(3, stride=2)`, unpadded."""
    return layers.MaxPooling2D(3, strides=2, name=name)(x)


def _concat(tensors, name):
    return layers.Concatenate(name=name)(tensors)


# --- Inception-V3 ---

def v3_block_a(x, pool_features, name):
    """timm's V3 `InceptionA`."""
    b1 = conv_norm_act(x, 64, 1, name=f"{name}_branch1x1")
    b5 = conv_norm_act(x, 48, 1, name=f"{name}_branch5x5_1")
    b5 = conv_norm_act(b5, 64, 5, padding=2, name=f"{name}_branch5x5_2")
    b3 = conv_norm_act(x, 64, 1, name=f"{name}_branch3x3dbl_1")
    b3 = conv_norm_act(b3, 96, 3, padding=1, name=f"{name}_branch3x3dbl_2")
    b3 = conv_norm_act(b3, 96, 3, padding=1, name=f"{name}_branch3x3dbl_3")
    bp = _avg_pool_include_pad(x, name=f"{name}_avg_pool")
    bp = conv_norm_act(bp, pool_features, 1, name=f"{name}_branch_pool")
    return _concat([b1, b5, b3, bp], name)


def v3_block_b(x, name):
    """timm's V3 `InceptionB` (reduction to stride 16)."""
    b3 = conv_norm_act(x, 384, 3, strides=2, name=f"{name}_branch3x3")
    bd = conv_norm_act(x, 64, 1, name=f"{name}_branch3x3dbl_1")
    bd = conv_norm_act(bd, 96, 3, padding=1, name=f"{name}_branch3x3dbl_2")
    bd = conv_norm_act(bd, 96, 3, strides=2, name=f"{name}_branch3x3dbl_3")
    bp = _max_pool(x, name=f"{name}_max_pool")
    return _concat([b3, bd, bp], name)


def v3_block_c(x, c7, name):
    """timm's V3 `InceptionC` (factorised 7x7 convs)."""
    b1 = conv_norm_act(x, 192, 1, name=f"{name}_branch1x1")
    b7 = conv_norm_act(x, c7, 1, name=f"{name}_branch7x7_1")
    b7 = conv_norm_act(b7, c7, (1, 7), padding=(0, 3),
                       name=f"{name}_branch7x7_2")
    b7 = conv_norm_act(b7, 192, (7, 1), padding=(3, 0),
                       name=f"{name}_branch7x7_3")
    bd = conv_norm_act(x, c7, 1, name=f"{name}_branch7x7dbl_1")
    for index, (filters, kernel, pad) in enumerate(
            ((c7, (7, 1), (3, 0)), (c7, (1, 7), (0, 3)),
             (c7, (7, 1), (3, 0)), (192, (1, 7), (0, 3))), start=2):
        bd = conv_norm_act(bd, filters, kernel, padding=pad,
                           name=f"{name}_branch7x7dbl_{index}")
    bp = _avg_pool_include_pad(x, name=f"{name}_avg_pool")
    bp = conv_norm_act(bp, 192, 1, name=f"{name}_branch_pool")
    return _concat([b1, b7, bd, bp], name)


def v3_block_d(x, name):
    """timm's V3 `InceptionD` (reduction to stride 32)."""
    b3 = conv_norm_act(x, 192, 1, name=f"{name}_branch3x3_1")
    b3 = conv_norm_act(b3, 320, 3, strides=2, name=f"{name}_branch3x3_2")
    b7 = conv_norm_act(x, 192, 1, name=f"{name}_branch7x7x3_1")
    b7 = conv_norm_act(b7, 192, (1, 7), padding=(0, 3),
                       name=f"{name}_branch7x7x3_2")
    b7 = conv_norm_act(b7, 192, (7, 1), padding=(3, 0),
                       name=f"{name}_branch7x7x3_3")
    b7 = conv_norm_act(b7, 192, 3, strides=2, name=f"{name}_branch7x7x3_4")
    bp = _max_pool(x, name=f"{name}_max_pool")
    return _concat([b3, b7, bp], name)


def v3_block_e(x, name):
    """timm's V3 `InceptionE` (split 1x3 / 3x1 branches)."""
    b1 = conv_norm_act(x, 320, 1, name=f"{name}_branch1x1")
    b3 = conv_norm_act(x, 384, 1, name=f"{name}_branch3x3_1")
    b3 = _concat([
        conv_norm_act(b3, 384, (1, 3), padding=(0, 1),
                      name=f"{name}_branch3x3_2a"),
        conv_norm_act(b3, 384, (3, 1), padding=(1, 0),
                      name=f"{name}_branch3x3_2b"),
    ], name=f"{name}_branch3x3_concat")
    bd = conv_norm_act(x, 448, 1, name=f"{name}_branch3x3dbl_1")
    bd = conv_norm_act(bd, 384, 3, padding=1, name=f"{name}_branch3x3dbl_2")
    bd = _concat([
        conv_norm_act(bd, 384, (1, 3), padding=(0, 1),
                      name=f"{name}_branch3x3dbl_3a"),
        conv_norm_act(bd, 384, (3, 1), padding=(1, 0),
                      name=f"{name}_branch3x3dbl_3b"),
    ], name=f"{name}_branch3x3dbl_concat")
    bp = _avg_pool_include_pad(x, name=f"{name}_avg_pool")
    bp = conv_norm_act(bp, 192, 1, name=f"{name}_branch_pool")
    return _concat([b1, b3, bd, bp], name)


def inception_v3(input_shape, name="inception_v3"):
    """Builds timm's `inception_v3` with outputs `{"P1".."P5"}`.

    Args:
        input_shape: `(height, width, channels)`; at least 75x75.
        name: the model name.

    Returns:
        A functional `keras.Model`.
    """
    inputs = keras.Input(shape=input_shape, name="images")
    pyramid = {}

    # --- stem ---
    x = conv_norm_act(inputs, 32, 3, strides=2, name="Conv2d_1a_3x3")
    x = conv_norm_act(x, 32, 3, name="Conv2d_2a_3x3")
    x = conv_norm_act(x, 64, 3, padding=1, name="Conv2d_2b_3x3")
    pyramid["P1"] = x
    x = _max_pool(x, name="Pool1")
    x = conv_norm_act(x, 80, 1, name="Conv2d_3b_1x1")
    x = conv_norm_act(x, 192, 3, name="Conv2d_4a_3x3")
    pyramid["P2"] = x
    x = _max_pool(x, name="Pool2")

    # --- mixed blocks ---
    x = v3_block_a(x, 32, name="Mixed_5b")
    x = v3_block_a(x, 64, name="Mixed_5c")
    x = v3_block_a(x, 64, name="Mixed_5d")
    pyramid["P3"] = x
    x = v3_block_b(x, name="Mixed_6a")
    for block, c7 in (("6b", 128), ("6c", 160), ("6d", 160), ("6e", 192)):
        x = v3_block_c(x, c7, name=f"Mixed_{block}")
    pyramid["P4"] = x
    x = v3_block_d(x, name="Mixed_7a")
    x = v3_block_e(x, name="Mixed_7b")
    pyramid["P5"] = v3_block_e(x, name="Mixed_7c")
    return keras.Model(inputs, pyramid, name=name)


def v3_module_name(layer_name):
    """`Mixed_5b_branch5x5_1_conv` -> `Mixed_5b.branch5x5_1.conv`.

    Example:

    >>> v3_module_name("Conv2d_1a_3x3_bn")
    'Conv2d_1a_3x3.bn'
    """
    match = re.fullmatch(r"(Mixed_\d[a-e]_)?(\w+)_(conv|bn)", layer_name)
    if match is None:
        raise ValueError(
            f"not an Inception-V3 conv / norm layer name. Received: "
            f"{layer_name!r}")
    mixed, module, kind = match.groups()
    prefix = f"{mixed[:-1]}." if mixed else ""
    return f"{prefix}{module}.{kind}"


def v3_torch_mapping(model):
    """timm's keys -> variables for `inception_v3`."""
    return mapping_by_layer_names(model, rename=v3_module_name)


@register_encoder("inception_v3", channels=(64, 192, 288, 768, 2048),
                  timm_name="inception_v3", torch_mapping=v3_torch_mapping,
                  first_conv="Conv2d_1a_3x3.conv.weight", aligned=False,
                  min_input_size=MIN_INPUT_SIZE,
                  ignore_prefixes=("AuxLogits.",))
def inception_v3_encoder(input_shape):
    """Inception-V3 (timm `inception_v3`); classifiers only."""
    return inception_v3(input_shape, name="inception_v3")


# --- Inception-V4 ---

def _avg_pool_exclude_pad(x, name):
    """`AvgPool2d(3, 1, padding=1, count_include_pad=False)`."""
    return layers.AveragePooling2D(3, strides=1, padding="same",
                                   name=name)(x)


def v4_mixed_3a(x, name):
    """timm's `Mixed3a`: max pool and a strided conv, concatenated."""
    pool = _max_pool(x, name=f"{name}_maxpool")
    conv = conv_norm_act(x, 96, 3, strides=2, name=f"{name}_conv")
    return _concat([pool, conv], name)


def v4_mixed_4a(x, name):
    """timm's `Mixed4a`."""
    b0 = conv_norm_act(x, 64, 1, name=f"{name}_branch0_0")
    b0 = conv_norm_act(b0, 96, 3, name=f"{name}_branch0_1")
    b1 = conv_norm_act(x, 64, 1, name=f"{name}_branch1_0")
    b1 = conv_norm_act(b1, 64, (1, 7), padding=(0, 3),
                       name=f"{name}_branch1_1")
    b1 = conv_norm_act(b1, 64, (7, 1), padding=(3, 0),
                       name=f"{name}_branch1_2")
    b1 = conv_norm_act(b1, 96, 3, name=f"{name}_branch1_3")
    return _concat([b0, b1], name)


def v4_mixed_5a(x, name):
    """timm's `Mixed5a`: a strided conv and max pool, concatenated."""
    conv = conv_norm_act(x, 192, 3, strides=2, name=f"{name}_conv")
    pool = _max_pool(x, name=f"{name}_maxpool")
    return _concat([conv, pool], name)


def v4_block_a(x, name):
    """timm's V4 `InceptionA`."""
    b0 = conv_norm_act(x, 96, 1, name=f"{name}_branch0")
    b1 = conv_norm_act(x, 64, 1, name=f"{name}_branch1_0")
    b1 = conv_norm_act(b1, 96, 3, padding=1, name=f"{name}_branch1_1")
    b2 = conv_norm_act(x, 64, 1, name=f"{name}_branch2_0")
    b2 = conv_norm_act(b2, 96, 3, padding=1, name=f"{name}_branch2_1")
    b2 = conv_norm_act(b2, 96, 3, padding=1, name=f"{name}_branch2_2")
    b3 = _avg_pool_exclude_pad(x, name=f"{name}_branch3_0")
    b3 = conv_norm_act(b3, 96, 1, name=f"{name}_branch3_1")
    return _concat([b0, b1, b2, b3], name)


def v4_reduction_a(x, name):
    """timm's `ReductionA` (to stride 16)."""
    b0 = conv_norm_act(x, 384, 3, strides=2, name=f"{name}_branch0")
    b1 = conv_norm_act(x, 192, 1, name=f"{name}_branch1_0")
    b1 = conv_norm_act(b1, 224, 3, padding=1, name=f"{name}_branch1_1")
    b1 = conv_norm_act(b1, 256, 3, strides=2, name=f"{name}_branch1_2")
    b2 = _max_pool(x, name=f"{name}_branch2")
    return _concat([b0, b1, b2], name)


def v4_block_b(x, name):
    """timm's V4 `InceptionB` (factorised 7x7 convs)."""
    b0 = conv_norm_act(x, 384, 1, name=f"{name}_branch0")
    b1 = conv_norm_act(x, 192, 1, name=f"{name}_branch1_0")
    b1 = conv_norm_act(b1, 224, (1, 7), padding=(0, 3),
                       name=f"{name}_branch1_1")
    b1 = conv_norm_act(b1, 256, (7, 1), padding=(3, 0),
                       name=f"{name}_branch1_2")
    b2 = conv_norm_act(x, 192, 1, name=f"{name}_branch2_0")
    for index, (filters, kernel, pad) in enumerate(
            ((192, (7, 1), (3, 0)), (224, (1, 7), (0, 3)),
             (224, (7, 1), (3, 0)), (256, (1, 7), (0, 3))), start=1):
        b2 = conv_norm_act(b2, filters, kernel, padding=pad,
                           name=f"{name}_branch2_{index}")
    b3 = _avg_pool_exclude_pad(x, name=f"{name}_branch3_0")
    b3 = conv_norm_act(b3, 128, 1, name=f"{name}_branch3_1")
    return _concat([b0, b1, b2, b3], name)


def v4_reduction_b(x, name):
    """timm's `ReductionB` (to stride 32)."""
    b0 = conv_norm_act(x, 192, 1, name=f"{name}_branch0_0")
    b0 = conv_norm_act(b0, 192, 3, strides=2, name=f"{name}_branch0_1")
    b1 = conv_norm_act(x, 256, 1, name=f"{name}_branch1_0")
    b1 = conv_norm_act(b1, 256, (1, 7), padding=(0, 3),
                       name=f"{name}_branch1_1")
    b1 = conv_norm_act(b1, 320, (7, 1), padding=(3, 0),
                       name=f"{name}_branch1_2")
    b1 = conv_norm_act(b1, 320, 3, strides=2, name=f"{name}_branch1_3")
    b2 = _max_pool(x, name=f"{name}_branch2")
    return _concat([b0, b1, b2], name)


def v4_block_c(x, name):
    """timm's V4 `InceptionC` (split 1x3 / 3x1 branches).

    Its `branch1_0`, `branch1_1a`, ... are attributes, not sequence
    indices; `v4_module_name` keeps their underscore.
    """
    b0 = conv_norm_act(x, 256, 1, name=f"{name}_branch0")
    b1 = conv_norm_act(x, 384, 1, name=f"{name}_branch1_0")
    b1 = _concat([
        conv_norm_act(b1, 256, (1, 3), padding=(0, 1),
                      name=f"{name}_branch1_1a"),
        conv_norm_act(b1, 256, (3, 1), padding=(1, 0),
                      name=f"{name}_branch1_1b"),
    ], name=f"{name}_branch1_concat")
    b2 = conv_norm_act(x, 384, 1, name=f"{name}_branch2_0")
    b2 = conv_norm_act(b2, 448, (3, 1), padding=(1, 0),
                       name=f"{name}_branch2_1")
    b2 = conv_norm_act(b2, 512, (1, 3), padding=(0, 1),
                       name=f"{name}_branch2_2")
    b2 = _concat([
        conv_norm_act(b2, 256, (1, 3), padding=(0, 1),
                      name=f"{name}_branch2_3a"),
        conv_norm_act(b2, 256, (3, 1), padding=(1, 0),
                      name=f"{name}_branch2_3b"),
    ], name=f"{name}_branch2_concat")
    b3 = _avg_pool_exclude_pad(x, name=f"{name}_branch3_0")
    b3 = conv_norm_act(b3, 256, 1, name=f"{name}_branch3_1")
    return _concat([b0, b1, b2, b3], name)


# timm's `features` sequence: the block builder of each index.
V4_FEATURES = (
    (lambda x, name: conv_norm_act(x, 32, 3, strides=2, name=name)),
    (lambda x, name: conv_norm_act(x, 32, 3, name=name)),
    (lambda x, name: conv_norm_act(x, 64, 3, padding=1, name=name)),
    v4_mixed_3a, v4_mixed_4a, v4_mixed_5a,
) + (v4_block_a,) * 4 + (v4_reduction_a,) + (v4_block_b,) * 7 + (
    v4_reduction_b,) + (v4_block_c,) * 3
# timm's features_only taps (`features.2`, `.3`, `.9`, `.17`, `.21`).
V4_TAPS = (2, 3, 9, 17, 21)
V4_BLOCK_C = tuple(i for i, fn in enumerate(V4_FEATURES)
                   if fn is v4_block_c)


def inception_v4(input_shape, name="inception_v4"):
    """Builds timm's `inception_v4` with outputs `{"P1".."P5"}`.

    Args:
        input_shape: `(height, width, channels)`; at least 75x75.
        name: the model name.

    Returns:
        A functional `keras.Model`.
    """
    inputs = keras.Input(shape=input_shape, name="images")
    pyramid = {}
    x = inputs
    for index, block in enumerate(V4_FEATURES):
        x = block(x, name=f"features_{index}")
        if index in V4_TAPS:
            pyramid[f"P{len(pyramid) + 1}"] = x
    return keras.Model(inputs, pyramid, name=name)


def v4_module_name(layer_name):
    """`features_18_branch1_1a_conv` -> `features.18.branch1_1a.conv`.

    Example:

    >>> v4_module_name("features_4_branch1_2_bn")
    'features.4.branch1.2.bn'
    """
    path = layer_name.replace("_", ".")
    index = int(path.split(".")[1])
    if index in V4_BLOCK_C:
        path = re.sub(r"\.branch([12])\.(\d[ab]?)\.", r".branch\1_\2.", path)
    return path


def v4_torch_mapping(model):
    """timm's keys -> variables for `inception_v4`."""
    return mapping_by_layer_names(model, rename=v4_module_name)


@register_encoder("inception_v4", channels=(64, 160, 384, 1024, 1536),
                  timm_name="inception_v4", torch_mapping=v4_torch_mapping,
                  first_conv="features.0.conv.weight", aligned=False,
                  min_input_size=MIN_INPUT_SIZE,
                  ignore_prefixes=("last_linear.",))
def inception_v4_encoder(input_shape):
    """Inception-V4 (timm `inception_v4`); classifiers only."""
    return inception_v4(input_shape, name="inception_v4")
