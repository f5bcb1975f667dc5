"""BatchNormalization whose training step is TensorFlow's fused kernel.

Keras 3's `BatchNormalization` computes the batch moments and the
normalization as separate ops (`ops.moments`, `ops.batch_normalization`).
In a TensorFlow training step that costs memory at full resolution:

- mixed precision: the layer casts its float16 / bfloat16 input to float32
  first, and the backward pass keeps that float32 copy next to the conv
  output it came from (twice the conv output's size per BatchNorm);
- the gradient is the sum of three paths (through the mean, the variance
  and the normalized value), each a full-size tensor, summed by an `AddN`
  whose accumulator Grappler keeps as a variable between steps (100 MB at
  the U-Net's last decoder block at 256x1600, batch 4).

`FusedBatchNorm` runs the same arithmetic as one `FusedBatchNormV3` op in
training on TensorFlow (as `tf.keras` 2 did): it reads the input in its
own dtype, keeps only that input and two per-channel vectors for its
gradient (`FusedBatchNormGradV3`, one op, one output). Moving statistics
follow Keras' rule (the biased batch variance, `momentum` for the old
value). Everything else - inference, the JAX / PyTorch backends, masks,
`synchronized=True`, renorm, axes other than the last of a 4D input -
runs Keras' own `call`. Weights, names and config are Keras' (it is a
`keras.layers.BatchNormalization`), so checkpoints and the PyTorch weight
mapping are unchanged.

Example:

>>> import numpy as np
>>> layer = FusedBatchNorm(epsilon=1e-5, momentum=0.9)
>>> x = np.random.RandomState(0).rand(2, 8, 8, 3).astype("float32")
>>> y = layer(x, training=True)
>>> bool(abs(float(y.numpy().mean())) < 1e-5)
True
"""

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="kaggle_tf")
class FusedBatchNorm(layers.BatchNormalization):
    """A `keras.layers.BatchNormalization` that trains with TensorFlow's
    fused kernel (module docstring). Same arguments and weights."""

    def _fusable(self, inputs, training, mask):
        return (bool(training) and self.trainable and mask is None
                and keras.backend.backend() == "tensorflow"
                and not self.synchronized and not self.renorm
                and len(inputs.shape) == 4
                and self.axis in (-1, 3)
                and keras.backend.standardize_dtype(inputs.dtype) in (
                    "float16", "bfloat16", "float32"))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        gamma = (tf.cast(self.gamma, "float32") if self.scale
                 else tf.ones([channels], "float32"))
        beta = (tf.cast(self.beta, "float32") if self.center
                else tf.zeros([channels], "float32"))
        empty = tf.constant([], "float32")
        outputs, mean, unbiased, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty,
            epsilon=float(self.epsilon), exponential_avg_factor=1.0,
            data_format="NHWC", is_training=True)
        # The kernel returns the Bessel-corrected variance; Keras' moving
        # variance averages the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), "float32")
        variance = unbiased * tf.math.divide_no_nan(
            count - 1.0, tf.maximum(count, 1.0))
        mean = tf.stop_gradient(mean)
        variance = tf.stop_gradient(variance)
        momentum = self.momentum
        self.moving_mean.assign(tf.cast(
            tf.cast(self.moving_mean, "float32") * momentum
            + mean * (1.0 - momentum), self.moving_mean.dtype))
        self.moving_variance.assign(tf.cast(
            tf.cast(self.moving_variance, "float32") * momentum
            + variance * (1.0 - momentum), self.moving_variance.dtype))
        return tf.cast(outputs, self.compute_dtype)
