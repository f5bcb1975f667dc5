"""Image classifiers: encoder P5 -> pooled embedding -> logits.

    images (batch, height, width, channels)
      -> encoders.build(encoder)       nested layer "encoder", P5
      -> heads.classification_head     concat pool -> BN -> "embedding"
                                       -> Dropout -> Dense -> "logits"

    SeriesClassifier: one encoder per series (slice stack)
    images (batch, height, width, sum(series_channels))
      -> blocks.SplitChannels          one stack per series
      -> encoders.build(encoder) x N   nested layers "encoder_series<i>", P5
      -> heads.global_pool each        concatenated -> heads.pooled_head

The HPA seed's head (fastai's): AdaptiveConcatPool (global max + global
average) -> BatchNorm -> Dropout -> Dense. `embedding_model(classifier)`
returns the pre-logit embedding, e.g. the per-slice features that the
RSNA ICH sequence models (`SequenceModel`) run over.

Example:

>>> from kaggle_tf import models
>>> model = models.Classifier("resnet18", classes=28,
...                           input_shape=(64, 64, 3))
>>> model.output.shape
(None, 28)
>>> models.classifier.embedding_model(model).output.shape
(None, 1024)
"""

import keras

from kaggle_tf.models import blocks
from kaggle_tf.models import encoders
from kaggle_tf.models import heads
from kaggle_tf.models import normalization
from kaggle_tf.models import pretrained

EMBEDDING_LAYER = "embedding"


def _check_classes(classes):
    if isinstance(classes, bool) or not isinstance(classes, int) or (
            classes < 1):
        raise ValueError(
            f"classes must be a positive int. Received: classes={classes!r}")


def Classifier(encoder="seresnext50_32x4d", classes=28,
               input_shape=(None, None, 3), head="concat_pool", dropout=0.0,
               encoder_weights=None, activation=None, name=None):
    """An image classifier on a registered encoder.

    Args:
        encoder: a name from `encoders.names()`. Defaults to
            `"seresnext50_32x4d"`.
        classes: output units (28 for HPA, 6 for RSNA ICH). Defaults to
            `28`.
        input_shape: `(height, width, channels)`; any channel count.
            Defaults to `(None, None, 3)`.
        head: `"concat_pool"` (global max + average, BatchNorm, dropout,
            dense), `"avg"` (global average, dropout, dense) or `"timm"`
            (timm's own head for the encoder, `heads.timm_pool`: e.g.
            EfficientNet's `conv_head` + `bn2` before the pool, ConvNeXt's
            and EdgeNeXt's LayerNorm after it; then dropout, dense), so a
            whole timm classifier's state dict loads into it. Defaults to
            `"concat_pool"`.
        dropout: dropout rate before the dense layer, in [0, 1). Defaults
            to `0.0`.
        encoder_weights: None (random init), `"imagenet"` (the encoder's
            default source), `"hf://<repo_id>"`, or a local `.pth` /
            `.safetensors` / `.weights.h5` file or a directory holding one
            (`kaggle_tf.models.pretrained`). With weights, the model's
            first layer (`"normalize"`) applies their mean / std to the
            [0, 1] images. Defaults to `None`.
        activation: None (logits, for training), `"sigmoid"` or
            `"softmax"` (export). Defaults to `None`.
        name: the model name. Defaults to `"classifier_<encoder>"`.

    Returns:
        A functional `keras.Model`: input `"images"`, output `(batch,
        classes)` float32 (also under mixed precision), the encoder nested
        as the layer `"encoder"` and the embedding as the layer
        `"embedding"`.

    Example:

    >>> model = Classifier("test_resnet", classes=5, head="avg",
    ...                    input_shape=(64, 64, 3))
    >>> model.output.shape
    (None, 5)
    """
    _check_classes(classes)
    if head != heads.TIMM_HEAD:
        heads.check_head(head)
    heads.check_dropout(dropout)

    # --- encoder ---
    backbone = encoders.build(encoder, input_shape=input_shape,
                              weights=encoder_weights)
    images = keras.Input(shape=backbone.image_shape, name="images")
    pyramid = backbone(normalization.for_encoder(images, backbone))

    # --- head ---
    if head == heads.TIMM_HEAD:
        timm_head = encoders.spec(encoder).timm_head
        pooled = heads.timm_pool(pyramid["P5"], timm_head and dict(timm_head),
                                 name="head")
        _, logits = heads.pooled_head(pooled, classes, head="avg",
                                      dropout=dropout, activation=activation,
                                      name="head")
    else:
        _, logits = heads.classification_head(
            pyramid["P5"], classes, head=head, dropout=dropout,
            activation=activation, name="head")
    return keras.Model(images, logits, name=name or f"classifier_{encoder}")


def _check_series_channels(series_channels):
    try:
        channels = tuple(series_channels)
        valid = bool(channels) and all(
            not isinstance(c, bool) and int(c) == c and c >= 1
            for c in channels)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "series_channels must be positive ints, one per series. "
            f"Received: series_channels={series_channels!r}")
    return tuple(int(c) for c in channels)


def SeriesClassifier(encoder="convnext_tiny", series_channels=(10, 10, 20),
                     classes=75, head="avg", dropout=0.0,
                     encoder_weights=None, input_shape=(None, None, 40),
                     shared_encoder=False, activation=None, name=None):
    """A classifier with one encoder per series type (slice stack).

    The input's channels are consecutive slice stacks, e.g. an RSNA lumbar
    study: Sagittal T1 (10 slices), Sagittal T2/STIR (10), Axial T2 (20).
    Each stack goes through its own encoder (the RSNA 2024 lumbar
    solutions' per-series-type models), whose P5 is pooled as
    `Classifier`'s head pools it; the pooled vectors are concatenated into
    the embedding, then Dropout and one Dense give the logits.

    Args:
        encoder: a name from `encoders.names()`, used for every series.
            Defaults to `"convnext_tiny"`.
        series_channels: channels of each series, in input order; their sum
            is the input's channel count. Defaults to `(10, 10, 20)`.
        classes: output units (75 = 25 RSNA lumbar rows x 3 severities).
            Defaults to `75`.
        head: `"avg"` (global average per series) or `"concat_pool"`
            (global max + average per series, then BatchNorm). Defaults to
            `"avg"`.
        dropout: dropout rate before the dense layer, in [0, 1). Defaults
            to `0.0`.
        encoder_weights: None (random init), `"imagenet"` (the encoder's
            default source), `"hf://<repo_id>"`, or a local `.pth` /
            `.safetensors` / `.weights.h5` file or a directory holding one
            (`kaggle_tf.models.pretrained`). With weights, the model's
            first layer (`"normalize"`) applies their mean / std to the
            [0, 1] images. Loaded into every series' encoder, its stem
            conv adapted to that series' channels (statistics by
            `normalization.channel_stats`). Defaults to `None`.
        input_shape: `(height, width, channels)` with `channels ==
            sum(series_channels)`. Defaults to `(None, None, 40)`.
        shared_encoder: one encoder (layer `"encoder"`) for all series;
            they must then have equal channels. Defaults to `False`.
        activation: None (logits, for training), `"sigmoid"` or
            `"softmax"` (export). Defaults to `None`.
        name: the model name. Defaults to
            `"series_classifier_<encoder>"`.

    Returns:
        A functional `keras.Model`: input `"images"`, output `(batch,
        classes)` float32 (also under mixed precision). Series `i`'s
        encoder is the nested layer `"encoder_series<i>"` and its pooled
        features the layer `"series<i>_pool"`; the concatenated embedding
        is the layer `"embedding"` (as in `Classifier`, so
        `embedding_model` works).

    Example:

    >>> model = SeriesClassifier("test_resnet", series_channels=(2, 2, 4),
    ...                          classes=75, input_shape=(64, 64, 8))
    >>> model.output.shape
    (None, 75)
    >>> model.get_layer("encoder_series2").input_shape
    (None, 64, 64, 4)
    """
    _check_classes(classes)
    heads.check_head(head)
    heads.check_dropout(dropout)
    series_channels = _check_series_channels(series_channels)
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[-1] != sum(series_channels):
        raise ValueError(
            f"input_shape must be (height, width, {sum(series_channels)}), "
            "its channels the sum of series_channels="
            f"{list(series_channels)}. Received: input_shape={input_shape!r}")
    if shared_encoder and len(set(series_channels)) > 1:
        raise ValueError(
            "shared_encoder=True needs series of equal channels. Received: "
            f"series_channels={list(series_channels)}")
    # Resolved once, loaded (and adapted) into every series' encoder.
    source = pretrained.resolve(encoder, encoder_weights)

    images = keras.Input(shape=shape, name="images")
    x = images
    if source is not None:  # each series' channels by the channel rule
        stats = [source.stats(c) for c in series_channels]
        x = normalization.normalize(
            x, (sum((s[0] for s in stats), ()), sum((s[1] for s in stats),
                                                     ())))
    stacks = blocks.SplitChannels(series_channels, name="series_split")(x)

    # --- encoders ---
    pooled = []
    backbone = None
    for i, (stack, channels) in enumerate(zip(stacks, series_channels)):
        if backbone is None or not shared_encoder:
            backbone = encoders.build(
                encoder, input_shape=shape[:2] + (channels,),
                weights=source,
                model_name="encoder" if shared_encoder
                else f"encoder_series{i}")
        pooled.append(heads.global_pool(backbone(stack)["P5"], head,
                                        name=f"series{i}_pool"))

    # --- head ---
    features = (pooled[0] if len(pooled) == 1 else
                keras.layers.Concatenate(name="head_pool")(pooled))
    _, logits = heads.pooled_head(features, classes, head=head,
                                  dropout=dropout, activation=activation,
                                  name="head")
    return keras.Model(images, logits,
                       name=name or f"series_classifier_{encoder}")


def embedding_model(classifier, name=None):
    """The classifier cut at its pre-logit embedding (weights shared).

    Args:
        classifier: a model from `Classifier` (also one reloaded from a
            `.keras` file); any model with a layer named `"embedding"`.
        name: the model name. Defaults to `"<classifier name>_embedding"`.

    Returns:
        A `keras.Model` with the classifier's inputs and the float32
        embedding `(batch, features)`: `2 * channels` of P5 for
        `"concat_pool"` (after its BatchNorm), `channels` for `"avg"`.

    Example:

    >>> model = Classifier("test_resnet", classes=6, input_shape=(64, 64, 3))
    >>> embedding_model(model).output.shape
    (None, 192)
    """
    try:
        layer = classifier.get_layer(EMBEDDING_LAYER)
    except ValueError:
        raise ValueError(
            f"classifier has no layer named {EMBEDDING_LAYER!r}; build it "
            f"with `Classifier`. Received: classifier="
            f"{getattr(classifier, 'name', classifier)!r}") from None
    return keras.Model(classifier.input, layer.output,
                       name=name or f"{classifier.name}_embedding")


__all__ = ["Classifier", "SeriesClassifier", "embedding_model"]
