"""Binary cross-entropy with per-class weights."""

import keras

from kaggle_tf.losses import functional
from kaggle_tf.losses.base import KaggleLoss
from kaggle_tf.losses.registry import register_loss


@keras.saving.register_keras_serializable(package="kaggle_tf")
class BCE(KaggleLoss):
    """Binary cross-entropy, averaged per class, then class-weighted.

    `L = sum_c w_c mean_pixels(-[y log p + (1 - y) log(1 - p)]) / sum_c w_c`
    for binary and multilabel targets `(batch, ..., classes)`.

    Args:
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        class_weights: per-class weights. Defaults to `None` (equal).
        reduction, name, dtype: see `keras.losses.Loss`.

    Example:

    >>> loss = BCE()
    >>> round(float(loss([[1.0, 0.0]], [[0.0, 0.0]])), 4)  # -log(0.5)
    0.6931
    """

    def call(self, y_true, y_pred):
        return functional.binary_crossentropy(
            y_true, y_pred, from_logits=self.from_logits,
            class_weights=self.class_weights)


@register_loss("bce")
def _build(from_logits=True, class_weights=None):
    return BCE(from_logits=from_logits, class_weights=class_weights)
