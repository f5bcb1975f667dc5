"""EfficientNet-B0..B4 encoders (timm and tf_ flavours) vs timm."""

import keras
import numpy as np
import pytest

from kaggle_tf.models import encoders
from kaggle_tf.models import weights
from kaggle_tf.models.encoders import efficientnet
from kaggle_tf.models.ordered_conv import OrderedConv2D
from model_helpers import features_like
from model_helpers import trainable_count

TOLERANCE = 1e-4  # max abs difference, float32, inference mode

# timm's features_only channels (feature_info.channels()).
CHANNELS = {
    "b0": (16, 24, 40, 112, 320),
    "b1": (16, 24, 40, 112, 320),
    "b2": (16, 24, 48, 120, 352),
    "b3": (24, 32, 48, 136, 384),
    "b4": (24, 32, 56, 160, 448),
}
# sum(p.numel() for p in features_only model.parameters()), timm 1.0.
PARAMS = {"b0": 3595388}


def test_both_spellings_registered_with_timm_channels():
    for variant, channels in CHANNELS.items():
        for name in (f"efficientnet_{variant}", f"tf_efficientnet_{variant}"):
            spec = encoders.spec(name)
            assert spec.channels == channels
            assert spec.timm_name == name
            assert spec.first_conv == "conv_stem.weight"


def test_depth_and_width_scaling_follow_timm():
    assert efficientnet.pyramid_stages() == (0, 1, 2, 4, 6)
    # timm: round_channels(32 * 1.4) = 48, ceil(4 * 1.8) = 8 blocks.
    assert efficientnet.round_channels(32, 1.4) == 48
    assert efficientnet.round_channels(112, 1.2) == 136
    assert efficientnet.scale_depth(4, 1.8) == 8
    assert efficientnet.scale_depth(1, 1.1) == 2


@pytest.mark.parametrize("name", ["efficientnet_b0", "tf_efficientnet_b0"])
def test_pyramid_shapes_and_padding(name):
    encoder = encoders.build(name, input_shape=(64, 96, 3))
    for level, channels in enumerate(CHANNELS["b0"], start=1):
        stride = 2 ** level
        assert encoder.output[f"P{level}"].shape == (
            None, 64 // stride, 96 // stride, channels)
    stem = encoder.get_layer("conv_stem")
    bn = encoder.get_layer("bn1")
    if name.startswith("tf_"):
        # TensorFlow "same" is Keras' "same"; BN epsilon as in TF.
        assert stem.padding == "same" and bn.epsilon == 1e-3
    else:
        # PyTorch's symmetric pad, inside the conv (no padded copy).
        assert stem.padding == "valid" and bn.epsilon == 1e-5
        assert isinstance(stem, OrderedConv2D) and stem.explicit_padding == 1
        assert "conv_stem_pad" not in [layer.name for layer in encoder.layers]
    # SE width comes from the block input (timm): 16 * 6 * 0.25 / 6 = 4.
    assert encoder.get_layer("blocks_1_0_se_conv_reduce").filters == 4


@pytest.mark.parametrize("channels", [1, 5])
def test_any_input_channel_count(channels):
    encoder = encoders.build("efficientnet_b0", input_shape=(64, 64, channels))
    out = encoder(np.zeros((1, 64, 64, channels), "float32"))
    assert out["P5"].shape == (1, 2, 2, 320)
    assert encoder.get_layer("conv_stem").kernel.shape == (3, 3, channels, 32)


def test_mapping_covers_every_variable_once():
    encoder = encoders.build("efficientnet_b0", input_shape=(64, 64, 3))
    mapping = efficientnet.torch_mapping(encoder)
    assert "blocks.1.0.se.conv_reduce.weight" in mapping
    assert mapping["blocks.1.0.conv_dw.weight"][1] == "depthwise"
    assert mapping["blocks.6.0.conv_pwl.weight"][1] == "conv"
    assert len(mapping) == len(encoder.weights)
    assert len({id(v) for v, _ in mapping.values()}) == len(mapping)


def assert_matches_timm(name, timm_model, to_nhwc, random_images,
                        shapes=((64, 64),)):
    full = timm_model(name)
    reference = features_like(full, name)
    encoder = encoders.build(name, input_shape=(None, None, 3))
    # The full checkpoint (conv_head, bn2, classifier) loads strictly.
    result = weights.load_torch_state_dict(encoder, full.state_dict())
    assert not result.missing and not result.unexpected
    assert trainable_count(encoder) == sum(
        p.numel() for p in reference.parameters())
    for height, width in shapes:
        x = random_images((height, width, 3))
        expected = to_nhwc(reference, x)
        got = encoder(x, training=False)
        for level, want in enumerate(expected, start=1):
            out = np.asarray(got[f"P{level}"])
            assert out.shape == want.shape
            assert np.abs(want).max() > 0.1
            np.testing.assert_allclose(out, want, rtol=0, atol=TOLERANCE,
                                       err_msg=f"{name} P{level}")


@pytest.mark.torch
@pytest.mark.parametrize("name", ["efficientnet_b0", "tf_efficientnet_b0"])
def test_b0_matches_timm(name, timm_model, to_nhwc, random_images):
    # 65 x 71: TF "same" pads strided convs asymmetrically, by input size.
    assert_matches_timm(name, timm_model, to_nhwc, random_images,
                        shapes=((64, 64), (65, 71)))


def test_b0_parameter_count_is_timms():
    encoder = encoders.build("tf_efficientnet_b0", input_shape=(64, 64, 3))
    assert trainable_count(encoder) == PARAMS["b0"]


@pytest.mark.torch
def test_one_channel_input_loads_summed_stem(timm_model, to_nhwc,
                                             random_images):
    full = timm_model("tf_efficientnet_b0")
    reference = features_like(full, "tf_efficientnet_b0")
    encoder = encoders.build("tf_efficientnet_b0", input_shape=(64, 64, 1))
    weights.load_torch_state_dict(encoder, full.state_dict())
    # timm's adapt_input_conv for 1 channel: the RGB kernel summed.
    x = random_images((64, 64, 1))
    want = to_nhwc(reference, np.repeat(x, 3, axis=-1))
    got = encoder(x, training=False)
    np.testing.assert_allclose(np.asarray(got["P5"]), want[-1], rtol=0,
                               atol=TOLERANCE)


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["b1", "b2", "b3", "b4"])
@pytest.mark.parametrize("prefix", ["", "tf_"])
def test_b1_to_b4_match_timm(variant, prefix, timm_model, to_nhwc,
                             random_images):
    assert_matches_timm(f"{prefix}efficientnet_{variant}", timm_model,
                        to_nhwc, random_images, shapes=((64, 64), (65, 71)))


def test_keras_file_round_trip(tmp_path):
    encoder = encoders.build("tf_efficientnet_b0", input_shape=(64, 64, 3))
    rng = np.random.RandomState(0)
    for variable in encoder.weights:
        value = rng.uniform(0.5, 1.0, variable.shape)
        if len(variable.shape) > 1:
            value *= 0.1
        variable.assign(value.astype(variable.dtype))
    encoder.save(tmp_path / "effnet.keras")
    loaded = keras.saving.load_model(tmp_path / "effnet.keras")
    x = rng.rand(1, 64, 64, 3).astype("float32")
    want, got = encoder(x), loaded(x)
    for level in ("P1", "P2", "P3", "P4", "P5"):
        np.testing.assert_array_equal(np.asarray(got[level]),
                                      np.asarray(want[level]))
