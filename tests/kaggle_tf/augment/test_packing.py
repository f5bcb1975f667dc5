"""Masks packed a bit per class: the round trip, and trees run packed give
the masks they give unpacked (nearest sampling only copies values); masks
and images given to the augmenter in their stored forms (packed masks,
integer images) give what their decoded forms give."""

import augment_helpers
import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf.augment import albumentations as alb
from kaggle_tf.augment.ops import base
from kaggle_tf.augment.ops import packing
from kaggle_tf.augment.ops.runner import Runner

from augment_helpers import blob_mask
from augment_helpers import smooth_image

SIIM = "configs/transforms/siim_1st.json"


def _masks(n, classes, h=48, w=64):
    # Overlapping classes: bits must not interfere.
    return np.stack([np.stack([blob_mask(h, w, seed=10 * i + c)
                               for c in range(classes)], -1)
                     for i in range(n)])


@pytest.mark.parametrize("classes", [1, 4, 8])
def test_pack_unpack_round_trip(classes):
    masks = _masks(3, classes)
    packed = packing.pack(tf.constant(masks))
    assert packed.dtype == tf.uint8 and packed.shape[-1] == 1
    np.testing.assert_array_equal(
        packing.unpack(packed, classes, tf.float32), masks)
    # Bit c is class c.
    c = classes - 1
    np.testing.assert_array_equal((packed.numpy()[..., 0] >> c) & 1,
                                  masks[..., c])


def test_packed_fill_is_the_fill_of_every_class():
    fill = packing.packed_fill(1)
    np.testing.assert_array_equal(
        packing.unpack(tf.constant([[fill]], tf.uint8), 5, tf.float32),
        [[1.0] * 5])
    assert packing.packed_fill([1, 0, 1]) == 0b101
    assert packing.is_binary_fill(None) and not packing.is_binary_fill(0.5)


WITH_FILLS = [
    {"__class_fullname__": "HorizontalFlip", "p": 0.5},
    {"__class_fullname__": "ShiftScaleRotate", "p": 0.8, "border_mode": 0,
     "fill_mask": 1},
    {"__class_fullname__": "CoarseDropout", "p": 0.8, "fill_mask": 1,
     "num_holes_range": [2, 4]},
    {"__class_fullname__": "RandomCrop", "height": 40, "width": 56},
]


@pytest.mark.parametrize("spec", [SIIM, WITH_FILLS])
@pytest.mark.parametrize("per_sample", [True, False])
def test_packed_run_equals_unpacked(spec, per_sample):
    n = 6
    images = np.stack([smooth_image(seed=i) for i in range(n)])
    masks = _masks(n, 4)
    tree = alb.to_tree(spec)
    assert tree.packs_masks
    seed = tf.constant([4, 2], tf.int32)
    packed = Runner(tree, per_sample=per_sample, jit_compile=False)(
        {"images": images, "segmentation_masks": masks}, seed)
    folded = augment_helpers.runner_seed(seed, images)
    plain = base.run(tree, {"images": tf.constant(images),
                            "masks": tf.constant(masks)}, folded,
                     per_sample)
    np.testing.assert_array_equal(packed["segmentation_masks"],
                                  plain["masks"])
    np.testing.assert_allclose(packed["images"], plain["images"], atol=1e-6)
    assert not np.array_equal(plain["masks"], masks), "it did nothing"


def test_soft_masks_are_not_packed():
    images = np.stack([smooth_image(seed=i) for i in range(2)])
    soft = _masks(2, 2) * 0.7
    tree = alb.to_tree([{"__class_fullname__": "HorizontalFlip", "p": 1.0}])
    out = Runner(tree, per_sample=True, jit_compile=False)(
        {"images": images, "segmentation_masks": soft},
        tf.constant([1, 1], tf.int32))
    np.testing.assert_array_equal(out["segmentation_masks"],
                                  soft[:, :, ::-1])


def test_bilinear_masks_or_keras_layers_do_not_pack():
    bilinear = alb.to_tree([{"__class_fullname__": "ShiftScaleRotate",
                             "p": 1.0, "mask_interpolation": 1}])
    assert not bilinear.packs_masks
    assert not alb.to_tree([{"__class_fullname__": "ShiftScaleRotate",
                             "p": 1.0, "fill_mask": 0.5}]).packs_masks


def _packed(masks):
    bits = (masks > 0.5).astype(np.uint8) << np.arange(
        masks.shape[-1], dtype=np.uint8)
    return bits.sum(-1, keepdims=True, dtype=np.uint8)


KERAS_LAYER = [{"__class_fullname__": "keras.layers.RandomRotation",
                "factor": 0.1, "p": 1.0},
               {"__class_fullname__": "HorizontalFlip", "p": 0.5}]


@pytest.mark.parametrize("spec", [SIIM, WITH_FILLS, KERAS_LAYER])
@pytest.mark.parametrize("placement", ["dataset", "model"])
def test_masks_given_packed_equal_masks_given_one_hot(spec, placement):
    from kaggle_tf.augment import Augmenter

    n = 6
    images = np.stack([smooth_image(seed=i) for i in range(n)])
    masks = _masks(n, 5)
    packed = _packed(masks)
    # Packed as `packing.pack` does (bit c = class c).
    np.testing.assert_array_equal(packing.pack(tf.constant(masks)), packed)
    one_hot_aug = Augmenter(spec, seed=7, placement=placement,
                            jit_compile=False)
    packed_aug = Augmenter(spec, seed=7, placement=placement,
                           jit_compile=False)
    for step in range(3):
        seed = tf.constant([step, 11], tf.int32)
        want = one_hot_aug({"images": images, "segmentation_masks": masks,
                            "labels": np.ones((n, 5), np.float32)},
                           training=True, seed=seed)
        got = packed_aug({"images": images, "packed_masks": packed,
                          "labels": np.ones((n, 5), np.float32)},
                         training=True, seed=seed, mask_classes=5)
        assert sorted(got) == ["images", "labels", "segmentation_masks"]
        assert got["segmentation_masks"].dtype == tf.float32
        assert got["segmentation_masks"].shape \
            == want["segmentation_masks"].shape
        np.testing.assert_array_equal(got["segmentation_masks"],
                                      want["segmentation_masks"])
        np.testing.assert_array_equal(got["images"], want["images"])
    assert want["segmentation_masks"].shape[-1] == 5
    assert want["segmentation_masks"].shape != masks.shape \
        or not np.array_equal(want["segmentation_masks"], masks)
    # Not training: only converted.
    stored = np.round(images * 255).astype(np.uint8)
    same = packed_aug({"images": stored, "packed_masks": packed},
                      training=False, mask_classes=5)
    np.testing.assert_array_equal(same["segmentation_masks"], masks)
    np.testing.assert_array_equal(
        same["images"], tf.image.convert_image_dtype(stored, tf.float32))


def test_packed_masks_under_xla_and_symbolic_shapes():
    from kaggle_tf.augment import Augmenter

    images = np.stack([smooth_image(seed=i) for i in range(4)])
    masks = _masks(4, 3)
    aug = Augmenter(SIIM, seed=1)
    plain = Augmenter(SIIM, seed=1)
    seed = tf.constant([3, 5], tf.int32)
    got = aug({"images": images, "packed_masks": _packed(masks)},
              seed=seed, mask_classes=3)
    want = plain({"images": images, "segmentation_masks": masks}, seed=seed)
    np.testing.assert_array_equal(got["segmentation_masks"],
                                  want["segmentation_masks"])
    spec = aug.compute_output_spec(
        {"images": images, "packed_masks": _packed(masks)}, mask_classes=3)
    assert spec["segmentation_masks"].shape == (4, 48, 64, 3)
    assert "packed_masks" not in spec
    stored = np.zeros((4, 48, 64, 3), np.uint8)
    assert aug.compute_output_spec(
        {"images": stored})["images"].dtype == "float32"
    assert aug.compute_output_spec(stored).dtype == "float32"


def test_bad_packed_masks_are_named():
    from kaggle_tf.augment import Augmenter

    images = np.zeros((2, 8, 8, 3), np.float32)
    packed = np.zeros((2, 8, 8, 1), np.uint8)
    aug = Augmenter([{"__class_fullname__": "HorizontalFlip", "p": 1.0}])
    with pytest.raises(ValueError, match="needs `mask_classes`"):
        aug({"images": images, "packed_masks": packed})
    with pytest.raises(ValueError, match="needs `mask_classes`"):
        aug({"images": images, "packed_masks": packed}, mask_classes=9)
    with pytest.raises(ValueError, match=r"\(batch, height, width, 1\) "
                                         "uint8"):
        aug({"images": images, "packed_masks": packed.astype(np.float32)},
            mask_classes=2)
    with pytest.raises(ValueError, match="either 'segmentation_masks' or"):
        aug({"images": images, "packed_masks": packed,
             "segmentation_masks": np.zeros((2, 8, 8, 2), np.float32)},
            mask_classes=2)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("jit_compile", [True, False])
def test_integer_images_are_scaled_as_the_records_decode_them(dtype,
                                                              jit_compile):
    from kaggle_tf.augment import Augmenter

    top = np.iinfo(dtype).max
    rng = np.random.default_rng(0)
    stored = rng.integers(0, top + 1, (4, 48, 64, 3)).astype(dtype)
    floats = tf.image.convert_image_dtype(stored, tf.float32).numpy()
    masks = _masks(4, 2)
    seed = tf.constant([2, 9], tf.int32)
    got = Augmenter(SIIM, seed=1, jit_compile=jit_compile)(
        {"images": stored, "packed_masks": _packed(masks)}, seed=seed,
        mask_classes=2)
    want = Augmenter(SIIM, seed=1, jit_compile=jit_compile)(
        {"images": floats, "segmentation_masks": masks}, seed=seed)
    assert got["images"].dtype == tf.float32
    np.testing.assert_array_equal(got["images"], want["images"])
    np.testing.assert_array_equal(got["segmentation_masks"],
                                  want["segmentation_masks"])
    assert not np.array_equal(want["images"], floats)
