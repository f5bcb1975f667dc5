"""ConvNeXt-Tiny encoder vs timm's `convnext_tiny`; the empty P1."""

import keras
import numpy as np
import pytest

from kaggle_tf.models import encoders
from kaggle_tf.models import weights
from kaggle_tf.models.encoders import convnext
from model_helpers import features_like
from model_helpers import trainable_count

TOLERANCE = 1e-4  # max abs difference, float32, inference mode
CHANNELS = (0, 96, 192, 384, 768)
PARAMS = 27818592  # timm convnext_tiny features_only, sum of numel()


def randomize_norms(model, seed=0):
    """LayerNorm affine params and layer scales away from their init
    (gamma = 1e-6 would make every block an identity)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            layer_norm = key.startswith("stem.1.") or any(
                part in key for part in (".norm.", "downsample.0."))
            if key.endswith("gamma") or layer_norm and key.endswith(
                    "weight"):
                value.copy_(torch.rand(value.shape, generator=generator)
                            * 0.5 + 0.5)
            elif layer_norm:
                value.copy_(torch.randn(value.shape, generator=generator)
                            * 0.1)
    return model


def test_spec_shapes_and_empty_p1():
    spec = encoders.spec("convnext_tiny")
    assert spec.channels == CHANNELS and spec.first_conv == "stem.0.weight"
    encoder = encoders.build("convnext_tiny", input_shape=(64, 96, 3))
    for level, channels in enumerate(CHANNELS, start=1):
        stride = 2 ** level
        assert encoder.output[f"P{level}"].shape == (
            None, 64 // stride, 96 // stride, channels)
    assert trainable_count(encoder) == PARAMS
    encoder = encoders.build("convnext_tiny", input_shape=(None, None, 3))
    out = encoder(np.ones((2, 65, 70, 3), "float32"))
    # P1 has no channels; its size is floor(H / 2), as smp's dummy.
    assert out["P1"].shape == (2, 32, 35, 0)
    assert out["P2"].shape == (2, 16, 17, 96)
    # A U-Net style concatenation with the empty skip is a no-op.
    out = encoder(np.ones((1, 64, 96, 3), "float32"))
    up = keras.layers.UpSampling2D(2)(out["P2"])
    both = keras.layers.Concatenate()([up, out["P1"]])
    np.testing.assert_array_equal(np.asarray(both), np.asarray(up))


def test_layer_scale_and_empty_map_serialize():
    scale = convnext.LayerScale(0.5, name="gamma")
    np.testing.assert_allclose(np.asarray(scale(np.ones((1, 2, 2, 3)))),
                               0.5 * np.ones((1, 2, 2, 3)))
    assert convnext.LayerScale.from_config(scale.get_config()).init_value == (
        0.5)
    empty = convnext.EmptyFeatureMap(4)
    assert empty.compute_output_shape((None, 64, None, 3)) == (None, 16,
                                                               None, 0)
    config = keras.saving.serialize_keras_object(empty)
    assert keras.saving.deserialize_keras_object(config).strides == 4
    with pytest.raises(ValueError, match="strides"):
        convnext.EmptyFeatureMap(0)


def test_mapping_names():
    encoder = encoders.build("convnext_tiny", input_shape=(64, 64, 3))
    mapping = convnext.torch_mapping(encoder)
    assert mapping["stages.2.blocks.8.gamma"][1] == "plain"
    assert mapping["stages.0.blocks.0.conv_dw.weight"][1] == "depthwise"
    assert mapping["stages.0.blocks.0.mlp.fc1.weight"][1] == "dense"
    assert mapping["stages.3.downsample.1.weight"][1] == "conv"
    assert "stem.1.bias" in mapping and "stages.1.downsample.0.weight" in (
        mapping)
    assert len(mapping) == len(encoder.weights)


@pytest.mark.torch
def test_convnext_tiny_matches_timm(timm_model, to_nhwc, random_images):
    full = randomize_norms(timm_model("convnext_tiny"))
    reference = features_like(full, "convnext_tiny")
    assert sum(p.numel() for p in reference.parameters()) == PARAMS
    encoder = encoders.build("convnext_tiny", input_shape=(None, None, 3))
    # The full checkpoint (head.norm, head.fc) loads strictly.
    result = weights.load_torch_state_dict(encoder, full.state_dict())
    assert not result.missing and not result.unexpected
    for height, width in ((64, 64), (70, 66)):
        x = random_images((height, width, 3))
        expected = to_nhwc(reference, x)  # strides 4, 8, 16, 32
        got = encoder(x, training=False)
        for level, want in enumerate(expected, start=2):
            out = np.asarray(got[f"P{level}"])
            assert out.shape == want.shape
            assert np.abs(want).max() > 0.1
            np.testing.assert_allclose(out, want, rtol=0, atol=TOLERANCE,
                                       err_msg=f"P{level} {height}x{width}")


def test_keras_file_round_trip(tmp_path):
    encoder = encoders.build("convnext_tiny", input_shape=(None, None, 3))
    rng = np.random.RandomState(0)
    for variable in encoder.weights:
        variable.assign(rng.uniform(-0.05, 0.05, variable.shape).astype(
            variable.dtype))
    encoder.save(tmp_path / "convnext.keras")
    loaded = keras.saving.load_model(tmp_path / "convnext.keras")
    x = rng.rand(1, 64, 64, 3).astype("float32")
    want, got = encoder(x), loaded(x)
    for level in ("P1", "P2", "P3", "P4", "P5"):
        np.testing.assert_array_equal(np.asarray(got[level]),
                                      np.asarray(want[level]))
