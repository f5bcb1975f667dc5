"""Image classifiers: encoder P5 -> pooled embedding -> logits.

    images (batch, height, width, channels)
      -> encoders.build(encoder)       nested layer "encoder", P5
      -> heads.classification_head     concat pool -> BN -> "embedding"
                                       -> Dropout -> Dense -> "logits"

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

from kaggle_tf.models import encoders
from kaggle_tf.models import heads

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
            dense) or `"avg"` (global average, dropout, dense). Defaults to
            `"concat_pool"`.
        dropout: dropout rate before the dense layer, in [0, 1). Defaults
            to `0.0`.
        encoder_weights: None, or a local timm checkpoint (`.pth` /
            `.safetensors`) for the encoder. Defaults to `None`.
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
    heads.check_head(head)
    heads.check_dropout(dropout)

    # --- encoder ---
    backbone = encoders.build(encoder, input_shape=input_shape,
                              weights=encoder_weights)
    images = keras.Input(shape=backbone.image_shape, name="images")
    pyramid = backbone(images)

    # --- head ---
    _, logits = heads.classification_head(
        pyramid["P5"], classes, head=head, dropout=dropout,
        activation=activation, name="head")
    return keras.Model(images, logits, name=name or f"classifier_{encoder}")


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


__all__ = ["Classifier", "embedding_model"]
