"""Masks packed a bit per class: the round trip, and trees run packed give
the masks they give unpacked (nearest sampling only copies values)."""

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
