"""A conv whose backward pass reads its kernel and input only when needed.

XLA's scheduler computes anything that reads only parameters or forward
tensors as early as it can and keeps it. For a conv's gradient that means
two things made during the forward pass and kept to the end of the
backward:

- a transposed copy of the conv's input for the filter gradient (XLA:CPU's
  layout for it): in U-Net ResNet34 at 256x1600, batch 4, 42 such copies,
  825 MB at the training step's peak, next to the conv outputs that
  BatchNorm's gradient keeps anyway;
- a copy and a reversed copy of every kernel: the optimizer updates the
  kernel in place, and nothing orders the input gradient's kernel read
  before that update (the new value depends on the filter gradient only),
  so XLA copies it (~160 MB, about twice the parameters, at any size).

`OrderedConv2D` is a `keras.layers.Conv2D` whose training gradient, inside
an XLA-compiled TensorFlow function and on JAX (`jax.custom_vjp`; JAX
compiles every training step), reads the kernel and the input through
`after(dy, ...)`: the same values, which cannot be computed
before the output gradient exists. XLA then builds the transposed input
in the backward pass from what it keeps anyway (it fuses the input's
BatchNorm / ReLU producer into the transpose), orders the update after the
kernel read, and makes no copies: the U-Net's step peaks ~560 MB lower
(benchmarks/README.md, "Training memory vs smp"). The gradients are the
framework's own conv gradients on the same values (bit for bit those of
`Conv2D` outside XLA). The traced graph without XLA (whose executor keeps
the input as it is, and would only gain a copy), inference, other
backends, dilated and grouped convs run the plain ops.
"""

import keras
import tensorflow as tf
from keras import layers
from keras import ops

try:  # whether a traced function is being compiled by XLA
    from tensorflow.python.ops.control_flow_util import (
        GraphOrParentsInXlaContext as _in_xla_context)
except ImportError:  # pragma: no cover - a TensorFlow without it
    _in_xla_context = None


def after(dy, *tensors):
    """`tensors` plus `0 * dy[0, ..., 0]`: equal values that XLA cannot
    compute before `dy` exists (its scheduler otherwise computes anything
    that reads only parameters or forward tensors during the forward pass
    and keeps it). A non-finite first element of `dy` makes the results
    NaN, where the gradients are not finite anyway; an empty `dy` adds 0.
    """
    zero = tf.reduce_sum(tf.reshape(dy, [-1])[:1]) * tf.constant(0, dy.dtype)
    return tuple(None if t is None else t + tf.cast(zero, t.dtype)
                 for t in tensors)


def in_xla():
    """Whether the TensorFlow function being traced compiles with XLA
    (`tf.function(jit_compile=True)`, Keras' `jit_compile=True`)."""
    if _in_xla_context is None or tf.executing_eagerly():
        return False
    return bool(_in_xla_context(tf.compat.v1.get_default_graph()))


@keras.saving.register_keras_serializable(package="kaggle_tf")
class OrderedConv2D(layers.Conv2D):
    """`keras.layers.Conv2D` whose backward pass reads the kernel late.

    Same arguments, weights and outputs as `keras.layers.Conv2D`; only the
    training gradient (under XLA on TensorFlow, and on JAX) differs in
    where it reads the kernel and the input (module docstring).

    Args:
        explicit_padding: pixels of zeros on every side of the input
            (PyTorch's symmetric `padding`), with `padding="valid"`. In
            training on TensorFlow the conv pads by itself
            (`tf.nn.conv2d`'s explicit padding), so no padded copy of the
            input is kept for the gradient as after a `ZeroPadding2D`;
            inference pads first (a Pad op, as exported graphs and their
            converters expect). Defaults to `0`.
        **kwargs: `keras.layers.Conv2D` arguments.

    Example:

    >>> layer = OrderedConv2D(16, 3, padding="same", use_bias=False)
    >>> layer(keras.ops.ones((1, 8, 8, 4))).shape
    (1, 8, 8, 16)
    >>> OrderedConv2D(8, 7, strides=2, explicit_padding=3)(
    ...     keras.ops.ones((1, 16, 16, 3))).shape
    (1, 8, 8, 8)
    """

    def __init__(self, filters, kernel_size, explicit_padding=0, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.explicit_padding = int(explicit_padding)
        if self.explicit_padding and self.padding != "valid":
            raise ValueError(
                "OrderedConv2D: explicit_padding needs padding='valid'. "
                f"Received: padding={self.padding!r}, explicit_padding="
                f"{self.explicit_padding}")

    def _padded_shape(self, input_shape):
        p = self.explicit_padding
        if not p:
            return tuple(input_shape)
        return (input_shape[0],) + tuple(
            None if d is None else d + 2 * p for d in input_shape[1:3]) + (
            input_shape[3],)

    def build(self, input_shape):
        super().build(self._padded_shape(input_shape))

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(self._padded_shape(input_shape))

    def _ordered(self, training):
        if not (training and self.groups == 1
                and tuple(self.dilation_rate) == (1, 1)
                and self.data_format == "channels_last"):
            return False
        backend = keras.backend.backend()
        # JAX compiles every training step with XLA.
        return backend == "jax" or (backend == "tensorflow" and in_xla())

    def call(self, inputs, training=None):
        p = self.explicit_padding
        padding = ([[0, 0], [p, p], [p, p], [0, 0]] if p
                   else self.padding.upper())
        tensorflow = keras.backend.backend() == "tensorflow"
        if self._ordered(training):
            conv = ordered_conv if tensorflow else jax_ordered_conv
            outputs = conv(inputs, ops.convert_to_tensor(self.kernel),
                           tuple(self.strides), padding)
        elif p and training and tensorflow:
            outputs = tf.nn.conv2d(inputs, ops.convert_to_tensor(self.kernel),
                                   [1, *self.strides, 1], padding)
        else:
            if p:  # inference (exported graphs keep a Pad), other backends
                inputs = ops.pad(inputs, ((0, 0), (p, p), (p, p), (0, 0)))
            return super().call(inputs)
        return bias_and_activation(self, outputs)

    def get_config(self):
        return {**super().get_config(),
                "explicit_padding": self.explicit_padding}


def bias_and_activation(conv, outputs):
    """What `keras.layers.Conv2D.call` does after its conv (channels
    last): the bias, then the activation."""
    if conv.use_bias:
        outputs = ops.add(outputs, ops.convert_to_tensor(conv.bias))
    if conv.activation is not None:
        outputs = conv.activation(outputs)
    return outputs


def ordered_conv(x, kernel, strides=(1, 1), padding="SAME"):
    """`tf.nn.conv2d(x, kernel, strides, padding)` (NHWC; `padding` is
    `"SAME"`, `"VALID"` or explicit `[[0, 0], [t, b], [l, r], [0, 0]]`)
    whose gradient reads `kernel` and `x` only after the output gradient
    exists. TensorFlow only.
    """
    strides = [1, int(strides[0]), int(strides[1]), 1]
    explicit = {}
    if not isinstance(padding, str):
        explicit = {"explicit_paddings": [int(v) for pair in padding
                                          for v in pair]}
    op_padding = "EXPLICIT" if explicit else padding
    kernel = tf.identity(kernel)  # a tensor, not the variable it reads

    @tf.custom_gradient
    def conv(x, kernel):
        y = tf.nn.conv2d(x, kernel, strides, padding)

        def grad(dy):
            late_kernel, late_x = after(dy, kernel, x)
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=late_kernel, out_backprop=dy,
                strides=strides, padding=op_padding, **explicit)
            dkernel = tf.raw_ops.Conv2DBackpropFilter(
                input=late_x, filter_sizes=tf.shape(kernel), out_backprop=dy,
                strides=strides, padding=op_padding, **explicit)
            return dx, dkernel

        return y, grad

    return conv(x, kernel)


def jax_ordered_conv(x, kernel, strides=(1, 1), padding="SAME"):
    """`ordered_conv` on the JAX backend (`jax.custom_vjp`): the backward
    pass is JAX's own conv gradient (`jax.vjp`) at `after(dy, x, kernel)`.
    """
    import jax
    import jax.numpy as jnp

    if not isinstance(padding, str):
        padding = [tuple(int(v) for v in pair) for pair in padding[1:3]]

    def conv(x, kernel):
        return jax.lax.conv_general_dilated(
            x, kernel, tuple(int(s) for s in strides), padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    @jax.custom_vjp
    def ordered(x, kernel):
        return conv(x, kernel)

    def forward(x, kernel):
        return conv(x, kernel), (x, kernel)

    def backward(kept, dy):
        x, kernel = kept
        zero = jnp.sum(jnp.reshape(dy, (-1,))[:1]) * jnp.zeros((), dy.dtype)
        _, vjp = jax.vjp(conv, x + zero.astype(x.dtype),
                         kernel + zero.astype(kernel.dtype))
        return vjp(dy)

    ordered.defvjp(forward, backward)
    return ordered(x, kernel)
