"""Keras metrics that accumulate the Kaggle metrics over an epoch.

Each metric keeps sums in state variables (per-pair Dice sums, TP/FP/FN
per class, weighted log-loss sums) and computes the score from them in
`result()`, so an epoch's value equals the numpy function of
`metrics.kaggle` on the whole set, not a mean of per-batch scores. They use
`keras.ops` only and run inside a `jit_compile=True` train or test step.
State is float32 (exact counts up to 2**24 pixels per image and class).
"""

from typing import Sequence
from typing import Union

import keras
from keras import ops

from kaggle_tf.metrics import kaggle

_FLOAT = "float32"
_LOG_EPS = float(kaggle.LOG_LOSS_EPS)


def _check_threshold(threshold):
    values = threshold if isinstance(threshold, (list, tuple)) else [
        threshold]
    try:
        values = [float(t) for t in values]
    except (TypeError, ValueError):
        raise ValueError("`threshold` must be a float or a list of floats "
                         f"in [0, 1]. Received: threshold={threshold!r}"
                         ) from None
    if not values or any(not 0.0 <= t <= 1.0 for t in values):
        raise ValueError("`threshold` must be in [0, 1]. "
                         f"Received: threshold={threshold!r}")
    return values[0] if not isinstance(threshold, (list, tuple)) else values


def _no_sample_weight(metric, sample_weight):
    if sample_weight is not None:
        raise ValueError(f"{type(metric).__name__} scores as Kaggle does "
                         "and takes no sample weights. Received: "
                         "sample_weight")


class _ThresholdMetric(keras.metrics.Metric):
    """Shared `threshold` / `from_logits` handling."""

    def __init__(self, threshold=0.5, from_logits=True, name=None,
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = _check_threshold(threshold)
        if not isinstance(from_logits, bool):
            raise ValueError("`from_logits` must be True or False. "
                             f"Received: from_logits={from_logits!r}")
        self.from_logits = from_logits

    def _binarize(self, y_true, y_pred):
        y_true = ops.cast(y_true, _FLOAT)
        y_pred = ops.cast(y_pred, _FLOAT)
        if tuple(y_true.shape) != tuple(y_pred.shape) and None not in (
                tuple(y_true.shape) + tuple(y_pred.shape)):
            raise ValueError(
                f"{type(self).__name__}: `y_true` and `y_pred` must have "
                f"the same shape. Received: y_true.shape={y_true.shape}, "
                f"y_pred.shape={y_pred.shape}")
        probs = ops.sigmoid(y_pred) if self.from_logits else y_pred
        threshold = ops.convert_to_tensor(self.threshold, dtype=_FLOAT)
        if isinstance(self.threshold, list):
            classes = y_pred.shape[-1]
            if classes is not None and classes != len(self.threshold):
                raise ValueError(
                    f"`threshold` has {len(self.threshold)} values but "
                    f"y_pred has {classes} classes. "
                    f"Received: threshold={self.threshold}")
        pred = ops.cast(probs > threshold, _FLOAT)
        truth = ops.cast(y_true >= 0.5, _FLOAT)
        return truth, pred

    def get_config(self):
        config = super().get_config()
        config.update(threshold=self.threshold, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="kaggle_tf")
class MeanDice(_ThresholdMetric):
    """Severstal's mean Dice over (image, class) pairs, over the epoch.

    Binarizes `p > threshold`, then per (image, class) pair
    `Dice = 2 |X n Y| / (|X| + |Y|)` (1 when both are empty); accumulates
    the sum of pair Dice and the number of pairs. `result()` equals
    `kaggle.mean_dice` on all images seen since the last reset.

    Args:
        threshold: probability threshold, one float or one per class.
            Defaults to `0.5`.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        name: Defaults to `"mean_dice"`.
        dtype: Defaults to `None` (float32).

    Inputs are `(batch, height, width, classes)`.

    Example:

    >>> m = MeanDice(from_logits=False)
    >>> y = np.zeros((1, 2, 2, 2)); y[0, 0, :, 0] = 1
    >>> m.update_state(y, y)
    >>> float(m.result())
    1.0
    """

    _per_class = True

    def __init__(self, threshold: Union[float, Sequence[float]] = 0.5,
                 from_logits=True, name="mean_dice", dtype=None):
        super().__init__(threshold=threshold, from_logits=from_logits,
                         name=name, dtype=dtype)
        self.dice_sum = self.add_variable(shape=(), initializer="zeros",
                                          dtype=_FLOAT, name="dice_sum")
        self.pairs = self.add_variable(shape=(), initializer="zeros",
                                       dtype=_FLOAT, name="pairs")

    def update_state(self, y_true, y_pred, sample_weight=None):
        _no_sample_weight(self, sample_weight)
        truth, pred = self._binarize(y_true, y_pred)
        rank = len(pred.shape)
        if self._per_class:
            if rank != 4:
                raise ValueError(
                    f"{type(self).__name__} takes (batch, height, width, "
                    f"classes). Received: y_pred.shape={pred.shape}")
            axes = (1, 2)
        else:
            axes = tuple(range(1, rank))
        inter = ops.sum(truth * pred, axis=axes)
        size = ops.sum(truth, axis=axes) + ops.sum(pred, axis=axes)
        dice = ops.where(size > 0, 2.0 * inter / ops.maximum(size, 1.0),
                         ops.ones_like(size))
        self.dice_sum.assign_add(ops.sum(dice))
        self.pairs.assign_add(ops.cast(ops.size(dice), _FLOAT))

    def result(self):
        return ops.divide_no_nan(self.dice_sum, self.pairs)


@keras.saving.register_keras_serializable(package="kaggle_tf")
class SiimDice(MeanDice):
    """SIIM-ACR's mean Dice per image, over the epoch.

    One Dice per image over all its pixels (1 when truth and prediction
    are both empty); `result()` equals `kaggle.siim_dice` on every image
    seen. Inputs `(batch, height, width, 1)` (or `(batch, height, width)`).

    Args:
        threshold: probability threshold. Defaults to `0.5`.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        name: Defaults to `"siim_dice"`.
        dtype: Defaults to `None` (float32).

    Example:

    >>> m = SiimDice(from_logits=False)
    >>> m.update_state(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 1)))
    >>> float(m.result())  # empty-empty images score 1
    1.0
    """

    _per_class = False

    def __init__(self, threshold=0.5, from_logits=True, name="siim_dice",
                 dtype=None):
        super().__init__(threshold=threshold, from_logits=from_logits,
                         name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="kaggle_tf")
class F1Macro(_ThresholdMetric):
    """HPA's macro F1 from TP/FP/FN per class accumulated over the epoch.

    `F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k)` (0 when 0/0), averaged over
    the `num_classes` classes; equals `kaggle.f1_macro` on the whole set.

    Args:
        num_classes: number of labels K. Defaults to `28`.
        threshold: probability threshold, one float or one per class.
            Defaults to `0.5`.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        name: Defaults to `"f1_macro"`.
        dtype: Defaults to `None` (float32).

    Inputs are `(batch, num_classes)`.

    Example:

    >>> m = F1Macro(num_classes=2, from_logits=False)
    >>> m.update_state([[1, 0], [0, 1]], [[0.9, 0.2], [0.4, 0.3]])
    >>> float(m.result())  # F1 1 for class 0, 0 for class 1
    0.5
    """

    def __init__(self, num_classes=28,
                 threshold: Union[float, Sequence[float]] = 0.5,
                 from_logits=True, name="f1_macro", dtype=None):
        super().__init__(threshold=threshold, from_logits=from_logits,
                         name=name, dtype=dtype)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError("`num_classes` must be a positive int. "
                             f"Received: num_classes={num_classes!r}")
        self.num_classes = num_classes
        shape = (num_classes,)
        self.tp = self.add_variable(shape=shape, initializer="zeros",
                                    dtype=_FLOAT, name="tp")
        self.fp = self.add_variable(shape=shape, initializer="zeros",
                                    dtype=_FLOAT, name="fp")
        self.fn = self.add_variable(shape=shape, initializer="zeros",
                                    dtype=_FLOAT, name="fn")

    def update_state(self, y_true, y_pred, sample_weight=None):
        _no_sample_weight(self, sample_weight)
        truth, pred = self._binarize(y_true, y_pred)
        if pred.shape[-1] is not None and pred.shape[-1] != self.num_classes:
            raise ValueError(
                f"F1Macro(num_classes={self.num_classes}) got "
                f"{pred.shape[-1]} classes. Received: "
                f"y_pred.shape={pred.shape}")
        truth = ops.reshape(truth, (-1, self.num_classes))
        pred = ops.reshape(pred, (-1, self.num_classes))
        self.tp.assign_add(ops.sum(truth * pred, axis=0))
        self.fp.assign_add(ops.sum((1.0 - truth) * pred, axis=0))
        self.fn.assign_add(ops.sum(truth * (1.0 - pred), axis=0))

    def result(self):
        denominator = 2.0 * self.tp + self.fp + self.fn
        return ops.mean(ops.divide_no_nan(2.0 * self.tp, denominator))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes)
        return config


def _log_probs(y_pred, from_logits):
    """(log p, log(1 - p)), each clipped at log(1e-15) as the metric does."""
    floor = float(-34.538776394910684)  # log(1e-15)
    if from_logits:
        log_p = -ops.softplus(-y_pred)
        log_q = -ops.softplus(y_pred)
    else:
        log_p = ops.log(ops.maximum(y_pred, _LOG_EPS))
        log_q = ops.log(ops.maximum(1.0 - y_pred, _LOG_EPS))
    return ops.maximum(log_p, floor), ops.maximum(log_q, floor)


@keras.saving.register_keras_serializable(package="kaggle_tf")
class RsnaIchLogLoss(keras.metrics.Metric):
    """RSNA ICH's weighted log loss, accumulated over the epoch.

    Per image `-sum_j w_j [y_j log p_j + (1 - y_j) log(1 - p_j)] /
    sum_j w_j` with `w = (1, 1, 1, 1, 1, 2)` and `p` clipped to
    `[1e-15, 1 - 1e-15]`; `result()` is the mean over images, equal to
    `kaggle.rsna_ich_log_loss` on the whole set. Inputs `(batch, 6)` or
    `(batch, slices, 6)` (every slice counts as an image). A
    `sample_weight` of shape `(batch,)` or `(batch, slices)` weights the
    images; a 0/1 padding mask leaves padded slices out.

    Args:
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        weights: label weights. Defaults to `(1, 1, 1, 1, 1, 2)`.
        name: Defaults to `"rsna_ich_log_loss"`.
        dtype: Defaults to `None` (float32).

    Example:

    >>> m = RsnaIchLogLoss(from_logits=False)
    >>> m.update_state(np.zeros((1, 6)), np.full((1, 6), 0.1))
    >>> round(float(m.result()), 5)  # -log(0.9)
    0.10536
    """

    def __init__(self, from_logits=True, weights=kaggle.ICH_WEIGHTS,
                 name="rsna_ich_log_loss", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if not isinstance(from_logits, bool):
            raise ValueError("`from_logits` must be True or False. "
                             f"Received: from_logits={from_logits!r}")
        weights = [float(w) for w in weights]
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("`weights` must be non-negative with a "
                             f"positive sum. Received: weights={weights}")
        self.from_logits = from_logits
        self.weights = weights
        self.total = self.add_variable(shape=(), initializer="zeros",
                                       dtype=_FLOAT, name="total")
        self.count = self.add_variable(shape=(), initializer="zeros",
                                       dtype=_FLOAT, name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, _FLOAT)
        y_pred = ops.cast(y_pred, _FLOAT)
        log_p, log_q = _log_probs(y_pred, self.from_logits)
        loss = -(y_true * log_p + (1.0 - y_true) * log_q)
        w = ops.convert_to_tensor(self.weights, dtype=_FLOAT)
        per_image = ops.sum(loss * w, axis=-1) / ops.sum(w)
        if sample_weight is None:
            image_w = ops.ones_like(per_image)
        else:
            image_w = ops.cast(sample_weight, _FLOAT)
            image_w = ops.reshape(image_w, ops.shape(image_w) + (1,) * (
                len(per_image.shape) - len(image_w.shape)))
            image_w = ops.broadcast_to(image_w, ops.shape(per_image))
        self.total.assign_add(ops.sum(per_image * image_w))
        self.count.assign_add(ops.sum(image_w))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits, weights=self.weights)
        return config


@keras.saving.register_keras_serializable(package="kaggle_tf")
class RsnaLumbarLogLoss(keras.metrics.Metric):
    """RSNA 2024 lumbar spine's score, accumulated over the epoch.

    Keeps, for each of the four terms (spinal, foraminal, subarticular,
    any_severe_spinal), the weighted loss sum and the weight sum; each term
    is a weighted mean, so `result()` equals `kaggle.rsna_lumbar_log_loss`
    on the whole set (see it for the definition). Rows with a missing label
    count nowhere.

    Args:
        from_logits: whether `y_pred` holds logits (softmax over the 3
            severities). Defaults to `True`.
        any_severe_weight: weight of the any-severe term. Defaults to `1.0`.
        name: Defaults to `"rsna_lumbar_log_loss"`.
        dtype: Defaults to `None` (float32).

    Inputs: `y_true` `(batch, 25)` severity ids with -1 = missing, or
    `(batch, 25, 3)` one-hot with all-zero rows = missing; `y_pred`
    `(batch, 25, 3)` or `(batch, 75)`.

    Example:

    >>> m = RsnaLumbarLogLoss(from_logits=False)
    >>> m.update_state(np.zeros((1, 25)), np.tile([0.8, 0.1, 0.1], (1, 25, 1)))
    >>> round(float(m.result()), 4)
    0.1937
    """

    def __init__(self, from_logits=True, any_severe_weight=1.0,
                 name="rsna_lumbar_log_loss", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if not isinstance(from_logits, bool):
            raise ValueError("`from_logits` must be True or False. "
                             f"Received: from_logits={from_logits!r}")
        if any_severe_weight < 0:
            raise ValueError("`any_severe_weight` must be >= 0. Received: "
                             f"any_severe_weight={any_severe_weight}")
        self.from_logits = from_logits
        self.any_severe_weight = float(any_severe_weight)
        self.loss_sums = self.add_variable(shape=(4,), initializer="zeros",
                                           dtype=_FLOAT, name="loss_sums")
        self.weight_sums = self.add_variable(
            shape=(4,), initializer="zeros", dtype=_FLOAT,
            name="weight_sums")

    @staticmethod
    def _labels(y_true):
        """-> (one-hot (B, 25, 3), valid (B, 25))."""
        y_true = ops.cast(y_true, _FLOAT)
        if len(y_true.shape) == 3:
            valid = ops.sum(y_true, axis=-1) > 0
            return y_true, valid
        if len(y_true.shape) != 2:
            raise ValueError(
                "RsnaLumbarLogLoss: `y_true` must be (batch, 25) or "
                f"(batch, 25, 3). Received: y_true.shape={y_true.shape}")
        valid = y_true >= 0
        ids = ops.cast(ops.maximum(y_true, 0.0), "int32")
        onehot = ops.one_hot(ids, 3, dtype=_FLOAT)
        return onehot * ops.cast(valid, _FLOAT)[..., None], valid

    def update_state(self, y_true, y_pred, sample_weight=None):
        _no_sample_weight(self, sample_weight)
        onehot, valid = self._labels(y_true)
        y_pred = ops.reshape(ops.cast(y_pred, _FLOAT), (-1, 25, 3))
        raw = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        p = ops.clip(raw, _LOG_EPS, 1.0 - _LOG_EPS)
        p = p / ops.sum(p, axis=-1, keepdims=True)
        row_loss = -ops.sum(onehot * ops.log(p), axis=-1)
        severity_w = ops.convert_to_tensor(kaggle.LUMBAR_WEIGHTS, _FLOAT)
        row_w = ops.sum(onehot * severity_w, axis=-1)  # 0 when missing
        loss_sums, weight_sums = [], []
        for cols in kaggle.LUMBAR_GROUPS.values():
            lo, hi = cols[0], cols[-1] + 1
            loss_sums.append(ops.sum(row_w[:, lo:hi] * row_loss[:, lo:hi]))
            weight_sums.append(ops.sum(row_w[:, lo:hi]))
        # any_severe_spinal, per study over its labelled spinal rows.
        spinal = kaggle.LUMBAR_GROUPS["spinal"]
        lo, hi = spinal[0], spinal[-1] + 1
        spinal_valid = valid[:, lo:hi]
        has_rows = ops.any(spinal_valid, axis=-1)
        label = ops.cast(ops.max(onehot[:, lo:hi, 2], axis=-1), _FLOAT)
        severe = ops.where(spinal_valid, raw[:, lo:hi, 2],
                           ops.zeros_like(raw[:, lo:hi, 2]))
        log_p, log_q = _log_probs(ops.max(severe, axis=-1), False)
        weight = ops.max(row_w[:, lo:hi], axis=-1)
        loss = -(label * log_p + (1.0 - label) * log_q)
        loss = ops.where(has_rows, loss, ops.zeros_like(loss))
        loss_sums.append(ops.sum(weight * loss))
        weight_sums.append(ops.sum(weight))
        self.loss_sums.assign_add(ops.stack(loss_sums))
        self.weight_sums.assign_add(ops.stack(weight_sums))

    def result(self):
        term_w = ops.convert_to_tensor(
            [1.0, 1.0, 1.0, self.any_severe_weight], dtype=_FLOAT)
        present = ops.cast(self.weight_sums > 0, _FLOAT) * term_w
        terms = ops.divide_no_nan(self.loss_sums, self.weight_sums)
        return ops.divide_no_nan(ops.sum(terms * present), ops.sum(present))

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits,
                      any_severe_weight=self.any_severe_weight)
        return config
