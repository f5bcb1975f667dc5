"""Whole-model import: smp Unet / FPN and timm classifiers, logits parity.

Every PyTorch model has random weights and BatchNorm statistics (eval
mode); ours loads its `state_dict()` with `weights.load_torch_state_dict`
and must give the same logits within 1e-4 on 64x64 images.
"""

import numpy as np
import pytest

from kaggle_tf.models import FPN
from kaggle_tf.models import Classifier
from kaggle_tf.models import Unet
from kaggle_tf.models.classifier import embedding_model
from kaggle_tf.models import weights
from kaggle_tf.models.encoders import smp as smp_names
from torch_refs import randomize_batch_norm
from model_helpers import randomize

ATOL = 1e-4


def images(shape=(64, 64, 3), seed=0):
    return np.random.RandomState(seed).rand(1, *shape).astype("float32")


@pytest.fixture
def smp_reference(torch_ref):
    smp = pytest.importorskip("segmentation_models_pytorch")

    def make(arch, encoder_name, **kwargs):
        model = getattr(smp, arch)(encoder_name, encoder_weights=None,
                                   classes=2, **kwargs)
        return randomize_batch_norm(model).eval()

    return make


def check_close(got, want):
    got = np.asarray(got)
    assert got.shape == want.shape
    assert np.abs(want).max() > 0.05  # not a trivially zero output
    assert np.abs(got - want).max() <= ATOL


# --- smp Unet / FPN ---

SMP_ENCODERS = [
    "resnet34",
    "se_resnext50_32x4d",
    "efficientnet-b0",
    # lukemelas' static padding for 240..380 differs from "same" at 64x64
    "efficientnet-b1",
    "efficientnet-b2",
    "efficientnet-b3",
    "efficientnet-b4",
    "timm-efficientnet-b0",
    "densenet121",
    "tu-resnet18",
    "resnet50",
    pytest.param("timm-efficientnet-b2", marks=pytest.mark.slow),
    pytest.param("efficientnet-b5", marks=pytest.mark.slow),
    pytest.param("efficientnet-b7", marks=pytest.mark.slow),
]
# The FPN shares the encoder: one lukemelas variant beyond B0 suffices.
SMP_FPN_ENCODERS = [
    pytest.param(e, marks=pytest.mark.slow)
    if e in ("efficientnet-b2", "efficientnet-b3", "efficientnet-b4") else e
    for e in SMP_ENCODERS]


@pytest.mark.torch
@pytest.mark.parametrize("smp_encoder", SMP_ENCODERS)
def test_smp_unet_matches(smp_encoder, smp_reference, to_nhwc):
    reference = smp_reference("Unet", smp_encoder)
    model = Unet(smp_names.smp_encoder_name(smp_encoder), classes=2,
                 input_shape=(64, 64, 3))
    result = weights.load_torch_state_dict(model, reference.state_dict())
    assert result.loaded and not result.missing and not result.unexpected
    x = images()
    check_close(model(x, training=False), to_nhwc(reference, x))


@pytest.mark.torch
@pytest.mark.parametrize("smp_encoder", SMP_FPN_ENCODERS)
def test_smp_fpn_matches(smp_encoder, smp_reference, to_nhwc):
    reference = smp_reference("FPN", smp_encoder)
    model = FPN(smp_names.smp_encoder_name(smp_encoder), classes=2,
                input_shape=(64, 64, 3))
    result = weights.load_torch_state_dict(model, reference.state_dict())
    assert not result.missing and not result.unexpected
    x = images()
    check_close(model(x, training=False), to_nhwc(reference, x))


@pytest.mark.torch
@pytest.mark.parametrize("builder, arch, ours, theirs", [
    (Unet, "Unet",
     {"decoder_channels": (128, 64, 32, 32, 16), "decoder_attention": "scse"},
     {"decoder_channels": (128, 64, 32, 32, 16),
      "decoder_attention_type": "scse"}),
    (FPN, "FPN",
     {"pyramid_channels": 128, "segmentation_channels": 64, "merge": "cat",
      "dropout": 0.5},
     {"decoder_pyramid_channels": 128, "decoder_segmentation_channels": 64,
      "decoder_merge_policy": "cat", "decoder_dropout": 0.5}),
])
def test_smp_decoder_options_match(builder, arch, ours, theirs,
                                   smp_reference, to_nhwc):
    reference = smp_reference(arch, "efficientnet-b0", **theirs)
    model = builder("smp-efficientnet-b0", classes=2,
                    input_shape=(64, 64, 3), **ours)
    weights.load_torch_state_dict(model, reference.state_dict())
    x = images()
    check_close(model(x, training=False), to_nhwc(reference, x))


@pytest.mark.torch
def test_smp_directory_reads_the_encoder_name(tmp_path, smp_reference,
                                              to_nhwc):
    reference = smp_reference("Unet", "tu-resnet18")
    reference.save_pretrained(str(tmp_path))
    model = Unet("resnet18", classes=2, input_shape=(64, 64, 3))
    weights.load_torch_state_dict(model, tmp_path)
    x = images()
    check_close(model(x, training=False), to_nhwc(reference, x))
    with pytest.raises(ValueError, match="build the model with "
                       "encoder='resnet18'"):
        weights.load_torch_state_dict(
            Unet("resnet34", classes=2, input_shape=(64, 64, 3)), tmp_path)


def test_unsupported_smp_encoder_is_named_with_the_supported_list():
    model = Unet("test_resnet", classes=2, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match=r"'mobilenet_v2'.*Supported smp "
                       r"encoders: .*se_resnext50_32x4d"):
        weights.load_torch_state_dict(model, {}, smp_encoder="mobilenet_v2")


def test_smp_encoder_names_map_to_registered_encoders():
    from kaggle_tf.models import encoders

    for smp_name, ours in smp_names.SMP_ENCODERS.items():
        assert ours in encoders.names(), smp_name
    assert smp_names.smp_encoder_name("tu-convnext_tiny") == "convnext_tiny"


@pytest.mark.torch
def test_smp_checkpoint_into_the_timm_layout_encoder_says_which_to_use(
        smp_reference):
    state = smp_reference("Unet", "se_resnext50_32x4d").state_dict()
    model = Unet("seresnext50_32x4d", classes=2, input_shape=(64, 64, 3))
    with pytest.raises(weights.WeightLoadError,
                       match="se_resnext50_32x4d -> legacy_seresnext50_32x4d"):
        weights.load_torch_state_dict(model, state)


@pytest.mark.torch
def test_legacy_seresnext50_matches_timm_features(timm_features, to_nhwc):
    from kaggle_tf.models import encoders

    reference = timm_features("legacy_seresnext50_32x4d")
    encoder = encoders.build("legacy_seresnext50_32x4d", (64, 64, 3))
    # features_only flattens `layer0.conv1` to `layer0.conv1`: same keys.
    result = weights.load_torch_state_dict(encoder, reference.state_dict())
    assert not result.missing and not result.unexpected
    x = images()
    got = encoder(x, training=False)
    for level, want in enumerate(to_nhwc(reference, x)):
        np.testing.assert_allclose(np.asarray(got[f"P{level + 1}"]), want,
                                   atol=ATOL, rtol=0)


# --- timm classifiers -> Classifier ---

@pytest.mark.torch
@pytest.mark.parametrize("name", [
    "resnet18", "resnet34", "seresnext50_32x4d"])
def test_timm_classifier_head_loads_with_avg_head(name, timm_model,
                                                  to_nhwc):
    reference = timm_model(name, num_classes=5)
    model = Classifier(name, classes=5, head="avg", input_shape=(64, 64, 3))
    result = weights.load_torch_state_dict(model, reference.state_dict())
    assert "fc.weight" in result.loaded and not result.skipped
    assert not result.missing and not result.unexpected
    x = images()
    check_close(model(x, training=False), to_nhwc(reference, x))


@pytest.mark.torch
@pytest.mark.parametrize("name, pre_head", [
    ("efficientnet_b0", "conv_head"), ("convnext_tiny", "head.norm")])
def test_timm_head_on_other_features_is_skipped(name, pre_head, timm_model,
                                                torch_ref):
    reference = timm_model(name, num_classes=5)
    model = Classifier(name, classes=5, head="avg", input_shape=(64, 64, 3))
    result = weights.load_torch_state_dict(model, reference.state_dict())
    assert not result.missing and not result.unexpected
    assert result.skipped and all(
        pre_head in why and "head='timm'" in why for _, why in result.skipped)
    # The encoder is timm's: the pooled features match timm's trunk.
    x = images()
    with torch_ref.no_grad():
        t = torch_ref.from_numpy(x.transpose(0, 3, 1, 2))
        if name == "convnext_tiny":
            trunk = reference.stages(reference.stem(t))
        else:
            trunk = reference.blocks(reference.bn1(reference.conv_stem(t)))
        want = trunk.mean((2, 3)).numpy()
    check_close(embedding_model(model)(x, training=False), want)


@pytest.mark.torch
@pytest.mark.parametrize("name", [
    "efficientnet_b0", "tf_efficientnet_b0", "mobilenetv2_100",
    "convnext_tiny", "resnet18"])
def test_timm_head_loads_whole_timm_classifiers(name, timm_model, to_nhwc):
    reference = timm_model(name, num_classes=5)
    if name == "convnext_tiny":  # layer scales 1e-6: near-identity blocks
        import torch

        with torch.no_grad():
            for key, value in reference.named_parameters():
                if key.endswith(("gamma", "norm.weight")):
                    value.copy_(torch.rand_like(value) * 0.5 + 0.5)
    model = Classifier(name, classes=5, head="timm", input_shape=(64, 64, 3))
    result = weights.load_torch_state_dict(model, reference.state_dict())
    assert not result.missing and not result.unexpected and not result.skipped
    pre_head = {"convnext_tiny": "head.norm.weight", "resnet18": "fc.weight"}
    assert pre_head.get(name, "conv_head.weight") in result.loaded
    x = images()
    check_close(model(x, training=False), to_nhwc(reference, x))


@pytest.mark.torch
def test_concat_pool_head_is_skipped_and_encoder_loaded(timm_model, to_nhwc):
    reference = timm_model("resnet18", num_classes=5)
    model = Classifier("resnet18", classes=5, input_shape=(64, 64, 3))
    result = weights.load_torch_state_dict(model, reference.state_dict())
    assert [k for k, _ in result.skipped] == ["fc.bias", "fc.weight"]
    assert "head='avg'" in result.skipped[0][1]
    assert not result.missing and not result.unexpected


@pytest.mark.torch
def test_timm_head_with_other_classes_is_skipped(timm_model):
    reference = timm_model("resnet18", num_classes=7)
    model = Classifier("resnet18", classes=5, head="avg",
                       input_shape=(64, 64, 3))
    result = weights.load_torch_state_dict(model, reference.state_dict())
    assert result.skipped and "(7, 512)" in result.skipped[0][1]


# --- our own Keras files as initial weights ---

@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_keras_files_load_as_initial_weights(suffix, tmp_path):
    source = randomize(Unet("test_resnet", classes=2,
                            input_shape=(64, 64, 3)))
    path = str(tmp_path / f"model{suffix}")
    if suffix == ".keras":
        source.save(path)
    else:
        source.save_weights(path)
    model = Unet("test_resnet", classes=2, input_shape=(64, 64, 3))
    result = weights.load_torch_state_dict(model, path)
    assert len(result.loaded) == len(model.variables)
    x = images()
    np.testing.assert_allclose(np.asarray(model(x, training=False)),
                               np.asarray(source(x, training=False)),
                               atol=1e-6, rtol=0)
