"""RSNA 2024 lumbar spine: severity-weighted cross-entropy over 25 rows.

Each study has 25 rows (5 conditions x 5 levels, in train.csv column order,
`kaggle_tf.metrics.kaggle.LUMBAR_COLUMNS`) with a severity normal/mild,
moderate or severe. The competition weighs a row 1, 2 or 4 by its true
severity and adds an any-severe-spinal term; this loss trains for that.
"""

from typing import Sequence

import keras
from keras import ops

from kaggle_tf.losses import constants
from kaggle_tf.losses import functional
from kaggle_tf.losses.base import KaggleLoss
from kaggle_tf.losses.registry import register_loss
from kaggle_tf.metrics.kaggle import LUMBAR_GROUPS
from kaggle_tf.metrics.kaggle import LUMBAR_WEIGHTS

_FLOAT = "float32"
ROWS = 25
SEVERITIES = 3


def _lumbar_targets(y_true):
    """(batch, 25) ids or one-hot -> (one-hot, valid).

    Ids outside 0..2 (-1, or 255 from a uint8 -1) are missing labels.
    """
    y_true = ops.cast(y_true, _FLOAT)
    if len(y_true.shape) == 3:
        return y_true, ops.sum(y_true, axis=-1) > 0
    if len(y_true.shape) != 2:
        raise ValueError(
            "`y_true` must be (batch, 25) severity ids or (batch, 25, 3) "
            f"one-hot. Received: y_true.shape={tuple(y_true.shape)}")
    valid = ops.logical_and(y_true >= 0, y_true < SEVERITIES)
    ids = ops.cast(ops.where(valid, y_true, 0.0), "int32")
    onehot = ops.one_hot(ids, SEVERITIES, dtype=_FLOAT)
    return onehot * ops.cast(valid, _FLOAT)[..., None], valid


def lumbar_log_loss(y_true, y_pred, severity_weights=LUMBAR_WEIGHTS,
                    any_severe_weight=0.0, from_logits=True):
    """Severity-weighted softmax cross-entropy over a batch of studies.

    With `w_r` the weight of row `r`'s true severity (`severity_weights`,
    0 for a missing label) and `p_r` its softmax over the 3 severities,

    `L = sum_r w_r (-log p_r[y_r]) / sum_r w_r + a * L_any`,

    sums over every labelled row of the batch (the metric's weighted log
    loss, pooled over the three condition groups; PyTorch's
    `CrossEntropyLoss(weight=[1, 2, 4])` gives the same value). `L_any` is
    the any-severe-spinal term: per study with a labelled spinal row, label
    `max_l 1[y_l = severe]`, prediction `max_l p_l[severe]` over its
    labelled spinal rows, weight `max_l w_l`; a binary log loss averaged
    with those weights. A batch without labels gives 0.

    Args:
        y_true: `(batch, 25, 3)` one-hot with all-zero rows for missing
            labels, or `(batch, 25)` severity ids 0/1/2 with -1 = missing.
        y_pred: `(batch, 25, 3)` (or `(batch, 75)`) logits, or
            probabilities when `from_logits=False` (clipped and
            renormalised per row, as the metric does).
        severity_weights: weights of normal/mild, moderate, severe.
            Defaults to `(1, 2, 4)`.
        any_severe_weight: weight `a` of the any-severe-spinal term.
            Defaults to `0.0` (no term).
        from_logits: whether `y_pred` holds logits. Defaults to `True`.

    Returns:
        A float32 scalar: the loss of the batch.

    Example:

    >>> y_true = [[0] * 24 + [2]]            # one severe row, 24 normal
    >>> y_pred = [[[0.0, 0.0, 0.0]] * 25]    # uniform: -log p = log 3
    >>> round(float(lumbar_log_loss(y_true, y_pred)), 4)
    1.0986
    """
    onehot, valid = _lumbar_targets(y_true)
    y_pred = ops.reshape(ops.cast(y_pred, _FLOAT), (-1, ROWS, SEVERITIES))
    if from_logits:
        log_p = ops.log_softmax(y_pred, axis=-1)
    else:
        p = ops.clip(y_pred, constants.EPSILON, 1.0 - constants.EPSILON)
        p = p / ops.sum(p, axis=-1, keepdims=True)
        log_p = ops.log(p)
    severity_w = ops.convert_to_tensor(list(severity_weights), _FLOAT)
    row_w = ops.sum(onehot * severity_w, axis=-1)  # 0 when missing
    row_loss = -ops.sum(onehot * log_p, axis=-1)
    loss = ops.divide_no_nan(ops.sum(row_w * row_loss), ops.sum(row_w))
    if not any_severe_weight:
        return loss
    spinal = LUMBAR_GROUPS["spinal"]
    lo, hi = spinal[0], spinal[-1] + 1
    spinal_valid = valid[:, lo:hi]
    label = ops.max(onehot[:, lo:hi, 2], axis=-1)
    severe = ops.where(spinal_valid, ops.exp(log_p[:, lo:hi, 2]), 0.0)
    severe = ops.clip(ops.max(severe, axis=-1), constants.EPSILON,
                      1.0 - constants.EPSILON)
    bce = -(label * ops.log(severe) + (1.0 - label) * ops.log1p(-severe))
    weight = ops.max(row_w[:, lo:hi], axis=-1)  # 0 without spinal labels
    any_loss = ops.divide_no_nan(ops.sum(weight * bce), ops.sum(weight))
    return loss + any_severe_weight * any_loss


@keras.saving.register_keras_serializable(package="kaggle_tf")
class LumbarLogLoss(KaggleLoss):
    """RSNA 2024 lumbar spine's severity-weighted log loss, for training.

    `L = sum_r w_r CE_r / sum_r w_r + a * L_any` over the labelled rows of
    the batch, `w_r` = 1, 2, 4 by true severity; see `lumbar_log_loss`.
    The value is one scalar per batch (normalised by the batch's weight
    sum), so `sample_weight` is not supported: missing labels are marked
    in `y_true`.

    Args:
        severity_weights: weights of normal/mild, moderate, severe.
            Defaults to `[1, 2, 4]`.
        any_severe_weight: weight of the any-severe-spinal term. Defaults
            to `0.0`.
        from_logits: whether `y_pred` holds logits (softmax over the 3
            severities). Defaults to `True`.
        reduction, name, dtype: see `keras.losses.Loss`.

    Example:

    >>> loss = LumbarLogLoss(any_severe_weight=1.0)
    >>> y_true = np.zeros((2, 25, 3)); y_true[..., 0] = 1   # all normal
    >>> round(float(loss(y_true, np.zeros((2, 25, 3)))), 4)  # log 3 + log 1.5
    1.5041
    """

    def __init__(self, severity_weights: Sequence[float] = LUMBAR_WEIGHTS,
                 any_severe_weight=0.0, from_logits=True,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        weights = functional.check_class_weights(severity_weights,
                                                 name="severity_weights")
        if weights is None or len(weights) != SEVERITIES:
            raise ValueError("`severity_weights` needs 3 values (normal/"
                             "mild, moderate, severe). Received: "
                             f"severity_weights={severity_weights!r}")
        if not any_severe_weight >= 0:
            raise ValueError("`any_severe_weight` must be >= 0. Received: "
                             f"any_severe_weight={any_severe_weight!r}")
        super().__init__(from_logits=from_logits, reduction=reduction,
                         name=name, dtype=dtype)
        self.severity_weights = weights
        self.any_severe_weight = float(any_severe_weight)

    def call(self, y_true, y_pred):
        return lumbar_log_loss(
            y_true, y_pred, severity_weights=self.severity_weights,
            any_severe_weight=self.any_severe_weight,
            from_logits=self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.pop("class_weights")
        config.update(severity_weights=self.severity_weights,
                      any_severe_weight=self.any_severe_weight)
        return config


@register_loss("lumbar_log_loss")
def _build(class_weights=None, any_severe_weight=0.0, from_logits=True):
    return LumbarLogLoss(
        severity_weights=(LUMBAR_WEIGHTS if class_weights is None
                          else class_weights),
        any_severe_weight=any_severe_weight, from_logits=from_logits)
