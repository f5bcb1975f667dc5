"""Lovasz losses and their gradients against the Lovasz extension of the
Jaccard loss (Berman et al. 2018), evaluated from the set function itself.
"""

import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf import losses
from kaggle_tf.losses import functional


def jaccard_set_loss(gt, wrong):
    """Delta_J(M) = |M| / |gt u M| for the set M of mispredicted pixels."""
    union = np.logical_or(gt, wrong).sum()
    return 0.0 if union == 0 else wrong.sum() / union


def lovasz_extension(m, gt):
    """Value and gradient (w.r.t. m) of the Lovasz extension of Delta_J.

    f(m) = sum_i m_pi(i) [Delta(S_i) - Delta(S_i-1)], pi sorting m
    decreasingly and S_i = {pi(1), ..., pi(i)}.
    """
    order = np.argsort(-m, kind="stable")
    wrong = np.zeros(m.shape, bool)
    value, grad, prev = 0.0, np.zeros_like(m), 0.0
    for i in order:
        wrong[i] = True
        cur = jaccard_set_loss(gt, wrong)
        grad[i] = cur - prev
        value += m[i] * grad[i]
        prev = cur
    return value, grad


def np_lovasz_hinge(logits, gt):
    """Per-row hinge: m = relu(1 - z s); returns value and d/dz."""
    signs = 2.0 * gt - 1.0
    errors = 1.0 - logits * signs
    value, grad_m = lovasz_extension(np.maximum(errors, 0.0), gt > 0)
    return value, grad_m * (errors > 0) * -signs


def np_lovasz_softmax(z, labels, classes="present"):
    """(N, C) logits, (N,) labels -> value, d/dz, over all N pixels."""
    e = np.exp(z - z.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    values, grads_p, present = [], np.zeros_like(p), []
    for c in range(z.shape[-1]):
        fg = labels == c
        v, g = lovasz_extension(np.abs(fg - p[:, c]), fg)
        values.append(v)
        grads_p[:, c] = g * np.sign(p[:, c] - fg)
        present.append(fg.any() or classes == "all")
    present = np.asarray(present, float)
    value = (np.asarray(values) * present).sum() / present.sum()
    grads_p = grads_p * present / present.sum()
    grad_z = p * (grads_p - (grads_p * p).sum(-1, keepdims=True))
    return value, grad_z


def tape_value_and_grad(loss, y, z):
    var = tf.Variable(z)
    with tf.GradientTape() as tape:
        value = loss(y, var)
    return float(value), tape.gradient(value, var).numpy()


@pytest.fixture
def masks():
    rng = np.random.default_rng(0)
    y = (rng.random((3, 5, 4, 2)) > 0.5).astype("float32")
    y[2, ..., 0] = 0.0  # an empty mask
    z = rng.normal(0, 1.5, y.shape).astype("float32")
    return y, z


def test_lovasz_grad_hand_worked():
    # gt sorted by error 1, 0, 1 (|gt| = 2): J(i) = 1 - |gt \ S_i| /
    # |gt u S_i| gives J(1) = 1 - 1/2, J(2) = 1 - 1/3, J(3) = 1 - 0/3.
    got = tf.convert_to_tensor(
        functional.lovasz_grad(np.array([[1.0, 0.0, 1.0]], "float32")))
    np.testing.assert_allclose(got.numpy()[0],
                               [0.5, 2 / 3 - 0.5, 1 - 2 / 3], rtol=1e-6)


def test_lovasz_hinge_per_image_value_and_gradient(masks):
    y, z = masks
    b, c = y.shape[0], y.shape[-1]
    want, want_grad = 0.0, np.zeros(z.shape)
    for i in range(b):
        for k in range(c):
            v, g = np_lovasz_hinge(z[i, ..., k].ravel().astype(float),
                                   y[i, ..., k].ravel())
            want += v / (b * c)
            want_grad[i, ..., k] = g.reshape(z.shape[1:3]) / (b * c)
    value, grad = tape_value_and_grad(losses.LovaszHinge(), y, z)
    np.testing.assert_allclose(value, want, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


def test_lovasz_hinge_over_batch_with_class_weights(masks):
    y, z = masks
    w = np.array([1.0, 3.0])
    want, want_grad = 0.0, np.zeros(z.shape)
    for k in range(2):
        v, g = np_lovasz_hinge(z[..., k].ravel().astype(float),
                               y[..., k].ravel())
        want += w[k] * v / w.sum()
        want_grad[..., k] = w[k] * g.reshape(z.shape[:3]) / w.sum()
    loss = losses.LovaszHinge(per_image=False, class_weights=list(w))
    value, grad = tape_value_and_grad(loss, y, z)
    np.testing.assert_allclose(value, want, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


def test_lovasz_hinge_empty_mask_is_largest_hinge_error():
    y = np.zeros((1, 3, 3, 1), "float32")
    z = np.linspace(-2, 0.5, 9, dtype="float32").reshape(1, 3, 3, 1)
    value = float(losses.LovaszHinge()(y, z))
    np.testing.assert_allclose(value, 1.0 + 0.5, rtol=1e-6)


@pytest.mark.parametrize("classes", ["present", "all"])
def test_lovasz_softmax_value_and_gradient(classes):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, (2, 4, 5))  # class 3 of 4 is absent
    z = rng.normal(0, 1.5, (2, 4, 5, 4)).astype("float32")
    want, want_grad = np_lovasz_softmax(z.reshape(-1, 4).astype(float),
                                        labels.ravel(), classes)
    loss = losses.LovaszSoftmax(classes=classes)
    value, grad = tape_value_and_grad(loss, labels, z)
    np.testing.assert_allclose(value, want, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad.reshape(z.shape), rtol=1e-4,
                               atol=1e-6)
    # One-hot targets give the same loss as integer ids.
    onehot = np.eye(4, dtype="float32")[labels]
    np.testing.assert_allclose(float(loss(onehot, z)), want, rtol=1e-5)
    np.testing.assert_allclose(float(loss(labels[..., None], z)), want,
                               rtol=1e-5)


def test_lovasz_softmax_per_image_is_mean_of_images():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, (3, 4, 4))
    labels[1] = 0  # a single-class image
    z = rng.normal(size=(3, 4, 4, 3)).astype("float32")
    want = np.mean([np_lovasz_softmax(z[i].reshape(-1, 3).astype(float),
                                      labels[i].ravel())[0]
                    for i in range(3)])
    got = float(losses.LovaszSoftmax(per_image=True)(labels, z))
    np.testing.assert_allclose(got, want, rtol=1e-5)
