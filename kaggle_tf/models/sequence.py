"""Sequence models: per-slice embeddings -> (Bi)LSTM/GRU -> per-slice logits.

The RSNA ICH 2nd-place recipe: a CNN classifier is trained on single
slices, its pre-logit embeddings are extracted, and recurrent layers run
over the slices of each series ordered by position, so that every slice
sees its neighbours.

    embeddings (batch, time, features)   or   images (batch, time, h, w, c)
                                               -> TimeFold -> encoder -> pool
                                               -> TimeUnfold
      -> num_layers x (Bi)LSTM / GRU, masked by "mask" (batch, time)
      -> Dense -> [+ "slice_logits"] -> padded steps zeroed -> "logits"

Series have different lengths: batches are padded at the end and `mask`
marks the real steps (True / 1). The recurrent layers skip padded steps in
both directions (the backward pass starts from the last real slice), so
padding never changes the outputs of real steps; padded steps output
zeros, and the output carries the mask, so Keras leaves them out of losses
and metrics.

Example:

>>> from kaggle_tf import models
>>> model = models.SequenceModel(embedding_dim=2048, classes=6)
>>> sorted(model.input)
['embeddings', 'mask']
>>> model.output.shape
(None, None, 6)
"""

import keras
from keras import layers

from kaggle_tf.models import blocks
from kaggle_tf.models import encoders
from kaggle_tf.models import heads
from kaggle_tf.models import normalization

RNNS = {"lstm": layers.LSTM, "gru": layers.GRU}


def _check_positive_int(value, arg):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{arg} must be a positive int. Received: {arg}={value!r}")


def _check_args(embedding_dim, classes, rnn, units, num_layers, dropout,
                encoder, input_shape, pool):
    if rnn not in RNNS:
        raise ValueError(
            f"rnn must be 'lstm' or 'gru'. Received: rnn={rnn!r}")
    _check_positive_int(classes, "classes")
    _check_positive_int(units, "units")
    _check_positive_int(num_layers, "num_layers")
    heads.check_dropout(dropout)
    heads.check_head(pool)
    if encoder is None:
        _check_positive_int(embedding_dim, "embedding_dim")
        if input_shape is not None:
            raise ValueError(
                "input_shape is the per-slice image shape and needs an "
                f"encoder. Received: input_shape={input_shape!r}, "
                "encoder=None")
        return
    if not isinstance(encoder, (str, keras.Model)):
        raise ValueError(
            "encoder must be None, an encoder name or a keras.Model. "
            f"Received: encoder={encoder!r}")
    if isinstance(encoder, str) and input_shape is None:
        raise ValueError(
            "an encoder name needs the per-slice input_shape (height, "
            f"width, channels). Received: input_shape=None, encoder="
            f"{encoder!r}")
    if embedding_dim is not None:
        raise ValueError(
            "embedding_dim comes from the encoder; leave it None. Received: "
            f"embedding_dim={embedding_dim!r}, encoder={encoder!r}")


def _slice_embeddings(images, encoder, encoder_weights, pool):
    """`(batch, time, h, w, c)` -> `(batch, time, features)`."""
    if isinstance(encoder, str):
        backbone = encoders.build(encoder, input_shape=images.shape[2:],
                                  weights=encoder_weights)
        folded = heads.TimeFold(name="time_fold")(
            normalization.for_encoder(images, backbone))
        x = heads.global_pool(backbone(folded)["P5"], pool,
                              name="slice_pool")
    else:
        folded = heads.TimeFold(name="time_fold")(images)
        x = encoder(folded)
        if len(x.shape) != 2:
            raise ValueError(
                "encoder must map (batch, height, width, channels) images "
                f"to (batch, features). Received: encoder={encoder.name!r} "
                f"with output shape {x.shape}")
    return heads.TimeUnfold(name="time_unfold")([x, images])


def SequenceModel(embedding_dim=None, classes=6, rnn="lstm", units=128,
                  num_layers=2, bidirectional=True, dropout=0.0,
                  encoder=None, input_shape=None, residual=False,
                  pool="avg", encoder_weights=None, activation=None,
                  name=None):
    """Stacked (Bi)LSTM / GRU over slices, one prediction per slice.

    Two modes:

    * on embeddings (`encoder=None`): inputs `"embeddings"` `(batch, time,
      embedding_dim)` (e.g. from `classifier.embedding_model`) and
      `"mask"` `(batch, time)`;
    * end to end (`encoder` given): inputs `"images"` `(batch, time,
      height, width, channels)` and `"mask"`. Every slice goes through the
      encoder in one batch (`TimeFold`), then global pooling of P5; or
      `encoder` is a Keras model mapping images to `(batch, features)`,
      such as `embedding_model(classifier)`. In training the encoder's
      BatchNorm also sees padded slices; pad with real-looking slices or
      freeze it.

    With `residual=True` a third input `"slice_logits"` `(batch, time,
    classes)` (the per-slice classifier's logits) is added to the output:
    the recurrent layers learn a correction (2nd-place style refinement).

    Args:
        embedding_dim: features per slice (mode 1). Defaults to `None`.
        classes: outputs per slice (6 for RSNA ICH). Defaults to `6`.
        rnn: `"lstm"` or `"gru"`. Defaults to `"lstm"`.
        units: units per direction. Defaults to `128`.
        num_layers: stacked recurrent layers. Defaults to `2`.
        bidirectional: run each layer both ways and concatenate. Defaults
            to `True`.
        dropout: dropout rate on the inputs of every recurrent layer and of
            the dense layer, in [0, 1). Defaults to `0.0`.
        encoder: None, an encoder name, or a Keras model (mode 2).
        input_shape: per-slice `(height, width, channels)` (mode 2 with an
            encoder name).
        residual: add the `"slice_logits"` input to the output. Defaults to
            `False`.
        pool: pooling of P5 in mode 2 with an encoder name: `"avg"` or
            `"concat_pool"`. Defaults to `"avg"`.
        encoder_weights: None (random init), `"imagenet"` (the encoder's
            default source), `"hf://<repo_id>"`, or a local `.pth` /
            `.safetensors` / `.weights.h5` file or a directory holding one
            (`kaggle_tf.models.pretrained`). With weights, the model's
            first layer (`"normalize"`) applies their mean / std to the
            [0, 1] images. Mode 2.
        activation: None (logits), `"sigmoid"` or `"softmax"`. Defaults to
            `None`.
        name: the model name. Defaults to `"sequence_<rnn>"`.

    Returns:
        A functional `keras.Model` with a dict of inputs and the float32
        output `(batch, time, classes)` (layer `"logits"`).

    Example:

    >>> model = SequenceModel(embedding_dim=64, classes=6, rnn="gru",
    ...                       residual=True)
    >>> sorted(model.input)
    ['embeddings', 'mask', 'slice_logits']
    """
    _check_args(embedding_dim, classes, rnn, units, num_layers, dropout,
                encoder, input_shape, pool)
    inputs = {}

    # --- per-slice embeddings ---
    if encoder is None:
        inputs["embeddings"] = keras.Input((None, embedding_dim),
                                           name="embeddings")
        x = inputs["embeddings"]
    else:
        if input_shape is None:
            input_shape = tuple(encoder.input_shape[1:])
        inputs["images"] = keras.Input((None,) + tuple(input_shape),
                                       name="images")
        x = _slice_embeddings(inputs["images"], encoder, encoder_weights,
                              pool)
    inputs["mask"] = keras.Input((None,), name="mask")
    mask = heads.StepMask(name="step_mask")(inputs["mask"])

    # --- recurrent layers ---
    for index in range(1, num_layers + 1):
        if dropout:
            x = layers.Dropout(dropout, name=f"rnn_{index}_dropout")(x)
        if bidirectional:
            cell = layers.Bidirectional(
                RNNS[rnn](units, return_sequences=True), name=f"rnn_{index}")
        else:
            cell = RNNS[rnn](units, return_sequences=True, name=f"rnn_{index}")
        x = cell(x, mask=mask)

    # --- head ---
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(classes, name="head_fc")(x)
    if residual:
        inputs["slice_logits"] = keras.Input((None, classes),
                                             name="slice_logits")
        x = layers.Add(name="residual")([x, inputs["slice_logits"]])
    x = heads.ZeroMaskedSteps(name="zero_padding")([x, mask])
    logits = blocks.float32_output(x, activation, name="logits")
    return keras.Model(inputs, logits, name=name or f"sequence_{rnn}")


__all__ = ["SequenceModel"]
