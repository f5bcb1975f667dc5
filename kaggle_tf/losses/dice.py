"""Soft Dice loss, per image or over the batch."""

import keras

from kaggle_tf.losses import constants
from kaggle_tf.losses import functional
from kaggle_tf.losses.base import KaggleLoss
from kaggle_tf.losses.registry import per_image_or
from kaggle_tf.losses.registry import register_loss


@keras.saving.register_keras_serializable(package="kaggle_tf")
class Dice(KaggleLoss):
    """Soft Dice loss `1 - D`, per class, then class-weighted.

    `D_c = (2 sum(y p) + smooth) / (sum(y) + sum(p) + smooth)`, summed over
    each image's pixels (`per_image=True`, images then averaged) or over
    every pixel of the batch (`per_image=False`).

    Empty masks: an empty mask predicted empty scores `D = 1` (loss 0, as
    the Kaggle Dice), also when `smooth=0`; with predicted mass `S` on an
    empty mask the loss is `S / (S + smooth)` (1 when `smooth=0`). Unlike
    smp's `DiceLoss`, empty channels are not masked out, so false positives
    on empty images are penalised.

    Args:
        smooth: added to numerator and denominator. Defaults to `1.0`.
        per_image: Dice per image rather than over the batch. Defaults to
            `False`.
        mode: "binary", "multilabel" (sigmoid) or "multiclass" (softmax,
            one-hot `y_true`). Defaults to `"multilabel"`.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        class_weights: per-class weights. Defaults to `None`.
        reduction, name, dtype: see `keras.losses.Loss`.

    Example:

    >>> loss = Dice(smooth=0.0, from_logits=False)
    >>> y_true = [[[1.0], [1.0], [0.0], [0.0]]]
    >>> y_pred = [[[1.0], [0.0], [1.0], [0.0]]]
    >>> float(loss(y_true, y_pred))  # 1 - 2 * 1 / (2 + 2)
    0.5
    """

    def __init__(self, smooth=1.0, per_image=False,
                 mode=constants.MULTILABEL_MODE, from_logits=True,
                 class_weights=None, reduction="sum_over_batch_size",
                 name=None, dtype=None):
        super().__init__(from_logits=from_logits,
                         class_weights=class_weights, reduction=reduction,
                         name=name, dtype=dtype)
        if smooth < 0:
            raise ValueError(
                f"`smooth` must be >= 0. Received: smooth={smooth}")
        self.smooth = float(smooth)
        self.per_image = bool(per_image)
        self.mode = functional.check_mode(mode)

    def call(self, y_true, y_pred):
        return functional.soft_dice_loss(
            y_true, y_pred, from_logits=self.from_logits, smooth=self.smooth,
            per_image=self.per_image, mode=self.mode,
            class_weights=self.class_weights)

    def get_config(self):
        config = super().get_config()
        config.update(smooth=self.smooth, per_image=self.per_image,
                      mode=self.mode)
        return config


@register_loss("dice")
def _build(smooth=1.0, per_image=None, from_logits=True,
           class_weights=None):
    return Dice(smooth=smooth, per_image=per_image_or(per_image, False),
                from_logits=from_logits, class_weights=class_weights)
