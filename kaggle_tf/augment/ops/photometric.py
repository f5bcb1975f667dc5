"""Photometric ops: they change pixel values and leave masks alone.

Images are float in [0, 1]; results are clipped to [0, 1] as albumentations
clips float images.
"""

import tensorflow as tf

from kaggle_tf.augment.ops import rng
from kaggle_tf.augment.ops.base import Op
from kaggle_tf.augment.ops.geometric import _pair
from kaggle_tf.augment.ops.registry import register_op


@register_op("BrightnessContrast")
class BrightnessContrast(Op):
    """`image * alpha + beta`, clipped; alpha = 1 + U(contrast_limit),
    beta = U(brightness_limit) (times the image mean when
    `brightness_by_max=False`), as albumentations' RandomBrightnessContrast.

    Example:

    >>> BrightnessContrast(brightness_limit=(-0.2, 0.2),
    ...                    contrast_limit=(-0.2, 0.2), p=0.5)
    """

    name = "BrightnessContrast"
    packs_masks = True  # masks pass through untouched

    @property
    def channel_uniform(self):
        # The image mean (brightness_by_max=False) is a sum over channels.
        return self.brightness_by_max

    def __init__(self, brightness_limit=(-0.2, 0.2),
                 contrast_limit=(-0.2, 0.2), brightness_by_max=True,
                 ensure_safe_range=False, p=0.5):
        super().__init__(p)
        self.brightness_limit = _pair(brightness_limit, "brightness_limit",
                                      self.name)
        self.contrast_limit = _pair(contrast_limit, "contrast_limit",
                                    self.name)
        self.brightness_by_max = bool(brightness_by_max)
        self.ensure_safe_range = bool(ensure_safe_range)

    def sample(self, seed, batch_size, height, width):
        return {
            "alpha": 1.0 + rng.uniform(seed, "alpha", [batch_size],
                                       *self.contrast_limit),
            "beta": rng.uniform(seed, "beta", [batch_size],
                                *self.brightness_limit),
        }

    def apply(self, data, params):
        images = data["images"]
        alpha = tf.cast(params["alpha"], images.dtype)
        beta = tf.cast(params["beta"], images.dtype)
        if not self.brightness_by_max:
            beta = beta * tf.reduce_mean(images, axis=[1, 2, 3])
        if self.ensure_safe_range:
            alpha, beta = safe_brightness_contrast(alpha, beta)
        out = dict(data)
        out["images"] = tf.clip_by_value(
            images * alpha[:, None, None, None] + beta[:, None, None, None],
            0.0, 1.0)
        return out


def safe_brightness_contrast(alpha, beta, max_value=1.0):
    """albumentations' `get_safe_brightness_contrast_params`, per sample."""
    safe_beta_pos = tf.clip_by_value(beta, 0.0, max_value)
    safe_alpha_pos = tf.minimum(alpha, (max_value - safe_beta_pos)
                                / max_value)
    safe_beta_neg = tf.minimum(beta, max_value)
    safe_alpha_neg = tf.maximum(alpha, -safe_beta_neg / max_value)
    positive = alpha > 0
    return (tf.where(positive, safe_alpha_pos, safe_alpha_neg),
            tf.where(positive, safe_beta_pos, safe_beta_neg))


@register_op("Gamma")
class Gamma(Op):
    """`image ** gamma`, gamma = U(gamma_limit) / 100 (albumentations'
    RandomGamma).

    Example:

    >>> Gamma(gamma_limit=(80, 120), p=0.5)
    """

    name = "Gamma"
    packs_masks = True  # masks pass through untouched
    channel_uniform = True

    def __init__(self, gamma_limit=(80.0, 120.0), p=0.5):
        super().__init__(p)
        self.gamma_limit = _pair(gamma_limit, "gamma_limit", self.name)
        if self.gamma_limit[0] <= 0 or self.gamma_limit[0] \
                > self.gamma_limit[1]:
            raise ValueError(f"{self.name}: `gamma_limit` must be positive "
                             f"and increasing. Received: {gamma_limit!r}")

    def sample(self, seed, batch_size, height, width):
        low, high = self.gamma_limit
        return {"gamma": rng.uniform(seed, "gamma", [batch_size], low,
                                     high) / 100.0}

    def apply(self, data, params):
        images = data["images"]
        gamma = tf.cast(params["gamma"], images.dtype)[:, None, None, None]
        out = dict(data)
        # exp(g log x) rather than pow: XLA's pow is several times slower
        # on a CPU; the results agree to float rounding (0 stays ~1e-24).
        out["images"] = tf.exp(gamma * tf.math.log(tf.maximum(images,
                                                              1e-30)))
        return out
