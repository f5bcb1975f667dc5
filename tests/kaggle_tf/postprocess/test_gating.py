"""postprocess.gating: a classifier gates each class mask."""

import numpy as np
import pytest

from kaggle_tf.postprocess import gating


def test_gates_per_image_and_class():
    rng = np.random.default_rng(0)
    masks = (rng.random((3, 4, 5, 2)) > 0.5).astype(np.uint8)
    class_probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.59]])
    out = gating.apply(masks, class_probs, [0.5, 0.6])
    keep = np.array([[1, 0], [0, 1], [1, 0]])  # p >= threshold
    np.testing.assert_array_equal(out, masks * keep[:, None, None, :])
    assert out.dtype == masks.dtype


def test_shape_mismatch():
    with pytest.raises(ValueError, match="class_probs"):
        gating.apply(np.zeros((2, 4, 4, 3)), np.zeros((2, 4)), 0.5)
