"""DenseNet-121 encoder vs timm's `densenet121`."""

import numpy as np
import pytest

from kaggle_tf.models import encoders
from kaggle_tf.models import weights
from kaggle_tf.models.encoders import densenet
from model_helpers import features_like
from model_helpers import trainable_count

TOLERANCE = 1e-4  # max abs difference, float32, inference mode
CHANNELS = (64, 256, 512, 1024, 1024)  # timm feature_info.channels()
PARAMS = 6953856  # timm densenet121 features_only, sum of numel()


def test_spec_and_shapes():
    spec = encoders.spec("densenet121")
    assert spec.channels == CHANNELS and spec.timm_name == "densenet121"
    encoder = encoders.build("densenet121", input_shape=(64, 96, 3))
    for level, channels in enumerate(CHANNELS, start=1):
        stride = 2 ** level
        assert encoder.output[f"P{level}"].shape == (
            None, 64 // stride, 96 // stride, channels)
    assert trainable_count(encoder) == PARAMS
    assert encoder.get_layer("features_conv0").explicit_padding == 3
    mapping = densenet.torch_mapping(encoder)
    assert spec.first_conv in mapping
    assert "features.denseblock3.denselayer24.conv2.weight" in mapping
    assert "features.norm5.running_var" in mapping
    assert len(mapping) == len(encoder.weights)


def test_small_densenet_and_errors():
    model = densenet.densenet((None, None, 2), (1, 2, 1, 1), growth_rate=8)
    out = model(np.zeros((1, 64, 64, 2), "float32"))
    # 16 + 8 -> 12 -> 28 -> 14 -> 22 -> 11 -> 19 channels.
    assert [out[f"P{i}"].shape[-1] for i in range(1, 6)] == [16, 24, 28, 22,
                                                             19]
    with pytest.raises(ValueError, match="block_config"):
        densenet.densenet((64, 64, 3), (6, 12, 24))


@pytest.mark.torch
def test_densenet121_matches_timm(timm_model, to_nhwc, random_images):
    full = timm_model("densenet121")
    reference = features_like(full, "densenet121")
    assert sum(p.numel() for p in reference.parameters()) == PARAMS
    encoder = encoders.build("densenet121", input_shape=(None, None, 3))
    result = weights.load_torch_state_dict(encoder, full.state_dict())
    assert not result.missing and not result.unexpected
    for height, width in ((64, 64), (65, 71)):
        x = random_images((height, width, 3))
        expected = to_nhwc(reference, x)
        got = encoder(x, training=False)
        for level, want in enumerate(expected, start=1):
            out = np.asarray(got[f"P{level}"])
            assert out.shape == want.shape
            assert np.abs(want).max() > 0.1
            np.testing.assert_allclose(out, want, rtol=0, atol=TOLERANCE,
                                       err_msg=f"P{level} {height}x{width}")
