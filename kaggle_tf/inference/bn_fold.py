"""Inference-only graph rewrite: BatchNormalization folded into its Conv2D.

In inference a BatchNormalization is a per-channel affine map,
`y = s * (x - mean) + beta` with `s = gamma / sqrt(var + eps)`. After a
`Conv2D` (or a U-Net decoder's `UpsampleConcatConv2D`) it folds into the
convolution's kernel and bias:

    kernel' = kernel * s        bias' = (bias - mean) * s + beta

The folded model computes the same function (up to float rounding, about
1e-6 relative) with two elementwise passes fewer per convolution, and the
convolution, its bias and the ReLU that follows fuse into one oneDNN /
cuDNN kernel. On CPU this makes a U-Net ResNet34 ~1.6x faster
(`benchmarks/bench_tta_export.py`). Prediction and export both use it, so
their outputs stay identical.

Example:

>>> fast = fold_batch_norms(model)      # same inputs, outputs and values
>>> count_batch_norms(fast)
0
"""

import keras
import numpy as np

from kaggle_tf.models.ordered_conv import OrderedConv2D
from kaggle_tf.models.upsample_conv import UpsampleConcatConv2D


def _channels_axis(layer, rank):
    axis = layer.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return None
        axis = axis[0]
    return axis % rank


def _foldable_conv(layer):
    return (type(layer) in (keras.layers.Conv2D, OrderedConv2D,
                        UpsampleConcatConv2D)
            and layer.data_format == "channels_last"
            and layer.get_config().get("groups", 1) == 1)


def _folded_conv(conv, bn):
    """A new conv of `conv`'s class (with bias) equal to `bn(conv(x))` in
    inference."""
    config = conv.get_config()
    config["use_bias"] = True
    config["name"] = f"{conv.name}_bn_folded"
    folded = type(conv).from_config(config)
    kernel = np.asarray(keras.ops.convert_to_numpy(conv.kernel), np.float64)
    bias = (np.asarray(keras.ops.convert_to_numpy(conv.bias), np.float64)
            if conv.use_bias else 0.0)

    def weight(v, default):
        return (np.asarray(keras.ops.convert_to_numpy(v), np.float64)
                if v is not None else default)

    mean = weight(bn.moving_mean, 0.0)
    var = weight(bn.moving_variance, 1.0)
    gamma = weight(bn.gamma if bn.scale else None, 1.0)
    beta = weight(bn.beta if bn.center else None, 0.0)
    s = gamma / np.sqrt(var + bn.epsilon)
    folded.build((None, None, None, kernel.shape[2]))
    folded.set_weights([
        (kernel * s).astype(keras.backend.standardize_dtype(
            conv.kernel.dtype)),
        ((bias - mean) * s + beta).astype(keras.backend.standardize_dtype(
            conv.kernel.dtype))])
    return folded


def fold_batch_norms(model):
    """A copy of `model` with each Conv2D -> BatchNormalization pair fused.

    Nested functional models (encoders) are rewritten too; other layers
    are shared with `model`, not copied. A BatchNormalization whose input
    is not a channels-last Conv2D's output is kept as it is.

    Args:
        model: a functional `keras.Model`.

    Returns:
        A functional `keras.Model` with the same inputs and outputs.
    """
    produced = {}
    folded = {}

    def call_function(layer, *args, **kwargs):
        if (isinstance(layer, keras.layers.BatchNormalization) and args
                and id(args[0]) in produced):
            conv, conv_args, conv_kwargs = produced[id(args[0])]
            if _channels_axis(layer, len(args[0].shape)) == len(
                    args[0].shape) - 1:
                key = (id(conv), id(layer))
                if key not in folded:
                    folded[key] = _folded_conv(conv, layer)
                return folded[key](*conv_args, **conv_kwargs)
        out = layer(*args, **kwargs)
        if _foldable_conv(layer):
            produced[id(out)] = (layer, args, kwargs)
        return out

    return keras.models.clone_model(model, clone_function=lambda layer: layer,
                                    call_function=call_function,
                                    recursive=True)


def count_batch_norms(model):
    """BatchNormalization layers in `model`, nested models included."""
    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            count += 1
        elif isinstance(layer, keras.Model):
            count += count_batch_norms(layer)
    return count
