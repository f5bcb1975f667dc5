"""timm state dicts -> our encoders: files, prefixes, errors."""

import numpy as np
import pytest

from kaggle_tf.models import Unet
from kaggle_tf.models import encoders
from kaggle_tf.models import torch_layout as layout
from kaggle_tf.models import weights


def test_strip_key():
    assert weights.strip_key("module.encoder.model.conv1.weight") == (
        "conv1.weight")
    assert weights.strip_key("layer1.0.bn1.weight") == "layer1.0.bn1.weight"


# --- loading ---

@pytest.fixture
def timm_state(timm_model):
    """test_resnet's full timm state dict (classifier, BN counters)."""
    return timm_model("test_resnet", num_classes=5).state_dict()


@pytest.mark.torch
def test_loads_timm_state_dict_values(timm_state):
    state = timm_state
    assert "fc.weight" in state  # ignored, as num_batches_tracked
    encoder = encoders.build("test_resnet", input_shape=(32, 32, 3))
    result = weights.load_torch_state_dict(encoder, state)
    assert not result.missing and not result.unexpected
    kernel = encoder.get_layer("layer3_0_conv2").kernel.numpy()
    np.testing.assert_array_equal(
        kernel, state["layer3.0.conv2.weight"].numpy().transpose(2, 3, 1, 0))
    bn = encoder.get_layer("conv1_4")
    np.testing.assert_array_equal(bn.moving_variance.numpy(),
                                  state["conv1.4.running_var"].numpy())
    assert len(result.loaded) == len(layout.mapping_by_layer_names(encoder))


@pytest.mark.torch
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_files_with_prefixes(suffix, tmp_path, torch_ref, timm_state):
    state = {f"module.model.{k}": v for k, v in timm_state.items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pth":
        torch_ref.save({"state_dict": state}, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, path)
    encoder = encoders.build("test_resnet", input_shape=(32, 32, 3))
    weights.load_torch_state_dict(encoder, str(path))
    np.testing.assert_array_equal(
        encoder.get_layer("bn1").gamma.numpy(),
        state["module.model.bn1.weight"].numpy())


@pytest.mark.torch
def test_error_lists_every_problem_and_assigns_nothing(timm_state):
    state = {k: v.numpy() for k, v in timm_state.items()}
    del state["layer2.0.conv1.weight"]
    state["layer9.0.conv1.weight"] = np.zeros((4, 4, 3, 3), "float32")
    state["layer1.0.bn1.running_mean"] = np.zeros((7,), "float32")
    encoder = encoders.build("test_resnet", input_shape=(32, 32, 3))
    before = encoder.get_layer("bn1").gamma.numpy().copy()
    with pytest.raises(weights.WeightLoadError) as info:
        weights.load_torch_state_dict(encoder, state)
    message = str(info.value)
    assert "1 missing, 1 unexpected, 1 mis-shaped" in message
    assert "missing: layer2.0.conv1.weight: encoder needs (48, 32, 3, 3)" in (
        message)
    assert "unexpected: layer9.0.conv1.weight: state dict (4, 4, 3, 3)" in (
        message)
    assert ("mis-shaped: layer1.0.bn1.running_mean: state dict (7,), "
            "encoder needs (32,)") in message
    np.testing.assert_array_equal(encoder.get_layer("bn1").gamma.numpy(),
                                  before)
    result = weights.load_torch_state_dict(encoder, state, strict=False)
    assert result.missing == ["layer2.0.conv1.weight"]
    assert result.unexpected == ["layer9.0.conv1.weight"]
    assert [m[0] for m in result.mismatched] == ["layer1.0.bn1.running_mean"]
    np.testing.assert_array_equal(encoder.get_layer("bn1").gamma.numpy(),
                                  state["bn1.weight"])


@pytest.mark.torch
@pytest.mark.parametrize("in_chans", [1, 4])
def test_input_channels_adapted_as_timm(in_chans, timm_features, to_nhwc,
                                        random_images):
    """Our encoder with C inputs, loaded from 3-channel weights, equals
    timm created with in_chans=C and timm's adapted stem."""
    from timm.models._manipulate import adapt_input_conv

    reference3 = timm_features("test_resnet")
    state = reference3.state_dict()
    reference = timm_features("test_resnet", in_chans=in_chans)
    adapted = dict(state)
    adapted["conv1.0.weight"] = adapt_input_conv(in_chans,
                                                 state["conv1.0.weight"])
    reference.load_state_dict(adapted)
    encoder = encoders.build("test_resnet", input_shape=(64, 64, in_chans))
    weights.load_torch_state_dict(encoder, state)
    x = random_images((64, 64, in_chans))
    got = encoder(x, training=False)
    for level, want in enumerate(to_nhwc(reference, x), start=1):
        np.testing.assert_allclose(np.asarray(got[f"P{level}"]), want,
                                   atol=1e-4, rtol=0)


@pytest.mark.torch
def test_loads_into_nested_encoder_of_full_model(timm_state):
    state = timm_state
    model = Unet("test_resnet", classes=2, input_shape=(64, 64, 3))
    encoder, spec = weights.find_encoder(model)
    assert encoder.name == "encoder" and spec.name == "test_resnet"
    weights.load_torch_state_dict(model, state)
    np.testing.assert_array_equal(
        model.get_layer("encoder").get_layer("layer4_0_conv1").kernel.numpy(),
        state["layer4.0.conv1.weight"].numpy().transpose(2, 3, 1, 0))


@pytest.mark.torch
def test_encoder_weights_argument_loads_file(tmp_path, torch_ref,
                                             timm_state):
    state = timm_state
    path = tmp_path / "test_resnet.pth"
    torch_ref.save(state, path)
    model = Unet("test_resnet", input_shape=(64, 64, 3),
                 encoder_weights=str(path))
    np.testing.assert_array_equal(
        model.get_layer("encoder").get_layer("bn1").beta.numpy(),
        state["bn1.bias"].numpy())


def test_model_without_encoder_is_an_error():
    import keras

    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="plain")
    with pytest.raises(ValueError, match="no registered encoder.*'plain'"):
        weights.load_torch_state_dict(model, {})
    with pytest.raises(FileNotFoundError, match="state_dict_or_path"):
        weights.read_state_dict("/nonexistent/weights.pth")
