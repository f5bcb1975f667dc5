"""The input normalization of pretrained weights, as a model's first layer.

Images reach every model in [0, 1]. Pretrained weights expect
`(x - mean) / std` with the mean / std they were trained with (timm's
`pretrained_cfg`); `ImageNormalization` applies it inside the model, so
fit, predict, TTA, export and serving all apply it, and a `.keras` file
carries the statistics in its config.

Channel rule (`channel_stats`), for inputs with another channel count
than the 3 the statistics are given for:

* 1 channel (grey): the mean of the three means and of the three stds;
* C >= 2 channels: channel `i` takes the statistics of channel `i % 3`
  (R, G, B, R, G, B, ...). HPA's RGBY gets (R, G, B, R); a 40-slice
  stack repeats R, G, B.

This is the same tiling as the stem conv adaptation
(`torch_layout.adapt_input_conv`: tiled over the new channels and scaled
by 3 / C), so a C-channel image whose channels all equal one grey image
gives the stem the same response as that grey image in RGB. One channel
sums the kernel, so no per-channel rule can match exactly; the mean is the
nearest single value.

Example:

>>> channel_stats((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 4)[0]
(0.485, 0.456, 0.406, 0.485)
"""

import keras
import numpy as np


def channel_stats(mean, std, channels):
    """Per-channel `(mean, std)` for `channels` inputs (rule above).

    Args:
        mean: the weights' per-channel means (usually 3 values, RGB).
        std: the matching standard deviations.
        channels: the model's input channel count.

    Returns:
        `(mean, std)`, two tuples of `channels` floats.

    Example:

    >>> channel_stats((0.2, 0.4, 0.6), (1.0, 2.0, 3.0), 2)
    ((0.2, 0.4), (1.0, 2.0))
    """
    mean = tuple(float(m) for m in mean)
    std = tuple(float(s) for s in std)
    if len(mean) != len(std) or not mean:
        raise ValueError(
            "mean and std need the same, non-zero number of values. "
            f"Received: mean={mean}, std={std}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive. Received: std={std}")
    channels = int(channels)
    if channels < 1:
        raise ValueError(
            f"channels must be positive. Received: channels={channels}")
    if channels == len(mean):
        return mean, std
    if channels == 1:
        return (float(np.mean(mean)),), (float(np.mean(std)),)
    return (tuple(mean[i % len(mean)] for i in range(channels)),
            tuple(std[i % len(std)] for i in range(channels)))


@keras.saving.register_keras_serializable(package="kaggle_tf")
class ImageNormalization(keras.layers.Layer):
    """`(images - mean) / std` over the last (channel) axis.

    Args:
        mean: one value per input channel.
        std: one value per input channel (positive).
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`).

    Example:

    >>> layer = ImageNormalization(mean=[0.5], std=[0.25])
    >>> float(layer(np.ones((1, 2, 2, 1), "float32"))[0, 0, 0, 0])
    2.0
    """

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        if len(self.mean) != len(self.std) or not self.mean or any(
                s <= 0 for s in self.std):
            raise ValueError(
                "mean and std need one value per channel, std positive. "
                f"Received: mean={self.mean}, std={self.std}")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels != len(self.mean):
            raise ValueError(
                f"ImageNormalization has {len(self.mean)} channel "
                f"statistics. Received: input_shape={input_shape}")

    def call(self, images):
        mean = keras.ops.convert_to_tensor(self.mean, dtype=images.dtype)
        scale = keras.ops.convert_to_tensor(
            [1.0 / s for s in self.std], dtype=images.dtype)
        return (images - mean) * scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean": list(self.mean), "std": list(self.std)})
        return config


def normalize(images, stats, name="normalize"):
    """Applies `ImageNormalization(stats)` to `images`, or returns them
    unchanged when `stats` is None (random init: no normalization).

    Args:
        images: a symbolic `(batch, ..., channels)` tensor.
        stats: None or per-channel `(mean, std)`.
        name: the layer name. Defaults to `"normalize"`.
    """
    if stats is None:
        return images
    mean, std = stats
    return ImageNormalization(mean, std, name=name)(images)


__all__ = ["ImageNormalization", "channel_stats", "for_encoder", "normalize"]


def for_encoder(images, backbone, name="normalize"):
    """`images` normalized as `backbone`'s pretrained weights expect.

    Args:
        images: a symbolic `(batch, ..., channels)` tensor in [0, 1].
        backbone: an encoder from `encoders.build`; its `weight_source`
            (None for random init: `images` is returned unchanged) gives
            the statistics for `images`' channel count.
        name: the layer name. Defaults to `"normalize"`.
    """
    source = getattr(backbone, "weight_source", None)
    if source is None:
        return images
    return normalize(images, source.stats(images.shape[-1]), name=name)
