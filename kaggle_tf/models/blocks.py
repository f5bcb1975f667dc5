"""Building blocks shared by encoders and decoders (tensor in, tensor out).

Each block is a plain function `block(x, ..., name=)` that applies fixed-name
layers, so that timm's state dict keys map onto layer names.

PyTorch pads convolutions and pools symmetrically; Keras' `"same"` pads
asymmetrically when the stride is 2. `conv2d` therefore pads explicitly for
strided convolutions (the conv's own explicit padding, or `ZeroPadding2D` +
`"valid"` for grouped convs), as `max_pool_3x3_s2` does for the pool,
which keeps outputs equal to timm's for any input size, odd ones included.
"""


import keras
import tensorflow as tf
from keras import layers
from keras import ops

from kaggle_tf.models.fused_batch_norm import FusedBatchNorm
from kaggle_tf.models.ordered_conv import OrderedConv2D
from kaggle_tf.models.ordered_conv import in_xla

# PyTorch's BatchNorm2d defaults: eps 1e-5, momentum 0.1 (= Keras 0.9).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


# timm's ResNet init: kaiming normal, fan_out, ReLU gain.
CONV_INIT = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out",
                        "distribution": "untruncated_normal"}}


def conv2d(x, filters, kernel_size, strides=1, groups=1, use_bias=False,
           padding=None, kernel_initializer=None, name=None):
    """A conv with PyTorch's symmetric padding (`kernel_size // 2`).

    Args:
        x: input tensor `(batch, height, width, channels)`.
        filters: output channels.
        kernel_size: an odd int.
        strides: 1 or 2. Defaults to `1`.
        groups: channel groups (ResNeXt). Defaults to `1`.
        use_bias: Defaults to `False`.
        padding: pixels padded on every side. Defaults to
            `kernel_size // 2`.
        kernel_initializer: Defaults to timm's (kaiming normal, fan out).
        name: the conv layer name; a grouped strided conv's padding layer
            is `name + "_pad"`.

    Returns:
        The output tensor.

    Example:

    >>> y = conv2d(keras.Input((64, 64, 3)), 64, 7, strides=2, name="conv1")
    >>> y.shape
    (None, 32, 32, 64)
    """
    pad = kernel_size // 2 if padding is None else padding
    init = kernel_initializer or keras.initializers.get(CONV_INIT)
    if strides == 1 and pad == kernel_size // 2:
        # Odd kernel, stride 1: "same" pads symmetrically.
        mode, explicit = ("same" if pad else "valid"), 0
    elif groups == 1:  # the conv pads by itself (no padded copy kept)
        mode, explicit = "valid", pad
    else:
        if pad:
            x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        mode, explicit = "valid", 0
    if groups != 1:
        return layers.Conv2D(filters, kernel_size, strides=strides,
                             padding=mode, groups=groups, use_bias=use_bias,
                             kernel_initializer=init, name=name)(x)
    return OrderedConv2D(filters, kernel_size, strides=strides, padding=mode,
                         explicit_padding=explicit, use_bias=use_bias,
                         kernel_initializer=init, name=name)(x)


def batch_norm(x, zero_init=False, name=None):
    """BatchNormalization with PyTorch's epsilon and momentum
    (`FusedBatchNorm`: TensorFlow's fused kernel in training).

    `zero_init=True` starts gamma at 0 (timm's `zero_init_last` for the
    last norm of a residual block).
    """
    return FusedBatchNorm(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if zero_init else "ones", name=name)(x)


def conv_bn_act(x, filters, kernel_size, strides=1, groups=1,
                activation="relu", name=None):
    """Conv (no bias) -> BatchNorm -> activation.

    Layers are `{name}_conv`, `{name}_bn`, `{name}_act`.

    Example:

    >>> y = conv_bn_act(keras.Input((64, 64, 32)), 16, 3, name="block")
    """
    x = conv2d(x, filters, kernel_size, strides=strides, groups=groups,
               name=f"{name}_conv")
    x = batch_norm(x, name=f"{name}_bn")
    if activation is not None:
        x = layers.Activation(activation, name=f"{name}_act")(x)
    return x


def max_pool_3x3_s2(x, name=None):
    """PyTorch's `MaxPool2d(3, stride=2, padding=1)` after a ReLU.

    After a ReLU every value is >= 0, so zero padding equals PyTorch's
    -inf padding (`TorchMaxPooling2D(zero_pad=True)`).
    """
    return TorchMaxPooling2D(3, 2, 1, zero_pad=True, name=name)(x)


@keras.saving.register_keras_serializable(package="kaggle_tf")
class TorchMaxPooling2D(layers.Layer):
    """PyTorch's `MaxPool2d(pool_size, strides, padding)` (floor mode).

    Pads `padding` pixels of `-inf` on every side, then max-pools
    unpadded; the padding never wins, whatever the sign of the inputs. In
    training on TensorFlow outside XLA the pool pads by itself, so no
    padded copy of the input is kept for the gradient (a 107 MB one after
    the stem of a ResNet at 256x1600, batch 4).

    Args:
        pool_size: the window side. Defaults to `3`.
        strides: Defaults to `2`.
        padding: pixels padded on each side. Defaults to `1`.
        zero_pad: pad with zeros instead (equal after a ReLU; the Pad op
            of exported graphs then has a finite value, as after a
            `ZeroPadding2D`). Defaults to `False`.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:

    >>> TorchMaxPooling2D(3, 2, 1)(keras.ops.ones((1, 8, 8, 4))).shape
    (1, 4, 4, 4)
    """

    def __init__(self, pool_size=3, strides=2, padding=1, zero_pad=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)
        self.strides = int(strides)
        self.padding = int(padding)
        self.zero_pad = bool(zero_pad)

    def call(self, inputs, training=None):
        p = self.padding
        if (p and training and keras.backend.backend() == "tensorflow"
                and not in_xla()):
            # In training TensorFlow's pool pads by itself (the padding
            # never wins, as PyTorch's): no padded copy kept for the
            # gradient. XLA cannot compile that (it folds the pad below
            # into the pool); exported graphs keep the Pad op.
            return tf.nn.max_pool2d(inputs, self.pool_size, self.strides,
                                    [[0, 0], [p, p], [p, p], [0, 0]])
        if p:
            fill = 0.0 if self.zero_pad else float("-inf")
            inputs = ops.pad(inputs, ((0, 0), (p, p), (p, p), (0, 0)),
                             constant_values=fill)
        return ops.max_pool(inputs, self.pool_size, self.strides,
                            padding="valid")

    def compute_output_shape(self, input_shape):
        def size(d):
            if d is None:
                return None
            return (d + 2 * self.padding - self.pool_size) // self.strides + 1

        return (input_shape[0], size(input_shape[1]), size(input_shape[2]),
                input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides,
                      padding=self.padding, zero_pad=self.zero_pad)
        return config


def squeeze_excite(x, reduced_channels, name=None):
    """timm's `SEModule`: mean -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid.

    Layers `{name}_fc1` and `{name}_fc2` are 1x1 convs with bias (timm's
    `se.fc1` / `se.fc2`).

    Example:

    >>> y = squeeze_excite(keras.Input((8, 8, 256)), 16, name="se")
    """
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = layers.Conv2D(reduced_channels, 1, use_bias=True,
                      name=f"{name}_fc1")(s)
    s = layers.Activation("relu", name=f"{name}_act")(s)
    s = layers.Conv2D(channels, 1, use_bias=True, name=f"{name}_fc2")(s)
    s = layers.Activation("sigmoid", name=f"{name}_gate")(s)
    return layers.Multiply(name=name)([x, s])


def scse(x, reduction=16, name=None):
    """smp's scSE attention: channel SE plus spatial SE, added.

    `cSE = x * sigmoid(conv1x1(relu(conv1x1(mean(x)))))` with
    `channels // reduction` hidden channels; `sSE = x * sigmoid(conv1x1(x))`
    with one channel; the block returns `cSE + sSE`. Layers are named after
    smp's `SCSEModule` (`{name}_cSE_1`, `{name}_cSE_3`, `{name}_sSE_0`).

    Args:
        x: input tensor.
        reduction: channel reduction of the cSE branch. Defaults to `16`.
        name: layer name prefix.

    Returns:
        The attended tensor (same shape).

    Example:

    >>> y = scse(keras.Input((16, 16, 64)), name="decoder_att")
    """
    channels = x.shape[-1]
    init = dict(kernel_initializer="he_uniform", bias_initializer="zeros")
    c = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_cSE_0")(x)
    c = layers.Conv2D(channels // reduction, 1, name=f"{name}_cSE_1",
                      **init)(c)
    c = layers.ReLU(name=f"{name}_cSE_2")(c)
    c = layers.Conv2D(channels, 1, name=f"{name}_cSE_3", **init)(c)
    c = layers.Activation("sigmoid", name=f"{name}_cSE_4")(c)
    s = layers.Conv2D(1, 1, name=f"{name}_sSE_0", **init)(x)
    s = layers.Activation("sigmoid", name=f"{name}_sSE_1")(s)
    c = layers.Multiply(name=f"{name}_cse")([x, c])
    s = layers.Multiply(name=f"{name}_sse")([x, s])
    return layers.Add(name=name)([c, s])


@keras.saving.register_keras_serializable(package="kaggle_tf")
class Upsample(layers.Layer):
    """Integer-factor resize like PyTorch's `F.interpolate(scale_factor=)`.

    `"nearest"` repeats pixels. `"bilinear"` with `align_corners=True` maps
    output pixel `i` to input position `i * (n - 1) / (n * scale - 1)`, as
    smp's FPN does; Keras' `UpSampling2D` only has the half-pixel rule
    (`align_corners=False`), which this layer also offers. Works with
    unknown height and width (gathers along each axis).

    Args:
        scale: integer factor. Defaults to `2`.
        interpolation: `"nearest"` or `"bilinear"`. Defaults to
            `"bilinear"`.
        align_corners: for bilinear. Defaults to `True`.
        **kwargs: base layer args (`name`, `dtype`).

    Example:

    >>> y = Upsample(2)(np.ones((1, 4, 4, 3), "float32"))
    >>> tuple(y.shape)
    (1, 8, 8, 3)
    """

    def __init__(self, scale=2, interpolation="bilinear", align_corners=True,
                 **kwargs):
        super().__init__(**kwargs)
        if int(scale) != scale or scale < 1:
            raise ValueError(
                f"scale must be a positive integer. Received: scale={scale}")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(
                "interpolation must be 'nearest' or 'bilinear'. Received: "
                f"interpolation={interpolation!r}")
        self.scale = int(scale)
        self.interpolation = interpolation
        self.align_corners = bool(align_corners)

    def call(self, x):
        if self.scale == 1:
            return x
        if self.interpolation == "nearest":
            x = ops.repeat(x, self.scale, axis=1)
            return ops.repeat(x, self.scale, axis=2)
        return self._lerp(self._lerp(x, 1), 2)

    def _lerp(self, x, axis):
        n = ops.shape(x)[axis]
        n_out = n * self.scale
        pos = ops.cast(ops.arange(n_out), "float32")
        if self.align_corners:
            ratio = ops.cast(n - 1, "float32") / ops.cast(
                ops.maximum(n_out - 1, 1), "float32")
            src = pos * ratio
        else:
            src = ops.maximum((pos + 0.5) / self.scale - 0.5, 0.0)
        low = ops.cast(ops.floor(src), "int32")
        low = ops.minimum(low, n - 1)
        high = ops.minimum(low + 1, n - 1)
        weight = ops.cast(src - ops.cast(low, "float32"), x.dtype)
        shape = [1, 1, 1, 1]
        shape[axis] = -1
        weight = ops.reshape(weight, shape)
        a = ops.take(x, low, axis=axis)
        b = ops.take(x, high, axis=axis)
        return a + (b - a) * weight

    def compute_output_shape(self, input_shape):
        batch, h, w, c = input_shape
        return (batch, None if h is None else h * self.scale,
                None if w is None else w * self.scale, c)

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, interpolation=self.interpolation,
                      align_corners=self.align_corners)
        return config


@keras.saving.register_keras_serializable(package="kaggle_tf")
class SplitChannels(layers.Layer):
    """Splits the channels into consecutive groups of given sizes.

    `(batch, height, width, sum(sizes))` -> a list of `(batch, height,
    width, sizes[i])`, group `i` being channels `sum(sizes[:i])` up to
    `sum(sizes[:i + 1])` (e.g. the slice stacks of one MRI study).

    Args:
        sizes: the channels of each group, positive ints.
        **kwargs: base layer args (`name`, `dtype`).

    Example:

    >>> parts = SplitChannels((1, 2))(np.zeros((2, 8, 8, 3), "float32"))
    >>> [tuple(p.shape) for p in parts]
    [(2, 8, 8, 1), (2, 8, 8, 2)]
    """

    def __init__(self, sizes, **kwargs):
        super().__init__(**kwargs)
        sizes = tuple(sizes)
        try:
            valid = bool(sizes) and all(
                not isinstance(s, bool) and int(s) == s and s >= 1
                for s in sizes)
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(
                "sizes must be positive ints. Received: "
                f"sizes={list(sizes)!r}")
        self.sizes = tuple(int(s) for s in sizes)

    def call(self, inputs):
        parts, start = [], 0
        for size in self.sizes:
            parts.append(inputs[..., start:start + size])
            start += size
        return parts

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels != sum(self.sizes):
            raise ValueError(
                f"the input has {channels} channels but sizes sum to "
                f"{sum(self.sizes)}. Received: sizes={list(self.sizes)}")
        return [tuple(input_shape[:-1]) + (size,) for size in self.sizes]

    def get_config(self):
        config = super().get_config()
        config.update(sizes=list(self.sizes))
        return config


def float32_output(x, activation=None, name=None):
    """The model's final activation in float32 (mixed precision safe).

    Args:
        x: the logits tensor.
        activation: None (logits, the default), `"sigmoid"` or
            `"softmax"`.
        name: the layer name.

    Returns:
        A float32 tensor.

    Example:

    >>> y = float32_output(keras.Input((8,)), name="labels")
    """
    if activation not in (None, "sigmoid", "softmax"):
        raise ValueError(
            "activation must be None, 'sigmoid' or 'softmax'. Received: "
            f"activation={activation!r}")
    return layers.Activation(activation or "linear", dtype="float32",
                             name=name)(x)


__all__ = [
    "TorchMaxPooling2D",
    "BN_EPSILON",
    "BN_MOMENTUM",
    "batch_norm",
    "conv2d",
    "conv_bn_act",
    "float32_output",
    "max_pool_3x3_s2",
    "scse",
    "squeeze_excite",
    "SplitChannels",
    "Upsample",
]

