"""The encoders of issue #13 item 5 vs timm's `features_only` models, and
in a U-Net (forward pass, `.keras` round trip)."""


import re

import keras
import numpy as np
import pytest

from kaggle_tf.models import encoders
from kaggle_tf.models import weights
from kaggle_tf.models.decoders import Unet
from model_helpers import randomize

TOLERANCE = 1e-4  # max abs difference, float32, inference mode

# name -> the smallest input side used in its parity test.
FAST = {
    "efficientnet_b5": 64,
    "tf_efficientnet_b5": 64,
    "mobilenetv2_100": 64,
    "resnext50_32x4d": 64,
    "legacy_xception": 64,
    "inception_v3": 75,
    "inception_v4": 75,
}
SLOW = {
    "efficientnet_b6": 64,
    "efficientnet_b7": 64,
    "tf_efficientnet_b6": 64,
    "tf_efficientnet_b7": 64,
    "resnext101_32x4d": 64,
    "resnext101_32x8d": 64,
}
NEW = {**FAST, **SLOW}
# Valid-padded networks: classifiers only.
CLASSIFIER_ONLY = ("legacy_xception", "inception_v3", "inception_v4")


def timm_keys(state_dict):
    """A features_only state dict under the full model's keys: hook
    wrappers nest it under `body.`, list wrappers flatten `features.0`
    to `features_0`."""
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("body.")
        key = re.sub(r"^features_(\d+)\.", r"features.\1.", key)
        out[key] = value
    return out


def assert_matches_timm(name, size, timm_features, to_nhwc, random_images,
                        shapes=None):
    reference = timm_features(name)
    spec = encoders.spec(name)
    assert tuple(reference.feature_info.reduction()) == spec.strides
    assert tuple(reference.feature_info.channels()) == spec.channels
    encoder = encoders.build(name, input_shape=(None, None, 3))
    result = weights.load_torch_state_dict(
        encoder, timm_keys(reference.state_dict()))
    assert not result.missing and not result.unexpected
    for height, width in shapes or ((size, size),):
        x = random_images((height, width, 3))
        expected = to_nhwc(reference, x)
        got = encoder(x, training=False)
        assert len(expected) == len(spec.strides)
        for level, want in enumerate(expected, start=1):
            out = np.asarray(got[f"P{level}"])
            assert out.shape == want.shape, f"{name} P{level}"
            # Random BN stats keep activations near 1: a real comparison.
            assert np.abs(want).max() > 0.1
            np.testing.assert_allclose(out, want, rtol=0, atol=TOLERANCE,
                                       err_msg=f"{name} P{level}")


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(FAST))
def test_matches_timm(name, timm_features, to_nhwc, random_images):
    assert_matches_timm(name, FAST[name], timm_features, to_nhwc,
                        random_images)


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_big_variants_match_timm(name, timm_features, to_nhwc,
                                 random_images):
    assert_matches_timm(name, SLOW[name], timm_features, to_nhwc,
                        random_images)


@pytest.mark.torch
def test_tf_same_padding_odd_size_matches_timm(timm_features, to_nhwc,
                                               random_images):
    # TF "same" pads strided convs by input size: odd sizes too.
    assert_matches_timm("tf_efficientnet_b5", 65, timm_features, to_nhwc,
                        random_images, shapes=((65, 71),))


def test_registered():
    assert set(NEW) <= set(encoders.names())


def _unet_round_trip(name, tmp_path):
    model = Unet(name, classes=2, input_shape=(64, 64, 3))
    randomize(model, std=0.05)
    x = np.random.RandomState(0).rand(1, 64, 64, 3).astype("float32")
    want = np.asarray(model(x, training=False))
    assert want.shape == (1, 64, 64, 2)
    assert np.all(np.isfinite(want))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), want)


@pytest.mark.parametrize("name", sorted(set(FAST) - set(CLASSIFIER_ONLY)))
def test_unet_forward_and_keras_round_trip(name, tmp_path):
    _unet_round_trip(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_big_unet_forward_and_keras_round_trip(name, tmp_path):
    _unet_round_trip(name, tmp_path)


@pytest.mark.parametrize("name", CLASSIFIER_ONLY)
def test_classifier_only_encoders_rejected_by_decoders(name):
    from kaggle_tf.models.decoders import FPN

    assert not encoders.spec(name).segmentation_ready
    for arch in (Unet, FPN):
        with pytest.raises(ValueError, match=f"encoder '{name}' \\(strides "
                                             r"\(2, 4, 8, 16, 32\)\) serves "
                                             "classifiers only"):
            arch(name, classes=1, input_shape=(96, 96, 3))


@pytest.mark.parametrize("name", CLASSIFIER_ONLY)
def test_classifier_only_encoders_in_a_classifier_round_trip(name, tmp_path):
    from kaggle_tf.models.classifier import Classifier

    size = max(64, encoders.spec(name).min_input_size or 0)
    model = Classifier(name, classes=3, input_shape=(size, size, 3))
    randomize(model, std=0.05)
    x = np.random.RandomState(0).rand(1, size, size, 3).astype("float32")
    want = np.asarray(model(x, training=False))
    assert want.shape == (1, 3) and np.all(np.isfinite(want))
    model.save(tmp_path / "clf.keras")
    loaded = keras.saving.load_model(tmp_path / "clf.keras")
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), want)
