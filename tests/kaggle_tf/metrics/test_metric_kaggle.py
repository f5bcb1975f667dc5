"""The numpy Kaggle metrics against hand-worked cases and sklearn."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from sklearn.metrics import log_loss

from kaggle_tf import tasks
from kaggle_tf.config.schema import Config
from kaggle_tf.metrics import kaggle


def loop_dice(t, p):
    """Dice of two boolean masks from set sizes; 1 when both are empty."""
    t, p = set(np.flatnonzero(t)), set(np.flatnonzero(p))
    if not t and not p:
        return 1.0
    return 2 * len(t & p) / (len(t) + len(p))


def random_masks(shape, seed, empty_every=3):
    rng = np.random.default_rng(seed)
    masks = rng.random(shape) > 0.7
    masks[::empty_every] = False
    return masks


# --- Severstal ---------------------------------------------------------------


def test_mean_dice_spec_example():
    truth = np.zeros((1, 8, 10, 4), np.uint8)
    pred = np.zeros_like(truth)
    truth[0, 0, :, 0] = 1         # 10 px
    pred[0, 0, 5:, 0] = 1         # 5 px shared ...
    pred[0, 1, :5, 0] = 1         # ... and 5 more: 10 px
    assert kaggle.mean_dice(truth, pred) == pytest.approx(0.875)


def test_mean_dice_matches_pairwise_loop():
    truth = random_masks((7, 6, 9, 4), 0)
    pred = random_masks((7, 6, 9, 4), 1, empty_every=2)
    pred[3, ..., 2] = truth[3, ..., 2]
    want = np.mean([loop_dice(truth[i, ..., c], pred[i, ..., c])
                    for i in range(7) for c in range(4)])
    assert kaggle.mean_dice(truth, pred) == pytest.approx(want, abs=1e-12)


def test_mean_dice_empty_images():
    empty = np.zeros((3, 4, 4, 4), bool)
    assert kaggle.mean_dice(empty, empty) == 1.0
    pred = empty.copy()
    pred[0, 0, 0, 1] = True  # one false-positive pixel: 1 of 12 pairs is 0
    assert kaggle.mean_dice(empty, pred) == pytest.approx(11 / 12)


def test_mean_dice_rejects_bad_input():
    with pytest.raises(ValueError, match="binary"):
        kaggle.mean_dice(np.zeros((1, 2, 2, 4)), np.full((1, 2, 2, 4), 0.7))
    with pytest.raises(ValueError, match=r"truth.shape=\(1, 2, 2, 4\)"):
        kaggle.mean_dice(np.zeros((1, 2, 2, 4)), np.zeros((1, 2, 2, 3)))


# --- SIIM --------------------------------------------------------------------


def test_siim_dice_per_image_and_layouts():
    truth = random_masks((6, 5, 5), 2)
    pred = random_masks((6, 5, 5), 3, empty_every=2)
    want = np.mean([loop_dice(truth[i], pred[i]) for i in range(6)])
    assert kaggle.siim_dice(truth, pred) == pytest.approx(want, abs=1e-12)
    assert kaggle.siim_dice(truth[..., None], pred[..., None]) == \
        pytest.approx(want, abs=1e-12)
    empty = np.zeros((2, 3, 3), bool)
    assert kaggle.siim_dice(empty, empty) == 1.0


# --- HPA ---------------------------------------------------------------------


def test_f1_macro_spec_example():
    # class A: TP 2, FP 1, FN 1; class B: TP 1, FP 0, FN 1.
    truth = np.array([[1, 1], [1, 1], [1, 0], [0, 0]])
    pred = np.array([[1, 1], [1, 0], [0, 0], [1, 0]])
    assert kaggle.f1_macro(truth, pred) == pytest.approx(2 / 3)


def test_f1_macro_matches_sklearn_including_zero_division():
    rng = np.random.default_rng(4)
    truth = (rng.random((40, 28)) > 0.8).astype(int)
    pred = (rng.random((40, 28)) > 0.7).astype(int)
    truth[:, 5] = pred[:, 5] = 0          # 0/0: counts as 0
    truth[:, 6] = 0                       # only false positives: 0
    pred[:, 7] = 0                        # only false negatives: 0
    want = f1_score(truth, pred, average="macro", zero_division=0)
    assert kaggle.f1_macro(truth, pred) == pytest.approx(want, abs=1e-12)
    assert kaggle.f1_per_class(truth, pred)[5] == 0.0


# --- RSNA ICH ----------------------------------------------------------------


def test_rsna_ich_spec_example_and_sklearn():
    assert kaggle.rsna_ich_log_loss(np.zeros((1, 6)), np.full(
        (1, 6), 0.1)) == pytest.approx(-np.log(0.9), abs=1e-12)
    rng = np.random.default_rng(5)
    truth = (rng.random((30, 6)) > 0.6).astype(int)
    prob = rng.uniform(0.01, 0.99, (30, 6))
    w = np.tile([1, 1, 1, 1, 1, 2], 30)
    want = log_loss(truth.ravel(), prob.ravel(), sample_weight=w)
    assert kaggle.rsna_ich_log_loss(truth, prob) == pytest.approx(want)


def test_rsna_ich_clips_at_1e_15():
    truth = np.array([[1, 0, 0, 0, 0, 0]])
    prob = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert kaggle.rsna_ich_log_loss(truth, prob) == pytest.approx(
        -np.log(1e-15) / 7, rel=1e-9)
    with pytest.raises(ValueError, match="6 columns"):
        kaggle.rsna_ich_log_loss(np.zeros((2, 5)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="finite"):
        kaggle.rsna_ich_log_loss(np.zeros((1, 6)), np.full((1, 6), np.nan))


# --- RSNA lumbar -------------------------------------------------------------


def official_style_score(truth, prob):
    """Rebuilds the competition's scoring from its description.

    One row per (study, condition, level) with one-hot truth and a
    severity weight; missing rows dropped; sklearn `log_loss` per condition
    group, plus the per-study any-severe-spinal term; mean of the four.
    """
    rows = []
    for s in range(truth.shape[0]):
        for j, col in enumerate(kaggle.LUMBAR_COLUMNS):
            if truth[s, j] < 0:
                continue
            onehot = np.eye(3)[truth[s, j]]
            rows.append({"study_id": s, "location": col,
                         "condition": ("spinal" if "spinal" in col else
                                       "foraminal" if "foraminal" in col
                                       else "subarticular"),
                         "sample_weight": [1, 2, 4][truth[s, j]],
                         "t_severe": onehot[2],
                         "truth": onehot, "pred": prob[s, j]})
    df = pd.DataFrame(rows)
    losses = []
    for condition in ("spinal", "foraminal", "subarticular"):
        part = df[df.condition == condition]
        losses.append(log_loss(np.stack(part.truth), np.stack(part.pred),
                               sample_weight=part.sample_weight.values))
    spinal = df[df.condition == "spinal"].copy()
    spinal["p_severe"] = [p[2] for p in spinal.pred]
    by_study = spinal.groupby("study_id")
    losses.append(log_loss(by_study.t_severe.max().values,
                           by_study.p_severe.max().values,
                           sample_weight=by_study.sample_weight.max().values,
                           labels=[0, 1]))
    return float(np.mean(losses)), losses


def lumbar_case(n=12, seed=6, missing=0.1):
    rng = np.random.default_rng(seed)
    truth = rng.choice(3, size=(n, 25), p=[0.6, 0.25, 0.15])
    truth[rng.random((n, 25)) < missing] = -1
    truth[0, :5] = -1            # a study without spinal labels
    truth[1, :5] = [0, 2, 1, 0, 0]
    logits = rng.normal(0, 1.5, (n, 25, 3))
    prob = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return truth, prob


def test_rsna_lumbar_spec_example():
    truth = np.zeros((1, 25), int)
    prob = np.tile([0.8, 0.1, 0.1], (1, 25, 1))
    want = (3 * -np.log(0.8) - np.log(0.9)) / 4
    assert kaggle.rsna_lumbar_log_loss(truth, prob) == pytest.approx(want)
    assert round(kaggle.rsna_lumbar_log_loss(truth, prob), 4) == 0.1937


def test_rsna_lumbar_matches_official_style_with_missing_labels():
    truth, prob = lumbar_case()
    want, parts = official_style_score(truth, prob)
    assert kaggle.rsna_lumbar_log_loss(truth, prob) == pytest.approx(want)
    terms = kaggle.rsna_lumbar_terms(truth, prob)
    np.testing.assert_allclose(
        [terms[k] for k in ("spinal", "foraminal", "subarticular",
                            "any_severe_spinal")], parts)
    # One-hot truth with all-zero rows for missing gives the same score.
    onehot = np.where((truth >= 0)[..., None],
                      np.eye(3)[np.maximum(truth, 0)], 0)
    assert kaggle.rsna_lumbar_log_loss(onehot, prob) == pytest.approx(want)
    # (N, 75) predictions are reshaped.
    assert kaggle.rsna_lumbar_log_loss(
        truth, prob.reshape(-1, 75)) == pytest.approx(want)


def test_rsna_lumbar_renormalizes_rows_but_not_any_severe():
    truth, prob = lumbar_case(seed=7, missing=0.0)
    truth = np.maximum(truth, 0)  # every label present
    scaled = prob * 2.0  # rows sum to 2: the groups renormalize them
    terms = kaggle.rsna_lumbar_terms(truth, prob)
    scaled_terms = kaggle.rsna_lumbar_terms(truth, np.minimum(scaled, 1.0))
    for group in ("spinal", "foraminal", "subarticular"):
        # Renormalization: (2p clipped at 1) / sum differs from p only
        # where 2p > 1, so compare against the explicit formula.
        rows = np.minimum(scaled, 1.0)
        rows = rows / rows.sum(-1, keepdims=True)
        cols = list(kaggle.LUMBAR_GROUPS[group])
        y = truth[:, cols].ravel()
        p = rows[:, cols].reshape(-1, 3)[np.arange(y.size), y]
        w = np.array([1, 2, 4])[y]
        assert scaled_terms[group] == pytest.approx(
            (w * -np.log(p)).sum() / w.sum())
    severe_max = np.minimum(scaled, 1.0)[:, :5, 2].max(1)
    y = (truth[:, :5] == 2).any(1)
    w = np.array([1, 2, 4])[truth[:, :5]].max(1)
    p = np.clip(severe_max, 1e-15, 1 - 1e-15)
    want = (w * -(y * np.log(p) + (~y) * np.log(1 - p))).sum() / w.sum()
    assert scaled_terms["any_severe_spinal"] == pytest.approx(want)
    assert terms["spinal"] != pytest.approx(scaled_terms["spinal"])


def test_rsna_lumbar_rejects_bad_input():
    with pytest.raises(ValueError, match="0, 1, 2 or -1"):
        kaggle.rsna_lumbar_log_loss(np.full((1, 25), 3),
                                    np.full((1, 25, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"prob.shape=\(1, 25, 2\)"):
        kaggle.rsna_lumbar_log_loss(np.zeros((1, 25), int),
                                    np.full((1, 25, 2), 0.5))
    with pytest.raises(ValueError, match="no labelled row"):
        kaggle.rsna_lumbar_log_loss(np.full((2, 25), -1),
                                    np.full((2, 25, 3), 1 / 3))


# --- score -------------------------------------------------------------------


def test_score_binarizes_with_config_thresholds():
    rng = np.random.default_rng(8)
    truth = random_masks((4, 5, 6, 4), 9).astype(np.uint8)
    probs = rng.random((4, 5, 6, 4)).astype(np.float16)
    cfg = Config()
    assert tasks.score("steel", truth, probs) == pytest.approx(
        kaggle.mean_dice(truth, probs > 0.5))
    cfg = dataclasses.replace(cfg, inference=dataclasses.replace(
        cfg.inference, thresholds=[0.3, 0.5, 0.7, 0.9]))
    t = np.array([0.3, 0.5, 0.7, 0.9])
    assert tasks.score("steel", truth, probs, cfg) == pytest.approx(
        kaggle.mean_dice(truth, probs.astype(float) > t))
    with pytest.raises(ValueError, match="inference.thresholds"):
        tasks.score("protein", np.zeros((2, 3)), np.zeros((2, 3)), cfg)
    siim = tasks.score("siim", truth[..., :1], probs[..., :1])
    assert siim == pytest.approx(
        kaggle.siim_dice(truth[..., 0], probs[..., 0] > 0.5))


def test_score_in_chunks_equals_the_whole_fold(monkeypatch):
    """Scored 3 images at a time (7 images: a short last chunk), the
    score equals the metric on the whole fold binarized at once, exactly
    at probabilities equal to a threshold too."""
    from kaggle_tf.tasks import base

    rng = np.random.default_rng(10)
    truth = random_masks((7, 6, 5, 4), 11).astype(np.int8)
    probs = rng.random((7, 6, 5, 4)).astype(np.float16)
    probs[0, :2] = np.float16(0.5)  # ties: not above the threshold
    cfg = dataclasses.replace(Config(), inference=dataclasses.replace(
        Config().inference, thresholds=[0.3, 0.5, 0.7, 0.9]))
    t = np.array([0.3, 0.5, 0.7, 0.9])
    want_steel = kaggle.mean_dice(truth, probs.astype(np.float64) > t)
    want_siim = kaggle.siim_dice(truth[..., 0], probs[..., 0] > 0.5)
    monkeypatch.setattr(base, "SCORE_CHUNK", 3)
    assert tasks.score("steel", truth, probs, cfg) == pytest.approx(
        want_steel, abs=1e-12)
    assert tasks.score("siim", truth[..., 0], probs[..., 0]) == \
        pytest.approx(want_siim, abs=1e-12)
    with pytest.raises(ValueError, match="same number of images"):
        tasks.score("steel", truth[:6], probs, cfg)


def test_score_keeps_no_copy_of_the_fold():
    """A 256-image fold of 64x64x4 float16 probabilities (8 MiB) and int8
    truth: scoring allocates less than half the probabilities' size at
    its peak (numpy's allocations, tracemalloc); a float64 copy alone
    would be 4x it."""
    import tracemalloc

    rng = np.random.default_rng(12)
    probs = rng.random((256, 64, 64, 4)).astype(np.float16)
    truth = (rng.random((256, 64, 64, 4)) > 0.9).astype(np.int8)
    tracemalloc.start()
    try:
        tasks.score("steel", truth, probs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < probs.nbytes / 2, (peak, probs.nbytes)


def test_score_presence_labels_of_a_segmentation_task():
    """A classifier's OOF on steel/siim, (N, classes): macro F1."""
    rng = np.random.default_rng(9)
    truth = (rng.random((12, 4)) > 0.5).astype(np.int8)
    probs = rng.random((12, 4)).astype(np.float16)
    want = f1_score(truth, probs > 0.5, average="macro", zero_division=0)
    assert tasks.score("steel", truth, probs) == pytest.approx(want)
    assert tasks.score("siim", truth[:, :1], probs[:, :1]) == \
        pytest.approx(f1_score(truth[:, 0], probs[:, 0] > 0.5))


def test_score_other_tasks():
    rng = np.random.default_rng(10)
    truth = (rng.random((9, 28)) > 0.7).astype(np.uint8)
    probs = rng.random((9, 28))
    assert tasks.score("protein", truth, probs) == pytest.approx(
        f1_score(truth, probs > 0.5, average="macro", zero_division=0))
    ich_truth = (rng.random((9, 6)) > 0.5).astype(np.uint8)
    ich_probs = rng.uniform(0.05, 0.95, (9, 6))
    assert tasks.score("rsna_ich", ich_truth, ich_probs) == pytest.approx(
        kaggle.rsna_ich_log_loss(ich_truth, ich_probs))
    lumbar_truth, lumbar_probs = lumbar_case(seed=11)
    stored = lumbar_truth.astype(np.uint8)  # -1 saved as uint8 is 255
    assert tasks.score("rsna_lumbar", stored, lumbar_probs) == \
        pytest.approx(kaggle.rsna_lumbar_log_loss(lumbar_truth,
                                                  lumbar_probs))
    with pytest.raises(ValueError, match="choices are protein"):
        tasks.score("mnist", truth, probs)


def test_higher_is_better():
    assert [tasks.higher_is_better(t) for t in (
        "steel", "siim", "protein", "rsna_ich", "rsna_lumbar")] == [
        True, True, True, False, False]
