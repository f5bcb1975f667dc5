"""A U-Net decoder's first conv with its nearest upsampling and skip join.

`UpsampleConcatConv2D([x, skip])` is `Conv2D(concat(upsample_2x(x),
skip))`, as `UpSampling2D(nearest)` -> `Concatenate` -> `Conv2D`, in one
layer with the same weights. In training on the TensorFlow backend its
gradient keeps only `x` and `skip` for the backward pass and rebuilds the
conv's input there (a copy, no arithmetic) instead of keeping it: that
input is the largest tensor of each decoder block (at 256x1600, batch 4,
210 MB in each of the last two blocks, where `x` is 52 MB and nothing;
`skip` is kept by the encoder anyway). The gradients are TensorFlow's own
conv gradients of the same tensors, so values are those of the three
separate layers. A U-Net ResNet34 training step at that size peaks ~500 MB
lower with XLA (where the plain layers keep a transposed copy of the conv
input made during the forward pass) and ~200 MB lower without
(benchmarks/README.md, "Training memory vs smp"). On JAX the same
gradient is a `jax.custom_vjp`. Inference, and other backends, run the
plain ops.
"""

import keras
import tensorflow as tf
from keras import layers
from keras import ops

from kaggle_tf.models.ordered_conv import after
from kaggle_tf.models.ordered_conv import bias_and_activation

try:  # keeps XLA from merging the rebuilt input with the forward's
    from tensorflow.compiler.tf2xla.python.xla import optimization_barrier
except ImportError:  # pragma: no cover - a TensorFlow without the op
    optimization_barrier = None


@keras.saving.register_keras_serializable(package="kaggle_tf")
class UpsampleConcatConv2D(layers.Conv2D):
    """Nearest upsampling by `scale`, concatenation of a skip, a conv.

    Called on `x` or `[x, skip]` (channels last, `skip` at `scale` times
    `x`'s size); the conv has stride 1, `"same"` padding, no dilation and
    no groups. All other arguments are `keras.layers.Conv2D`'s; the kernel
    is the one a `Conv2D` on the concatenation would have.

    Args:
        filters: output channels.
        kernel_size: the conv's kernel size (odd).
        scale: the upsampling factor. Defaults to `2`.

    Example:

    >>> layer = UpsampleConcatConv2D(16, 3, use_bias=False)
    >>> y = layer([keras.Input((4, 4, 8)), keras.Input((8, 8, 4))])
    >>> y.shape
    (None, 8, 8, 16)
    """

    def __init__(self, filters, kernel_size, scale=2, **kwargs):
        kwargs.setdefault("padding", "same")
        super().__init__(filters, kernel_size, **kwargs)
        if (self.padding != "same" or tuple(self.strides) != (1, 1)
                or tuple(self.dilation_rate) != (1, 1) or self.groups != 1
                or self.data_format != "channels_last"):
            raise ValueError(
                "UpsampleConcatConv2D: only stride 1, 'same' padding, no "
                "dilation or groups, channels_last; got padding="
                f"{self.padding!r} strides={self.strides} dilation_rate="
                f"{self.dilation_rate} groups={self.groups} data_format="
                f"{self.data_format!r}")
        self.scale = int(scale)
        self.input_spec = None  # one or two inputs

    @staticmethod
    def _shapes(input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and \
                isinstance(input_shape[0], (list, tuple)):
            return [tuple(s) for s in input_shape]
        return [tuple(input_shape)]

    def build(self, input_shape):
        shapes = self._shapes(input_shape)
        channels = sum(s[-1] for s in shapes)
        super().build(shapes[0][:-1] + (channels,))
        self.input_spec = None  # one or two inputs

    def compute_output_shape(self, input_shape):
        shape = self._shapes(input_shape)[0]

        def up(d):
            return None if d is None else d * self.scale

        return (shape[0], up(shape[1]), up(shape[2]), self.filters)

    def call(self, inputs, training=None):
        if isinstance(inputs, (list, tuple)):
            x, skip = inputs if len(inputs) == 2 else (inputs[0], None)
        else:
            x, skip = inputs, None
        kernel = ops.convert_to_tensor(self.kernel)
        if training and keras.backend.backend() == "tensorflow":
            outputs = _recomputed_conv(x, skip, kernel, self.scale)
        elif training and keras.backend.backend() == "jax":
            outputs = _jax_recomputed_conv(x, skip, kernel, self.scale)
        else:
            outputs = ops.conv(conv_input(x, skip, self.scale), kernel,
                               strides=1, padding="same",
                               data_format="channels_last")
        return bias_and_activation(self, outputs)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def conv_input(x, skip, scale):
    """The conv's input: `x` repeated `scale` times along height and width
    (nearest upsampling), joined with `skip` on channels."""
    u = ops.repeat(ops.repeat(x, scale, axis=1), scale, axis=2)
    return u if skip is None else ops.concatenate([u, skip], axis=-1)


def _recomputed_conv(x, skip, kernel, scale):
    """conv(concat(repeat(x), skip)) whose backward rebuilds the conv input.

    TensorFlow only (the layer's training path on that backend).
    """
    kernel = tf.identity(kernel)  # a tensor, not the variable it reads

    def forward(x, skip, kernel):
        u = conv_input(x, skip, scale)
        z = tf.nn.conv2d(u, kernel, strides=1, padding="SAME")

        def grad(dz):
            # The barrier keeps the graph optimizer from merging this
            # rebuild with the forward's (which would keep the conv input
            # alive after all); `after` makes it, and the input
            # gradient's kernel read, wait for the output gradient (XLA
            # drops the barrier before it schedules; ordered_conv).
            x2, skip2, dz = _barrier(x, skip, dz)
            late_kernel, x2, skip2 = after(dz, kernel, x2, skip2)
            u = conv_input(x2, skip2, scale)
            dkernel = tf.raw_ops.Conv2DBackpropFilter(
                input=u, filter_sizes=tf.shape(kernel), out_backprop=dz,
                strides=[1, 1, 1, 1], padding="SAME")
            du = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(u), filter=late_kernel, out_backprop=dz,
                strides=[1, 1, 1, 1], padding="SAME")
            dx = du if skip is None else du[..., :tf.shape(x)[-1]]
            n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
            dx = tf.reshape(dx, [n, h, scale, w, scale, tf.shape(x)[-1]])
            dx = tf.reduce_sum(dx, axis=[2, 4])
            if skip is None:
                return dx, dkernel
            return dx, du[..., tf.shape(x)[-1]:], dkernel

        return z, grad

    if skip is None:
        return tf.custom_gradient(
            lambda x, kernel: forward(x, None, kernel))(x, kernel)
    return tf.custom_gradient(forward)(x, skip, kernel)


def _barrier(*tensors):
    tensors = [t for t in tensors if t is not None]
    if optimization_barrier is not None:
        out = list(optimization_barrier(*tensors))
    else:  # pragma: no cover
        with tf.control_dependencies([tensors[-1]]):
            out = [tf.identity(t) for t in tensors]
    if len(out) == 2:  # no skip
        return out[0], None, out[1]
    return tuple(out)



def _jax_recomputed_conv(x, skip, kernel, scale):
    """`_recomputed_conv` on the JAX backend (`jax.custom_vjp`; JAX's own
    conv gradient at the rebuilt input, after the output gradient)."""
    import jax
    import jax.numpy as jnp

    def conv(u, kernel):
        return jax.lax.conv_general_dilated(
            u, kernel, (1, 1), "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    @jax.custom_vjp
    def fused(x, skip, kernel):
        return conv(conv_input(x, skip, scale), kernel)

    def forward(x, skip, kernel):
        return fused(x, skip, kernel), (x, skip, kernel)

    def backward(kept, dz):
        x, skip, kernel = kept
        zero = jnp.sum(jnp.reshape(dz, (-1,))[:1]) * jnp.zeros((), dz.dtype)
        later = [None if t is None else t + zero.astype(t.dtype)
                 for t in (x, skip, kernel)]
        _, vjp = jax.vjp(conv, conv_input(later[0], later[1], scale),
                         later[2])
        du, dkernel = vjp(dz)
        c = x.shape[-1]
        n, h, w = x.shape[0], x.shape[1], x.shape[2]
        dx = jnp.reshape(du[..., :c], (n, h, scale, w, scale, c)).sum(
            axis=(2, 4))
        dskip = None if skip is None else du[..., c:]
        return dx, dskip, dkernel

    fused.defvjp(forward, backward)
    return fused(x, skip, kernel)
