"""U-Net and FPN: structure and values against smp; Upsample vs torch."""

import numpy as np
import pytest

from kaggle_tf.models import FPN
from kaggle_tf.models import Unet
from kaggle_tf.models import blocks
from kaggle_tf.models import weights
from model_helpers import trainable_count


# --- structure ---

def test_unet_resnet34_has_smps_parameter_count():
    # smp.Unet("resnet34", classes=1): 24,436,369 parameters. Keras also
    # counts BatchNorm's moving mean/variance (PyTorch buffers), so compare
    # trainable weights.
    model = Unet("resnet34", classes=1, input_shape=(64, 64, 3))
    assert trainable_count(model) == 24_436_369


def test_fpn_resnet34_has_smps_parameter_count():
    model = FPN("resnet34", classes=1, input_shape=(64, 64, 3))
    assert trainable_count(model) == 23_155_393  # smp.FPN("resnet34")


@pytest.mark.parametrize("builder", [Unet, FPN])
def test_outputs_masks_and_aux_labels(builder):
    model = builder("test_resnet", classes=3, input_shape=(64, 96, 3),
                    aux_head=True)
    assert model.get_layer("encoder").encoder_name == "test_resnet"
    out = model(np.zeros((2, 64, 96, 3), "float32"), training=False)
    assert sorted(out) == ["labels", "masks"]
    assert out["masks"].shape == (2, 64, 96, 3)
    assert out["labels"].shape == (2, 3)


@pytest.mark.parametrize("builder", [Unet, FPN])
def test_activation_appends_sigmoid(builder):
    logits_model = builder("test_resnet", classes=2, input_shape=(64, 64, 3))
    probs_model = builder("test_resnet", classes=2, input_shape=(64, 64, 3),
                          activation="sigmoid")
    probs_model.set_weights(logits_model.get_weights())
    x = np.random.RandomState(0).rand(1, 64, 64, 3).astype("float32")
    logits = np.asarray(logits_model(x, training=False))
    probs = np.asarray(probs_model(x, training=False))
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"classes": 0}, "classes=0"),
    ({"input_shape": (65, 64, 3)}, "divisible by 32"),
    ({"activation": "relu"}, "activation='relu'"),
    ({"decoder_attention": "cbam"}, "decoder_attention='cbam'"),
    ({"decoder_channels": (8, 8)}, "decoder_channels"),
    ({"decoder_attention": "scse", "decoder_channels": (32, 16, 8, 8, 8)},
     "must be >= 16"),
    ({"encoder_weights": 3}, "encoder_weights=3"),
])
def test_unet_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Unet(**{"encoder": "test_resnet", **kwargs})


def test_fpn_bad_arguments_are_named():
    with pytest.raises(ValueError, match="merge='sum'"):
        FPN("test_resnet", merge="sum")
    with pytest.raises(ValueError, match="segmentation_channels=100"):
        FPN("test_resnet", segmentation_channels=100)


# --- values against smp ---

CASES = [
    (Unet, "Unet", {}, {}),
    (Unet, "Unet", {"decoder_attention": "scse"},
     {"decoder_attention_type": "scse"}),
    (Unet, "Unet", {"aux_head": True},
     {"aux_params": {"classes": 2, "dropout": 0.0}}),
    (FPN, "FPN", {}, {}),
    (FPN, "FPN", {"merge": "cat"}, {"decoder_merge_policy": "cat"}),
]


@pytest.mark.torch
@pytest.mark.parametrize("builder, arch, ours, theirs", CASES)
def test_matches_smp_with_smps_weights(builder, arch, ours, theirs,
                                       smp_model, to_nhwc, random_images):
    reference = smp_model(arch, **theirs)
    model = builder("test_resnet", classes=2, input_shape=(None, None, 3),
                    **ours)
    result = weights.load_smp_state_dict(model, reference.state_dict())
    assert not result.missing and not result.unexpected
    x = random_images((64, 96, 3))
    want = to_nhwc(reference, x)
    got = model(x, training=False)
    if ours.get("aux_head"):
        np.testing.assert_allclose(np.asarray(got["labels"]), want[1],
                                   atol=1e-4, rtol=0)
        got, want = got["masks"], want[0]
    assert np.abs(want).max() > 0.05
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=0)


# --- Upsample vs F.interpolate ---

@pytest.mark.torch
@pytest.mark.parametrize("scale, mode, align", [
    (2, "bilinear", True), (4, "bilinear", True), (2, "bilinear", False),
    (3, "nearest", False)])
def test_upsample_matches_torch_interpolate(scale, mode, align, torch_ref):
    x = np.random.RandomState(1).randn(2, 5, 7, 3).astype("float32")
    kwargs = {"align_corners": align} if mode == "bilinear" else {}
    want = torch_ref.nn.functional.interpolate(
        torch_ref.from_numpy(x.transpose(0, 3, 1, 2)), scale_factor=scale,
        mode=mode, **kwargs).numpy().transpose(0, 2, 3, 1)
    got = blocks.Upsample(scale, mode, align_corners=align)(x)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=0)
