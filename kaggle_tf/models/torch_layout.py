"""PyTorch tensor layouts -> Keras variable layouts.

Two things, both free of any file or registry: how one PyTorch tensor
becomes a Keras variable value (`to_keras`, `to_keras_like`, `torch_shape`,
`adapt_input_conv`), and which `kind` of conversion each variable of a
Keras layer needs (`conv_entries`, `bn_entries`, `mapping_by_layer_names`),
the building blocks of every encoder's `torch_mapping`.
`kaggle_tf.models.weights` reads state dicts and applies these.

Example:

>>> import numpy as np
>>> from kaggle_tf.models import torch_layout as layout
>>> layout.to_keras(np.zeros((8, 3, 7, 7)), "conv").shape
(7, 7, 3, 8)
"""

import math

import keras
import numpy as np

# How a PyTorch tensor becomes a Keras variable value.
#   conv:      (out, in, kh, kw)      -> (kh, kw, in, out)
#   depthwise: (ch * m, 1, kh, kw)    -> (kh, kw, ch, m)
#   dense:     (out, in)              -> (in, out)
#   plain:     as is (biases, BN gamma/beta/running stats, scalars)
WEIGHT_KINDS = ("conv", "depthwise", "dense", "plain")


def to_keras(array, kind):
    """Converts one tensor from PyTorch's layout to Keras'.

    Args:
        array: numpy array in PyTorch layout.
        kind: one of `WEIGHT_KINDS`.

    Returns:
        The numpy array in Keras layout.

    Example:

    >>> to_keras(np.zeros((8, 3, 7, 7)), "conv").shape
    (7, 7, 3, 8)
    """
    array = np.asarray(array)
    if kind == "conv":
        # (out, in / groups, kh, kw) -> (kh, kw, in / groups, out)
        return np.transpose(array, (2, 3, 1, 0))
    if kind == "depthwise":
        raise ValueError(
            "depthwise kernels need the channel multiplier; use "
            "`to_keras_like(array, kind, keras_shape)`.")
    if kind == "dense":
        return np.transpose(array, (1, 0))
    if kind == "plain":
        return array
    raise ValueError(
        f"kind must be one of {WEIGHT_KINDS}. Received: "
        f"kind={kind!r}")


def to_keras_like(array, kind, keras_shape):
    """`to_keras`, with the target shape (needed for depthwise kernels).

    Args:
        array: numpy array in PyTorch layout.
        kind: one of `WEIGHT_KINDS`.
        keras_shape: shape of the Keras variable it goes into.

    Returns:
        The numpy array in Keras layout.

    Example:

    >>> to_keras_like(np.zeros((6, 1, 3, 3)), "depthwise", (3, 3, 3, 2)).shape
    (3, 3, 3, 2)
    """
    if kind != "depthwise":
        return to_keras(array, kind)
    array = np.asarray(array)
    kh, kw, ch, mult = keras_shape
    # PyTorch orders depthwise output channels as c * mult + j.
    return np.transpose(array.reshape(ch, mult, kh, kw), (2, 3, 0, 1))


def torch_shape(keras_shape, kind):
    """The PyTorch shape that `kind` converts to `keras_shape`.

    Example:

    >>> torch_shape((7, 7, 3, 64), "conv")
    (64, 3, 7, 7)
    """
    keras_shape = tuple(int(d) for d in keras_shape)
    if kind == "conv":
        kh, kw, cin, cout = keras_shape
        return (cout, cin, kh, kw)
    if kind == "depthwise":
        kh, kw, ch, mult = keras_shape
        return (ch * mult, 1, kh, kw)
    if kind == "dense":
        return (keras_shape[1], keras_shape[0])
    if kind == "plain":
        return keras_shape
    raise ValueError(
        f"kind must be one of {WEIGHT_KINDS}. Received: "
        f"kind={kind!r}")


def adapt_input_conv(in_chans, weight):
    """Adapts a stem conv weight to `in_chans` inputs, as timm does.

    timm's rule (`timm.models._manipulate.adapt_input_conv`): for one input
    channel the kernel is summed over its input channels; otherwise it is
    tiled over the new channels, cut to `in_chans` and scaled by
    `base / in_chans` (base = the weight's input channels, usually 3).

    Args:
        in_chans: the model's input channel count.
        weight: numpy array `(out, base, kh, kw)` in PyTorch layout.

    Returns:
        A float32 array `(out, in_chans, kh, kw)`.

    Example:

    >>> adapt_input_conv(1, np.ones((8, 3, 7, 7))).shape
    (8, 1, 7, 7)
    """
    weight = np.asarray(weight, dtype="float32")
    if in_chans < 1:
        raise ValueError(
            f"in_chans must be positive. Received: in_chans={in_chans}")
    if weight.ndim != 4:
        raise ValueError(
            "adapt_input_conv needs a 4D conv weight. Received: "
            f"weight.shape={weight.shape}")
    base = weight.shape[1]
    if in_chans == base:
        return weight
    if in_chans == 1:
        return weight.sum(axis=1, keepdims=True)
    repeat = int(math.ceil(in_chans / base))
    weight = np.tile(weight, (1, repeat, 1, 1))[:, :in_chans]
    return weight * np.float32(base / float(in_chans))


def conv_entries(model, layer_name, timm_prefix, kind="conv"):
    """Mapping entries for a Conv2D / Dense layer: kernel and bias.

    Args:
        model: the encoder model.
        layer_name: the Keras layer name.
        timm_prefix: the timm module path (`"layer1.0.conv1"`).
        kind: `"conv"`, `"depthwise"` or `"dense"`. Defaults to `"conv"`.

    Returns:
        `{timm_key: (variable, kind)}` for `.weight` (and `.bias` when the
        layer has one).

    Example:

    >>> conv_entries(enc, "conv1", "conv1")
    {'conv1.weight': (<Variable conv1/kernel>, 'conv')}
    """
    layer = model.get_layer(layer_name)
    kernel = getattr(layer, "depthwise_kernel", None)
    if kernel is None:
        kernel = layer.kernel
    entries = {f"{timm_prefix}.weight": (kernel, kind)}
    bias = getattr(layer, "bias", None)
    if bias is not None:
        entries[f"{timm_prefix}.bias"] = (bias, "plain")
    return entries


def bn_entries(model, layer_name, timm_prefix):
    """Mapping entries for a BatchNormalization (or LayerNormalization).

    Args:
        model: the encoder model.
        layer_name: the Keras layer name.
        timm_prefix: the timm module path (`"bn1"`).

    Returns:
        `{timm_key: (variable, "plain")}` for weight, bias and (BatchNorm)
        running mean and variance.

    Example:

    >>> sorted(bn_entries(enc, "bn1", "bn1"))
    ['bn1.bias', 'bn1.running_mean', 'bn1.running_var', 'bn1.weight']
    """
    layer = model.get_layer(layer_name)
    entries = {}
    for key, attr in (("weight", "gamma"), ("bias", "beta"),
                      ("running_mean", "moving_mean"),
                      ("running_var", "moving_variance")):
        variable = getattr(layer, attr, None)
        if variable is not None:
            entries[f"{timm_prefix}.{key}"] = (variable, "plain")
    return entries


def mapping_by_layer_names(model, rename=None):
    """A torch mapping derived from layer names, for encoders whose layers
    are named after timm's modules (`layer1_0_conv1` -> `layer1.0.conv1`).

    Conv2D and Dense layers map to `.weight` / `.bias`, DepthwiseConv2D to
    a depthwise `.weight`, BatchNormalization to its four tensors. Layers
    without variables are skipped.

    Args:
        model: the encoder model.
        rename: `fn(layer_name) -> timm module path`. Defaults to replacing
            `_` with `.`.

    Returns:
        `{timm_key: (variable, kind)}`.

    Example:

    >>> mapping = mapping_by_layer_names(encoders.build("resnet18"))
    >>> mapping["layer1.0.conv1.weight"][1]
    'conv'
    """
    rename = rename or (lambda name: name.replace("_", "."))
    mapping = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = rename(layer.name)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            mapping.update(conv_entries(model, layer.name, prefix,
                                        "depthwise"))
        elif isinstance(layer, keras.layers.Conv2D):
            mapping.update(conv_entries(model, layer.name, prefix, "conv"))
        elif isinstance(layer, keras.layers.Dense):
            mapping.update(conv_entries(model, layer.name, prefix, "dense"))
        elif isinstance(layer, (keras.layers.BatchNormalization,
                                keras.layers.LayerNormalization,
                                keras.layers.GroupNormalization)):
            mapping.update(bn_entries(model, layer.name, prefix))
        else:
            raise ValueError(
                f"no timm mapping for layer {layer.name!r} of type "
                f"{type(layer).__name__}. Received: model={model.name!r}")
    return mapping


__all__ = [
    "WEIGHT_KINDS",
    "adapt_input_conv",
    "bn_entries",
    "conv_entries",
    "mapping_by_layer_names",
    "to_keras",
    "to_keras_like",
    "torch_shape",
]
