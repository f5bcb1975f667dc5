"""U-Net (smp's `Unet`): encoder pyramid -> 5 upsampling blocks -> masks.

Each decoder block upsamples 2x (nearest), concatenates the skip of the
same stride (P4, P3, P2, P1; the last block has none) and applies two
conv3x3 (no bias) -> BatchNorm -> ReLU; with `decoder_attention="scse"`,
scSE follows the concatenation and the second conv (smp's `attention1` /
`attention2`). A conv3x3 head gives the per-pixel logits at full
resolution.
"""

import keras
from keras import layers

from kaggle_tf.models import blocks
from kaggle_tf.models import normalization
from kaggle_tf.models.decoders import base
from kaggle_tf.models.ordered_conv import OrderedConv2D
from kaggle_tf.models.upsample_conv import UpsampleConcatConv2D

DECODER_INIT = "he_uniform"  # smp: kaiming uniform, fan_in, ReLU gain


def unet_block(x, skip, filters, attention=None, name=None):
    """One smp `UnetDecoderBlock`; layers are `{name}_conv1_0` etc.

    Args:
        x: the deeper feature map.
        skip: the encoder feature at twice `x`'s size, or None.
        filters: output channels.
        attention: None or `"scse"`.
        name: prefix (`"decoder_blocks_0"`).

    Returns:
        The block output at twice `x`'s size.

    Example:

    >>> y = unet_block(keras.Input((4, 4, 8)), keras.Input((8, 8, 4)), 16,
    ...                name="decoder_blocks_0")
    """
    init = {"padding": "same", "use_bias": False,
            "kernel_initializer": DECODER_INIT}
    if attention == "scse" and skip is not None:
        x = layers.UpSampling2D(2, interpolation="nearest",
                                name=f"{name}_up")(x)
        x = layers.Concatenate(name=f"{name}_concat")([x, skip])
        x = blocks.scse(x, name=f"{name}_attention1_attention")
        x = OrderedConv2D(filters, 3, name=f"{name}_conv1_0", **init)(x)
    else:
        # The upsampling and the join inside conv1: its backward keeps
        # `x` (a quarter of the size) instead of the conv's input.
        x = UpsampleConcatConv2D(filters, 3, name=f"{name}_conv1_0", **init)(
            x if skip is None else [x, skip])
    x = blocks.batch_norm(x, name=f"{name}_conv1_1")
    x = layers.ReLU(name=f"{name}_conv1_2")(x)
    x = OrderedConv2D(filters, 3, name=f"{name}_conv2_0", **init)(x)
    x = blocks.batch_norm(x, name=f"{name}_conv2_1")
    x = layers.ReLU(name=f"{name}_conv2_2")(x)
    if attention == "scse":
        x = blocks.scse(x, name=f"{name}_attention2_attention")
    return x


def Unet(encoder="resnet34", classes=1, input_shape=(None, None, 3),
         encoder_weights=None, decoder_channels=(256, 128, 64, 32, 16),
         decoder_attention=None, aux_head=False, activation=None, name=None):
    """U-Net with a registered encoder, as smp's `Unet`.

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
        decoder_channels: channels of the 5 decoder blocks. Defaults to
            `(256, 128, 64, 32, 16)`.
        decoder_attention: None or `"scse"`.
        aux_head: adds a classification head on P5; the model then outputs
            `{"masks": (batch, height, width, classes), "labels":
            (batch, classes)}`.
        activation: None (logits, the default), `"sigmoid"` or
            `"softmax"` (for export).
        name: the model name. Defaults to `"unet_<encoder>"`.

    Returns:
        A functional `keras.Model`; masks `(batch, height, width,
        classes)` float32. The encoder is the nested layer `"encoder"`.

    Example:

    >>> model = Unet("resnet34", classes=4, input_shape=(256, 1600, 3))
    >>> model.output_shape
    (None, 256, 1600, 4)
    >>> sum(w.numpy().size for w in model.trainable_weights)  # as smp
    24436804
    """
    base.check_args(classes, input_shape, activation)
    decoder_channels = tuple(decoder_channels)
    if len(decoder_channels) != 5 or not all(
            isinstance(c, int) and c > 0 for c in decoder_channels):
        raise ValueError(
            "decoder_channels must be 5 positive ints. Received: "
            f"decoder_channels={decoder_channels!r}")
    if decoder_attention not in (None, "scse"):
        raise ValueError(
            "decoder_attention must be None or 'scse'. Received: "
            f"decoder_attention={decoder_attention!r}")
    if decoder_attention == "scse" and min(decoder_channels) < 16:
        raise ValueError(
            "scSE reduces channels 16x, so decoder_channels must be >= 16. "
            f"Received: decoder_channels={decoder_channels!r}")

    # --- encoder ---
    backbone = base.build_encoder(encoder, input_shape, encoder_weights)
    images = keras.Input(shape=tuple(input_shape), name="images")
    pyramid = backbone(normalization.for_encoder(images, backbone))

    # --- decoder ---
    x = pyramid["P5"]
    skips = (pyramid["P4"], pyramid["P3"], pyramid["P2"], pyramid["P1"],
             None)
    for index, (skip, filters) in enumerate(zip(skips, decoder_channels)):
        x = unet_block(x, skip, filters, attention=decoder_attention,
                       name=f"decoder_blocks_{index}")

    # --- head ---
    logits = base.head_conv(x, classes, 3)
    out = base.outputs(logits, pyramid, classes, aux_head, activation)
    return keras.Model(images, out, name=name or f"unet_{encoder}")
