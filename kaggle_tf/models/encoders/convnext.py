"""ConvNeXt encoders in timm's layout (`convnext_tiny`).

timm's `ConvNeXt`: a 4x4 stride-4 stem conv with a channels-last
LayerNorm (epsilon 1e-6), then four stages. Each stage but the first
starts with a LayerNorm and a 2x2 stride-2 conv (`downsample`); each block
is a 7x7 depthwise conv, LayerNorm, an MLP (`fc1` x4 wide, exact GELU,
`fc2`), a learned per-channel layer scale (`gamma`) and the residual add.
Layers are named after timm's modules (`stages.1.blocks.0.mlp.fc1` ->
`stages_1_blocks_0_mlp_fc1`); the MLP is a `Dense` on channels-last maps,
exactly timm's `nn.Linear` after its permute.

The pyramid: P2..P5 are timm's `features_only` outputs (the four stages,
strides 4..32). ConvNeXt has nothing at stride 2, so P1 is an *empty* map,
`(batch, height // 2, width // 2, 0)`: the convention of smp's `tu-`
encoders for such backbones (a zero-channel dummy). A U-Net decoder then
has no skip at stride 2 (it upsamples its own features), costs nothing
extra, and keeps smp's decoder shapes, so smp `Unet("tu-convnext_tiny")`
checkpoints keep their layout. Decoders must accept a zero-channel skip
(a concatenation does); `spec("convnext_tiny").channels[0]` is 0.

Example:

>>> from kaggle_tf.models import encoders
>>> enc = encoders.build("convnext_tiny", input_shape=(64, 64, 3))
>>> [enc.output[k].shape[-1] for k in ("P1", "P2", "P3", "P4", "P5")]
[0, 96, 192, 384, 768]
"""

import re

import keras
from keras import layers
from keras import ops

from kaggle_tf.models.encoders.registry import register_encoder
from kaggle_tf.models.torch_layout import bn_entries
from kaggle_tf.models.torch_layout import conv_entries

LN_EPSILON = 1e-6
# timm's `ls_init_value`: layer scale starts tiny, each block ~ identity.
LAYER_SCALE_INIT = 1e-6
MLP_RATIO = 4


@keras.saving.register_keras_serializable(package="kaggle_tf")
class LayerScale(keras.layers.Layer):
    """Multiplies channels by a learned vector `gamma` (timm's `gamma`).

    `y = x * gamma` over the last axis; `gamma` starts at `init_value`.

    Args:
        init_value: the initial value of every entry of `gamma`. Defaults
            to `1e-6`.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:

    >>> layer = LayerScale(1e-6)
    >>> y = layer(keras.ops.ones((1, 4, 4, 8)))
    >>> float(y[0, 0, 0, 0])
    1e-06
    """

    def __init__(self, init_value=LAYER_SCALE_INIT, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma", shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value))

    def call(self, inputs):
        return inputs * ops.cast(self.gamma, inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config["init_value"] = self.init_value
        return config


@keras.saving.register_keras_serializable(package="kaggle_tf")
class EmptyFeatureMap(keras.layers.Layer):
    """A zero-channel map at `strides` of its input: the absent P1.

    `(batch, height, width, c) -> (batch, height // strides,
    width // strides, 0)` (floor, as PyTorch's `H // 2` in smp).

    Args:
        strides: the downsampling factor. Defaults to `2`.
        **kwargs: `keras.layers.Layer` arguments.

    Example:

    >>> EmptyFeatureMap(2)(keras.ops.ones((1, 65, 64, 3))).shape
    (1, 32, 32, 0)
    """

    def __init__(self, strides=2, **kwargs):
        super().__init__(**kwargs)
        if int(strides) < 1:
            raise ValueError(
                f"strides must be a positive int. Received: strides="
                f"{strides!r}")
        self.strides = int(strides)

    def call(self, inputs):
        shape = ops.shape(inputs)
        return ops.zeros((shape[0], shape[1] // self.strides,
                          shape[2] // self.strides, 0),
                         dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        def down(size):
            return None if size is None else size // self.strides

        return (input_shape[0], down(input_shape[1]), down(input_shape[2]),
                0)

    def get_config(self):
        config = super().get_config()
        config["strides"] = self.strides
        return config


def layer_norm(x, name):
    return layers.LayerNormalization(epsilon=LN_EPSILON, name=name)(x)


def convnext_block(x, kernel_size=7, name=None):
    """timm's `ConvNeXtBlock`: dw 7x7, LN, fc1, GELU, fc2, gamma, add.

    `kernel_size` (odd) is the depthwise kernel: 7 in ConvNeXt, 3-9 in
    EdgeNeXt's `ConvBlock`, which is the same block.
    """
    channels = x.shape[-1]
    y = layers.DepthwiseConv2D(kernel_size, padding="same", use_bias=True,
                               name=f"{name}_conv_dw")(x)
    y = layer_norm(y, name=f"{name}_norm")
    y = layers.Dense(MLP_RATIO * channels, name=f"{name}_mlp_fc1")(y)
    y = layers.Activation("gelu", name=f"{name}_mlp_act")(y)
    y = layers.Dense(channels, name=f"{name}_mlp_fc2")(y)
    y = LayerScale(LAYER_SCALE_INIT, name=f"{name}_gamma")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def convnext(input_shape, depths, dims, name="convnext"):
    """Builds a ConvNeXt encoder with outputs `{"P1".."P5"}`.

    Args:
        input_shape: `(height, width, channels)`; any channel count.
        depths: blocks per stage (4 values).
        dims: channels per stage (4 values).
        name: the model name.

    Returns:
        A functional `keras.Model`; P1 has zero channels (see the module
        docstring).

    Example:

    >>> model = convnext((64, 64, 3), (1, 1, 1, 1), (8, 16, 24, 32))
    >>> model.output["P3"].shape
    (None, 8, 8, 16)
    """
    return staged_pyramid(
        input_shape, depths, dims,
        lambda x, stage, index, name: convnext_block(x, name=name), name)


def staged_pyramid(input_shape, depths, dims, block, name):
    """ConvNeXt's skeleton, shared with EdgeNeXt: a 4x4 stride-4 stem and
    LN, four stages (LN + 2x2 stride-2 downsampling before stages 1-3),
    `block(x, stage, index, name)` for each block; outputs P1 (empty) to
    P5, layers named as timm's modules."""
    if len(depths) != 4 or len(dims) != 4:
        raise ValueError(
            f"depths and dims need 4 values each. Received: depths="
            f"{depths!r}, dims={dims!r}")
    inputs = keras.Input(shape=input_shape, name="images")
    pyramid = {"P1": EmptyFeatureMap(2, name="P1_empty")(inputs)}

    # --- stem ---
    x = layers.Conv2D(dims[0], 4, strides=4, use_bias=True,
                      name="stem_0")(inputs)
    x = layer_norm(x, name="stem_1")

    # --- stages ---
    for stage, (depth, dim) in enumerate(zip(depths, dims)):
        prefix = f"stages_{stage}"
        if stage > 0:
            x = layer_norm(x, name=f"{prefix}_downsample_0")
            x = layers.Conv2D(dim, 2, strides=2, use_bias=True,
                              name=f"{prefix}_downsample_1")(x)
        for index in range(depth):
            x = block(x, stage, index, f"{prefix}_blocks_{index}")
        pyramid[f"P{stage + 2}"] = x
    return keras.Model(inputs, pyramid, name=name)


def timm_module_name(layer_name):
    """`stages_0_blocks_1_conv_dw` -> `stages.0.blocks.1.conv_dw`.

    Example:

    >>> timm_module_name("stages_1_downsample_0")
    'stages.1.downsample.0'
    """
    return re.sub(r"conv\.dw\b", "conv_dw", layer_name.replace("_", "."))


def torch_mapping(model, module_name=timm_module_name, special=None):
    """timm's keys -> variables for a `convnext(...)` model (and, with
    EdgeNeXt's `module_name` and `special(layer, prefix) -> entries or
    None` for its own layers, an `edgenext(...)` one)."""
    mapping = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = module_name(layer.name)
        entries = special(layer, prefix) if special else None
        if entries is not None:
            mapping.update(entries)
        elif isinstance(layer, LayerScale):
            mapping[prefix] = (layer.gamma, "plain")
        elif isinstance(layer, layers.DepthwiseConv2D):
            mapping.update(conv_entries(model, layer.name, prefix,
                                        "depthwise"))
        elif isinstance(layer, layers.Conv2D):
            mapping.update(conv_entries(model, layer.name, prefix, "conv"))
        elif isinstance(layer, layers.Dense):
            mapping.update(conv_entries(model, layer.name, prefix, "dense"))
        elif isinstance(layer, layers.LayerNormalization):
            mapping.update(bn_entries(model, layer.name, prefix))
        else:
            raise ValueError(
                f"no timm mapping for layer {layer.name!r} of type "
                f"{type(layer).__name__}. Received: model={model.name!r}")
    return mapping


@register_encoder("convnext_tiny", channels=(0, 96, 192, 384, 768),
                  timm_name="convnext_tiny", torch_mapping=torch_mapping,
                  first_conv="stem.0.weight", ignore_prefixes=("head.",),
                  timm_head={"kind": "norm", "epsilon": LN_EPSILON})
def convnext_tiny(input_shape):
    """ConvNeXt-Tiny (timm `convnext_tiny`)."""
    return convnext(input_shape, (3, 3, 9, 3), (96, 192, 384, 768),
                    name="convnext_tiny")
