"""DenseNet encoders in timm's layout (`densenet121`).

timm's `DenseNet` (torchvision's layout): a 7x7 stride-2 stem conv,
BatchNorm-ReLU, a 3x3 stride-2 max pool, then dense blocks separated by
transitions (BatchNorm-ReLU, 1x1 conv halving the channels, 2x2 average
pool). A dense layer is BN-ReLU, 1x1 conv (`bn_size * growth_rate`),
BN-ReLU, 3x3 conv (`growth_rate`); its output is concatenated to its input.
Every BatchNorm is followed by a ReLU (timm's `BatchNormAct2d`) and has
epsilon 1e-5. Layers are named after timm's modules
(`features.denseblock1.denselayer1.conv1` ->
`features_denseblock1_denselayer1_conv1`).

The pyramid is timm's `features_only` output: P1 = `features.norm0` (after
its ReLU, stride 2), P2..P4 = the outputs of dense blocks 1..3 (before
their transition: strides 4, 8, 16) and P5 = `features.norm5` (after its
ReLU, stride 32). For DenseNet-121 the channels are
(64, 256, 512, 1024, 1024).

Example:

>>> from kaggle_tf.models import encoders
>>> enc = encoders.build("densenet121", input_shape=(64, 64, 3))
>>> enc.output["P4"].shape
(None, 4, 4, 1024)
"""

import keras
from keras import layers

from kaggle_tf.models import blocks
from kaggle_tf.models.encoders.registry import register_encoder
from kaggle_tf.models.torch_layout import mapping_by_layer_names

BN_SIZE = 4


def _bn_relu(x, name):
    """timm's `BatchNormAct2d`: BatchNorm (eps 1e-5), then ReLU."""
    x = blocks.batch_norm(x, name=name)
    return layers.ReLU(name=f"{name}_act")(x)


def dense_layer(x, growth_rate, bn_size=BN_SIZE, name=None):
    """timm's `DenseLayer`; returns `concat([x, new_features])`."""
    y = _bn_relu(x, name=f"{name}_norm1")
    y = blocks.conv2d(y, bn_size * growth_rate, 1, name=f"{name}_conv1")
    y = _bn_relu(y, name=f"{name}_norm2")
    y = blocks.conv2d(y, growth_rate, 3, name=f"{name}_conv2")
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def transition(x, filters, name=None):
    """timm's `DenseTransition`: BN-ReLU, 1x1 conv, 2x2 average pool."""
    x = _bn_relu(x, name=f"{name}_norm")
    x = blocks.conv2d(x, filters, 1, name=f"{name}_conv")
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def densenet(input_shape, block_config, growth_rate=32, bn_size=BN_SIZE,
             name="densenet"):
    """Builds a DenseNet encoder with outputs `{"P1".."P5"}`.

    Args:
        input_shape: `(height, width, channels)`; any channel count.
        block_config: dense layers per block (4 values).
        growth_rate: channels each dense layer adds. Defaults to `32`.
        bn_size: bottleneck width, in units of `growth_rate`. Defaults to
            `4`.
        name: the model name.

    Returns:
        A functional `keras.Model`.

    Example:

    >>> model = densenet((64, 64, 3), (1, 1, 1, 1), growth_rate=8)
    >>> model.output["P5"].shape
    (None, 2, 2, 17)
    """
    if len(block_config) != 4:
        raise ValueError(
            f"block_config needs 4 values. Received: block_config="
            f"{block_config!r}")
    inputs = keras.Input(shape=input_shape, name="images")

    # --- stem ---
    x = blocks.conv2d(inputs, 2 * growth_rate, 7, strides=2,
                      name="features_conv0")
    x = _bn_relu(x, name="features_norm0")
    pyramid = {"P1": x}
    x = blocks.max_pool_3x3_s2(x, name="features_pool0")

    # --- dense blocks ---
    for index, num_layers in enumerate(block_config):
        block = f"features_denseblock{index + 1}"
        for layer in range(num_layers):
            x = dense_layer(x, growth_rate, bn_size,
                            name=f"{block}_denselayer{layer + 1}")
        if index < len(block_config) - 1:
            pyramid[f"P{index + 2}"] = x
            x = transition(x, x.shape[-1] // 2,
                           name=f"features_transition{index + 1}")
    pyramid["P5"] = _bn_relu(x, name="features_norm5")
    return keras.Model(inputs, pyramid, name=name)


def torch_mapping(model):
    """timm's keys -> variables, derived from the timm-style layer names."""
    return mapping_by_layer_names(model)


@register_encoder("densenet121", channels=(64, 256, 512, 1024, 1024),
                  timm_name="densenet121", torch_mapping=torch_mapping,
                  first_conv="features.conv0.weight")
def densenet121(input_shape):
    """DenseNet-121 (timm `densenet121`)."""
    return densenet(input_shape, (6, 12, 24, 16), growth_rate=32,
                    name="densenet121")
