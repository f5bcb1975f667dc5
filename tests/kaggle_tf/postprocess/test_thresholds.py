"""postprocess.thresholds and components: per-class threshold + min area."""

import numpy as np
import pytest
from scipy import ndimage

from kaggle_tf.postprocess import components
from kaggle_tf.postprocess import thresholds


def reference_area_rule(probs, th, min_area):
    """One image and class at a time, as the Severstal kernels do."""
    out = np.zeros(probs.shape, np.uint8)
    for i in range(probs.shape[0]):
        for c in range(probs.shape[-1]):
            mask = (probs[i, ..., c] > th[c]).astype(np.uint8)
            if mask.sum() >= min_area[c]:
                out[i, ..., c] = mask
    return out


def test_area_rule_matches_per_image_loop():
    rng = np.random.default_rng(0)
    probs = rng.random((5, 16, 24, 4), dtype=np.float32) ** 3
    th, areas = [0.3, 0.5, 0.7, 0.9], [120, 50, 20, 0]
    out = thresholds.apply(probs, th, areas)
    assert out.dtype == np.uint8 and out.shape == probs.shape
    np.testing.assert_array_equal(out,
                                  reference_area_rule(probs, th, areas))
    # The rule must both keep and drop something here.
    kept = out.any(axis=(1, 2))
    assert kept.any() and not kept.all()


def test_area_boundary_is_inclusive_and_threshold_strict():
    probs = np.zeros((1, 4, 4, 1), np.float32)
    probs[0, :3, 0, 0] = 0.5        # exactly at the threshold: off
    probs[0, :3, 1, 0] = 0.51       # 3 pixels on
    assert thresholds.apply(probs, 0.5, 3).sum() == 3
    assert thresholds.apply(probs, 0.5, 4).sum() == 0


def test_float16_is_compared_in_float32():
    probs = np.full((1, 2, 2, 1), 0.1, np.float16)  # 0.09997559
    # In float16 the threshold 0.09997 rounds to the pixel value itself,
    # so a float16 comparison would turn the pixels off; float32 keeps them.
    assert np.float16(0.09997) == probs.flat[0]
    assert thresholds.apply(probs, 0.09997).sum() == 4
    assert thresholds.apply(probs, 0.09998).sum() == 0


def test_float64_keeps_its_precision():
    probs = np.full((1, 1, 2, 1), 0.6)
    assert thresholds.apply(probs, 0.6).sum() == 0
    assert thresholds.apply(probs, 0.5999999).sum() == 2


def test_scalar_and_per_class_parameters_agree():
    probs = np.random.default_rng(1).random((2, 8, 8, 3))
    np.testing.assert_array_equal(thresholds.apply(probs, 0.6, 5),
                                  thresholds.apply(probs, [0.6] * 3, [5] * 3))


def test_bad_arguments():
    probs = np.zeros((1, 4, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"needs 1 or 3 values.*\[0.5, 0.5\]"):
        thresholds.apply(probs, [0.5, 0.5])
    with pytest.raises(ValueError, match=r"shape=\(4, 4\)"):
        thresholds.apply(probs[0, ..., 0], 0.5)
    with pytest.raises(ValueError, match="mode"):
        thresholds.apply(probs, 0.5, mode="contours")


def reference_components(mask, min_area):
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_area
    keep[0] = False
    return keep[labels].astype(np.uint8)


def test_components_mode_matches_scipy_8_connected():
    rng = np.random.default_rng(2)
    probs = rng.random((3, 32, 32, 2)).astype(np.float32)
    out = thresholds.apply(probs, [0.8, 0.7], [4, 0], mode="components")
    for i in range(3):
        np.testing.assert_array_equal(
            out[i, ..., 0], reference_components(probs[i, ..., 0] > 0.8, 4))
        np.testing.assert_array_equal(out[i, ..., 1],
                                      (probs[i, ..., 1] > 0.7))
    assert out[..., 0].sum() < (probs[..., 0] > 0.8).sum()


def test_diagonal_pixels_are_one_component():
    mask = np.zeros((1, 4, 4, 1), np.uint8)
    mask[0, 0, 0, 0] = mask[0, 1, 1, 0] = 1
    assert components.remove_small(mask, [2]).sum() == 2
    assert components.remove_small(mask, [3]).sum() == 0


def test_components_without_opencv_uses_scipy(monkeypatch):
    import sys

    rng = np.random.default_rng(3)
    masks = (rng.random((2, 24, 24, 1)) > 0.7).astype(np.uint8)
    with_cv2 = components.remove_small(masks, [3])
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 fails
    np.testing.assert_array_equal(components.remove_small(masks, [3]),
                                  with_cv2)
    np.testing.assert_array_equal(with_cv2[1, ..., 0],
                                  reference_components(masks[1, ..., 0], 3))
