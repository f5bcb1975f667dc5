"""Heads: feature maps -> pooled embeddings -> logits, also per slice.

    P5 (batch, h, w, c)
      -> global_pool           "avg": (batch, c); "concat_pool": (batch, 2c)
      -> classification_head   [BatchNorm] -> "embedding" -> Dropout -> Dense
         (pooled_head: the same after a pooling done elsewhere)
    slices (batch, time, ...)
      -> TimeFold / TimeUnfold run a per-image model on every slice at once
    padding mask (batch, time)
      -> StepMask / ZeroMaskedSteps for sequence models

`concat_pool` is fastai's `AdaptiveConcatPool2d` (the HPA seed's head):
global max and global average concatenated, max first, as fastai does, so
that fastai / PyTorch heads port unchanged.

Example:

>>> images = keras.Input((64, 64, 3))
>>> p5 = keras.layers.Conv2D(8, 3, strides=32)(images)
>>> embedding, logits = classification_head(p5, classes=28)
>>> embedding.shape, logits.shape
((None, 16), (None, 28))
"""

import keras
from keras import layers
from keras import ops

from kaggle_tf.models import blocks

HEADS = ("concat_pool", "avg")
# `Classifier(head="timm")`: timm's own head for the encoder (`timm_pool`).
TIMM_HEAD = "timm"
# Layer names of timm's pre-classifier layers, and their timm modules.
TIMM_HEAD_LAYERS = {"conv_head": "conv_head", "bn2": "bn2",
                    "head_norm": "head.norm"}


def check_head(head):
    """Raises a ValueError naming `head` unless it is one of `HEADS`."""
    if head not in HEADS:
        raise ValueError(
            f"head must be one of {', '.join(repr(h) for h in HEADS)}. "
            f"Received: head={head!r}")


def check_dropout(dropout):
    """Raises a ValueError naming `dropout` unless 0 <= dropout < 1."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or (
            not 0.0 <= dropout < 1.0):
        raise ValueError(
            f"dropout must be a number in [0, 1). Received: dropout="
            f"{dropout!r}")


def global_pool(x, head="concat_pool", name="head_pool"):
    """Global pooling of a feature map.

    Args:
        x: `(batch, height, width, channels)`.
        head: `"concat_pool"` (global max and global average concatenated,
            `(batch, 2 * channels)`, max first as fastai's
            `AdaptiveConcatPool2d`) or `"avg"` (global average,
            `(batch, channels)`). Defaults to `"concat_pool"`.
        name: the output layer name; concat_pool's parts are
            `{name}_max` and `{name}_avg`.

    Returns:
        The pooled tensor.

    Example:

    >>> global_pool(keras.Input((7, 7, 512))).shape
    (None, 1024)
    """
    check_head(head)
    if head == "avg":
        return layers.GlobalAveragePooling2D(name=name)(x)
    maximum = layers.GlobalMaxPooling2D(name=f"{name}_max")(x)
    average = layers.GlobalAveragePooling2D(name=f"{name}_avg")(x)
    return layers.Concatenate(name=name)([maximum, average])


def timm_pool(x, timm_head=None, name="head"):
    """What timm's full classifier computes from P5 up to its last Linear.

    * `timm_head=None` (ResNets, SE-ResNeXts, DenseNet, ...): a global
      average pool;
    * `{"kind": "norm", "epsilon"}` (ConvNeXt, EdgeNeXt: timm's
      `NormMlpClassifierHead`): the pool, then a LayerNorm (`head_norm`,
      timm's `head.norm`);
    * `{"kind": "conv_head", "channels", "epsilon", "activation"}`
      (EfficientNet, MobileNet-V2): a 1x1 conv (`conv_head`), BatchNorm
      (`bn2`) and activation, then the pool.

    The layers are named after timm's modules (`TIMM_HEAD_LAYERS`), so a
    timm classifier's state dict fills them.

    Args:
        x: P5, `(batch, height, width, channels)`.
        timm_head: the encoder's `EncoderSpec.timm_head`.
        name: prefix of the pool layer (`{name}_pool`).

    Returns:
        The pooled features `(batch, features)`.

    Example:

    >>> p5 = keras.Input((2, 2, 96))
    >>> timm_pool(p5, {"kind": "norm", "epsilon": 1e-6}).shape
    (None, 96)
    """
    kind = (timm_head or {}).get("kind")
    if kind == "conv_head":
        x = layers.Conv2D(timm_head["channels"], 1, use_bias=False,
                          name="conv_head")(x)
        x = layers.BatchNormalization(epsilon=timm_head["epsilon"],
                                      momentum=blocks.BN_MOMENTUM,
                                      name="bn2")(x)
        x = layers.Activation(timm_head["activation"], name="bn2_act")(x)
    elif kind not in (None, "norm"):
        raise ValueError(
            f"timm_head kind must be 'norm' or 'conv_head'. Received: "
            f"timm_head={timm_head!r}")
    x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    if kind == "norm":
        x = layers.LayerNormalization(epsilon=timm_head["epsilon"],
                                      name="head_norm")(x)
    return x


def classification_head(x, classes, head="concat_pool", dropout=0.0,
                        activation=None, name="head"):
    """Pooling, embedding and logits on top of a feature map.

    `"concat_pool"`: concat pool -> BatchNorm -> embedding -> Dropout ->
    Dense (the HPA seed's head). `"avg"`: global average -> embedding ->
    Dropout -> Dense. The embedding is the layer named `"embedding"`
    (float32, the Dense layer's input); `classifier.embedding_model` cuts
    the model there.

    Args:
        x: `(batch, height, width, channels)`, usually P5.
        classes: output units.
        head: `"concat_pool"` or `"avg"`. Defaults to `"concat_pool"`.
        dropout: dropout rate before the Dense layer. Defaults to `0.0`.
        activation: None (logits), `"sigmoid"` or `"softmax"`. Defaults to
            `None`.
        name: layer name prefix (`{name}_pool`, `{name}_bn`,
            `{name}_dropout`, `{name}_fc`).

    Returns:
        `(embedding, logits)`: the embedding `(batch, features)` and the
        float32 output `(batch, classes)` (layer `"logits"`).

    Example:

    >>> p5 = keras.Input((2, 2, 96))
    >>> embedding, logits = classification_head(p5, 5, head="avg")
    >>> embedding.shape
    (None, 96)
    """
    check_head(head)
    check_dropout(dropout)
    x = global_pool(x, head, name=f"{name}_pool")
    return pooled_head(x, classes, head=head, dropout=dropout,
                       activation=activation, name=name)


def pooled_head(x, classes, head="concat_pool", dropout=0.0,
                activation=None, name="head"):
    """Embedding and logits on top of already pooled features.

    The part of `classification_head` after its pooling, for models that
    pool several feature maps themselves (`SeriesClassifier` concatenates
    one pooled vector per series): `"concat_pool"` adds BatchNorm
    (`{name}_bn`), then embedding -> Dropout -> Dense as above.

    Args:
        x: `(batch, features)` pooled features.
        classes: output units.
        head: `"concat_pool"` or `"avg"`. Defaults to `"concat_pool"`.
        dropout: dropout rate before the Dense layer. Defaults to `0.0`.
        activation: None (logits), `"sigmoid"` or `"softmax"`. Defaults to
            `None`.
        name: layer name prefix (`{name}_bn`, `{name}_dropout`,
            `{name}_fc`).

    Returns:
        `(embedding, logits)` as `classification_head`.

    Example:

    >>> pooled = keras.Input((96,))
    >>> embedding, logits = pooled_head(pooled, 5, head="avg")
    >>> logits.shape
    (None, 5)
    """
    check_head(head)
    check_dropout(dropout)
    if head == "concat_pool":
        x = blocks.batch_norm(x, name=f"{name}_bn")
    embedding = layers.Identity(dtype="float32", name="embedding")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(embedding)
    x = layers.Dense(classes, name=f"{name}_fc")(x)
    return embedding, blocks.float32_output(x, activation, name="logits")


@keras.saving.register_keras_serializable(package="kaggle_tf")
class TimeFold(keras.layers.Layer):
    """Merges the batch and time axes: `(batch, time, ...)` ->
    `(batch * time, ...)`, so a per-image model sees every slice at once.

    One reshape (no loop, no `vectorized_map`), so XLA / TPU compile it.

    Example:

    >>> TimeFold()(keras.ops.ones((2, 3, 8, 8, 1))).shape
    (6, 8, 8, 1)
    """

    def call(self, inputs):
        shape = ops.shape(inputs)
        return ops.reshape(inputs, (-1,) + tuple(shape[2:]))

    def compute_output_shape(self, input_shape):
        batch, time = input_shape[:2]
        merged = None if batch is None or time is None else batch * time
        return (merged,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="kaggle_tf")
class TimeUnfold(keras.layers.Layer):
    """Splits the batch axis back: `(batch * time, ...)` ->
    `(batch, time, ...)`, with `batch` and `time` read from `reference`.

    Called as `TimeUnfold()([x, reference])` where `reference` is the
    `(batch, time, ...)` tensor that `TimeFold` folded.

    Example:

    >>> slices = keras.ops.ones((2, 3, 8, 8, 1))
    >>> TimeUnfold()([keras.ops.ones((6, 16)), slices]).shape
    (2, 3, 16)
    """

    def call(self, inputs):
        x, reference = inputs
        batch_time = tuple(ops.shape(reference)[:2])
        return ops.reshape(x, batch_time + tuple(ops.shape(x)[1:]))

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return tuple(reference_shape[:2]) + tuple(x_shape[1:])


@keras.saving.register_keras_serializable(package="kaggle_tf")
class StepMask(keras.layers.Layer):
    """A padding mask of any dtype (bool, 0/1 ints or floats) -> bool.

    `(batch, time)`: True for real steps, False for padding.

    Example:

    >>> mask = StepMask()(keras.ops.convert_to_tensor([[1.0, 1.0, 0.0]]))
    >>> keras.ops.convert_to_numpy(mask)
    array([[ True,  True, False]])
    """

    def call(self, inputs):
        if inputs.dtype == "bool":
            return inputs
        return ops.greater(ops.cast(inputs, "float32"), 0.5)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, dtype="bool")


@keras.saving.register_keras_serializable(package="kaggle_tf")
class ZeroMaskedSteps(keras.layers.Layer):
    """Sets the padded steps of `(batch, time, ...)` to zero.

    Called as `ZeroMaskedSteps()([x, mask])` with a bool `(batch, time)`
    mask; the output carries the mask on (Keras then leaves padded steps
    out of losses and metrics).

    Example:

    >>> x = keras.ops.ones((1, 3, 1))
    >>> mask = keras.ops.convert_to_tensor([[True, True, False]])
    >>> keras.ops.convert_to_numpy(ZeroMaskedSteps()([x, mask]))[0, :, 0]
    array([1., 1., 0.], dtype=float32)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        x, mask = inputs
        mask = ops.cast(mask, "bool")
        while len(mask.shape) < len(x.shape):
            mask = ops.expand_dims(mask, -1)
        return ops.where(mask, x, ops.zeros_like(x))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def compute_mask(self, inputs, previous_mask=None):
        return ops.cast(inputs[1], "bool")


__all__ = [
    "HEADS",
    "StepMask",
    "TimeFold",
    "TIMM_HEAD",
    "TIMM_HEAD_LAYERS",
    "TimeUnfold",
    "ZeroMaskedSteps",
    "check_dropout",
    "check_head",
    "classification_head",
    "global_pool",
    "pooled_head",
    "timm_pool",
]
