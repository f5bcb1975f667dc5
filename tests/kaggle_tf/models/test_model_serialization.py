"""Saving, reloading in a fresh process, mixed precision, XLA train steps."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from kaggle_tf.models import FPN
from kaggle_tf.models import Unet
from kaggle_tf.models import encoders

RELOAD = """
import sys
import keras
import numpy as np
import kaggle_tf.models  # registers the custom objects

folder = sys.argv[1]
data = np.load(folder + "/data.npz")
for name in sys.argv[2:]:
    model = keras.saving.load_model(f"{folder}/{name}.keras")
    out = model(data[name + ":x"], training=False)
    out = out if isinstance(out, dict) else {"out": out}
    for key, value in out.items():
        diff = np.abs(np.asarray(value) - data[f"{name}:{key}"]).max()
        assert diff == 0.0, (name, key, diff)
print("reloaded", len(sys.argv) - 2)
"""


def test_reloads_in_fresh_process_with_identical_outputs(tmp_path):
    rng = np.random.RandomState(0)
    built = {
        "unet": Unet("test_resnet", classes=2, input_shape=(None, None, 3),
                     decoder_attention="scse", aux_head=True),
        "fpn": FPN("test_resnet", classes=2, input_shape=(64, 64, 3),
                   activation="softmax"),
        "encoder": encoders.build("test_resnet", input_shape=(64, 64, 1)),
    }
    arrays = {}
    for name, model in built.items():
        # Non-trivial BatchNorm statistics, which must survive the trip.
        for variable in model.non_trainable_weights:
            variable.assign(rng.uniform(0.5, 1.5, variable.shape))
        x = rng.rand(2, 64, 64, model.input_shape[-1]).astype("float32")
        arrays[f"{name}:x"] = x
        out = model(x, training=False)
        out = out if isinstance(out, dict) else {"out": out}
        for key, value in out.items():
            arrays[f"{name}:{key}"] = np.asarray(value)
        model.save(str(tmp_path / f"{name}.keras"))
    np.savez(tmp_path / "data.npz", **arrays)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-c", RELOAD, str(tmp_path), *built],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "reloaded 3" in done.stdout


def test_config_round_trip_keeps_encoder_name():
    encoder = encoders.build("test_resnet", input_shape=(64, 64, 3))
    config = keras.saving.serialize_keras_object(encoder)
    assert config["registered_name"] == "kaggle_tf>Encoder"
    clone = keras.saving.deserialize_keras_object(config)
    assert clone.encoder_name == "test_resnet"
    assert [w.shape for w in clone.weights] == [w.shape for w in
                                                encoder.weights]


@pytest.mark.parametrize("builder", [Unet, FPN])
def test_mixed_precision_outputs_float32(builder, mixed_precision):
    model = builder("test_resnet", classes=2, input_shape=(64, 64, 3),
                    aux_head=True)
    conv = model.get_layer("encoder").get_layer("conv1_0")
    assert conv.compute_dtype == "float16"
    assert conv.kernel.dtype == "float32"
    out = model(np.zeros((1, 64, 64, 3), "float32"), training=False)
    for value in out.values():
        assert keras.backend.standardize_dtype(value.dtype) == "float32"


@pytest.mark.parametrize("builder, narrow", [
    (Unet, {"decoder_channels": (32, 16, 16, 8, 8)}),
    (FPN, {"pyramid_channels": 32, "segmentation_channels": 32}),
])
def test_xla_train_step(builder, narrow):
    # Narrow decoders keep XLA's compile time short on CPU.
    model = builder("test_resnet", classes=1, input_shape=(64, 64, 3),
                    **narrow)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.BinaryCrossentropy(from_logits=True),
                  jit_compile=True)
    rng = np.random.RandomState(0)
    images = rng.rand(2, 64, 64, 3).astype("float32")
    masks = (rng.rand(2, 64, 64, 1) > 0.5).astype("float32")
    head = model.get_layer("segmentation_head_0").kernel
    before = head.numpy().copy()
    loss = model.train_on_batch(images, masks)
    assert np.isfinite(loss)
    assert not np.allclose(head.numpy(), before)
