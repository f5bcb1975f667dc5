"""Sigmoid focal loss (Lin et al. 2017)."""

import keras

from kaggle_tf.losses import functional
from kaggle_tf.losses.base import KaggleLoss
from kaggle_tf.losses.registry import register_loss


@keras.saving.register_keras_serializable(package="kaggle_tf")
class Focal(KaggleLoss):
    """Sigmoid focal loss for binary and multilabel targets.

    `FL = -alpha_t (1 - p_t)^gamma log(p_t)`, `p_t = p y + (1 - p)(1 - y)`,
    `alpha_t = alpha y + (1 - alpha)(1 - y)` (omitted when `alpha` is None),
    averaged per class over pixels, then class-weighted.

    Args:
        gamma: focusing parameter; 0 gives BCE. Defaults to `2.0`.
        alpha: weight of positives in [0, 1], or None. Defaults to `None`.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        class_weights: per-class weights. Defaults to `None`.
        reduction, name, dtype: see `keras.losses.Loss`.

    Example:

    >>> loss = Focal(gamma=2.0)
    >>> round(float(loss([[1.0]], [[0.0]])), 4)  # 0.5**2 * log(2)
    0.1733
    """

    def __init__(self, gamma=2.0, alpha=None, from_logits=True,
                 class_weights=None, reduction="sum_over_batch_size",
                 name=None, dtype=None):
        super().__init__(from_logits=from_logits,
                         class_weights=class_weights, reduction=reduction,
                         name=name, dtype=dtype)
        if gamma < 0:
            raise ValueError(f"`gamma` must be >= 0. Received: gamma={gamma}")
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError("`alpha` must be in [0, 1] or None. "
                             f"Received: alpha={alpha}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)

    def call(self, y_true, y_pred):
        return functional.focal_loss(
            y_true, y_pred, gamma=self.gamma, alpha=self.alpha,
            from_logits=self.from_logits, class_weights=self.class_weights)

    def get_config(self):
        config = super().get_config()
        config.update(gamma=self.gamma, alpha=self.alpha)
        return config


@register_loss("focal")
def _build(gamma=2.0, alpha=None, from_logits=True, class_weights=None):
    return Focal(gamma=gamma, alpha=alpha, from_logits=from_logits,
                 class_weights=class_weights)
