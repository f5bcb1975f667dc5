"""Random transforms: probabilities, parameter ranges, seeds, execution
modes. Frequencies are checked against binomial tolerances (4.5 sigma)."""

import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf.augment import albumentations as alb
from kaggle_tf.augment import from_albumentations
from kaggle_tf.augment.ops import geometric
from kaggle_tf.augment.ops.runner import Runner

from augment_helpers import blob_mask
from augment_helpers import smooth_image

SIIM = "configs/transforms/siim_1st.json"
N = 4000
# A 2x2 pattern whose flips are all distinct: 0 1 / 2 3.
PATTERN = np.array([[0, 1], [2, 3]], "float32")[None, :, :, None] / 3.0


def _within(count, n, p):
    sigma = max(np.sqrt(n * p * (1 - p)), 1.0)
    return abs(count - n * p) <= 4.5 * sigma


def _patterns(spec, n=N, seed=0):
    aug = from_albumentations(spec, seed=seed, placement="model")
    images = np.repeat(PATTERN, n, axis=0)
    return aug({"images": images}, training=True)["images"].numpy()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_flip_fraction_is_p(p):
    out = _patterns({"__class_fullname__": "HorizontalFlip", "p": p})
    flipped = np.all(out == PATTERN[:, :, ::-1], axis=(1, 2, 3))
    same = np.all(out == PATTERN, axis=(1, 2, 3))
    assert np.all(flipped | same)
    assert _within(flipped.sum(), N, p), flipped.mean()


def test_one_of_picks_by_child_p():
    spec = {"__class_fullname__": "OneOf", "p": 0.6, "transforms": [
        {"__class_fullname__": "HorizontalFlip", "p": 1.0},
        {"__class_fullname__": "VerticalFlip", "p": 3.0 / 3.0 * 0.5},
        {"__class_fullname__": "Transpose", "p": 0.5}]}
    out = _patterns(spec)
    kinds = {
        "h": PATTERN[:, :, ::-1], "v": PATTERN[:, ::-1],
        "t": np.transpose(PATTERN, (0, 2, 1, 3)), "none": PATTERN}
    counts = {k: int(np.all(out == v, axis=(1, 2, 3)).sum())
              for k, v in kinds.items()}
    assert sum(counts.values()) == N
    # Child weights 1, 0.5, 0.5 -> 0.5, 0.25, 0.25 of the 60% applied.
    assert _within(counts["h"], N, 0.3), counts
    assert _within(counts["v"], N, 0.15), counts
    assert _within(counts["t"], N, 0.15), counts
    assert _within(counts["none"], N, 0.4), counts


def test_some_of_applies_n_distinct():
    spec = {"__class_fullname__": "SomeOf", "n": 1, "p": 1.0, "transforms": [
        {"__class_fullname__": "HorizontalFlip", "p": 1.0},
        {"__class_fullname__": "VerticalFlip", "p": 1.0}]}
    out = _patterns(spec, n=1000)
    h = np.all(out == PATTERN[:, :, ::-1], axis=(1, 2, 3))
    v = np.all(out == PATTERN[:, ::-1], axis=(1, 2, 3))
    assert np.all(h ^ v)
    assert _within(h.sum(), 1000, 0.5)


def test_one_or_other():
    spec = {"__class_fullname__": "OneOrOther", "p": 0.25, "transforms": [
        {"__class_fullname__": "HorizontalFlip", "p": 0.0},
        {"__class_fullname__": "VerticalFlip", "p": 0.0}]}
    out = _patterns(spec)
    h = np.all(out == PATTERN[:, :, ::-1], axis=(1, 2, 3))
    v = np.all(out == PATTERN[:, ::-1], axis=(1, 2, 3))
    assert np.all(h ^ v)  # the chosen branch always applies
    assert _within(h.sum(), N, 0.25)


def test_d4_uniform_over_group():
    out = _patterns({"__class_fullname__": "D4", "p": 1.0}, n=8000)
    seen = []
    for element, (t, v, h) in geometric.D4_ELEMENTS.items():
        x = PATTERN
        x = np.transpose(x, (0, 2, 1, 3)) if t else x
        x = x[:, ::-1] if v else x
        x = x[:, :, ::-1] if h else x
        count = np.all(out == x, axis=(1, 2, 3)).sum()
        assert _within(count, 8000, 1 / 8), (element, count)
        seen.append(count)
    assert sum(seen) == 8000


def _constant_images(value, n=N):
    return np.full((n, 2, 2, 1), value, "float32")


def test_gamma_range_and_spread():
    aug = from_albumentations({"__class_fullname__": "RandomGamma",
                               "gamma_limit": [80, 120], "p": 1.0},
                              seed=1, placement="model")
    out = aug({"images": _constant_images(0.5)})["images"].numpy()
    gamma = np.log(out[:, 0, 0, 0]) / np.log(0.5)
    assert gamma.min() >= 0.8 - 1e-4 and gamma.max() <= 1.2 + 1e-4
    # Uniform on [0.8, 1.2]: each tenth of the range holds ~10%.
    counts, _ = np.histogram(gamma, bins=10, range=(0.8, 1.2))
    assert all(_within(c, N, 0.1) for c in counts), counts


def test_brightness_contrast_ranges():
    aug = from_albumentations(
        {"__class_fullname__": "RandomBrightnessContrast", "p": 1.0,
         "brightness_limit": [-0.1, 0.2], "contrast_limit": 0.0},
        seed=2, placement="model")
    out = aug({"images": _constant_images(0.5)})["images"].numpy()
    beta = out[:, 0, 0, 0] - 0.5
    assert beta.min() >= -0.1 - 1e-6 and beta.max() <= 0.2 + 1e-6
    assert beta.min() < -0.09 and beta.max() > 0.19
    assert abs(beta.mean() - 0.05) < 0.005


def test_parameters_differ_per_sample():
    image = smooth_image()
    aug = from_albumentations({"__class_fullname__": "ShiftScaleRotate",
                               "p": 1.0}, seed=3, placement="model")
    out = aug({"images": np.repeat(image[None], 4, 0)})["images"].numpy()
    assert len({o.tobytes() for o in out}) == 4


def _batch(n=4):
    images = np.stack([smooth_image(seed=i) for i in range(n)])
    masks = np.stack([blob_mask(seed=i) for i in range(n)])[..., None]
    return {"images": images, "segmentation_masks": masks,
            "labels": np.arange(n * 3, dtype="float32").reshape(n, 3)}


@pytest.mark.parametrize("placement", ["dataset", "model"])
def test_fixed_seed_repeats_the_batch(placement):
    batch = _batch()
    first = from_albumentations(SIIM, seed=7, placement=placement)
    second = from_albumentations(SIIM, seed=7, placement=placement)
    other = from_albumentations(SIIM, seed=8, placement=placement)
    a1, a2 = first(batch), first(batch)
    b1 = second(batch)
    c1 = other(batch)
    np.testing.assert_array_equal(a1["images"], b1["images"])
    np.testing.assert_array_equal(a1["segmentation_masks"],
                                  b1["segmentation_masks"])
    assert not np.array_equal(a1["images"], a2["images"])  # next call
    assert not np.array_equal(a1["images"], c1["images"])  # other seed
    np.testing.assert_array_equal(a1["labels"], batch["labels"])


@pytest.mark.parametrize("spec", [SIIM, "configs/transforms/hpa_d4.json"])
def test_per_sample_equals_vectorized(spec):
    h = w = 48
    images = np.stack([smooth_image(h, w, seed=i) for i in range(6)])
    masks = np.stack([blob_mask(h, w, seed=i) for i in range(6)])[..., None]
    data = {"images": images, "segmentation_masks": masks}
    tree = alb.to_tree(spec)
    seed = tf.constant([11, 5], tf.int32)
    mapped = Runner(tree, per_sample=True, jit_compile=False)(data, seed)
    vector = Runner(tree, per_sample=False, jit_compile=False)(data, seed)
    np.testing.assert_allclose(mapped["images"], vector["images"],
                               atol=1e-5)
    np.testing.assert_array_equal(mapped["segmentation_masks"],
                                  vector["segmentation_masks"])


def test_xla_draws_the_same_parameters():
    data = _batch()
    seed = tf.constant([3, 9], tf.int32)
    plain = Runner(alb.to_tree(SIIM), per_sample=True,
                   jit_compile=False)(data, seed)
    # The "dataset" augmenter's runner is the XLA-compiled one.
    augmenter = from_albumentations(SIIM, seed=0)
    assert augmenter._runner.jit_compile
    jitted = augmenter._runner(data, seed)
    np.testing.assert_allclose(plain["images"], jitted["images"], atol=1e-4)
    assert np.mean(plain["segmentation_masks"]
                   != jitted["segmentation_masks"]) < 1e-3


def test_masks_stay_binary_and_photometric_leaves_masks():
    batch = _batch()
    out = from_albumentations(SIIM, seed=0)(batch)
    assert set(np.unique(out["segmentation_masks"])) <= {0.0, 1.0}
    photometric = from_albumentations(
        [{"__class_fullname__": "RandomGamma", "p": 1.0},
         {"__class_fullname__": "RandomBrightnessContrast", "p": 1.0}],
        seed=0, placement="model")
    out = photometric(batch)
    np.testing.assert_array_equal(out["segmentation_masks"],
                                  batch["segmentation_masks"])
    assert not np.allclose(out["images"], batch["images"])


def test_geometric_moves_masks_with_images():
    # A mask equal to a thresholded image must stay equal to the
    # thresholded output wherever nearest and bilinear agree.
    image = smooth_image(channels=1)
    mask = (image > 0.5).astype("float32")
    aug = from_albumentations({"__class_fullname__": "ShiftScaleRotate",
                               "p": 1.0, "border_mode": 4}, seed=4,
                              placement="model")
    out = aug({"images": image[None], "segmentation_masks": mask[None]})
    agree = (out["images"].numpy() > 0.5) == (
        out["segmentation_masks"].numpy() > 0.5)
    assert agree.mean() > 0.97


def test_elastic_field_statistics_match_albumentations():
    """Our field is smoothed on a coarse grid; its std (away from the
    borders, where both replicate differently) matches albumentations'."""
    from albumentations.augmentations.geometric import functional as fgeo

    h, w, inner = 192, 256, slice(48, -48)
    for noise, alpha, sigma in (("uniform", 120.0, 6.0),
                                ("gaussian", 300.0, 10.0)):
        op = geometric.ElasticTransform(alpha=alpha, sigma=sigma,
                                        noise_distribution=noise)
        params = op.sample(tf.constant([1, 2]), 4, h, w)
        data = {"images": tf.zeros([4, h, w, 1])}
        ys, xs = op.coords(data, params)
        gy, gx = np.mgrid[:h, :w]
        ours = np.stack([(xs - gx).numpy(), (ys - gy).numpy()])
        rng = np.random.default_rng(0)
        theirs = np.stack([np.stack(fgeo.generate_displacement_fields(
            (h, w), alpha, sigma, same_dxdy=False, kernel_size=(0, 0),
            random_generator=rng, noise_distribution=noise))
            for _ in range(4)])
        ratio = ours[..., inner, inner].std() \
            / theirs[..., inner, inner].std()
        assert 0.85 < ratio < 1.15, (noise, ratio)
        assert abs(ours.mean()) < 0.2 * ours.std()
