"""What U-Net and FPN share: argument checks, the encoder, the heads.

Layer names follow smp's module paths with `.` written `_`;
`weights.smp_mapping` turns them back into smp's state dict keys.
"""

from keras import layers

from kaggle_tf.models import blocks
from kaggle_tf.models import encoders
from kaggle_tf.models import pretrained
from kaggle_tf.models.ordered_conv import OrderedConv2D

def check_args(classes, input_shape, activation, stride=32):
    """Validates the arguments every segmentation model takes."""
    if isinstance(classes, bool) or not isinstance(classes, int) or (
            classes < 1):
        raise ValueError(
            f"classes must be a positive int. Received: classes={classes!r}")
    if activation not in (None, "sigmoid", "softmax"):
        raise ValueError(
            "activation must be None (logits), 'sigmoid' or 'softmax'. "
            f"Received: activation={activation!r}")
    if input_shape is None or len(tuple(input_shape)) != 3:
        raise ValueError(
            "input_shape must be (height, width, channels). Received: "
            f"input_shape={input_shape!r}")
    for size in tuple(input_shape)[:2]:
        if size is not None and int(size) % stride:
            raise ValueError(
                f"input height and width must be divisible by {stride} "
                f"(pad the images). Received: input_shape={input_shape!r}")


def build_encoder(encoder, input_shape, encoder_weights):
    """The nested encoder (`name="encoder"`), with weights when given
    (any form `kaggle_tf.models.pretrained` resolves)."""
    encoders.check_segmentation_ready(encoder)
    if encoder_weights is not None and not isinstance(
            encoder_weights, (str, dict, pretrained.WeightSource)) and not (
            hasattr(encoder_weights, "__fspath__")):
        raise ValueError(
            "encoder_weights must be None, 'imagenet', 'hf://<repo_id>' or "
            "a local weight file or directory. Received: "
            f"encoder_weights={encoder_weights!r}")
    return encoders.build(encoder, input_shape=input_shape,
                          weights=encoder_weights)


def outputs(masks_logits, pyramid, classes, aux_head, activation):
    """The model outputs: masks, plus aux labels when `aux_head`.

    The aux head is smp's `ClassificationHead` without dropout: global
    average pooling of P5, then a dense layer (`classification_head_3`).
    Outputs are float32 (also under mixed precision); `activation` is
    applied to both.
    """
    masks = blocks.float32_output(masks_logits, activation, name="masks")
    if not aux_head:
        return masks
    x = layers.GlobalAveragePooling2D(name="classification_head_0")(
        pyramid["P5"])
    x = layers.Dense(classes, kernel_initializer="glorot_uniform",
                     name="classification_head_3")(x)
    labels = blocks.float32_output(x, activation, name="labels")
    return {"masks": masks, "labels": labels}


def head_conv(x, classes, kernel_size):
    """smp's `SegmentationHead` conv (`segmentation_head_0`)."""
    return OrderedConv2D(classes, kernel_size, padding="same",
                         kernel_initializer="glorot_uniform",
                         name="segmentation_head_0")(x)


__all__ = ["build_encoder", "check_args", "outputs"]

