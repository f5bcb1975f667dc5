"""Losses against numpy implementations written from their definitions."""

import keras
import numpy as np
import pytest
from keras import ops

from kaggle_tf import losses
from kaggle_tf.losses import functional


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_bce(y, p):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def per_sample(elementwise, class_weights=None):
    """(B, ..., C) -> (B,): mean over pixels per class, then weighted."""
    axes = tuple(range(1, elementwise.ndim - 1))
    per_class = elementwise.mean(axis=axes) if axes else elementwise
    w = np.ones(per_class.shape[-1]) if class_weights is None else np.asarray(
        class_weights, float)
    return (per_class * w).sum(-1) / w.sum()


def np_dice_loss(y, p, smooth, per_image, class_weights=None):
    """1 - (2|Y.P| + s) / (|Y| + |P| + s) per class, 1 when 0/0."""
    b, c = y.shape[0], y.shape[-1]
    w = np.ones(c) if class_weights is None else np.asarray(class_weights)
    groups = [(y[i], p[i]) for i in range(b)] if per_image else [(y, p)]
    out = []
    for yt, yp in groups:
        losses_c = []
        for k in range(c):
            t, q = yt[..., k].ravel(), yp[..., k].ravel()
            den = t.sum() + q.sum() + smooth
            score = 1.0 if den == 0 else (2 * (t * q).sum() + smooth) / den
            losses_c.append(1.0 - score)
        out.append((np.asarray(losses_c) * w).sum() / w.sum())
    return np.asarray(out) if per_image else out[0]


def np_focal(y, z, gamma, alpha):
    p = np_sigmoid(z)
    p_t = np.where(y == 1, p, 1 - p)
    fl = -((1 - p_t) ** gamma) * np.log(p_t)
    if alpha is not None:
        fl = fl * np.where(y == 1, alpha, 1 - alpha)
    return fl


def np_lsep(y, f):
    """log(1 + sum over (negative u, positive v) of exp(f_u - f_v))."""
    out = []
    for yi, fi in zip(y, f):
        terms = [fi[u] - fi[v] for v in np.flatnonzero(yi == 1)
                 for u in np.flatnonzero(yi == 0)]
        out.append(np.logaddexp.reduce([0.0] + terms))
    return np.asarray(out)


def run(fn, *args, **kwargs):
    return ops.convert_to_numpy(fn(*args, **kwargs)).astype(np.float64)


@pytest.fixture
def seg():
    rng = np.random.default_rng(0)
    y = (rng.random((3, 6, 5, 2)) > 0.6).astype("float32")
    y[1, ..., 1] = 0.0  # an empty mask
    z = rng.normal(0, 2, y.shape).astype("float32")
    return y, z


def test_bce_matches_numpy_with_class_weights(seg):
    y, z = seg
    want = per_sample(np_bce(y, np_sigmoid(z.astype(float))), [1.0, 3.0])
    got = run(functional.binary_crossentropy, y, z, class_weights=[1, 3])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # The class reduces per-sample values with a batch mean.
    loss = losses.BCE(class_weights=[1.0, 3.0])
    np.testing.assert_allclose(float(loss(y, z)), want.mean(), rtol=1e-5)


def test_probability_input_equals_logit_input(seg):
    y, z = seg
    p = np_sigmoid(z.astype(float)).astype("float32")
    for name in ("bce", "focal", "dice", "lovasz_hinge"):
        a = losses.build({"name": name, "from_logits": True})(y, z)
        b = losses.build({"name": name, "from_logits": False})(y, p)
        np.testing.assert_allclose(float(a), float(b), rtol=1e-4,
                                   err_msg=name)


@pytest.mark.parametrize("gamma,alpha", [(2.0, None), (0.5, 0.25),
                                         (0.0, None)])
def test_focal_matches_numpy(seg, gamma, alpha):
    y, z = seg
    want = per_sample(np_focal(y, z.astype(float), gamma, alpha))
    got = run(functional.focal_loss, y, z, gamma=gamma, alpha=alpha)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    if gamma == 0.0 and alpha is None:  # focal with gamma 0 is BCE
        np.testing.assert_allclose(
            got, run(functional.binary_crossentropy, y, z), rtol=1e-6)


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("smooth", [1.0, 0.0])
def test_dice_matches_numpy(seg, per_image, smooth):
    y, z = seg
    p = np_sigmoid(z.astype(float))
    want = np_dice_loss(y, p, smooth, per_image, [2.0, 1.0])
    got = run(functional.soft_dice_loss, y, z, smooth=smooth,
              per_image=per_image, class_weights=[2.0, 1.0])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    loss = losses.Dice(smooth=smooth, per_image=per_image,
                       class_weights=[2.0, 1.0])
    np.testing.assert_allclose(float(loss(y, z)), np.mean(want), rtol=1e-5)


def test_dice_hand_worked():
    y_true = np.array([[1, 1, 0, 0]], "float32")[..., None]
    y_pred = np.array([[1, 0, 1, 0]], "float32")[..., None]
    got = run(functional.soft_dice_loss, y_true, y_pred, from_logits=False,
              smooth=0.0)
    np.testing.assert_allclose(got, 0.5)


def test_dice_empty_masks():
    empty = np.zeros((2, 4, 4, 1), "float32")
    # Empty mask, empty prediction: perfect, with or without smoothing.
    for smooth in (0.0, 1.0):
        for per_image in (True, False):
            got = run(functional.soft_dice_loss, empty, empty,
                      from_logits=False, smooth=smooth, per_image=per_image)
            np.testing.assert_allclose(got, 0.0)
    # Empty mask with predicted mass S: loss S / (S + smooth).
    pred = np.zeros_like(empty)
    pred[0, :2, :2] = 0.5  # S = 2 on image 0, 0 on image 1
    got = run(functional.soft_dice_loss, empty, pred, from_logits=False,
              smooth=1.0, per_image=True)
    np.testing.assert_allclose(got, [2.0 / 3.0, 0.0], rtol=1e-6)
    got = run(functional.soft_dice_loss, empty, pred, from_logits=False,
              smooth=0.0, per_image=True)
    np.testing.assert_allclose(got, [1.0, 0.0])


def test_dice_multiclass_uses_softmax():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, (2, 4, 4))]
    e = np.exp(z - z.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    want = np_dice_loss(y, p, 1.0, False)
    got = run(functional.soft_dice_loss, y, z, mode="multiclass")
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_combo_is_weighted_sum(seg):
    y, z = seg
    zf = z.astype(float)
    p = np_sigmoid(zf)
    bce = per_sample(np_bce(y, p)).mean()
    dice = np_dice_loss(y, p, 1.0, False)
    focal = per_sample(np_focal(y, zf, 2.0, None)).mean()
    loss = losses.Combo(bce=3.0, dice=1.0, focal=4.0)
    np.testing.assert_allclose(float(loss(y, z)),
                               3 * bce + dice + 4 * focal, rtol=1e-5)
    # A term with weight 0 contributes nothing.
    only_dice = losses.Combo(bce=0.0, dice=2.0, focal=0.0)
    np.testing.assert_allclose(float(only_dice(y, z)), 2 * dice, rtol=1e-5)


def test_weighted_log_loss_spec_example_and_numpy():
    y = np.zeros((1, 6), "float32")
    p = np.full((1, 6), 0.1, "float32")
    loss = losses.WeightedLogLoss(from_logits=False)
    np.testing.assert_allclose(float(loss(y, p)), -np.log(0.9), rtol=1e-6)
    rng = np.random.default_rng(2)
    y = (rng.random((5, 6)) > 0.5).astype("float32")
    z = rng.normal(0, 3, (5, 6)).astype("float32")
    w = np.array([1, 1, 1, 1, 1, 2.0])
    want = (np_bce(y, np_sigmoid(z.astype(float))) * w).sum(1) / w.sum()
    got = run(functional.weighted_log_loss, y, z)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(float(losses.WeightedLogLoss()(y, z)),
                               want.mean(), rtol=1e-5)


def test_lsep_matches_pairwise_definition():
    rng = np.random.default_rng(3)
    y = (rng.random((6, 7)) > 0.6).astype("float32")
    y[0] = 0.0  # no positives -> 0
    y[1] = 1.0  # no negatives -> 0
    f = rng.normal(0, 2, (6, 7)).astype("float32")
    f[2] *= 40.0  # large scores: the shifted sum must not overflow
    want = np_lsep(y, f.astype(float))
    got = run(functional.lsep_loss, y, f)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[0] == 0.0 and got[1] == 0.0
    np.testing.assert_allclose(float(losses.LSEP()(y, f)), want.mean(),
                               rtol=1e-5)


def test_lsep_gradient_matches_finite_differences():
    import tensorflow as tf

    y = np.array([[1, 0, 1, 0, 0]], "float32")
    f = np.array([[0.3, -0.2, 1.5, 0.9, -1.0]], "float64")
    var = tf.Variable(f.astype("float32"))
    with tf.GradientTape() as tape:
        loss = functional.lsep_loss(y, var)[0]
    grad = tape.gradient(loss, var).numpy()[0]
    h = 1e-6
    numeric = [(np_lsep(y, f + h * np.eye(5)[i])[0]
                - np_lsep(y, f - h * np.eye(5)[i])[0]) / (2 * h)
               for i in range(5)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_float16_inputs_are_computed_in_float32():
    # 256 x 256 ones summed in float16 overflow precision; float32 does not.
    y = np.ones((1, 256, 256, 1), "float16")
    z = np.full((1, 256, 256, 1), 12.0, "float16")
    for fn in (functional.soft_dice_loss, functional.combo_loss,
               functional.focal_loss, functional.lovasz_hinge_loss):
        value = fn(ops.convert_to_tensor(y), ops.convert_to_tensor(z))
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        assert np.all(ops.convert_to_numpy(value) < 1e-3), fn.__name__
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        loss = losses.Dice(smooth=1.0)
        assert loss.dtype == "float32"
        assert float(loss(y, z)) < 1e-3
    finally:
        keras.config.set_dtype_policy(policy)


def test_shape_mismatch_and_bad_arguments_raise():
    with pytest.raises(ValueError, match="same shape"):
        losses.BCE()(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="class_weights"):
        losses.BCE(class_weights=[1.0, 2.0])(np.zeros((2, 3)),
                                              np.zeros((2, 3)))
    with pytest.raises(ValueError, match="class_weights"):
        losses.Dice(class_weights=[-1.0, 1.0])
    with pytest.raises(ValueError, match="mode"):
        losses.Dice(mode="binaryy")
    with pytest.raises(ValueError, match="gamma"):
        losses.Focal(gamma=-1)
    with pytest.raises(ValueError, match="from_logits"):
        losses.BCE(from_logits="yes")


def test_all_empty_batch_matches_numpy():
    """A batch whose masks are all empty (most Severstal/SIIM batches)."""
    y = np.zeros((2, 5, 5, 2), "float32")
    z = np.random.default_rng(4).normal(-2, 1, y.shape).astype("float32")
    zf = z.astype(float)
    p = np_sigmoid(zf)
    bce = per_sample(np_bce(y, p)).mean()
    focal = per_sample(np_focal(y, zf, 2.0, 0.25)).mean()
    dice = np_dice_loss(y, p, 1.0, False)
    # Empty masks: Dice = 1 - 1 / (sum(p) + 1) per class over the batch.
    np.testing.assert_allclose(
        dice, np.mean([1 - 1 / (p[..., k].sum() + 1) for k in range(2)]))
    loss = losses.Combo(bce=3.0, dice=1.0, focal=4.0, alpha=0.25)
    np.testing.assert_allclose(float(loss(y, z)), 3 * bce + dice + 4 * focal,
                               rtol=1e-5)


def test_weighted_log_loss_per_slice_for_sequences():
    rng = np.random.default_rng(5)
    y = (rng.random((2, 4, 6)) > 0.5).astype("float32")
    z = rng.normal(0, 2, (2, 4, 6)).astype("float32")
    w = np.array([1, 1, 1, 1, 1, 2.0])
    want = (np_bce(y, np_sigmoid(z.astype(float))) * w).sum(-1) / w.sum()
    got = run(functional.weighted_log_loss, y, z)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # A (batch, slices) sample weight masks padded slices.
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], "float32")
    value = float(losses.WeightedLogLoss(
        reduction="mean_with_sample_weight")(y, z, sample_weight=mask))
    np.testing.assert_allclose(value, want[mask > 0].mean(), rtol=1e-5)
