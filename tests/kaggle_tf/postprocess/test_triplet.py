"""postprocess.triplet against the SIIM seed's worked 3 x 3 examples."""

import numpy as np
import pytest

from kaggle_tf import postprocess
from kaggle_tf.postprocess.triplet import triplet

FIRST = np.array([[0.8, 0.5, 0.6], [0.1, 0.1, 0.9], [0.1, 0.2, 0.1]])
SECOND = np.array([[0.4, 0.4, 0.8], [0.1, 0.1, 0.9], [0.1, 0.2, 0.1]])


def test_package_exposes_the_function():
    assert postprocess.triplet is triplet


def test_doublet_0_5_3_keeps_first_example():
    # Three pixels (0.8, 0.6, 0.9) are > 0.5 >= min area 3: kept, and the
    # kept mask is probs > 0.5. The seed's slide also marks the 0.5 pixel,
    # which sits exactly on the threshold; the rule (and sneddy's code,
    # `mask > threshold`) is strict, so it stays off here.
    out = triplet(FIRST, 0.5, 3, 0.5)
    np.testing.assert_array_equal(out, [[1, 0, 1], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(triplet(FIRST, 0.49, 3, 0.49),
                                  [[1, 1, 1], [0, 0, 1], [0, 0, 0]])


def test_doublet_0_5_3_drops_second_example():
    # Only 0.8 and 0.9 are > 0.5: 2 < 3, the map becomes empty.
    assert triplet(SECOND, 0.5, 3, 0.5).sum() == 0


def test_triplet_0_7_2_0_3():
    # 0.8 and 0.9 are > 0.7: 2 >= 2, kept; then probs > 0.3.
    np.testing.assert_array_equal(triplet(SECOND, 0.7, 2, 0.3),
                                  [[1, 1, 1], [0, 0, 1], [0, 0, 0]])
    assert triplet(SECOND, 0.7, 3, 0.3).sum() == 0


def reference(probs, top, area, bottom):
    out = np.zeros(probs.shape, np.uint8)
    for idx in np.ndindex(probs.shape[0], probs.shape[3]):
        p = probs[idx[0], ..., idx[1]]
        if (p > top[idx[1]]).sum() >= area[idx[1]]:
            out[idx[0], ..., idx[1]] = p > bottom[idx[1]]
    return out


def test_batch_and_class_axes():
    rng = np.random.default_rng(0)
    probs = rng.random((6, 10, 12, 2), dtype=np.float32) ** 4
    top, area, bottom = [0.8, 0.6], [6, 15], [0.3, 0.5]
    out = triplet(probs, top, area, bottom)
    np.testing.assert_array_equal(out, reference(probs, top, area, bottom))
    assert 0 < out.any(axis=(1, 2)).sum() < 12
    # (N, H, W): each image decided on its own.
    out3 = triplet(probs[..., 0], 0.8, 6, 0.3)
    np.testing.assert_array_equal(out3, out[..., 0])
    for i in range(6):
        np.testing.assert_array_equal(triplet(probs[i, ..., 0], 0.8, 6, 0.3),
                                      out[i, ..., 0])


def test_bad_shape():
    with pytest.raises(ValueError, match=r"shape=\(3,\)"):
        triplet(np.zeros(3), 0.5, 1, 0.5)
