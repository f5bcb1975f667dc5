"""Xception in timm's layout (`legacy_xception`, the HPA seed's encoder).

timm's legacy `Xception` (Cadene's port of the Keras model): a 3x3 stride-2
and a 3x3 conv, both unpadded, with BatchNorm-ReLU; twelve blocks of
separable convs (`SeparableConv2d`: depthwise 3x3 `conv1`, pointwise 1x1
`pointwise`, no bias), each a `rep` of ReLU / separable conv / BatchNorm
triples, ending with a 3x3 stride-2 max pool (padding 1) when it
downsamples, plus a 1x1 conv + BatchNorm shortcut (`skip`, `skipbn`) when
the shape changes; then two separable convs with BatchNorm-ReLU
(`conv3`/`bn3`, `conv4`/`bn4`). BatchNorm epsilon 1e-5. Layers are named
after timm's modules (`block1.rep.0.conv1` -> `block1_rep_0_conv1`).

The pyramid is timm's `features_only` output (taps `act2`,
`block2.rep.0`, `block3.rep.0`, `block12.rep.0`, `act4`): channels
(64, 128, 256, 728, 2048) at nominal strides 2..32. The unpadded stem makes
every map smaller than `size / stride` (64 -> 29, 15, 8, 4, 2), so the
encoder is registered `aligned=False`: classifiers only.

Example:

>>> from kaggle_tf.models import encoders
>>> enc = encoders.build("legacy_xception", input_shape=(64, 64, 3))
>>> enc.output["P5"].shape
(None, 2, 2, 2048)
"""

import keras
from keras import layers

from kaggle_tf.models import blocks
from kaggle_tf.models.encoders.registry import register_encoder
from kaggle_tf.models.torch_layout import mapping_by_layer_names

# (in, out, reps, strides, start_with_relu, grow_first) of block1..12.
BLOCKS = (
    (64, 128, 2, 2, False, True),
    (128, 256, 2, 2, True, True),
    (256, 728, 2, 2, True, True),
) + ((728, 728, 3, 1, True, True),) * 8 + (
    (728, 1024, 2, 2, True, False),
)


def separable_conv(x, filters, name=None):
    """timm's `SeparableConv2d(k=3, padding=1)`: depthwise, then 1x1."""
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False,
                               name=f"{name}_conv1")(x)
    return layers.Conv2D(filters, 1, use_bias=False,
                         name=f"{name}_pointwise")(x)


def xception_block(x, filters, reps, strides=1, start_with_relu=True,
                   grow_first=True, name=None):
    """timm's Xception `Block`; returns `(output, first ReLU output)`.

    The first ReLU's output is what timm's `features_only` taps for the
    previous stage (`block2.rep.0`); it is None without `start_with_relu`.
    """
    in_channels = x.shape[-1]
    shortcut = x
    index = 0
    tap = None
    y = x
    for i in range(reps):
        if grow_first:
            out = filters
        else:
            out = in_channels if i < reps - 1 else filters
        if i > 0 or start_with_relu:
            y = layers.ReLU(name=f"{name}_rep_{index}")(y)
            if i == 0:
                tap = y
            index += 1
        y = separable_conv(y, out, name=f"{name}_rep_{index}")
        y = blocks.batch_norm(y, name=f"{name}_rep_{index + 1}")
        index += 2
    if strides != 1:
        y = blocks.TorchMaxPooling2D(3, strides, 1,
                                     name=f"{name}_rep_{index}")(y)
    if filters != in_channels or strides != 1:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False,
                                 name=f"{name}_skip")(x)
        shortcut = blocks.batch_norm(shortcut, name=f"{name}_skipbn")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return y, tap


def xception(input_shape, name="legacy_xception"):
    """Builds timm's `legacy_xception` with outputs `{"P1".."P5"}`.

    Args:
        input_shape: `(height, width, channels)`; any channel count.
        name: the model name.

    Returns:
        A functional `keras.Model`.

    Example:

    >>> model = xception((64, 64, 3))
    >>> model.output["P1"].shape
    (None, 29, 29, 64)
    """
    inputs = keras.Input(shape=input_shape, name="images")

    # --- stem (unpadded) ---
    x = layers.Conv2D(32, 3, strides=2, use_bias=False, name="conv1")(inputs)
    x = blocks.batch_norm(x, name="bn1")
    x = layers.ReLU(name="act1")(x)
    x = layers.Conv2D(64, 3, use_bias=False, name="conv2")(x)
    x = blocks.batch_norm(x, name="bn2")
    x = layers.ReLU(name="act2")(x)
    pyramid = {"P1": x}

    # --- blocks ---
    # timm taps the first ReLU of blocks 2, 3 and 12 (their input, ReLU'd).
    taps = {2: "P2", 3: "P3", 12: "P4"}
    for index, (_, filters, reps, strides, start_with_relu,
                grow_first) in enumerate(BLOCKS, start=1):
        x, tap = xception_block(x, filters, reps, strides, start_with_relu,
                                grow_first, name=f"block{index}")
        if index in taps:
            pyramid[taps[index]] = tap

    # --- exit flow ---
    x = separable_conv(x, 1536, name="conv3")
    x = blocks.batch_norm(x, name="bn3")
    x = layers.ReLU(name="act3")(x)
    x = separable_conv(x, 2048, name="conv4")
    x = blocks.batch_norm(x, name="bn4")
    pyramid["P5"] = layers.ReLU(name="act4")(x)
    return keras.Model(inputs, dict(sorted(pyramid.items())), name=name)


def torch_mapping(model):
    """timm's keys -> variables, derived from the timm-style layer names."""
    return mapping_by_layer_names(model)


@register_encoder("legacy_xception", channels=(64, 128, 256, 728, 2048),
                  timm_name="legacy_xception", torch_mapping=torch_mapping,
                  first_conv="conv1.weight", aligned=False)
def legacy_xception(input_shape):
    """Xception (timm `legacy_xception`); classifiers only."""
    return xception(input_shape, name="legacy_xception")
