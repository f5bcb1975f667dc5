"""EdgeNeXt encoders in timm's layout (`edgenext_base`).

timm's `EdgeNeXt` (the RSNA 2024 lumbar seed's encoder): ConvNeXt's 4x4
stride-4 stem with a LayerNorm (epsilon 1e-6), then four stages; each
stage but the first starts with a LayerNorm and a 2x2 stride-2 conv
(`downsample`). A stage is ConvNeXt blocks (`conv_block`: depthwise kxk
with k = 3, 5, 7, 9 per stage, LayerNorm, MLP, layer scale, residual)
and, in stages 1-3, one `SplitTransposeBlock` last (`split_transpose_block`):

* the channels split into `scales` equal chunks; chunk 0 goes through a
  3x3 depthwise conv, each next chunk is added to the previous result and
  goes through its own (timm's `convs.<i>`), the last chunk passes as is;
* in stage 1 only, a Fourier positional encoding (`FourierPositions`,
  timm's `PositionalEncodingFourier`, then its 1x1 `token_projection`)
  is added;
* cross-covariance attention over channels (`CrossCovarianceAttention`,
  timm's `CrossCovarianceAttn`: per head, L2-normalised queries and keys
  over positions, a `d x d` attention scaled by a learned `temperature`)
  after a LayerNorm, scaled by `gamma_xca` and added;
* an inverted bottleneck (LayerNorm, MLP, `gamma`), added to the block
  input.

Layers are named after timm's modules (`stages.1.blocks.2.xca.qkv` ->
`stages_1_blocks_2_xca_qkv`).

The pyramid: P2..P5 are timm's `features_only` outputs (the four stages,
strides 4..32). EdgeNeXt has nothing at stride 2, so P1 is an empty
(zero-channel) map, as for `convnext_tiny` (smp's convention for its
`tu-` encoders of such backbones): a U-Net has no skip at stride 2 and
upsamples its own features there; a `Classifier` uses P5 only.

Example:

>>> from kaggle_tf.models import encoders
>>> enc = encoders.build("edgenext_base", input_shape=(64, 64, 3))
>>> [enc.output[k].shape[-1] for k in ("P1", "P2", "P3", "P4", "P5")]
[0, 80, 160, 288, 584]
"""

import math
import re

import keras
from keras import layers
from keras import ops

from kaggle_tf.models.blocks import SplitChannels
from kaggle_tf.models.encoders import convnext
from kaggle_tf.models.encoders.convnext import LN_EPSILON
from kaggle_tf.models.encoders.convnext import LayerScale
from kaggle_tf.models.encoders.convnext import convnext_block
from kaggle_tf.models.encoders.convnext import layer_norm
from kaggle_tf.models.encoders.convnext import staged_pyramid
from kaggle_tf.models.encoders.registry import register_encoder

# timm's EdgeNeXt defaults (every variant).
KERNEL_SIZES = (3, 5, 7, 9)
GLOBAL_BLOCKS = (0, 1, 1, 1)
SCALES = (2, 2, 3, 4)
HEADS = (8, 8, 8, 8)
POSITIONS = (False, True, False, False)
POSITION_CHANNELS = 32  # timm's `hidden_dim`: 2 x 32 Fourier features


@keras.saving.register_keras_serializable(package="kaggle_tf")
class FourierPositions(keras.layers.Layer):
    """timm's `PositionalEncodingFourier` before its projection.

    `(batch, height, width, c) -> (batch, height, width, 2 *
    hidden_dim)`: channel `i < hidden_dim` is `sin` (even `i`) or `cos`
    (odd `i`) of `y / t_i`, the next `hidden_dim` the same of `x / t_i`,
    where `y = 2 pi (row + 1) / (height + 1e-6)` (likewise `x` over
    columns) and `t_i = temperature ** (2 * (i // 2) / hidden_dim)`.
    Depends on the input's size only.

    Args:
        hidden_dim: Fourier features per axis. Defaults to `32`.
        temperature: Defaults to `10000.0`.
        **kwargs: `keras.layers.Layer` arguments.

    Example:

    >>> FourierPositions()(keras.ops.ones((2, 4, 5, 8))).shape
    (2, 4, 5, 64)
    """

    def __init__(self, hidden_dim=POSITION_CHANNELS, temperature=10000.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.temperature = float(temperature)

    def call(self, inputs):
        shape = ops.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]
        eps, scale = 1e-6, 2 * math.pi
        rows = ops.cast(ops.arange(1, height + 1), "float32")
        cols = ops.cast(ops.arange(1, width + 1), "float32")
        rows = rows / (ops.cast(height, "float32") + eps) * scale
        cols = cols / (ops.cast(width, "float32") + eps) * scale
        index = ops.arange(self.hidden_dim)
        dim_t = self.temperature ** (
            2.0 * ops.cast(index // 2, "float32") / self.hidden_dim)
        even = ops.equal(index % 2, 0)

        def features(values):  # (n,) -> (n, hidden_dim)
            angles = values[:, None] / dim_t[None, :]
            return ops.where(even[None, :], ops.sin(angles), ops.cos(angles))

        pos_y = ops.broadcast_to(features(rows)[:, None, :],
                                 (height, width, self.hidden_dim))
        pos_x = ops.broadcast_to(features(cols)[None, :, :],
                                 (height, width, self.hidden_dim))
        pos = ops.concatenate([pos_y, pos_x], axis=-1)
        pos = ops.broadcast_to(pos[None],
                               (batch, height, width, 2 * self.hidden_dim))
        return ops.cast(pos, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (2 * self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim,
                      temperature=self.temperature)
        return config


@keras.saving.register_keras_serializable(package="kaggle_tf")
class CrossCovarianceAttention(keras.layers.Layer):
    """timm's `CrossCovarianceAttn` between its `qkv` and `proj` layers.

    Input: `qkv`, `(batch, height, width, 3 * channels)` (queries, keys,
    values, each split into `num_heads` heads of `d` channels, timm's
    order). Per head, queries and keys are L2-normalised over the
    positions, `softmax(q k^T * temperature)` is a `d x d` attention over
    channels, applied to the values. Output `(batch, height, width,
    channels)`. `temperature` (one per head, timm's `(heads, 1, 1)`) is
    this layer's weight.

    Args:
        num_heads: attention heads. Defaults to `8`.
        **kwargs: `keras.layers.Layer` arguments.

    Example:

    >>> CrossCovarianceAttention(2)(keras.ops.ones((1, 4, 4, 24))).shape
    (1, 4, 4, 8)
    """

    def __init__(self, num_heads=8, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)

    def build(self, input_shape):
        if input_shape[-1] % (3 * self.num_heads):
            raise ValueError(
                f"qkv channels must be a multiple of 3 * num_heads = "
                f"{3 * self.num_heads}. Received: input_shape="
                f"{input_shape!r}")
        self.temperature = self.add_weight(
            name="temperature", shape=(self.num_heads, 1, 1),
            initializer="ones")

    def call(self, inputs):
        shape = ops.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]
        channels = inputs.shape[-1] // 3
        depth = channels // self.num_heads
        qkv = ops.reshape(inputs, (batch, height * width, 3, self.num_heads,
                                   depth))
        qkv = ops.transpose(qkv, (2, 0, 3, 4, 1))  # (3, B, heads, d, N)
        q, k, v = qkv[0], qkv[1], qkv[2]

        def l2_normalize(t):  # F.normalize(dim=-1), eps 1e-12
            norm = ops.sqrt(ops.sum(ops.square(t), axis=-1, keepdims=True))
            return t / ops.maximum(norm, 1e-12)

        attn = ops.matmul(l2_normalize(q),
                          ops.transpose(l2_normalize(k), (0, 1, 3, 2)))
        attn = attn * ops.cast(self.temperature, attn.dtype)
        attn = ops.softmax(attn, axis=-1)
        out = ops.matmul(attn, v)  # (B, heads, d, N)
        out = ops.transpose(out, (0, 3, 1, 2))  # (B, N, heads, d)
        return ops.reshape(out, (batch, height, width, channels))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (input_shape[-1] // 3,)

    def get_config(self):
        config = super().get_config()
        config["num_heads"] = self.num_heads
        return config


def _mlp(x, name):
    channels = x.shape[-1]
    y = layers.Dense(4 * channels, name=f"{name}_mlp_fc1")(x)
    y = layers.Activation("gelu", name=f"{name}_mlp_act")(y)
    return layers.Dense(channels, name=f"{name}_mlp_fc2")(y)


def split_transpose_block(x, scales, num_heads, positions, name=None):
    """timm's `SplitTransposeBlock` (see the module docstring)."""
    channels = x.shape[-1]
    convs = max(1, scales - 1)  # timm's `num_scales`
    chunks = convs + 1
    size = -(-channels // chunks)  # torch.chunk: ceil-sized, last smaller
    sizes = [size] * (channels // size)
    if channels % size:
        sizes.append(channels % size)
    if len(sizes) != chunks:
        raise ValueError(
            f"{channels} channels do not split into {chunks} chunks as "
            f"timm's EdgeNeXt splits them. Received: name={name!r}")
    parts = SplitChannels(sizes, name=f"{name}_split")(x)
    outputs = []
    sp = parts[0]
    for i in range(convs):
        if i > 0:
            sp = layers.Add(name=f"{name}_convs_{i}_in")([sp, parts[i]])
        sp = layers.DepthwiseConv2D(3, padding="same", use_bias=True,
                                    name=f"{name}_convs_{i}")(sp)
        outputs.append(sp)
    outputs.append(parts[-1])
    y = layers.Concatenate(name=f"{name}_merge")(outputs)

    if positions:
        pos = FourierPositions(name=f"{name}_pos_embd")(y)
        pos = layers.Conv2D(channels, 1, use_bias=True,
                            name=f"{name}_pos_embd_token_projection")(pos)
        y = layers.Add(name=f"{name}_pos_add")([y, pos])
    a = layer_norm(y, name=f"{name}_norm_xca")
    a = layers.Dense(3 * channels, name=f"{name}_xca_qkv")(a)
    a = CrossCovarianceAttention(num_heads, name=f"{name}_xca_attn")(a)
    a = layers.Dense(channels, name=f"{name}_xca_proj")(a)
    a = LayerScale(name=f"{name}_gamma_xca")(a)
    y = layers.Add(name=f"{name}_xca_add")([y, a])

    y = layer_norm(y, name=f"{name}_norm")
    y = _mlp(y, name)
    y = LayerScale(name=f"{name}_gamma")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def edgenext(input_shape, depths, dims, name="edgenext"):
    """Builds an EdgeNeXt encoder with outputs `{"P1".."P5"}`.

    Args:
        input_shape: `(height, width, channels)`; any channel count.
        depths: blocks per stage (4 values).
        dims: channels per stage (4 values).
        name: the model name.

    Returns:
        A functional `keras.Model`; P1 has zero channels.

    Example:

    >>> model = edgenext((64, 64, 3), (1, 2, 2, 2), (16, 32, 48, 64))
    >>> model.output["P5"].shape
    (None, 2, 2, 64)
    """
    def block(x, stage, index, name):
        if index < depths[stage] - GLOBAL_BLOCKS[stage]:
            return convnext_block(x, kernel_size=KERNEL_SIZES[stage],
                                  name=name)
        return split_transpose_block(x, SCALES[stage], HEADS[stage],
                                     POSITIONS[stage], name=name)

    return staged_pyramid(input_shape, depths, dims, block, name)


_TIMM_WORDS = re.compile(
    r"conv\.dw|pos\.embd|token\.projection|norm\.xca|gamma\.xca")


def timm_module_name(layer_name):
    """`stages_1_blocks_2_pos_embd_token_projection` ->
    `stages.1.blocks.2.pos_embd.token_projection`.

    Example:

    >>> timm_module_name("stages_2_blocks_8_gamma_xca")
    'stages.2.blocks.8.gamma_xca'
    """
    return _TIMM_WORDS.sub(lambda m: m.group(0).replace(".", "_"),
                           layer_name.replace("_", "."))


def _own_layers(layer, prefix):
    if isinstance(layer, CrossCovarianceAttention):
        return {prefix.replace(".attn", ".temperature"): (
            layer.temperature, "plain")}
    return None


def torch_mapping(model):
    """timm's keys -> variables for an `edgenext(...)` model."""
    return convnext.torch_mapping(model, timm_module_name, _own_layers)


@register_encoder("edgenext_base", channels=(0, 80, 160, 288, 584),
                  timm_name="edgenext_base", torch_mapping=torch_mapping,
                  first_conv="stem.0.weight", ignore_prefixes=("head.",),
                  timm_head={"kind": "norm", "epsilon": LN_EPSILON})
def edgenext_base(input_shape):
    """EdgeNeXt-Base (timm `edgenext_base`)."""
    return edgenext(input_shape, (3, 3, 9, 3), (80, 160, 288, 584),
                    name="edgenext_base")
