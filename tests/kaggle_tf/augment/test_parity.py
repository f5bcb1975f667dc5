"""Parity with albumentations for transforms with fixed parameters.

Specs with degenerate ranges (e.g. `rotate_limit: [30, 30]`, `p: 1`) make
both albumentations and our ops deterministic; the same spec then runs
through `A.from_dict` and `from_albumentations`. Where a transform has no
such form (flips per element, crops at an offset, holes) the fixed
parameters are passed to both `apply` methods.

Tolerances: 1e-5 on the whole image (every border mode included);
albumentations 2.x remaps float32 images in float arithmetic, so the
results agree to rounding. Masks (nearest) must be equal, except for grid
distortion, whose tables albumentations builds in float64: a source
coordinate that is exactly k + 0.5 there can be k + 0.5 + 1e-6 in float32
and round the other way (< 0.5% of pixels).
"""

import warnings

import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf.augment import from_albumentations
from kaggle_tf.augment import ops
from kaggle_tf.augment.ops import geometric
from kaggle_tf.augment.ops import photometric
from kaggle_tf.augment.ops import warp

from augment_helpers import albumentations_compose
from augment_helpers import blob_mask
from augment_helpers import smooth_image

A = pytest.importorskip("albumentations")
cv2 = pytest.importorskip("cv2")
TOL = 1e-5


def _ours(spec, image, mask):
    aug = from_albumentations(spec, seed=0, placement="model")
    out = aug({"images": image[None], "segmentation_masks":
               mask[None, ..., None]}, training=True)
    return (out["images"][0].numpy(),
            out["segmentation_masks"][0, ..., 0].numpy())


def _theirs(spec, image, mask):
    result = albumentations_compose(spec)(image=image, mask=mask)
    return result["image"], result["mask"]


def _data(image, mask):
    return {"images": tf.constant(image[None]),
            "masks": tf.constant(mask[None, ..., None])}


@pytest.mark.parametrize("border_mode", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("interpolation", [0, 1])
def test_remap_matches_cv2_every_border(image, border_mode, interpolation):
    rng = np.random.default_rng(border_mode)
    h, w = image.shape[:2]
    # Coordinates reaching 10 px beyond every edge.
    map_x = rng.uniform(-10, w + 10, (h, w)).astype("float32")
    map_y = rng.uniform(-10, h + 10, (h, w)).astype("float32")
    expected = cv2.remap(image, map_x, map_y, interpolation,
                         borderMode=border_mode, borderValue=(0.3,) * 3)
    got = warp.remap(tf.constant(image[None]), tf.constant(map_y[None]),
                     tf.constant(map_x[None]), interpolation, border_mode,
                     0.3)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=TOL)


@pytest.mark.parametrize("interpolation", [0, 1])
def test_separable_remap_equals_remap(image, interpolation):
    # Two samples with their own maps: the nearest read gathers whole
    # pixels of the batch at once (row and column indices per sample).
    rng = np.random.default_rng(interpolation)
    h, w = image.shape[:2]
    images = np.stack([image, image[::-1, ::-1] * 0.5])
    ys = np.sort(rng.uniform(-5, h + 5, (2, h)), axis=1).astype("float32")
    xs = np.sort(rng.uniform(-5, w + 5, (2, w)), axis=1).astype("float32")
    # Whole and half pixels: the rounding ties of a nearest read.
    ys[:, ::7] = np.round(ys[:, ::7] * 2.0) / 2.0
    xs[:, ::5] = np.round(xs[:, ::5] * 2.0) / 2.0
    full_y = np.repeat(ys[:, :, None], w, 2)
    full_x = np.repeat(xs[:, None, :], h, 1)
    for border_mode in range(5):
        full = warp.remap(tf.constant(images), tf.constant(full_y),
                          tf.constant(full_x), interpolation, border_mode,
                          0.5)
        # The bilinear column pass as a gather along the width or of
        # whole pixels (the elastic field's form): the same values.
        for column_pixels in (False, True):
            sep = warp.remap_separable(
                tf.constant(images), tf.constant(ys), tf.constant(xs),
                interpolation, border_mode, 0.5,
                column_pixels=column_pixels)
            if interpolation == 0:
                np.testing.assert_array_equal(sep, full)
            else:
                np.testing.assert_allclose(sep, full, atol=TOL)


def _fold_with_fmod(c, n, mode):
    """The border folds as they were written with `tf.math.floormod`."""
    n = tf.cast(n, c.dtype)
    if mode == warp.BORDER_WRAP:
        return tf.math.floormod(c, n)
    if mode == warp.BORDER_REFLECT_101:
        period = tf.maximum(2.0 * n - 2.0, 1.0)
        c = tf.math.floormod(c, period)
        return tf.minimum(tf.where(c > n - 1.0, period - c, c), n - 1.0)
    c = tf.math.floormod(c + 0.5, 2.0 * n) - 0.5
    return tf.where(c > n - 0.5, 2.0 * n - 1.0 - c, c) + 1.0


@pytest.mark.parametrize("mode", [warp.BORDER_REFLECT, warp.BORDER_WRAP,
                                  warp.BORDER_REFLECT_101])
@pytest.mark.parametrize("n", [1, 2, 64, 1600])
def test_borders_fold_as_with_fmod(mode, n):
    # `warp.floormod` replaces `tf.math.floormod` (a per-element library
    # call under XLA): the folded coordinates are the same, bit for bit,
    # far out, at every multiple of the period and one float either side.
    rng = np.random.default_rng(n)
    period = {warp.BORDER_WRAP: n, warp.BORDER_REFLECT: 2 * n,
              warp.BORDER_REFLECT_101: max(2 * n - 2, 1)}[mode]
    edges = (np.arange(-40, 41) * period).astype("float32")
    edges = np.concatenate([edges - 0.5, edges, edges + 0.5])
    c = np.concatenate([
        rng.uniform(-30 * n - 5, 30 * n + 5, 20000), edges,
        np.nextafter(edges, np.float32(np.inf)),
        np.nextafter(edges, np.float32(-np.inf)),
        rng.normal(0.0, 1e-4, 500), [0.0, -0.0]]).astype("float32")
    c = c[(c == 0.0) | (np.abs(c) > 1e-30)]  # no subnormals (flushed)
    for compile_ in (False, True):
        def both(c):
            return (warp._fold(c, n, mode), _fold_with_fmod(c, n, mode))

        fn = tf.function(both, jit_compile=True) if compile_ else both
        got, want = fn(tf.constant(c))
        want = want.numpy()
        if mode == warp.BORDER_WRAP:
            # fmod's tiny negatives wrap to n, the pad column that repeats
            # pixel 0; ours to 0 itself.
            want = np.where(want == n, 0.0, want)
        np.testing.assert_array_equal(got.numpy(), want)


def test_floormod_matches_tensorflows():
    rng = np.random.default_rng(0)
    for period in (1.0, 7.0, 510.0, 3198.0):
        period = np.float32(period)
        k = rng.integers(-50, 50, 5000).astype("float32")
        c = np.concatenate([rng.uniform(-40 * period, 40 * period, 20000),
                            k * period, np.nextafter(k * period, np.inf),
                            np.nextafter(k * period, -np.inf)])
        c = c[np.abs(c) > 1e-30].astype("float32")  # no subnormals
        got = warp.floormod(tf.constant(c), period).numpy()
        want = tf.math.floormod(c, period).numpy()
        # Where floormod's `fmod(c) + period` rounds to the period itself
        # (c a tiny negative) ours gives 0: the same point once folded.
        tie = want == period
        assert np.all(got[tie] == 0.0)
        np.testing.assert_array_equal(got[~tie], want[~tie])
        assert np.all((got >= 0.0) & (got < period))


@pytest.mark.parametrize("element", list(geometric.D4_ELEMENTS))
def test_d4_elements_exact(element):
    image, mask = smooth_image(40, 40), blob_mask(40, 40)
    bits = tf.constant([geometric.D4_ELEMENTS[element]]) > 0
    out = ops.Dihedral().apply(_data(image, mask), {"ops": bits})
    t = A.D4()
    np.testing.assert_array_equal(out["images"][0],
                                  t.apply(image, group_element=element))
    np.testing.assert_array_equal(
        out["masks"][0, ..., 0],
        t.apply_to_mask(mask, group_element=element))


@pytest.mark.parametrize("factor", [0, 1, 2, 3])
def test_rot90_matches(factor):
    image = smooth_image(40, 40)
    table = {0: "e", 1: "r90", 2: "r180", 3: "r270"}
    bits = tf.constant([geometric.D4_ELEMENTS[table[factor]]]) > 0
    out = ops.Dihedral().apply({"images": tf.constant(image[None])},
                               {"ops": bits})
    np.testing.assert_array_equal(
        out["images"][0], A.RandomRotate90().apply(image, factor=factor))


@pytest.mark.parametrize("name", ["HorizontalFlip", "VerticalFlip"])
def test_flips_exact(image, mask, name):
    spec = {"__class_fullname__": name, "p": 1.0}
    got, got_mask = _ours(spec, image, mask)
    expected, expected_mask = _theirs(spec, image, mask)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_mask, expected_mask)


def test_transpose_exact():
    image, mask = smooth_image(40, 40), blob_mask(40, 40)
    spec = {"__class_fullname__": "Transpose", "p": 1.0}
    got, got_mask = _ours(spec, image, mask)
    expected, expected_mask = _theirs(spec, image, mask)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_mask, expected_mask)


FIXED_SPECS = {
    "brightness_contrast": {
        "__class_fullname__": "RandomBrightnessContrast", "p": 1.0,
        "brightness_limit": [0.15, 0.15], "contrast_limit": [0.3, 0.3]},
    "brightness_by_mean": {
        "__class_fullname__": "RandomBrightnessContrast", "p": 1.0,
        "brightness_limit": [-0.2, -0.2], "contrast_limit": [-0.1, -0.1],
        "brightness_by_max": False},
    "safe_range": {
        "__class_fullname__": "RandomBrightnessContrast", "p": 1.0,
        "brightness_limit": [0.3, 0.3], "contrast_limit": [0.4, 0.4],
        "ensure_safe_range": True},
    "gamma": {"__class_fullname__": "RandomGamma", "p": 1.0,
              "gamma_limit": [70, 70]},
    "shift_scale_rotate": {
        "__class_fullname__": "ShiftScaleRotate", "p": 1.0,
        "shift_limit_x": [0.05, 0.05], "shift_limit_y": [-0.1, -0.1],
        "scale_limit": [0.1, 0.1], "rotate_limit": [30, 30],
        "border_mode": 4},
    "ssr_constant": {
        "__class_fullname__": "ShiftScaleRotate", "p": 1.0,
        "shift_limit": [0.0, 0.0], "scale_limit": [-0.2, -0.2],
        "rotate_limit": [-20, -20], "border_mode": 0, "fill": 0.25,
        "fill_mask": 1},
    "affine_shear": {
        "__class_fullname__": "Affine", "p": 1.0,
        "scale": {"x": [1.1, 1.1], "y": [0.9, 0.9]},
        "translate_px": {"x": [3, 3], "y": [-2, -2]},
        "rotate": [15, 15], "shear": {"x": [10, 10], "y": [-5, -5]},
        "border_mode": 1},
    "rotate": {"__class_fullname__": "Rotate", "p": 1.0,
               "limit": [40, 40], "border_mode": 2},
    "grid": {"__class_fullname__": "GridDistortion", "p": 1.0,
             "num_steps": 5, "distort_limit": [0.2, 0.2],
             "border_mode": 4},
    "grid_unnormalized": {
        "__class_fullname__": "GridDistortion", "p": 1.0, "num_steps": 4,
        "distort_limit": [-0.25, -0.25], "normalized": False,
        "border_mode": 3},
    "optical_camera": {"__class_fullname__": "OpticalDistortion",
                       "p": 1.0, "distort_limit": [0.8, 0.8],
                       "border_mode": 4},
    "optical_fisheye": {"__class_fullname__": "OpticalDistortion",
                        "p": 1.0, "distort_limit": [-0.3, -0.3],
                        "mode": "fisheye", "border_mode": 1},
    "resize_up": {"__class_fullname__": "Resize", "p": 1.0, "height": 72,
                  "width": 80},
    "resize_down": {"__class_fullname__": "Resize", "p": 1.0, "height": 30,
                    "width": 37},
    "center_crop": {"__class_fullname__": "CenterCrop", "p": 1.0,
                    "height": 31, "width": 40},
    "random_resized_crop_full": {
        "__class_fullname__": "RandomResizedCrop", "p": 1.0,
        "size": [32, 32], "scale": [1.0, 1.0], "ratio": [4 / 3, 4 / 3]},
}


@pytest.mark.parametrize("name", sorted(FIXED_SPECS))
def test_fixed_spec_matches_albumentations(image, mask, name):
    spec = FIXED_SPECS[name]
    got, got_mask = _ours(spec, image, mask)
    expected, expected_mask = _theirs(spec, image, mask)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=TOL)
    if name.startswith("grid"):
        assert np.mean(got_mask != expected_mask) < 0.005
    else:
        np.testing.assert_array_equal(got_mask, expected_mask)
    if got.shape == image.shape:
        assert not np.allclose(got, image, atol=1e-3), "it did nothing"


def test_random_crop_at_fixed_offset(image, mask):
    op = ops.RandomCrop(20, 30)
    params = {"y0": tf.constant([7]), "x0": tf.constant([11]),
              "ch": tf.constant([20]), "cw": tf.constant([30])}
    out = op.apply(_data(image, mask), params)
    crop = (11, 7, 41, 27)
    t = A.RandomCrop(20, 30)
    np.testing.assert_array_equal(out["images"][0],
                                  t.apply(image, crop_coords=crop))
    np.testing.assert_array_equal(out["masks"][0, ..., 0],
                                  t.apply_to_mask(mask, crop_coords=crop))


def test_random_resized_crop_at_fixed_box(image, mask):
    op = ops.RandomResizedCrop(24, 40)
    params = {"y0": tf.constant([5]), "x0": tf.constant([9]),
              "ch": tf.constant([30]), "cw": tf.constant([41])}
    out = op.apply(_data(image, mask), params)
    t = A.RandomResizedCrop(size=(24, 40))
    crop = (9, 5, 50, 35)
    np.testing.assert_allclose(out["images"][0],
                               t.apply(image, crop_coords=crop), atol=TOL)
    np.testing.assert_array_equal(out["masks"][0, ..., 0],
                                  t.apply_to_mask(mask, crop_coords=crop))


def test_coarse_dropout_fixed_holes(image, mask):
    holes = np.array([[3, 4, 13, 10], [30, 20, 38, 44]])  # x1 y1 x2 y2
    op = ops.CoarseDropout(num_holes_range=(2, 2), fill=0.5, fill_mask=1)
    params = {"x0": tf.constant([holes[:, 0]], tf.int32),
              "y0": tf.constant([holes[:, 1]], tf.int32),
              "hw": tf.constant([holes[:, 2] - holes[:, 0]], tf.int32),
              "hh": tf.constant([holes[:, 3] - holes[:, 1]], tf.int32),
              "used": tf.constant([[True, True]])}
    out = op.apply(_data(image, mask), params)
    t = A.CoarseDropout(fill=0.5, fill_mask=1)
    np.testing.assert_array_equal(out["images"][0],
                                  t.apply(image, holes=holes, seed=0))
    np.testing.assert_array_equal(out["masks"][0, ..., 0],
                                  t.apply_to_mask(mask, holes=holes, seed=0))


@pytest.mark.parametrize("alpha,beta", [(1.4, 0.3), (0.5, -0.2), (-0.5, 0.4),
                                        (1.0, 1.5)])
def test_safe_brightness_contrast_matches(alpha, beta):
    from albumentations.augmentations.pixel import functional as fpixel

    expected = fpixel.get_safe_brightness_contrast_params(alpha, beta, 1.0)
    got = photometric.safe_brightness_contrast(tf.constant([alpha]),
                                               tf.constant([beta]))
    np.testing.assert_allclose([g.numpy()[0] for g in got], expected,
                               atol=1e-6)


def test_old_names_match_new(image, mask):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = {"__class_fullname__": "RandomContrast", "p": 1.0,
               "limit": [0.2, 0.2]}
    new = {"__class_fullname__": "RandomBrightnessContrast", "p": 1.0,
           "brightness_limit": 0, "contrast_limit": [0.2, 0.2]}
    np.testing.assert_array_equal(_ours(old, image, mask)[0],
                                  _ours(new, image, mask)[0])
