"""Shared inputs for the augment tests: small smooth images and masks.

Test modules import it after putting this folder on `sys.path` (a plain
module name, unlike `conftest`, cannot clash with other test folders).
"""

import warnings

import numpy as np

H, W = 48, 64


def smooth_image(h=H, w=W, channels=3, seed=0):
    """Values in [0, 1], smooth (a few cosines), so that interpolation
    differences stay small and visible errors are real ones."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w].astype("float32")
    out = np.zeros((h, w, channels), "float32")
    for c in range(channels):
        for _ in range(3):
            fy, fx, phase = rng.uniform(0.02, 0.15, 2).tolist() + [
                rng.uniform(0, 6)]
            out[..., c] += np.cos(fy * y + fx * x + phase)
    out -= out.min()
    return out / out.max()


def blob_mask(h=H, w=W, seed=1):
    """A binary (h, w) mask with a few blobs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w].astype("float32")
    out = np.zeros((h, w), "float32")
    for _ in range(3):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(4, 10)
        out[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = 1.0
    return out


def albumentations_compose(spec):
    """An albumentations Compose from one transform dict (p as given)."""
    import albumentations as A

    with warnings.catch_warnings():
        # ShiftScaleRotate warns that Affine is preferred.
        warnings.simplefilter("ignore")
        return A.Compose([A.from_dict({"transform": spec})], p=1.0)


def runner_seed(seed, images):
    """The seed `Runner` hands `base.run` for `images` and a call's
    `seed` (the call's seed folded with a hash of an image subsample)."""
    import tensorflow as tf

    return tf.random.experimental.stateless_fold_in(
        seed, tf.reduce_sum(tf.cast(tf.round(
            tf.constant(images)[:, ::16, ::16, :] * 255.0), tf.int32)),
        alg="philox")
