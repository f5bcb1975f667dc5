"""EdgeNeXt-Base encoder vs timm's `edgenext_base`; the empty P1; U-Net,
Classifier and `.keras` round trips."""

import keras
import numpy as np
import pytest

from kaggle_tf.models import encoders
from kaggle_tf.models import weights
from kaggle_tf.models.classifier import Classifier
from kaggle_tf.models.decoders import FPN
from kaggle_tf.models.decoders import Unet
from kaggle_tf.models.encoders import edgenext
from model_helpers import randomize
from model_helpers import trainable_count

TOLERANCE = 1e-4  # max abs difference, float32, inference mode
CHANNELS = (0, 80, 160, 288, 584)


def randomize_edgenext(model, seed=0):
    """Layer scales, temperatures and LayerNorm affine params away from
    their init (gamma = 1e-6 would make every block an identity)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.named_parameters():
            if key.endswith(("gamma", "gamma_xca", "temperature")):
                value.copy_(torch.rand(value.shape, generator=generator)
                            * 0.5 + 0.5)
            elif value.ndim == 1:  # LayerNorm weights; biases
                base = 1.0 if key.endswith("weight") else 0.0
                value.copy_(torch.randn(value.shape, generator=generator)
                            * 0.1 + base)
    return model


@pytest.fixture(scope="module")
def timm_edgenext():
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return randomize_edgenext(
        timm.create_model("edgenext_base", pretrained=False,
                          num_classes=5)).eval()


def test_spec_shapes_and_empty_p1():
    spec = encoders.spec("edgenext_base")
    assert spec.channels == CHANNELS and spec.strides == (2, 4, 8, 16, 32)
    assert spec.segmentation_ready  # P1 is empty, as convnext_tiny's
    encoder = encoders.build("edgenext_base", input_shape=(64, 96, 3))
    for level, channels in enumerate(CHANNELS, start=1):
        stride = 2 ** level
        assert encoder.output[f"P{level}"].shape == (
            None, 64 // stride, 96 // stride, channels)


@pytest.mark.torch
def test_matches_timm_at_every_stride(timm_edgenext, torch_ref):
    reference = timm_edgenext
    # timm's pyramid: four stages at strides 4..32 (no stride-2 map).
    assert [i["reduction"] for i in reference.feature_info] == [4, 8, 16, 32]
    assert [i["num_chs"] for i in reference.feature_info] == list(
        CHANNELS[1:])
    encoder = encoders.build("edgenext_base", input_shape=(None, None, 3))
    result = weights.load_torch_state_dict(encoder,
                                           reference.state_dict())
    assert not result.missing and not result.unexpected
    assert trainable_count(encoder) == sum(
        v.numel() for k, v in reference.state_dict().items()
        if not k.startswith("head."))
    rng = np.random.RandomState(0)
    for height, width in ((64, 64), (96, 64)):
        x = rng.rand(1, height, width, 3).astype("float32")
        with torch_ref.no_grad():
            expected = reference.forward_intermediates(
                torch_ref.from_numpy(x.transpose(0, 3, 1, 2)),
                intermediates_only=True)
        got = encoder(x, training=False)
        assert got["P1"].shape == (1, height // 2, width // 2, 0)
        for level, want in enumerate(expected, start=2):
            want = want.numpy().transpose(0, 2, 3, 1)
            out = np.asarray(got[f"P{level}"])
            assert out.shape == want.shape
            assert np.abs(want).max() > 0.1
            np.testing.assert_allclose(out, want, rtol=0, atol=TOLERANCE,
                                       err_msg=f"P{level}")


@pytest.mark.torch
def test_timm_classifier_loads_whole_with_the_timm_head(timm_edgenext,
                                                        to_nhwc):
    model = Classifier("edgenext_base", classes=5, head="timm",
                       input_shape=(64, 64, 3))
    result = weights.load_torch_state_dict(model, timm_edgenext.state_dict())
    assert not result.missing and not result.unexpected
    assert not result.skipped and "head.norm.weight" in result.loaded
    x = np.random.RandomState(1).rand(1, 64, 64, 3).astype("float32")
    want = to_nhwc(timm_edgenext, x)
    assert np.abs(want).max() > 0.05
    np.testing.assert_allclose(np.asarray(model(x, training=False)), want,
                               rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("build", [
    lambda: Unet("edgenext_base", classes=2, input_shape=(64, 64, 3)),
    lambda: FPN("edgenext_base", classes=2, input_shape=(64, 64, 3)),
    lambda: Classifier("edgenext_base", classes=3, head="timm",
                       input_shape=(64, 64, 3)),
], ids=["unet", "fpn", "classifier"])
def test_keras_round_trip(build, tmp_path):
    x = np.random.RandomState(0).rand(1, 64, 64, 3).astype("float32")
    model = randomize(build(), std=0.05)
    want = np.asarray(model(x, training=False))
    assert np.all(np.isfinite(want)) and np.abs(want).max() > 0
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)),
                                  want)


def test_layers_serialize_and_check_their_input():
    positions = edgenext.FourierPositions(name="pos")
    again = edgenext.FourierPositions.from_config(positions.get_config())
    assert again.hidden_dim == 32
    pos = np.asarray(positions(np.zeros((2, 3, 4, 5), "float32")))
    assert pos.shape == (2, 3, 4, 64)
    # Channel 0 is sin(y), y = 2 pi (row + 1) / height: row 2 of 3 -> 0.
    np.testing.assert_allclose(pos[0, :, 0, 0],
                               np.sin(2 * np.pi * np.arange(1, 4) / 3),
                               atol=1e-5)
    attention = edgenext.CrossCovarianceAttention(2)
    assert edgenext.CrossCovarianceAttention.from_config(
        attention.get_config()).num_heads == 2
    with pytest.raises(ValueError, match="multiple of 3 \\* num_heads"):
        attention(np.zeros((1, 2, 2, 10), "float32"))
