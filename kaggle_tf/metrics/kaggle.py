"""The competitions' metrics in numpy, exactly as Kaggle scores them.

These are the reference: out-of-fold scoring and the streaming Keras
metrics (`metrics.streaming`) are checked against them. Each function
scores a whole set at once; none of them averages per batch.

| task        | function               | input                      | best |
|-------------|------------------------|----------------------------|------|
| steel       | `mean_dice`            | (N, H, W, 4) binary        | max  |
| siim        | `siim_dice`            | (N, H, W) binary           | max  |
| protein     | `f1_macro`             | (N, 28) binary             | max  |
| rsna_ich    | `rsna_ich_log_loss`    | (N, 6) probabilities       | min  |
| rsna_lumbar | `rsna_lumbar_log_loss` | (N, 25) ids, (N, 25, 3)    | min  |

Which metric a competition uses, and how its out-of-fold probabilities are
binarized for it, is the competition plugin's (`kaggle_tf.tasks`).
"""

import numpy as np

from tfrecords_tools.competitions import rsna_ich
from tfrecords_tools.competitions import rsna_lumbar

ICH_SUBTYPES = rsna_ich.CLASSES
ICH_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 2.0)

LUMBAR_CONDITIONS = rsna_lumbar.CONDITIONS
LUMBAR_LEVELS = rsna_lumbar.LEVELS
# The 25 columns of train.csv after study_id, in order.
LUMBAR_COLUMNS = rsna_lumbar.CLASSES
LUMBAR_SEVERITIES = ("normal_mild", "moderate", "severe")
# Sample weight of a row by its true severity.
LUMBAR_WEIGHTS = (1.0, 2.0, 4.0)
# The metric's condition groups: column indices into LUMBAR_COLUMNS.
LUMBAR_GROUPS = {
    "spinal": tuple(range(0, 5)),
    "foraminal": tuple(range(5, 15)),
    "subarticular": tuple(range(15, 25)),
}

LOG_LOSS_EPS = 1e-15

_CHUNK = 64  # images per step when counting pixels


# --- checks ------------------------------------------------------------------


def _binary(x, name):
    x = np.asarray(x)
    if x.dtype == bool:
        return x
    if x.size and not np.isin(x, (0, 1)).all():
        raise ValueError(
            f"`{name}` must be binary (0/1); threshold probabilities first "
            f"(see `score`). Received: values in [{x.min()}, {x.max()}]")
    return x.astype(bool)


def _same_shape(truth, pred, ndim, layout, pred_name="pred"):
    if truth.ndim != ndim or truth.shape != pred.shape:
        raise ValueError(
            f"`truth` and `{pred_name}` must both be {layout}. Received: "
            f"truth.shape={truth.shape}, {pred_name}.shape={pred.shape}")
    if truth.shape[0] == 0:
        raise ValueError(f"`truth` is empty. Received: "
                         f"truth.shape={truth.shape}")


# --- segmentation ------------------------------------------------------------


def _dice_per_pair(truth, pred, axes):
    """Dice per (image[, class]) pair; 1 when both masks are empty."""
    out = []
    for start in range(0, truth.shape[0], _CHUNK):
        t = truth[start:start + _CHUNK]
        p = pred[start:start + _CHUNK]
        inter = np.logical_and(t, p).sum(axis=axes, dtype=np.int64)
        size = (t.sum(axis=axes, dtype=np.int64)
                + p.sum(axis=axes, dtype=np.int64))
        dice = np.ones(size.shape, np.float64)
        nonempty = size > 0
        dice[nonempty] = 2.0 * inter[nonempty] / size[nonempty]
        out.append(dice)
    return np.concatenate(out)


def mean_dice(truth, pred):
    """Severstal's score: mean Dice over every (image, class) pair.

    `Dice = 2 |X n Y| / (|X| + |Y|)`, 1 when X and Y are both empty; the
    score is the mean over the `N * C` pairs.

    Args:
        truth: `(N, H, W, C)` binary masks.
        pred: `(N, H, W, C)` binary masks.

    Returns:
        The score in [0, 1] (float).

    Example:

    >>> truth = np.zeros((1, 4, 5, 4), bool)
    >>> pred = np.zeros((1, 4, 5, 4), bool)
    >>> truth[0, :2, :, 0] = True        # 10 px
    >>> pred[0, 1:3, :, 0] = True        # 10 px, 5 shared
    >>> mean_dice(truth, pred)           # (0.5 + 1 + 1 + 1) / 4
    0.875
    """
    truth, pred = _binary(truth, "truth"), _binary(pred, "pred")
    _same_shape(truth, pred, 4, "(N, H, W, C)")
    return float(_dice_per_pair(truth, pred, axes=(1, 2)).mean())


def siim_dice(truth, pred):
    """SIIM-ACR's score: mean over images of the Dice, 1 when both empty.

    Args:
        truth: `(N, H, W)` binary masks (`(N, H, W, 1)` is accepted).
        pred: same shape, binary.

    Returns:
        The score in [0, 1] (float).

    Example:

    >>> truth = np.zeros((2, 2, 2), bool); truth[0, 0] = True
    >>> pred = np.zeros((2, 2, 2), bool); pred[0] = True
    >>> round(siim_dice(truth, pred), 4)  # (2 * 2 / 6 + 1) / 2
    0.8333
    """
    truth, pred = _binary(truth, "truth"), _binary(pred, "pred")
    if truth.ndim == 4 and truth.shape[-1] == 1:
        truth = truth[..., 0]
    if pred.ndim == 4 and pred.shape[-1] == 1:
        pred = pred[..., 0]
    _same_shape(truth, pred, 3, "(N, H, W)")
    return float(_dice_per_pair(truth, pred, axes=(1, 2)).mean())


# --- classification ----------------------------------------------------------


def f1_per_class(truth, pred):
    """Per-class F1 `2TP / (2TP + FP + FN)`, 0 where that is 0/0."""
    truth, pred = _binary(truth, "truth"), _binary(pred, "pred")
    _same_shape(truth, pred, 2, "(N, K)")
    tp = np.logical_and(truth, pred).sum(0, dtype=np.int64)
    fp = np.logical_and(~truth, pred).sum(0, dtype=np.int64)
    fn = np.logical_and(truth, ~pred).sum(0, dtype=np.int64)
    denominator = 2 * tp + fp + fn
    f1 = np.zeros(truth.shape[1], np.float64)
    ok = denominator > 0
    f1[ok] = 2.0 * tp[ok] / denominator[ok]
    return f1


def f1_macro(truth, pred):
    """HPA's score: the mean over classes of `2TP / (2TP + FP + FN)`.

    A class with no true and no predicted positive (0/0) counts as 0, as in
    sklearn's `f1_score(average="macro", zero_division=0)`; it still
    counts in the mean over all K classes.

    Args:
        truth: `(N, K)` binary labels.
        pred: `(N, K)` binary predictions.

    Returns:
        The score in [0, 1] (float).

    Example:

    >>> truth = np.array([[1, 1], [1, 1], [1, 0], [0, 0]])
    >>> pred = np.array([[1, 1], [1, 0], [0, 0], [1, 0]])
    >>> round(f1_macro(truth, pred), 3)  # A: TP 2 FP 1 FN 1; B: 1, 0, 1
    0.667
    """
    return float(f1_per_class(truth, pred).mean())


def _check_probs(prob, name="prob"):
    prob = np.asarray(prob, dtype=np.float64)
    if not np.isfinite(prob).all():
        raise ValueError(f"`{name}` must be finite. Received: "
                         f"{int((~np.isfinite(prob)).sum())} NaN/inf values")
    if prob.size and prob.min() < 0:
        raise ValueError(f"`{name}` must be >= 0. Received: "
                         f"a minimum of {prob.min()}")
    return prob


def rsna_ich_log_loss(truth, prob):
    """RSNA ICH's weighted multi-label log loss.

    Per image `-sum_j w_j [y_j log p_j + (1 - y_j) log(1 - p_j)] /
    sum_j w_j`, with `w = (1, 1, 1, 1, 1, 2)` for (epidural,
    intraparenchymal, intraventricular, subarachnoid, subdural, any) and
    `p` clipped to `[1e-15, 1 - 1e-15]`; the score is the mean over images.

    Args:
        truth: `(N, 6)` labels in {0, 1}.
        prob: `(N, 6)` probabilities.

    Returns:
        The loss (float, lower is better).

    Example:

    >>> round(rsna_ich_log_loss(np.zeros((1, 6)), np.full((1, 6), 0.1)), 5)
    0.10536
    """
    truth = np.asarray(truth, dtype=np.float64)
    prob = _check_probs(prob)
    _same_shape(truth, prob, 2, "(N, 6)", "prob")
    if truth.shape[1] != 6:
        raise ValueError("RSNA ICH needs 6 columns in the order "
                         f"{', '.join(ICH_SUBTYPES)}. Received: "
                         f"truth.shape={truth.shape}")
    if truth.min() < 0 or truth.max() > 1:
        raise ValueError("`truth` must hold labels in [0, 1]. Received: "
                         f"values in [{truth.min()}, {truth.max()}]")
    p = np.clip(prob, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    loss = -(truth * np.log(p) + (1.0 - truth) * np.log(1.0 - p))
    w = np.asarray(ICH_WEIGHTS)
    return float(((loss * w).sum(1) / w.sum()).mean())


# --- RSNA 2024 lumbar spine --------------------------------------------------


def lumbar_labels(truth):
    """Severity ids `(N, 25)` with -1 = missing, from ids or one-hot.

    Args:
        truth: `(N, 25)` integers in {-1, 0, 1, 2}, or `(N, 25, 3)` one-hot
            rows where an all-zero row means missing.
    """
    truth = np.asarray(truth)
    if truth.ndim == 3 and truth.shape[1:] == (25, 3):
        t = truth.astype(np.float64)
        row_sum = t.sum(-1)
        bad = ~(np.isin(t, (0, 1)).all(-1) & np.isin(row_sum, (0, 1)))
        if bad.any():
            raise ValueError("one-hot `truth` rows must be one-hot or all "
                             "zero (missing). Received: a row "
                             f"{t[bad][0].tolist()}")
        return np.where(row_sum > 0, t.argmax(-1), -1).astype(np.int64)
    if truth.ndim == 2 and truth.shape[1] == 25:
        if truth.size and not np.isin(truth, (-1, 0, 1, 2)).all():
            raise ValueError("`truth` severities must be 0, 1, 2 or -1 "
                             "(missing). Received: values "
                             f"{sorted(set(np.unique(truth).tolist()))}")
        return truth.astype(np.int64)
    raise ValueError("`truth` must be (N, 25) severity ids or (N, 25, 3) "
                     f"one-hot. Received: truth.shape={truth.shape}")


def _lumbar_probs(prob, n):
    prob = _check_probs(prob)
    if prob.ndim == 2 and prob.shape[1] == 75:
        prob = prob.reshape(-1, 25, 3)
    if prob.shape != (n, 25, 3):
        raise ValueError("`prob` must be (N, 25, 3) (or (N, 75)) with N "
                         f"matching `truth` ({n}). Received: "
                         f"prob.shape={prob.shape}")
    return prob


def _weighted_log_loss(labels, rows, weights):
    """sklearn's log_loss with sample weights: clip, renormalize, mean."""
    p = np.clip(rows, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    p = p / p.sum(-1, keepdims=True)
    loss = -np.log(np.take_along_axis(p, labels[:, None], -1)[:, 0])
    return float((weights * loss).sum() / weights.sum())


def rsna_lumbar_terms(truth, prob):
    """The four terms of the lumbar metric, as a dict.

    Keys "spinal", "foraminal", "subarticular" and "any_severe_spinal";
    a term without a labelled row is left out. See `rsna_lumbar_log_loss`.
    """
    labels = lumbar_labels(truth)
    prob = _lumbar_probs(prob, labels.shape[0])
    sample_weight = np.asarray(LUMBAR_WEIGHTS)[np.maximum(labels, 0)]
    terms = {}
    for group, cols in LUMBAR_GROUPS.items():
        y = labels[:, cols].ravel()
        keep = y >= 0
        if keep.any():
            terms[group] = _weighted_log_loss(
                y[keep], prob[:, cols].reshape(-1, 3)[keep],
                sample_weight[:, cols].ravel()[keep])
    spinal = labels[:, LUMBAR_GROUPS["spinal"]]
    valid = spinal >= 0
    studies = valid.any(1)
    if studies.any():
        cols = LUMBAR_GROUPS["spinal"]
        y = ((spinal == 2) & valid).any(1)[studies].astype(np.float64)
        severe = np.where(valid, prob[:, cols, 2], -np.inf).max(1)[studies]
        w = np.where(valid, sample_weight[:, cols], 0.0).max(1)[studies]
        p = np.clip(severe, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
        loss = -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))
        terms["any_severe_spinal"] = float((w * loss).sum() / w.sum())
    if not terms:
        raise ValueError("`truth` has no labelled row (every severity is "
                         "missing)")
    return terms


def rsna_lumbar_log_loss(truth, prob, any_severe_weight=1.0):
    """RSNA 2024 lumbar spine's score: the mean of four weighted log losses.

    Rows are (study, condition, level) in train.csv column order
    (`LUMBAR_COLUMNS`); a row's sample weight is 1, 2, 4 for a true
    severity normal/mild, moderate, severe. Terms:

    - spinal, foraminal (left + right), subarticular (left + right): the
      weighted log loss `sum_r w_r (-log p_r[y_r]) / sum_r w_r` over the
      group's rows, predictions clipped to `[1e-15, 1 - 1e-15]` and
      renormalised per row (sklearn's `log_loss` as Kaggle ran it);
    - any_severe_spinal, per study: label `max_l 1[y_l = severe]`,
      prediction `max_l p_l[severe]` (as given, not renormalised), weight
      `max_l w_l` over its 5 spinal rows; binary weighted log loss.

    The score is `(spinal + foraminal + subarticular + a * any) / (3 + a)`,
    `a = any_severe_weight` (1 in the competition). Rows with a missing
    label are dropped (Kaggle's test set has none); a study whose 5 spinal
    labels are all missing leaves the any-severe term, and a term without
    any labelled row leaves the mean.

    Args:
        truth: `(N, 25)` severity ids 0/1/2 with -1 = missing, or
            `(N, 25, 3)` one-hot with all-zero rows = missing.
        prob: `(N, 25, 3)` probabilities (`(N, 75)` is reshaped).
        any_severe_weight: weight of the any-severe term. Defaults to `1.0`.

    Returns:
        The loss (float, lower is better).

    Example:

    >>> truth = np.zeros((1, 25), int)              # all normal/mild
    >>> prob = np.tile([0.8, 0.1, 0.1], (1, 25, 1))
    >>> round(rsna_lumbar_log_loss(truth, prob), 4)  # (3 * 0.2231 + 0.1054) / 4
    0.1937
    """
    terms = rsna_lumbar_terms(truth, prob)
    weights = {k: (any_severe_weight if k == "any_severe_spinal" else 1.0)
               for k in terms}
    total = sum(weights.values())
    return float(sum(terms[k] * weights[k] for k in terms) / total)


# --- task level --------------------------------------------------------------


def thresholds_for(cfg, classes):
    """Per-class thresholds from `cfg.inference.thresholds` (or 0.5)."""
    values = [0.5]
    if cfg is not None and getattr(cfg, "inference", None) is not None:
        values = list(cfg.inference.thresholds or [0.5])
    if len(values) == 1:
        values = values * classes
    if len(values) != classes:
        raise ValueError(
            f"`inference.thresholds` needs 1 or {classes} values. "
            f"Received: {values}")
    return np.asarray(values, dtype=np.float64)
