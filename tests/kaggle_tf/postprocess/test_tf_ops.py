"""postprocess.tf_ops: the TF twins give the numpy results exactly."""

import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf.postprocess.tf_ops import apply_thresholds_tf
from kaggle_tf.postprocess.tf_ops import gating_tf
from kaggle_tf.postprocess.tf_ops import triplet_tf
from kaggle_tf.postprocess import gating
from kaggle_tf.postprocess import thresholds
from kaggle_tf.postprocess import triplet


def random_probs(dtype, shape=(4, 12, 16, 3), seed=0):
    rng = np.random.default_rng(seed)
    probs = (rng.random(shape) ** 3).astype(dtype)
    # Put pixels exactly on the thresholds used below (ties).
    probs.reshape(-1)[::7] = np.asarray(0.5, dtype)
    probs.reshape(-1)[3::11] = np.asarray(0.1, dtype)
    return probs


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_apply_thresholds_matches_numpy(dtype):
    probs = random_probs(dtype)
    th = [0.5, 0.1, 0.3]
    # Min areas at the median count: some maps are kept, some emptied.
    counts = (probs > np.float32(th)).sum(axis=(1, 2))
    area = np.median(counts, axis=0).astype(int)
    for th, area in [(th, area), (0.1, 35), ([0.09997, 0.5, 0.6], 10)]:
        expected = thresholds.apply(probs, th, area)
        got = apply_thresholds_tf(tf.constant(probs), th, area)
        assert got.dtype == tf.uint8
        np.testing.assert_array_equal(got.numpy(), expected)
        if np.ndim(area):
            kept = expected.any(axis=(1, 2))
            assert kept.any() and not kept.all()


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_triplet_matches_numpy(dtype):
    probs = random_probs(dtype, (6, 10, 12, 2), seed=1)
    params = ([0.8, 0.5], [6, 15], [0.1, 0.5])
    np.testing.assert_array_equal(
        triplet_tf(tf.constant(probs), *params).numpy(),
        triplet(probs, *params))
    for p in (probs[..., 0], probs[0, ..., 0]):
        np.testing.assert_array_equal(
            triplet_tf(tf.constant(p), 0.5, 12, 0.1).numpy(),
            triplet(p, 0.5, 12, 0.1))


def test_gating_matches_numpy():
    rng = np.random.default_rng(2)
    masks = (rng.random((5, 4, 4, 3)) > 0.5).astype(np.uint8)
    class_probs = rng.random((5, 3)).astype(np.float32)
    class_probs[0] = 0.6
    for th in (0.5, [0.6, 0.3, 0.9]):
        np.testing.assert_array_equal(
            gating_tf(tf.constant(masks), tf.constant(class_probs),
                      th).numpy(),
            gating.apply(masks, class_probs, th))


def test_in_tf_function_with_tensor_parameters():
    probs = random_probs(np.float32)

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32),
        tf.TensorSpec([3], tf.float32), tf.TensorSpec([3], tf.int32)])
    def fn(p, th, area):
        return (apply_thresholds_tf(p, th, area),
                triplet_tf(p, th, area, 0.1))

    th, area = np.float32([0.5, 0.1, 0.3]), np.int32([20, 60, 0])
    masks, trip = fn(probs, th, area)
    np.testing.assert_array_equal(masks.numpy(),
                                  thresholds.apply(probs, th, area))
    np.testing.assert_array_equal(trip.numpy(),
                                  triplet(probs, th, area, 0.1))


def test_bad_shape():
    with pytest.raises(ValueError, match="batch, height, width, classes"):
        apply_thresholds_tf(tf.zeros([4, 4]), 0.5)
