"""Weighted sum of BCE, soft Dice and focal (SIIM 1st place)."""

import keras

from kaggle_tf.losses import functional
from kaggle_tf.losses.base import KaggleLoss
from kaggle_tf.losses.registry import per_image_or
from kaggle_tf.losses.registry import register_loss


@keras.saving.register_keras_serializable(package="kaggle_tf")
class Combo(KaggleLoss):
    """`bce * BCE + dice * Dice + focal * Focal`.

    The SIIM winner trained in stages with weights (3, 1, 4), (1, 1, 1) and
    (2, 1, 2). Each term is the loss of the same name in this package with
    the shared `from_logits`, `class_weights`, focal `gamma`/`alpha` and
    Dice `smooth`/`per_image`; a term with weight 0 is skipped.

    Args:
        bce: weight of the BCE term. Defaults to `1.0`.
        dice: weight of the Dice term. Defaults to `1.0`.
        focal: weight of the focal term. Defaults to `0.0`.
        gamma: focal gamma. Defaults to `2.0`.
        alpha: focal alpha, or None. Defaults to `None`.
        smooth: Dice smoothing. Defaults to `1.0`.
        per_image: Dice per image. Defaults to `False`.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        class_weights: per-class weights. Defaults to `None`.
        reduction, name, dtype: see `keras.losses.Loss`.

    Example:

    >>> loss = Combo(bce=3.0, dice=1.0, focal=4.0)
    >>> y_true = [[[1.0], [0.0]]]
    >>> y_pred = [[[0.0], [0.0]]]  # p = 0.5 everywhere
    >>> # 3 log 2 + (1 - (2 * 0.5 + 1) / (2 + 1)) + 4 * 0.25 log 2
    >>> round(float(loss(y_true, y_pred)), 4)
    3.1059
    """

    def __init__(self, bce=1.0, dice=1.0, focal=0.0, gamma=2.0, alpha=None,
                 smooth=1.0, per_image=False, from_logits=True,
                 class_weights=None, reduction="sum_over_batch_size",
                 name=None, dtype=None):
        super().__init__(from_logits=from_logits,
                         class_weights=class_weights, reduction=reduction,
                         name=name, dtype=dtype)
        for key, value in (("bce", bce), ("dice", dice), ("focal", focal)):
            if value < 0:
                raise ValueError(
                    f"`{key}` must be >= 0. Received: {key}={value}")
        if bce + dice + focal <= 0:
            raise ValueError("At least one of `bce`, `dice`, `focal` must "
                             f"be > 0. Received: ({bce}, {dice}, {focal})")
        if gamma < 0:
            raise ValueError(f"`gamma` must be >= 0. Received: gamma={gamma}")
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError("`alpha` must be in [0, 1] or None. "
                             f"Received: alpha={alpha}")
        if smooth < 0:
            raise ValueError(
                f"`smooth` must be >= 0. Received: smooth={smooth}")
        self.bce, self.dice, self.focal = float(bce), float(dice), float(focal)
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)
        self.smooth = float(smooth)
        self.per_image = bool(per_image)

    def call(self, y_true, y_pred):
        return functional.combo_loss(
            y_true, y_pred, bce=self.bce, dice=self.dice, focal=self.focal,
            gamma=self.gamma, alpha=self.alpha, smooth=self.smooth,
            per_image=self.per_image, from_logits=self.from_logits,
            class_weights=self.class_weights)

    def get_config(self):
        config = super().get_config()
        config.update(bce=self.bce, dice=self.dice, focal=self.focal,
                      gamma=self.gamma, alpha=self.alpha, smooth=self.smooth,
                      per_image=self.per_image)
        return config


@register_loss("combo")
def _build(weights=(1.0, 1.0, 0.0), class_weights=None, from_logits=True,
           gamma=2.0, alpha=None, smooth=1.0, per_image=None):
    weights = list(weights or [])
    if len(weights) != 3:
        raise ValueError("`loss.weights` needs 3 values (bce, dice, focal) "
                         f"for combo. Received: {weights}")
    return Combo(bce=weights[0], dice=weights[1], focal=weights[2],
                 gamma=gamma, alpha=alpha, smooth=smooth,
                 per_image=per_image_or(per_image, False),
                 from_logits=from_logits, class_weights=class_weights)
