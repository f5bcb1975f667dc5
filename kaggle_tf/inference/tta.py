"""Test-time augmentation in the graph: transform, predict, invert, average.

>>> tta_model = wrap(model, mode="hflip")        # same inputs and outputs

The D4 group is indexed 0..7: `k = 4 * t + r` means an optional transpose
(`t`) followed by `r` quarter turns. Segmentation maps (rank-4 outputs) are
transformed back before the mean; vector outputs (classification) are
averaged as they are.
"""

import keras
from keras import ops

MODES = {
    "none": (0,),
    "hflip": (0, "h"),
    "vflip": (0, "v"),
    "d4": tuple(range(8)),
}


def _apply(x, op):
    """Applies one transform to a (B, H, W, C) tensor."""
    if op == 0:
        return x
    if op == "h":
        return ops.flip(x, axis=2)
    if op == "v":
        return ops.flip(x, axis=1)
    t, r = divmod(int(op), 4)
    if t:
        x = ops.transpose(x, (0, 2, 1, 3))
    for _ in range(r):  # one quarter turn counter-clockwise
        x = ops.flip(ops.transpose(x, (0, 2, 1, 3)), axis=1)
    return x


def _invert(x, op):
    if op in (0, "h", "v"):
        return _apply(x, op)
    t, r = divmod(int(op), 4)
    for _ in range(r):  # undo a quarter turn: turn clockwise
        x = ops.transpose(ops.flip(x, axis=1), (0, 2, 1, 3))
    if t:
        x = ops.transpose(x, (0, 2, 1, 3))
    return x


@keras.saving.register_keras_serializable(package="kaggle_tf")
class TTATransform(keras.layers.Layer):
    """One D4/flip transform of an image batch, or its inverse.

    Args:
        op: 0..7 (D4 index), "h" or "v".
        inverse: apply the inverse transform.
    """

    def __init__(self, op=0, inverse=False, **kwargs):
        super().__init__(**kwargs)
        self.op = op
        self.inverse = inverse

    def call(self, x):
        return _invert(x, self.op) if self.inverse else _apply(x, self.op)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        if self.op in (0, "h", "v"):
            return input_shape
        t, r = divmod(int(self.op), 4)
        return (b, w, h, c) if (t + r) % 2 else input_shape

    def get_config(self):
        return {**super().get_config(), "op": self.op,
                "inverse": self.inverse}


@keras.saving.register_keras_serializable(package="kaggle_tf")
class Activation(keras.layers.Layer):
    """sigmoid / softmax / identity applied in float32."""

    def __init__(self, activation=None, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.activation = activation

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.activation == "sigmoid":
            return ops.sigmoid(x)
        if self.activation == "softmax":
            return ops.softmax(x, axis=-1)
        return x

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, "activation": self.activation}


def _outputs_list(y):
    if isinstance(y, dict):
        return list(y.keys()), list(y.values())
    if isinstance(y, (list, tuple)):
        return None, list(y)
    return None, [y]


def wrap(model, mode="none", activation=None, merge="mean", name=None):
    """Wraps `model` so that it predicts under TTA.

    Args:
        model: a Keras model taking (B, H, W, C) images.
        mode: "none", "hflip", "vflip" or "d4".
        activation: None (average the model's outputs as they are),
            "sigmoid" or "softmax" (average probabilities).
        merge: "mean", "geometric_mean" (of probabilities) or "max".
        name: the wrapper's name.

    Returns:
        A `keras.Model` with the same inputs and output structure.
    """
    if mode not in MODES:
        raise ValueError(f"unknown TTA mode {mode!r}. Choices: "
                         f"{', '.join(MODES)}")
    if merge not in ("mean", "geometric_mean", "max"):
        raise ValueError(f"unknown merge {merge!r}. Choices: mean, "
                         "geometric_mean, max")
    inputs = keras.Input(shape=model.input_shape[1:], name="images")
    per_op = []
    for i, op in enumerate(MODES[mode]):
        x = TTATransform(op, name=f"tta_{i}")(inputs)
        keys, outs = _outputs_list(model(x))
        fixed = []
        for j, y in enumerate(outs):
            y = Activation(activation, name=f"tta_{i}_act_{j}")(y)
            if len(y.shape) == 4:
                y = TTATransform(op, inverse=True,
                                 name=f"tta_{i}_inv_{j}")(y)
            fixed.append(y)
        per_op.append(fixed)
    merged = []
    for j in range(len(per_op[0])):
        stack = [p[j] for p in per_op]
        merged.append(Merge(merge, name=f"tta_merge_{j}")(stack))
    if keys is not None:
        out = dict(zip(keys, merged))
    elif len(merged) == 1:
        out = merged[0]
    else:
        out = merged
    return keras.Model(inputs, out, name=name or f"{model.name}_tta_{mode}")


@keras.saving.register_keras_serializable(package="kaggle_tf")
class Merge(keras.layers.Layer):
    """Mean, geometric mean or max over a list of same-shape tensors.

    Masked inputs (per-slice outputs of sequence models) share one mask,
    which the output keeps.
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.mode = mode
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            return mask[0]
        return mask

    def call(self, xs):
        x = ops.stack([ops.cast(v, "float32") for v in xs], axis=0)
        if self.mode == "max":
            return ops.max(x, axis=0)
        if self.mode == "geometric_mean":
            return ops.exp(ops.mean(ops.log(ops.maximum(x, 1e-7)), axis=0))
        return ops.mean(x, axis=0)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, "mode": self.mode}
