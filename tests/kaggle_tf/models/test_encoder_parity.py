"""Our encoders vs timm's `features_only` models, same random weights."""

import numpy as np
import pytest

from kaggle_tf.models import encoders
from kaggle_tf.models import weights

pytestmark = pytest.mark.torch

TOLERANCE = 1e-4  # max abs difference, float32, inference mode


def assert_pyramid_close(name, timm_features, to_nhwc, random_images,
                         shapes=((64, 64), (64, 96))):
    reference = timm_features(name)
    encoder = encoders.build(name, input_shape=(None, None, 3))
    weights.load_torch_state_dict(encoder, reference.state_dict())
    for height, width in shapes:
        x = random_images((height, width, 3))
        expected = to_nhwc(reference, x)
        got = encoder(x, training=False)
        for level, want in enumerate(expected, start=1):
            out = np.asarray(got[f"P{level}"])
            stride = 2 ** level
            size = (-(-height // stride), -(-width // stride))  # ceil
            channels = encoders.spec(name).channels[level - 1]
            assert out.shape == (2, *size, channels)
            # Random BN stats keep activations near 1: a real comparison.
            assert np.abs(want).max() > 0.1
            np.testing.assert_allclose(out, want, rtol=0, atol=TOLERANCE,
                                       err_msg=f"{name} P{level}")


@pytest.mark.parametrize("name", ["test_resnet", "resnet18", "resnet34",
                                  "seresnext50_32x4d"])
def test_pyramid_matches_timm(name, timm_features, to_nhwc, random_images):
    assert_pyramid_close(name, timm_features, to_nhwc, random_images)


@pytest.mark.slow
def test_resnet50_pyramid_matches_timm(timm_features, to_nhwc,
                                       random_images):
    assert_pyramid_close("resnet50", timm_features, to_nhwc, random_images)


def test_odd_input_sizes_match_timm(timm_features, to_nhwc, random_images):
    # Explicit symmetric padding and ceil-mode avg pooling (ResNet-D
    # shortcut) keep odd sizes exact too.
    assert_pyramid_close("test_resnet", timm_features, to_nhwc,
                         random_images, shapes=((65, 71),))
