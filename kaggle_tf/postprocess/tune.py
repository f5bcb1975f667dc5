"""Grid searches for post-processing parameters on out-of-fold predictions.

Every search first reduces the probabilities to small count tables: for
each image, class and grid threshold, the predicted area and its
intersection with the truth (one histogram pass over the pixels; float16
probabilities go through a 65536-entry lookup table). All candidate
parameters are then scored from those tables without touching pixels again:

- `search_thresholds`: Severstal mean Dice over (image, class) pairs;
  classes are independent, so each gets its own threshold x min area.
- `search_triplet`: SIIM mean Dice over images, top x min area x bottom.
- `search_class_thresholds`: HPA macro F1; one threshold per class.

Scores equal `kaggle_tf.metrics.kaggle.mean_dice` / `siim_dice` /
`f1_macro` on the masks or labels that `thresholds.apply` / `triplet` /
`probs > thresholds` produce with the chosen parameters. Ties go to the
smallest min area, then to the middle of the tied thresholds.

Example:

>>> rng = np.random.default_rng(0)
>>> truth = np.zeros((8, 16, 16, 1), np.uint8)
>>> truth[:4, 4:12, 4:12] = 1
>>> probs = truth * 0.7 + rng.uniform(0, 0.2, truth.shape)
>>> best = search_thresholds(probs, truth)
>>> best["score"], 0.2 <= best["thresholds"][0] < 0.7
(1.0, True)
"""

import functools

import numpy as np

from kaggle_tf.postprocess.params import compute_dtype
from kaggle_tf.postprocess.params import per_class

DEFAULT_THRESHOLDS = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))
DEFAULT_CLASS_THRESHOLDS = tuple(round(0.05 + 0.01 * i, 2)
                                 for i in range(91))
_PIXELS_PER_CHUNK = 1 << 22


def default_min_areas(height, width):
    """Minimum-area grid for an image size: 0, then 1/8192 .. 1/32 of the
    image in half-octave steps, rounded to 2 significant digits.

    Example:

    >>> default_min_areas(256, 1600)[:6]
    [0, 50, 71, 100, 140, 200]
    """
    areas = {0}
    for e in range(-26, -9):
        a = height * width * 2.0 ** (e / 2)
        digits = int(np.floor(np.log10(a))) - 1
        areas.add(int(round(a, -digits)) if a >= 1 else 1)
    return sorted(areas)


def area_grid(min_areas, size):
    """`min_areas` as a sorted grid of ints, or `default_min_areas(*size)`
    when None."""
    if min_areas is None:
        return default_min_areas(*size)
    return sorted(set(int(a) for a in min_areas))


def _check_pair(probs, truth, ndim, layout):
    probs, truth = np.asarray(probs), np.asarray(truth)
    if probs.ndim != ndim or probs.shape != truth.shape:
        raise ValueError(
            f"`probs` and `truth` must both be {layout}. Received: "
            f"probs.shape={probs.shape}, truth.shape={truth.shape}")
    return probs, truth


def _grid(values, name, dtype=np.float32):
    grid = np.unique(np.asarray(values, np.float64).astype(dtype))
    if grid.size == 0:
        raise ValueError(f"`{name}` is empty")
    return grid


def _number(x):
    """The shortest decimal that reads back as the same float32/64 value."""
    return float(np.format_float_positional(x, unique=True, trim="-"))


@functools.lru_cache(maxsize=8)
def _float16_bins(grid):
    """For every float16 bit pattern, how many grid values it exceeds."""
    values = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    values = values.view(np.float16).astype(np.float32)
    th = np.asarray(grid, np.float32)
    return np.count_nonzero(values[:, None] > th[None, :],
                            axis=1).astype(np.uint8)


def _bins(p, grid):
    """Per pixel: the number of grid thresholds t with p > t."""
    if p.dtype == np.float16 and grid.size < 256:
        return _float16_bins(tuple(grid.tolist()))[p.view(np.uint16)]
    return np.searchsorted(grid, p, side="left")


def pixel_counts(probs, truth, thresholds):
    """Predicted area and intersection per image, class and threshold.

    Args:
        probs: `(batch, height, width, classes)` probabilities.
        truth: binary masks of the same shape.
        thresholds: the threshold grid; a pixel is predicted when
            `prob > t` (compared in float32 or wider, as `apply` does).

    Returns:
        `(grid, area, inter, truth_area)`: the sorted unique grid (T,),
        `area[n, c, j]` = pixels with prob > grid[j], `inter[n, c, j]` =
        those that are also true, and `truth_area[n, c]`.
    """
    probs, truth = _check_pair(probs, truth, 4,
                               "(batch, height, width, classes)")
    grid = _grid(thresholds, "thresholds", compute_dtype(probs.dtype))
    n, h, w, c = probs.shape
    t1 = grid.size + 1
    hist = np.zeros((n, c, t1, 2), np.int64)
    step = max(1, _PIXELS_PER_CHUNK // max(1, h * w * c))
    for s in range(0, n, step):
        p, y = probs[s:s + step], truth[s:s + step] != 0
        m = p.shape[0]
        pair = np.arange(m * c, dtype=np.intp).reshape(m, 1, 1, c)
        key = (_bins(p, grid) + t1 * pair) * 2 + y
        hist[s:s + m] = np.bincount(
            key.ravel(), minlength=m * c * t1 * 2).reshape(m, c, t1, 2)
    # at_least[..., b, :] = pixels whose bin is >= b.
    at_least = np.cumsum(hist[:, :, ::-1], axis=2)[:, :, ::-1]
    area = at_least[:, :, 1:].sum(axis=-1)
    inter = at_least[:, :, 1:, 1]
    return grid, area, inter, at_least[:, :, 0, 1]


def _dice(area, inter, truth_area):
    """Dice per image; 1 when prediction and truth are both empty."""
    total = area + truth_area
    safe = np.where(total > 0, total, 1)
    return np.where(total > 0, 2.0 * inter / safe, 1.0)


def _tie_break(scores, areas_axis=None):
    """Index of the best score: smallest area, then middle threshold."""
    best = scores.max()
    tied = np.argwhere(scores >= best - 1e-12)
    if areas_axis is not None:
        tied = tied[tied[:, areas_axis] == tied[:, areas_axis].min()]
    return tuple(tied[len(tied) // 2])


def _area_rule_table(area, inter, truth_area, min_areas):
    """Mean Dice of one class for every (threshold, min area): (T, K)."""
    dice = _dice(area, inter, truth_area[:, None])       # (N, T)
    empty = (truth_area == 0).astype(np.float64)         # (N,)
    kept = area[:, :, None] >= min_areas[None, None, :]  # (N, T, K)
    gain = np.einsum("ntk,nt->tk", kept, dice - empty[:, None])
    return empty.mean() + gain / area.shape[0]


def _min_areas(min_areas, height, width):
    if min_areas is None:
        min_areas = default_min_areas(height, width)
    out = np.unique(np.asarray(min_areas, np.int64))
    if out.size == 0 or out.min() < 0:
        raise ValueError("`min_areas` must be non-empty and >= 0. "
                         f"Received: {list(min_areas)}")
    return out


def search_thresholds(probs, truth, thresholds=None, min_areas=None):
    """Per-class threshold and min area maximizing Severstal mean Dice.

    Args:
        probs: `(batch, height, width, classes)` out-of-fold probabilities.
        truth: `(batch, height, width, classes)` binary masks.
        thresholds: threshold grid. Defaults to 0.1, 0.15, ..., 0.9.
        min_areas: min-area grid in pixels (of these arrays). Defaults to
            `default_min_areas(height, width)`.

    Returns:
        dict with `thresholds` and `min_area` (one per class), `score`
        (mean Dice over all (image, class) pairs with those parameters,
        = `metrics.kaggle.mean_dice(truth, thresholds.apply(...))`) and
        `per_class` (mean Dice of each class).
    """
    thresholds = DEFAULT_THRESHOLDS if thresholds is None else thresholds
    grid, area, inter, truth_area = pixel_counts(probs, truth, thresholds)
    areas = _min_areas(min_areas, *np.shape(probs)[1:3])
    best_t, best_a, per_class = [], [], []
    for c in range(area.shape[1]):
        table = _area_rule_table(area[:, c], inter[:, c], truth_area[:, c],
                                 areas)
        j, k = _tie_break(table, areas_axis=1)
        best_t.append(_number(grid[j]))
        best_a.append(int(areas[k]))
        per_class.append(float(table[j, k]))
    return {"thresholds": best_t, "min_area": best_a,
            "score": float(np.mean(per_class)), "per_class": per_class}


def score_thresholds(probs, truth, thresholds, min_area):
    """Severstal mean Dice of `thresholds.apply(probs, thresholds,
    min_area)` against `truth`, from count tables."""
    probs = np.asarray(probs)
    classes = probs.shape[-1]
    th = per_class(thresholds, classes, "thresholds",
                   compute_dtype(probs.dtype))
    areas = per_class(min_area, classes, "min_area", np.int64)
    grid, area, inter, truth_area = pixel_counts(probs, truth, th)
    scores = []
    for c in range(classes):
        j = int(np.searchsorted(grid, th[c]))
        table = _area_rule_table(area[:, c, j:j + 1], inter[:, c, j:j + 1],
                                 truth_area[:, c], areas[c:c + 1])
        scores.append(float(table[0, 0]))
    return float(np.mean(scores))


def _as_single_class(probs, truth):
    probs, truth = np.asarray(probs), np.asarray(truth)
    if probs.ndim == 4 and probs.shape[-1] == 1:
        probs, truth = probs[..., 0], truth[..., 0]
    probs, truth = _check_pair(probs, truth, 3, "(batch, height, width)")
    return probs[..., None], truth[..., None]


def _triplet_table(probs, truth, tops, areas, bottoms):
    """Mean Dice for every (top, min area, bottom): (T1, K, T2)."""
    grid, area, inter, truth_area = pixel_counts(
        probs, truth, np.concatenate([tops, bottoms]))
    area, inter, truth_area = area[:, 0], inter[:, 0], truth_area[:, 0]
    top_j = np.searchsorted(grid, tops)
    bottom_j = np.searchsorted(grid, bottoms)
    n = area.shape[0]
    empty = (truth_area == 0).astype(np.float64)
    gain = (_dice(area[:, bottom_j], inter[:, bottom_j], truth_area[:, None])
            - empty[:, None])                                # (N, T2)
    kept = area[:, top_j, None] >= areas[None, None, :]     # (N, T1, K)
    table = kept.reshape(n, -1).T.astype(np.float64) @ gain / n
    return empty.mean() + table.reshape(tops.size, areas.size, bottoms.size)


def search_triplet(probs, truth, top_thresholds=None, min_areas=None,
                   bottom_thresholds=None, bottom_at_most_top=True):
    """The SIIM triplet maximizing mean Dice over images.

    Args:
        probs: `(batch, height, width)` (or `(..., 1)`) probabilities.
        truth: binary masks of the same shape.
        top_thresholds: grid of `top_score_threshold`. Defaults to 0.1,
            0.15, ..., 0.9.
        min_areas: grid of `min_area` in pixels (of these arrays). Defaults
            to `default_min_areas(height, width)`.
        bottom_thresholds: grid of `bottom_score_threshold`. Defaults to
            the top grid.
        bottom_at_most_top: only search bottom <= top (bottom == top is
            the plain area rule). Defaults to `True`.

    Returns:
        dict with `triplet` = [top, min_area, bottom] and `score`
        (= `metrics.kaggle.siim_dice(truth, triplet(probs, ...))`).
    """
    probs, truth = _as_single_class(probs, truth)
    dtype = compute_dtype(probs.dtype)
    tops = _grid(DEFAULT_THRESHOLDS if top_thresholds is None
                 else top_thresholds, "top_thresholds", dtype)
    bottoms = (tops if bottom_thresholds is None
               else _grid(bottom_thresholds, "bottom_thresholds", dtype))
    areas = _min_areas(min_areas, *probs.shape[1:3])
    table = _triplet_table(probs, truth, tops, areas, bottoms)
    if bottom_at_most_top:
        allowed = bottoms[None, None, :] <= tops[:, None, None]
        if not allowed.any():
            raise ValueError("no bottom threshold is <= a top threshold")
        table = np.where(allowed, table, -np.inf)
    i, k, j = _tie_break(table, areas_axis=1)
    return {"triplet": [_number(tops[i]), int(areas[k]),
                        _number(bottoms[j])],
            "score": float(table[i, k, j])}


def score_triplet(probs, truth, top_score_threshold, min_area,
                  bottom_score_threshold):
    """SIIM mean Dice of `triplet(probs, top, min_area, bottom)`."""
    probs, truth = _as_single_class(probs, truth)
    dtype = compute_dtype(probs.dtype)
    table = _triplet_table(probs, truth,
                           np.asarray([top_score_threshold], dtype),
                           np.int64([min_area]),
                           np.asarray([bottom_score_threshold], dtype))
    return float(table[0, 0, 0])


def _f1_table(probs, truth, grid, zero_division):
    """Per-class F1 for every threshold: (T, K)."""
    y = truth != 0
    out = np.empty((grid.size, probs.shape[1]))
    positives = np.count_nonzero(y, axis=0)
    for j, t in enumerate(grid):
        pred = probs > t
        tp = np.count_nonzero(pred & y, axis=0)
        denom = np.count_nonzero(pred, axis=0) + positives  # 2tp+fp+fn
        out[j] = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1),
                          zero_division)
    return out


def search_class_thresholds(probs, truth, thresholds=None,
                            zero_division=0.0):
    """One threshold per class maximizing macro F1 (HPA).

    Args:
        probs: `(batch, classes)` probabilities.
        truth: `(batch, classes)` binary labels.
        thresholds: threshold grid. Defaults to 0.05, 0.06, ..., 0.95.
        zero_division: F1 of a class with no true and no predicted
            positive. Defaults to `0.0` (scikit-learn's `f1_score`).

    Returns:
        dict with `thresholds` (one per class), `score` (macro F1 of
        `probs > thresholds`) and `per_class` F1.
    """
    probs, truth = _check_pair(probs, truth, 2, "(batch, classes)")
    grid = _grid(DEFAULT_CLASS_THRESHOLDS if thresholds is None
                 else thresholds, "thresholds", compute_dtype(probs.dtype))
    table = _f1_table(probs, truth, grid, zero_division)
    best = [_tie_break(table[:, k])[0] for k in range(table.shape[1])]
    per_class = [float(table[j, k]) for k, j in enumerate(best)]
    return {"thresholds": [_number(grid[j]) for j in best],
            "score": float(np.mean(per_class)), "per_class": per_class}


def score_class_thresholds(probs, truth, thresholds, zero_division=0.0):
    """Macro F1 of `probs > thresholds` (one threshold or one per class)."""
    probs, truth = _check_pair(probs, truth, 2, "(batch, classes)")
    th = per_class(thresholds, probs.shape[1], "thresholds",
                   compute_dtype(probs.dtype))
    y = truth != 0
    pred = probs > th
    tp = np.count_nonzero(pred & y, axis=0)
    denom = np.count_nonzero(pred, axis=0) + np.count_nonzero(y, axis=0)
    f1 = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), zero_division)
    return float(f1.mean())
