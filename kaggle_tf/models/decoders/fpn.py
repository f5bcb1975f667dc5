"""FPN (smp's `FPN`): a top-down pyramid, merged segmentation features.

P5..P2 become a 256-channel top-down pyramid (1x1 lateral convs, nearest 2x
upsampling, addition); each level goes through conv3x3 -> GroupNorm(32) ->
ReLU blocks with bilinear 2x upsampling (align_corners=True, as smp) down
to stride 4; the four maps are added (or concatenated), dropped out
(spatial dropout 0.2) and a 1x1 head gives logits, upsampled 4x (bilinear).
"""

import keras
from keras import layers

from kaggle_tf.models import blocks
from kaggle_tf.models import normalization
from kaggle_tf.models.decoders import base
from kaggle_tf.models.ordered_conv import OrderedConv2D

DECODER_INIT = "he_uniform"  # smp: kaiming uniform, fan_in, ReLU gain


def conv3x3_gn_relu(x, filters, upsample, name=None):
    """smp's `Conv3x3GNReLU` (`{name}_block_0/1/2`, then `{name}_up`)."""
    x = OrderedConv2D(filters, 3, padding="same", use_bias=False,
                      kernel_initializer=DECODER_INIT,
                      name=f"{name}_block_0")(x)
    x = layers.GroupNormalization(32, epsilon=1e-5, name=f"{name}_block_1")(
        x)
    x = layers.ReLU(name=f"{name}_block_2")(x)
    if upsample:
        x = blocks.Upsample(2, "bilinear", align_corners=True,
                            name=f"{name}_up")(x)
    return x


def FPN(encoder="resnet34", classes=1, input_shape=(None, None, 3),
        encoder_weights=None, pyramid_channels=256, segmentation_channels=128,
        merge="add", dropout=0.2, aux_head=False, activation=None,
        name=None):
    """Feature Pyramid Network with a registered encoder, as smp's `FPN`.

    Args:
        encoder: an encoder name (`encoders.names()`). Defaults to
            `"resnet34"`.
        classes: output channels. Defaults to `1`.
        input_shape: `(height, width, channels)`; height and width None or
            divisible by 32. Defaults to `(None, None, 3)`.
        encoder_weights: None (random init), `"imagenet"` (the encoder's
            default source), `"hf://<repo_id>"`, or a local `.pth` /
            `.safetensors` / `.weights.h5` file or a directory holding one
            (`kaggle_tf.models.pretrained`). With weights, the model's
            first layer (`"normalize"`) applies their mean / std to the
            [0, 1] images.
        pyramid_channels: top-down pyramid channels. Defaults to `256`.
        segmentation_channels: channels of each segmentation branch
            (must be a multiple of 32, for GroupNorm). Defaults to `128`.
        merge: `"add"` (default) or `"cat"`.
        dropout: spatial dropout rate before the head. Defaults to `0.2`.
        aux_head: adds a classification head on P5; outputs become
            `{"masks": ..., "labels": ...}`.
        activation: None (logits, the default), `"sigmoid"` or
            `"softmax"`.
        name: the model name. Defaults to `"fpn_<encoder>"`.

    Returns:
        A functional `keras.Model`; masks `(batch, height, width, classes)`
        float32. The encoder is the nested layer `"encoder"`.

    Example:

    >>> model = FPN("resnet34", classes=4, input_shape=(256, 1600, 3))
    >>> model.output_shape
    (None, 256, 1600, 4)
    """
    base.check_args(classes, input_shape, activation)
    if merge not in ("add", "cat"):
        raise ValueError(
            f"merge must be 'add' or 'cat'. Received: merge={merge!r}")
    if segmentation_channels % 32 or segmentation_channels < 32:
        raise ValueError(
            "segmentation_channels must be a positive multiple of 32 "
            "(GroupNorm has 32 groups). Received: "
            f"segmentation_channels={segmentation_channels!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(
            f"dropout must be in [0, 1). Received: dropout={dropout!r}")

    # --- encoder ---
    backbone = base.build_encoder(encoder, input_shape, encoder_weights)
    images = keras.Input(shape=tuple(input_shape), name="images")
    pyramid = backbone(normalization.for_encoder(images, backbone))

    # --- decoder: top-down pathway ---
    p = layers.Conv2D(pyramid_channels, 1, kernel_initializer=DECODER_INIT,
                      name="decoder_p5")(pyramid["P5"])
    top_down = [p]
    for level in (4, 3, 2):
        up = layers.UpSampling2D(2, interpolation="nearest",
                                 name=f"decoder_p{level}_up")(p)
        skip = layers.Conv2D(pyramid_channels, 1,
                             kernel_initializer=DECODER_INIT,
                             name=f"decoder_p{level}_skip_conv")(
                                 pyramid[f"P{level}"])
        p = layers.Add(name=f"decoder_p{level}")([up, skip])
        top_down.append(p)

    # --- decoder: segmentation branches (5, 4, 3, 2) -> stride 4 ---
    branches = []
    for index, (p, upsamples) in enumerate(zip(top_down, (3, 2, 1, 0))):
        x = p
        for step in range(max(upsamples, 1)):
            x = conv3x3_gn_relu(
                x, segmentation_channels, upsample=upsamples > 0,
                name=f"decoder_seg_blocks_{index}_block_{step}")
        branches.append(x)
    if merge == "add":
        x = layers.Add(name="decoder_merge")(branches)
    else:
        x = layers.Concatenate(name="decoder_merge")(branches)
    x = layers.SpatialDropout2D(dropout, name="decoder_dropout")(x)

    # --- head ---
    logits = base.head_conv(x, classes, 1)
    logits = blocks.Upsample(4, "bilinear", align_corners=True,
                             name="segmentation_head_1")(logits)
    out = base.outputs(logits, pyramid, classes, aux_head, activation)
    return keras.Model(images, out, name=name or f"fpn_{encoder}")
