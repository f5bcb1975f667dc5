"""postprocess.tune: grid searches checked against the Kaggle metrics."""

import itertools

import numpy as np
import pytest
from sklearn.metrics import f1_score

from kaggle_tf.metrics import kaggle as metrics
from kaggle_tf.postprocess import thresholds
from kaggle_tf.postprocess import triplet
from kaggle_tf.postprocess import tune


def blobs(n, size, rng, present=0.5, radius=(3, 7)):
    """(n, size, size) masks, a disc in about `present` of them."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        if rng.random() < present:
            cy, cx = rng.integers(radius[1], size - radius[1], 2)
            r = rng.integers(*radius)
            out[i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return out


def test_default_min_areas():
    areas = tune.default_min_areas(256, 1600)
    assert areas[0] == 0 and areas == sorted(areas)
    assert areas[1] == 50 and areas[-1] == 13000  # 1/8192 .. 1/32
    assert len(tune.default_min_areas(1024, 1024)) == 18


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_pixel_counts_match_direct_counts(dtype):
    rng = np.random.default_rng(0)
    probs = rng.random((3, 9, 11, 2)).astype(dtype)
    probs.reshape(-1)[::5] = np.asarray(0.3, dtype)  # ties
    truth = (rng.random(probs.shape) < 0.4).astype(np.uint8)
    grid = [0.7, 0.3, 0.1, 0.3]
    th, area, inter, truth_area = tune.pixel_counts(probs, truth, grid)
    # Sorted, unique, in the comparison dtype (float32, or float64).
    assert th.dtype == np.result_type(dtype, np.float32)
    np.testing.assert_array_equal(th, np.asarray([0.1, 0.3, 0.7], th.dtype))
    for j, t in enumerate(th):
        pred = thresholds.apply(probs, t)
        np.testing.assert_array_equal(area[:, :, j], pred.sum(axis=(1, 2)))
        np.testing.assert_array_equal(inter[:, :, j],
                                      (pred & truth).sum(axis=(1, 2)))
    np.testing.assert_array_equal(truth_area, truth.sum(axis=(1, 2)))


def synthetic_steel(rng, n=24, size=32):
    """Two classes whose perfect thresholds and min areas are known.

    Class 0: defects at 0.7 + U(0, 0.2) on U(0, 0.2) background, so every
    threshold in [0.2, 0.7) is perfect and any min area up to the smallest
    defect. Class 1: defects at 0.35 + U(0, 0.1) on U(0, 0.1), plus 4-pixel
    specks at 0.9 in defect-free images: perfect only for thresholds in
    [0.1, 0.35) with a min area in (4, smallest defect].
    """
    truth = np.stack([blobs(n, size, rng), blobs(n, size, rng)], axis=-1)
    noise = rng.uniform(0, 1, truth.shape)
    probs = np.where(truth == 1, [0.7, 0.35], 0.0) + noise * [0.2, 0.1]
    for i in np.flatnonzero(truth[..., 1].sum(axis=(1, 2)) == 0)[::2]:
        probs[i, 1:3, 1:3, 1] = 0.9
    return probs.astype(np.float32), truth


def test_search_thresholds_finds_known_intervals():
    rng = np.random.default_rng(1)
    probs, truth = synthetic_steel(rng)
    smallest = truth.sum(axis=(1, 2))
    smallest = smallest[:, 1][smallest[:, 1] > 0].min()
    best = tune.search_thresholds(probs, truth,
                                  min_areas=[0, 2, 4, 8, 16, 10 ** 4])
    assert best["score"] == 1.0 and best["per_class"] == [1.0, 1.0]
    assert 0.2 <= best["thresholds"][0] < 0.7
    assert 0.1 <= best["thresholds"][1] < 0.35
    # Ties go to the smallest area: 0 for class 0, 8 for class 1.
    assert best["min_area"] == [0, 8] and 8 <= smallest
    masks = thresholds.apply(probs, best["thresholds"], best["min_area"])
    assert metrics.mean_dice(truth, masks) == 1.0
    # The config-style default (0.5, no min area) is worse on class 1.
    assert tune.score_thresholds(probs, truth, 0.5, 0) < 0.9


def brute_force_per_class(probs, truth, grid, areas):
    """Best mean Dice per class by applying every combination."""
    best = []
    for c in range(probs.shape[-1]):
        scores = {}
        for t, a in itertools.product(grid, areas):
            masks = thresholds.apply(probs[..., c:c + 1], t, a)
            scores[t, a] = metrics.mean_dice(truth[..., c:c + 1], masks)
        best.append(scores)
    return best


def test_search_thresholds_equals_brute_force():
    rng = np.random.default_rng(2)
    truth = np.stack([blobs(16, 20, rng, 0.6) for _ in range(3)], axis=-1)
    probs = np.clip(truth * 0.5 + rng.normal(0.25, 0.2, truth.shape), 0, 1)
    probs = probs.astype(np.float16)
    grid, areas = [0.2, 0.35, 0.5, 0.65, 0.8], [0, 5, 20, 60]
    best = tune.search_thresholds(probs, truth, grid, areas)
    reference = brute_force_per_class(probs, truth, grid, areas)
    for c, scores in enumerate(reference):
        top = max(scores.values())
        assert best["per_class"][c] == pytest.approx(top, abs=1e-12)
        chosen = best["thresholds"][c], best["min_area"][c]
        assert scores[chosen] == pytest.approx(top, abs=1e-12)
    masks = thresholds.apply(probs, best["thresholds"], best["min_area"])
    assert best["score"] == pytest.approx(metrics.mean_dice(truth, masks),
                                          abs=1e-12)
    assert tune.score_thresholds(probs, truth, best["thresholds"],
                                 best["min_area"]) == pytest.approx(
        best["score"], abs=1e-12)


def test_search_triplet_equals_brute_force():
    rng = np.random.default_rng(3)
    truth = blobs(20, 24, rng, 0.4)
    probs = np.clip(truth * 0.45 + rng.normal(0.3, 0.18, truth.shape), 0, 1)
    grid, areas = [0.3, 0.5, 0.7, 0.85], [0, 10, 40]
    best = tune.search_triplet(probs, truth, grid, areas)
    scores = {}
    for top, area, bottom in itertools.product(grid, areas, grid):
        if bottom <= top:
            pred = triplet(probs, top, area, bottom)
            scores[top, area, bottom] = metrics.siim_dice(truth, pred)
    top_score = max(scores.values())
    assert best["score"] == pytest.approx(top_score, abs=1e-12)
    pred = triplet(probs, *best["triplet"])
    assert metrics.siim_dice(truth, pred) == pytest.approx(top_score,
                                                           abs=1e-12)
    assert tune.score_triplet(probs, truth, *best["triplet"]) == \
        pytest.approx(top_score, abs=1e-12)
    # (N, H, W, 1) is accepted too.
    assert tune.search_triplet(probs[..., None], truth[..., None], grid,
                               areas) == best


def test_search_triplet_beats_the_area_rule():
    """Cores at 0.9 with rims at 0.4 inside the truth; decoys at 0.5 in
    empty images. Only top > 0.5 and bottom < 0.4 are perfect."""
    rng = np.random.default_rng(4)
    truth = blobs(30, 24, rng, 0.5, radius=(5, 8))
    probs = rng.uniform(0, 0.2, truth.shape)
    probs[truth == 1] = 0.4
    for i in range(len(truth)):
        if truth[i].any():
            ys, xs = np.nonzero(truth[i])
            cy, cx = int(ys.mean()), int(xs.mean())
            probs[i, cy - 2:cy + 3, cx - 2:cx + 3] = 0.9
        else:
            probs[i, 2:8, 2:8] = 0.5
    best = tune.search_triplet(probs, truth, min_areas=[0, 10, 25, 50])
    top, area, bottom = best["triplet"]
    assert best["score"] == 1.0
    assert top > 0.5 and 0.2 <= bottom < 0.4 and 0 < area <= 25
    area_rule = max(tune.score_triplet(probs, truth, t, a, t)
                    for t in tune.DEFAULT_THRESHOLDS for a in (0, 10, 25))
    assert area_rule < 0.95


def test_search_class_thresholds_equals_sklearn():
    rng = np.random.default_rng(5)
    truth = (rng.random((60, 5)) < [0.5, 0.2, 0.05, 0.3, 0.0]).astype(int)
    probs = np.clip(truth * 0.3 + rng.random((60, 5)) * 0.7, 0, 1)
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    best = tune.search_class_thresholds(probs, truth, grid)
    for k in range(5):
        scores = [f1_score(truth[:, k], probs[:, k] > t, zero_division=0)
                  for t in grid]
        assert best["per_class"][k] == pytest.approx(max(scores))
    pred = probs > np.asarray(best["thresholds"])
    assert best["score"] == pytest.approx(metrics.f1_macro(truth, pred))
    assert tune.score_class_thresholds(probs, truth, best["thresholds"]) \
        == pytest.approx(best["score"])


def test_class_threshold_known_interval():
    rng = np.random.default_rng(6)
    truth = (rng.random((200, 2)) < 0.3).astype(np.uint8)
    probs = truth * 0.7 + rng.uniform(0, 0.2, truth.shape)
    best = tune.search_class_thresholds(probs, truth)
    assert best["score"] == 1.0
    assert all(0.2 <= t < 0.7 for t in best["thresholds"])


def test_shape_errors():
    with pytest.raises(ValueError, match="probs.shape=.*truth.shape"):
        tune.search_thresholds(np.zeros((2, 4, 4, 2)), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="batch, classes"):
        tune.search_class_thresholds(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
