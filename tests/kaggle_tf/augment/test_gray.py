"""Grayscale stored as RGB: a batch whose images have all channels equal
runs the tree on one channel (`Runner(gray_once=True)`) and gives what the
three channels give, bit for bit; other batches and trees that treat
channels differently take the full path."""

import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf.augment import albumentations as alb
from kaggle_tf.augment.ops.runner import Runner

from augment_helpers import blob_mask
from augment_helpers import smooth_image

SIIM = "configs/transforms/siim_1st.json"
WITH_FILLS = [
    {"__class_fullname__": "HorizontalFlip", "p": 0.5},
    {"__class_fullname__": "RandomGamma", "p": 0.5},
    {"__class_fullname__": "ShiftScaleRotate", "p": 0.8, "border_mode": 0,
     "fill": 0.25, "fill_mask": 1},
    {"__class_fullname__": "CoarseDropout", "p": 0.8, "fill": 0.5,
     "num_holes_range": [2, 4]},
    {"__class_fullname__": "RandomCrop", "height": 40, "width": 56},
]
CLASSES = 3


def _gray_batch(n, dtype):
    gray = np.stack([smooth_image(channels=1, seed=i) for i in range(n)])
    images = np.repeat(gray, 3, axis=-1)
    if dtype == np.uint8:
        images = np.round(images * 255).astype(np.uint8)
    masks = np.stack([np.stack([blob_mask(seed=10 * i + c)
                                for c in range(CLASSES)], -1)
                      for i in range(n)])
    bits = (masks > 0.5).astype(np.uint8) << np.arange(CLASSES,
                                                       dtype=np.uint8)
    return images, bits.sum(-1, keepdims=True, dtype=np.uint8), masks


def _run(tree, batch, seed, gray_once, jit_compile, mask_classes=CLASSES):
    runner = Runner(tree, per_sample=True, jit_compile=jit_compile,
                    gray_once=gray_once)
    return runner, runner(batch, seed, mask_classes=mask_classes)


@pytest.mark.parametrize("spec", [SIIM, WITH_FILLS])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("jit_compile", [True, False])
def test_gray_batches_run_once_and_equal_the_full_path(spec, dtype,
                                                       jit_compile):
    tree = alb.to_tree(spec)
    assert tree.channel_uniform
    images, packed, _ = _gray_batch(6, dtype)
    for step in range(3):
        seed = tf.constant([step, 5], tf.int32)
        batch = {"images": images, "packed_masks": packed}
        runner, got = _run(tree, batch, seed, True, jit_compile)
        full, want = _run(tree, batch, seed, False, jit_compile)
        # The one-channel path was built and used.
        assert (CLASSES, 3) in runner._cores
        assert not any(key[1] for key in full._cores)
        assert got["images"].dtype == tf.float32
        assert got["images"].shape == want["images"].shape
        np.testing.assert_array_equal(got["images"], want["images"])
        np.testing.assert_array_equal(got["segmentation_masks"],
                                      want["segmentation_masks"])
    assert not np.array_equal(want["images"][..., :1],
                              tf.image.convert_image_dtype(
                                  images[..., :1], tf.float32)
                              if dtype == np.uint8 else images[..., :1])


def test_a_batch_with_one_colour_image_takes_the_full_path():
    tree = alb.to_tree(SIIM)
    images, packed, _ = _gray_batch(4, np.float32)
    images[2, :, :, 1] = np.minimum(images[2, :, :, 1] + 0.05, 1.0)
    _, got = _run(tree, {"images": images, "packed_masks": packed},
                  tf.constant([1, 2], tf.int32), True, True)
    # The one-channel path would repeat channel 0 into all three.
    assert not np.array_equal(got["images"][2, ..., 0],
                              got["images"][2, ..., 1])
    np.testing.assert_array_equal(got["images"][0, ..., 0],
                                  got["images"][0, ..., 1])
    _, want = _run(tree, {"images": images, "packed_masks": packed},
                   tf.constant([1, 2], tf.int32), False, True)
    np.testing.assert_array_equal(got["images"], want["images"])


def test_gray_path_inside_tf_data_and_with_one_hot_masks():
    tree = alb.to_tree(SIIM)
    images, _, masks = _gray_batch(4, np.uint8)
    seed = tf.constant([7, 3], tf.int32)
    runner = Runner(tree, per_sample=True, jit_compile=True)
    ds = tf.data.Dataset.from_tensors(
        {"images": images, "segmentation_masks": masks})
    got = next(iter(ds.map(lambda b: runner(b, seed))))
    _, want = _run(tree, {"images": images, "segmentation_masks": masks},
                   seed, False, True, None)
    np.testing.assert_array_equal(got["images"], want["images"])
    np.testing.assert_array_equal(got["segmentation_masks"],
                                  want["segmentation_masks"])


@pytest.mark.parametrize("step", [
    {"__class_fullname__": "CoarseDropout", "p": 1.0,
     "fill": [0.1, 0.5, 0.9], "num_holes_range": [3, 4]},
    {"__class_fullname__": "ShiftScaleRotate", "p": 1.0, "border_mode": 0,
     "fill": [0.1, 0.5, 0.9], "shift_limit": 0.3},
    {"__class_fullname__": "RandomBrightnessContrast", "p": 1.0,
     "brightness_by_max": False},
    {"__class_fullname__": "keras.layers.RandomRotation", "factor": 0.1,
     "p": 1.0},
])
def test_trees_that_treat_channels_differently_take_the_full_path(step):
    tree = alb.to_tree([{"__class_fullname__": "HorizontalFlip", "p": 0.5},
                        step])
    assert not tree.channel_uniform
    runner = Runner(tree, per_sample=True, jit_compile=tree.xla_safe)
    assert not runner.gray_once
    images, packed, _ = _gray_batch(4, np.float32)
    out = runner({"images": images}, tf.constant([1, 1], tf.int32))
    if "fill" in step:
        # Fills differ per channel: the channels no longer agree.
        assert not np.array_equal(out["images"][..., 0],
                                  out["images"][..., 2])
    assert not any(key[1] for key in runner._cores)


def test_vectorized_runners_do_not_branch():
    tree = alb.to_tree(SIIM)
    assert not Runner(tree, per_sample=False, jit_compile=False).gray_once
    assert not Runner(tree, per_sample=True, jit_compile=False,
                      gray_once=False).gray_once


def test_augmenter_passes_gray_once_and_serializes_it():
    from kaggle_tf.augment import Augmenter
    from kaggle_tf.augment import from_albumentations

    assert from_albumentations(SIIM, seed=1)._runner.gray_once
    aug = from_albumentations(SIIM, seed=1, gray_once=False)
    assert not aug._runner.gray_once
    config = aug.get_config()
    assert config["gray_once"] is False
    again = Augmenter.from_config(config)
    assert not again._runner.gray_once
    images, packed, _ = _gray_batch(2, np.uint8)
    batch = {"images": images, "packed_masks": packed}
    seed = tf.constant([4, 4], tf.int32)
    np.testing.assert_array_equal(
        aug(batch, seed=seed, mask_classes=CLASSES)["images"],
        from_albumentations(SIIM, seed=1)(batch, seed=seed,
                                          mask_classes=CLASSES)["images"])
