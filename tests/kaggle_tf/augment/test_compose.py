"""Consecutive geometric ops sampled once equal the same ops one by one.

The images are linear ramps: bilinear interpolation reproduces a linear
function exactly, so reading the input once at the composed map and
interpolating an interpolated image agree wherever no read touches a
border, and the difference left is rounding (a smooth non-linear image
would differ by the blur of the second interpolation, which is what
composing removes). That holds when every op before the last of a chain
is affine or the chain has two ops (see `chain`); the chains below are
of that kind. "Away from the borders" is measured, not guessed: a ones
channel run through the same ops one by one with a zero constant border
stays exactly 1 where no read, at any step, touched the outside.

Masks use nearest sampling at every step in both forms (an index map of
index maps), so they agree except where float rounding moves a tie.
"""

import augment_helpers
import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf import config
from kaggle_tf.augment import Augmenter
from kaggle_tf.augment import build
from kaggle_tf.augment import ops
from kaggle_tf.augment.ops import base
from kaggle_tf.augment.ops import chain
from kaggle_tf.augment.ops import packing
from kaggle_tf.augment.ops import warp
from kaggle_tf.augment.ops.runner import Runner

from augment_helpers import blob_mask

H, W, N = 64, 64, 6
TOL = 1e-4
TIE_FRACTION = 0.005


def ramps(n=N, h=H, w=W):
    """Per-sample linear images (batch, h, w, 3)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:h, :w].astype("float32")
    out = []
    for _ in range(n):
        a, b = rng.uniform(-0.01, 0.01, (2, 3))
        out.append(np.stack([0.5 + a[c] * (y - h / 2) + b[c] * (x - w / 2)
                             for c in range(3)], -1))
    return np.stack(out).astype("float32")


def class_masks(n=N, classes=4, h=H, w=W):
    return np.stack([np.stack([blob_mask(h, w, seed=10 * i + c)
                               for c in range(classes)], -1)
                     for i in range(n)]).astype("float32")


def affine(mode, p=1.0):
    # ShiftScaleRotate's form.
    return ops.Affine(scale_x=(0.9, 1.1), scale_y=(0.9, 1.1),
                      keep_ratio=True, rotate=(-30, 30),
                      translate_x=(-0.06, 0.06), translate_y=(-0.06, 0.06),
                      border_mode=mode, p=p)


def grid(mode, p=1.0):
    return ops.GridDistortion(num_steps=5, distort_limit=(-0.3, 0.3),
                              border_mode=mode, p=p)


def elastic(mode, p=1.0):
    return ops.ElasticTransform(alpha=30.0, sigma=6.0,
                                noise_distribution="uniform",
                                border_mode=mode, p=p)


def optical(mode, p=1.0):
    return ops.OpticalDistortion(distort_limit=(-0.5, 0.5),
                                 border_mode=mode, p=p)


CHAINS = {
    "affine-grid": lambda m, p: [affine(m, p), grid(m, p)],
    "ssr-elastic-optical": lambda m, p: [affine(m, p), elastic(m, p),
                                         optical(m, p)],
    "grid-optical": lambda m, p: [grid(m, p), optical(m, p)],
    # The SIIM list's form: one of three distortions, then a rotation.
    "oneof-ssr": lambda m, p: [
        ops.OneOf([elastic(m), grid(m), optical(m)], p=min(1.0, 2 * p)),
        affine(m, p)],
}


def tree(nodes):
    t = ops.Compose(nodes)
    t.assign_indices()
    return t


def run(nodes, data, per_sample, compose, seed=(3, 7)):
    return base.run(tree(nodes), data, tf.constant(seed, tf.int32),
                    per_sample, compose)


def interior(make, p, per_sample, seed=(3, 7)):
    """Pixels whose reads, at every step, stay inside the image."""
    ones = {"images": tf.ones([N, H, W, 1])}
    out = run(make(warp.BORDER_CONSTANT, p), ones, per_sample, False, seed)
    return out["images"].numpy()[..., 0] >= 1.0 - 1e-6


class CountSampling:
    """Counts the samplings of the images (not of elastic fields) and
    of the composed chains, in eager mode, where a `tf.cond` runs only
    the branch it takes."""

    def __init__(self, monkeypatch, channels=3):
        self.images = 0
        self.chains = 0
        for name in ("warp_data", "warp_data_separable"):
            original = getattr(warp, name)
            monkeypatch.setattr(warp, name, self._wrap(original, channels))
        original_sample = chain.sample

        def sample(*args, **kwargs):
            self.chains += 1
            return original_sample(*args, **kwargs)

        monkeypatch.setattr(chain, "sample", sample)

    def _wrap(self, fn, channels):
        def counted(data, *args, **kwargs):
            if data["images"].shape[-1] == channels:
                self.images += 1
            return fn(data, *args, **kwargs)

        return counted


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("mode", [warp.BORDER_CONSTANT,
                                  warp.BORDER_REFLECT_101,
                                  warp.BORDER_REPLICATE])
@pytest.mark.parametrize("per_sample,p", [(True, 1.0), (False, 0.7)])
def test_composed_equals_sequential(name, mode, per_sample, p, monkeypatch):
    make = CHAINS[name]
    data = {"images": tf.constant(ramps()),
            "masks": tf.constant(class_masks())}
    sequential = run(make(mode, p), data, per_sample, False)
    counter = CountSampling(monkeypatch)
    composed = run(make(mode, p), data, per_sample, True)
    assert counter.chains >= 1, "no sample had two warps: nothing composed"
    inside = interior(make, p, per_sample)
    assert inside.mean() > 0.5
    got, expected = composed["images"].numpy(), sequential["images"].numpy()
    assert np.abs(expected - data["images"].numpy()).max() > 0.05, \
        "the ops did nothing"
    np.testing.assert_allclose(got[inside], expected[inside], atol=TOL)
    differ = composed["masks"].numpy() != sequential["masks"].numpy()
    assert differ.mean() < TIE_FRACTION
    assert not np.array_equal(sequential["masks"].numpy(),
                              data["masks"].numpy())


@pytest.mark.parametrize("mode", [warp.BORDER_REFLECT, warp.BORDER_WRAP])
def test_other_borders_compose_too(mode):
    make = CHAINS["affine-grid"]
    data = {"images": tf.constant(ramps()),
            "masks": tf.constant(class_masks())}
    sequential = run(make(mode, 1.0), data, False, False)
    composed = run(make(mode, 1.0), data, False, True)
    inside = interior(make, 1.0, False)
    np.testing.assert_allclose(composed["images"].numpy()[inside],
                               sequential["images"].numpy()[inside],
                               atol=TOL)
    differ = composed["masks"].numpy() != sequential["masks"].numpy()
    assert differ.mean() < TIE_FRACTION


def test_fill_constant_border_matches_where_the_border_is_read():
    # The constant border: where a step reads outside, the fill is mixed
    # in; with the fill 0 and a ones image the share inside is what both
    # forms give (exact for the bilinear weights of the last step only;
    # bounded elsewhere).
    nodes = CHAINS["affine-grid"](warp.BORDER_CONSTANT, 1.0)
    ones = {"images": tf.ones([N, H, W, 1]),
            "masks": tf.ones([N, H, W, 1])}
    seq = run(nodes, ones, True, False)
    comp = run(nodes, ones, True, True)
    a, b = comp["images"].numpy(), seq["images"].numpy()
    assert (b < 0.5).mean() > 0.01, "the border was never read"
    assert np.abs(a - b).max() < 0.5
    assert np.abs(a - b).mean() < 0.01
    np.testing.assert_array_equal(
        comp["masks"].numpy() == 0, seq["masks"].numpy() == 0)


@pytest.mark.parametrize("per_sample", [True, False])
def test_packed_masks_decode_to_the_same_masks(per_sample):
    make = CHAINS["ssr-elastic-optical"]
    images, masks = ramps(), class_masks()
    batch = {"images": images, "segmentation_masks": masks}
    seed = tf.constant([5, 1], tf.int32)
    t = tree(make(warp.BORDER_REFLECT_101, 1.0))
    assert t.packs_masks
    composed = Runner(t, per_sample, jit_compile=False,
                      compose_geometric=True)(batch, seed)
    sequential = Runner(t, per_sample, jit_compile=False,
                        compose_geometric=False)(batch, seed)
    folded = augment_helpers.runner_seed(seed, images)
    unpacked = base.run(t, {"images": tf.constant(images),
                            "masks": tf.constant(masks)}, folded,
                        per_sample, True)
    # Packed and unpacked composed runs move the same pixels.
    np.testing.assert_array_equal(composed["segmentation_masks"],
                                  unpacked["masks"])
    differ = composed["segmentation_masks"].numpy() \
        != sequential["segmentation_masks"].numpy()
    assert differ.mean() < TIE_FRACTION
    np.testing.assert_allclose(composed["images"], unpacked["images"],
                               atol=1e-6)
    # The packed form itself round-trips.
    np.testing.assert_array_equal(
        packing.unpack(packing.pack(unpacked["masks"]), 4, tf.float32),
        unpacked["masks"])


def test_three_warps_sample_the_images_once(monkeypatch):
    data = {"images": tf.constant(ramps()),
            "masks": tf.constant(class_masks())}
    nodes = CHAINS["ssr-elastic-optical"](warp.BORDER_REFLECT_101, 1.0)
    for per_sample, compose, samplings in ((False, False, 3),
                                           (False, True, 1),
                                           (True, True, N)):
        counter = CountSampling(monkeypatch)
        run(nodes, data, per_sample, compose)
        assert counter.images == samplings, (per_sample, compose)


def test_other_ops_and_other_borders_break_the_chain(monkeypatch):
    data = {"images": tf.constant(ramps())}
    mode = warp.BORDER_REFLECT_101
    # A photometric op or a flip between two warps needs the pixels: two
    # samplings, each of one warp, as before.
    for middle in (ops.Gamma((80, 120), p=1.0),
                   ops.Flip("horizontal", p=1.0)):
        nodes = [affine(mode), middle, elastic(mode)]
        counter = CountSampling(monkeypatch)
        composed = run(nodes, data, False, True)
        assert (counter.images, counter.chains) == (2, 0)
        np.testing.assert_array_equal(
            composed["images"], run(nodes, data, False, False)["images"])
    # Different borders are sampled apart, each with its own; the two
    # that share one are composed.
    counter = CountSampling(monkeypatch)
    run([affine(warp.BORDER_CONSTANT), grid(mode), optical(mode)], data,
        False, True)
    assert (counter.images, counter.chains) == (2, 1)


@pytest.mark.parametrize("per_sample", [True, False])
def test_a_single_active_warp_is_unchanged(per_sample):
    data = {"images": tf.constant(ramps()),
            "masks": tf.constant(class_masks())}
    mode = warp.BORDER_REFLECT_101
    for nodes in ([affine(mode), grid(mode, p=0.0), elastic(mode, p=0.0)],
                  [grid(mode, p=0.0), optical(mode)],
                  [elastic(mode)]):
        composed = run(nodes, data, per_sample, True)
        sequential = run(nodes, data, per_sample, False)
        for key in ("images", "masks"):
            np.testing.assert_array_equal(composed[key], sequential[key])


def test_composed_chain_compiles_with_xla():
    images, masks = ramps(), class_masks()
    t = tree(CHAINS["oneof-ssr"](warp.BORDER_REFLECT_101, 0.7))
    seed = tf.constant([2, 9], tf.int32)
    batch = {"images": images, "segmentation_masks": masks}
    jit = Runner(t, True, jit_compile=True)(batch, seed)
    eager = Runner(t, True, jit_compile=False)(batch, seed)
    np.testing.assert_allclose(jit["images"], eager["images"], atol=1e-4)
    differ = jit["segmentation_masks"].numpy() \
        != eager["segmentation_masks"].numpy()
    assert differ.mean() < TIE_FRACTION


def test_the_option_reaches_the_runner(tmp_path):
    cfg = config.load("configs/siim.json",
                      ["augment.compose_geometric=false"])
    assert cfg.augment.compose_geometric is False
    augmenter = build(cfg.augment, base_dir="configs")
    assert augmenter._runner.compose_geometric is False
    assert Augmenter.from_config(augmenter.get_config()) \
        ._runner.compose_geometric is False
    assert config.load("configs/siim.json").augment.compose_geometric
    with pytest.raises(config.ConfigError,
                       match="augment.compose_geometric"):
        config.load("configs/siim.json", ["augment.compose_geometric=2"])
