"""Label-weighted log loss (RSNA ICH) and Keras' categorical one."""

import keras

from kaggle_tf.losses import functional
from kaggle_tf.losses.base import KaggleLoss
from kaggle_tf.losses.registry import register_loss

RSNA_ICH_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 2.0)


@keras.saving.register_keras_serializable(package="kaggle_tf")
class WeightedLogLoss(KaggleLoss):
    """Binary log loss with per-label weights normalised by their sum.

    `L = -sum_j w_j [y_j log p_j + (1 - y_j) log(1 - p_j)] / sum_j w_j`,
    the RSNA ICH metric per image with the default weights (labels
    epidural, intraparenchymal, intraventricular, subarachnoid, subdural,
    any). Inputs `(batch, ..., labels)`; with middle axes (slices of a
    series) the loss is per slice, so a `sample_weight` `(batch, slices)`
    masks padded slices.

    Args:
        weights: one weight per label. Defaults to `[1, 1, 1, 1, 1, 2]`.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        reduction, name, dtype: see `keras.losses.Loss`.

    Example:

    >>> loss = WeightedLogLoss(from_logits=False)
    >>> round(float(loss([[0.0] * 6], [[0.1] * 6])), 5)  # -log(0.9)
    0.10536
    """

    def __init__(self, weights=RSNA_ICH_WEIGHTS, from_logits=True,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        weights = functional.check_class_weights(weights, name="weights")
        if weights is None:
            raise ValueError("`weights` must be a list of non-negative "
                             "floats. Received: weights=None")
        super().__init__(from_logits=from_logits, class_weights=weights,
                         reduction=reduction, name=name, dtype=dtype)
        self.weights = weights

    def call(self, y_true, y_pred):
        return functional.weighted_log_loss(
            y_true, y_pred, weights=self.weights,
            from_logits=self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.pop("class_weights")
        config.update(weights=self.weights)
        return config


@register_loss("weighted_log_loss")
def _build(class_weights=None, from_logits=True):
    return WeightedLogLoss(
        weights=RSNA_ICH_WEIGHTS if class_weights is None else class_weights,
        from_logits=from_logits)


@register_loss("categorical_crossentropy")
def _build_categorical(from_logits=True, class_weights=None):
    if class_weights is not None:
        raise ValueError("`loss.class_weights` is not supported by "
                         "categorical_crossentropy. "
                         f"Received: {class_weights}")
    return keras.losses.CategoricalCrossentropy(from_logits=from_logits)
