"""LSEP: log-sum-exp pairwise ranking loss for multilabel classification.

Li, Song, Luo, "Improving Pairwise Ranking for Multi-label Image
Classification", CVPR 2017 (arXiv 1704.03135).
"""

import keras

from kaggle_tf.losses import functional
from kaggle_tf.losses.base import KaggleLoss
from kaggle_tf.losses.registry import register_loss


@keras.saving.register_keras_serializable(package="kaggle_tf")
class LSEP(KaggleLoss):
    """Log-sum-exp pairwise ranking loss for `(batch, labels)` targets.

    `L = log(1 + sum_{v in Y+} sum_{u in Y-} exp(f_u - f_v))`: every
    negative label's score `f_u` is pushed below every positive's `f_v`.
    A sample with no positive or no negative label has loss 0. The loss
    ranks labels against each other, so it takes no class weights.

    Args:
        from_logits: whether `y_pred` holds scores/logits (probabilities
            are turned into logits, which keeps the ranking). Defaults to
            `True`.
        reduction, name, dtype: see `keras.losses.Loss`.

    Example:

    >>> loss = LSEP()
    >>> # one pair (u=1, v=0): log(1 + exp(1 - 3))
    >>> round(float(loss([[1.0, 0.0]], [[3.0, 1.0]])), 4)
    0.1269
    """

    def __init__(self, from_logits=True, reduction="sum_over_batch_size",
                 name=None, dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction,
                         name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        return functional.lsep_loss(y_true, y_pred,
                                    from_logits=self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.pop("class_weights")
        return config


@register_loss("lsep")
def _build(from_logits=True, class_weights=None):
    if class_weights is not None:
        raise ValueError("`loss.class_weights` is not used by lsep (a "
                         f"ranking loss). Received: {class_weights}")
    return LSEP(from_logits=from_logits)
