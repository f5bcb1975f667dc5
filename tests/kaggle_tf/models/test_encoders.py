"""The encoder registry, every registered encoder's pyramid and mapping,
and our ResNet-family encoders (no torch)."""

import keras
import numpy as np
import pytest

from kaggle_tf.models import encoders
from kaggle_tf.models.encoders import resnet

OURS = ("resnet18", "resnet34", "resnet50", "seresnext50_32x4d",
        "test_resnet")


def _every_encoder():
    """Every name; of the EfficientNet variants that share our builder
    under another name (tf_, smp-, smp-timm-), b0 and b3 run by default,
    the others with --run-slow (efficientnet_b0..b7 always run)."""
    out = []
    for name in encoders.names():
        variant = "efficientnet" in name and not name.startswith(
            "efficientnet_")
        if variant and not name.endswith(("b0", "b3")):
            out.append(pytest.param(name, marks=pytest.mark.slow))
        else:
            out.append(name)
    return out


def test_names_and_unknown_name_lists_choices():
    assert set(OURS) <= set(encoders.names())
    with pytest.raises(ValueError, match="unknown encoder 'resnet35'.*"
                                         "resnet34"):
        encoders.build("resnet35")


@pytest.mark.parametrize("name", _every_encoder())
def test_pyramid_shapes_follow_spec(name):
    spec = encoders.spec(name)
    height, width = (96, 128) if spec.min_input_size else (64, 96)
    encoder = encoders.build(name, input_shape=(height, width, 3))
    assert isinstance(encoder, encoders.Encoder)
    assert encoder.encoder_name == name and encoder.name == "encoder"
    assert sorted(encoder.output) == ["P1", "P2", "P3", "P4", "P5"]
    for level, (channels, stride) in enumerate(
            zip(spec.channels, spec.strides), start=1):
        shape = encoder.output[f"P{level}"].shape
        assert shape[::3] == (None, channels)
        if spec.aligned:
            assert shape[1:3] == (height // stride, width // stride)
        else:
            # Unpadded convs: smaller than size / stride, never larger.
            assert 0 < shape[1] <= height // stride
            assert 0 < shape[2] <= width // stride
    # smp-layout encoders (`encoders.smp`) are no timm models.
    assert spec.timm_name == (None if name.startswith("smp-") else name)
    assert spec.segmentation_ready == (
        spec.aligned and spec.strides == (2, 4, 8, 16, 32))


def test_min_input_size_is_checked():
    with pytest.raises(ValueError, match="'inception_v3' needs inputs of "
                                         "at least 75x75"):
        encoders.build("inception_v3", input_shape=(64, 64, 3))


@pytest.mark.parametrize("name", _every_encoder())
def test_mapping_covers_every_variable_once_and_config_round_trips(name):
    size = max(64, encoders.spec(name).min_input_size or 0)
    encoder = encoders.build(name, input_shape=(size, size, 3))
    mapping = encoders.spec(name).torch_mapping(encoder)
    assert len(mapping) == len(encoder.weights)
    assert len({id(v) for v, _ in mapping.values()}) == len(mapping)
    config = keras.saving.serialize_keras_object(encoder)
    assert config["registered_name"] == "kaggle_tf>Encoder"
    clone = keras.saving.deserialize_keras_object(config)
    assert clone.encoder_name == name
    assert [w.shape for w in clone.weights] == [w.shape for w in
                                                encoder.weights]


def test_channels_of_bigger_encoders_from_spec():
    assert encoders.spec("resnet34").channels == (64, 64, 128, 256, 512)
    assert encoders.spec("resnet50").channels == (64, 256, 512, 1024, 2048)


@pytest.mark.parametrize("channels", [1, 4])
def test_any_input_channel_count(channels):
    encoder = encoders.build("test_resnet", input_shape=(None, None, channels))
    out = encoder(np.zeros((1, 64, 64, channels), "float32"))
    assert out["P5"].shape == (1, 2, 2, 96)
    assert encoder.get_layer("conv1_0").kernel.shape == (3, 3, channels, 16)


@pytest.mark.parametrize("bad", [(64, 64), (64, 64, None), (0, 64, 3),
                                 "rgb"])
def test_bad_input_shape_is_named(bad):
    with pytest.raises(ValueError, match="input_shape"):
        encoders.build("test_resnet", input_shape=bad)


def test_bad_block_type_is_named():
    with pytest.raises(ValueError, match="block_types"):
        resnet.resnet((64, 64, 3), "wide", (1, 1, 1, 1))


def test_pytorch_padding_and_initialization():
    encoder = encoders.build("resnet18", input_shape=(64, 64, 3))
    # Explicit symmetric padding for the strided stem and pool.
    conv1 = encoder.get_layer("conv1")
    assert conv1.padding == "valid" and conv1.explicit_padding == 3
    maxpool = encoder.get_layer("maxpool")
    assert maxpool.padding == 1 and maxpool.zero_pad
    assert not any(isinstance(layer, keras.layers.ZeroPadding2D)
                   for layer in encoder.layers)
    bn = encoder.get_layer("bn1")
    assert bn.epsilon == 1e-5 and bn.momentum == 0.9
    # timm's zero_init_last: residual branches start at zero.
    assert not np.any(encoder.get_layer("layer1_0_bn2").gamma.numpy())


def test_grouped_conv_trains_under_xla():
    """Conv2D(groups=32), as in SE-ResNeXt, takes XLA train steps on CPU."""
    inputs = keras.Input((8, 8, 64))
    x = keras.layers.Conv2D(64, 3, padding="same", groups=32,
                            name="grouped")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile("sgd", "mse", jit_compile=True)
    images = np.random.RandomState(0).rand(2, 8, 8, 64).astype("float32")
    kernel = model.get_layer("grouped").kernel
    assert kernel.shape == (3, 3, 2, 64)
    before = kernel.numpy().copy()
    loss = model.train_on_batch(images, np.ones((2, 1), "float32"))
    assert np.isfinite(loss) and not np.allclose(kernel.numpy(), before)
    # Group g sees only input channels 2g, 2g+1: check one output by hand.
    out = keras.Model(inputs, model.get_layer("grouped").output)(images)
    window = images[0, 3:6, 3:6, 10:12]  # group 5 -> outputs 10, 11
    want = np.sum(window * kernel.numpy()[:, :, :, 10]) + (
        model.get_layer("grouped").bias.numpy()[10])
    np.testing.assert_allclose(np.asarray(out)[0, 4, 4, 10], want,
                               rtol=1e-5, atol=1e-5)
