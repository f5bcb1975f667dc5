"""Classifier: concat pool head vs numpy, embeddings, saving, mixed
precision."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from kaggle_tf.models import classifier
from kaggle_tf.models import heads
from kaggle_tf.models import weights
from kaggle_tf.models.classifier import Classifier
from kaggle_tf.models.classifier import embedding_model
from model_helpers import randomize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
ENCODER = "test_resnet"  # timm's test_resnet: P5 has 96 channels


def images(batch=2, size=64, channels=3, seed=1):
    return np.random.RandomState(seed).rand(batch, size, size,
                                            channels).astype("float32")


def test_concat_pool_head_matches_numpy():
    model = randomize(Classifier(ENCODER, classes=5,
                                 input_shape=(64, 64, 3), dropout=0.5))
    x = images()
    p5 = np.asarray(model.get_layer("encoder")(x)["P5"])
    assert p5.shape == (2, 2, 2, 96)
    # fastai's AdaptiveConcatPool2d: [global max, global average].
    pooled = np.concatenate([p5.max(axis=(1, 2)), p5.mean(axis=(1, 2))], -1)
    bn = model.get_layer("head_bn")
    want_embedding = (pooled - bn.moving_mean.numpy()) / np.sqrt(
        bn.moving_variance.numpy() + 1e-5) * bn.gamma.numpy() + (
        bn.beta.numpy())
    fc = model.get_layer("head_fc")
    want_logits = want_embedding @ fc.kernel.numpy() + fc.bias.numpy()

    embed = embedding_model(model)
    np.testing.assert_allclose(np.asarray(embed(x)), want_embedding,
                               rtol=1e-5, atol=1e-5)
    # Inference: dropout is off.
    np.testing.assert_allclose(np.asarray(model(x)), want_logits, rtol=1e-5,
                               atol=1e-5)
    assert embed.output.shape == (None, 192)


def test_avg_head_matches_numpy():
    model = randomize(Classifier(ENCODER, classes=3, head="avg",
                                 input_shape=(None, None, 3)))
    x = images(size=96)
    p5 = np.asarray(model.get_layer("encoder")(x)["P5"])
    embedding = np.asarray(embedding_model(model)(x))
    np.testing.assert_allclose(embedding, p5.mean(axis=(1, 2)), rtol=1e-5,
                               atol=1e-5)
    fc = model.get_layer("head_fc")
    np.testing.assert_allclose(
        np.asarray(model(x)), embedding @ fc.kernel.numpy() + fc.bias.numpy(),
        rtol=1e-5, atol=1e-5)
    assert "head_bn" not in [layer.name for layer in model.layers]


def test_layout_names_and_any_channel_count():
    model = Classifier(ENCODER, classes=28, input_shape=(64, 64, 4))
    assert model.name == f"classifier_{ENCODER}"
    assert model.get_layer("encoder").encoder_name == ENCODER
    assert model.input.shape == (None, 64, 64, 4)
    assert model.output.shape == (None, 28)
    assert model.get_layer("logits").dtype_policy.name == "float32"
    probs = Classifier(ENCODER, classes=4, activation="sigmoid", name="c")
    out = np.asarray(probs(images(1)))
    assert probs.name == "c" and np.all((out > 0) & (out < 1))


@pytest.mark.parametrize("kwargs, match", [
    ({"classes": 0}, "classes=0"),
    ({"head": "max"}, "head='max'"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"activation": "relu"}, "activation='relu'"),
    ({"encoder": "resnet35"}, "resnet35"),
    ({"input_shape": (64, 64)}, "input_shape"),
])
def test_bad_arguments_are_named(kwargs, match):
    kwargs = {"encoder": ENCODER, **kwargs}
    with pytest.raises(ValueError, match=match):
        Classifier(**kwargs)


def test_embedding_model_needs_an_embedding_layer():
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="plain")
    with pytest.raises(ValueError, match="classifier=.*plain"):
        embedding_model(plain)


def test_global_pool_blocks():
    x = np.random.RandomState(0).randn(2, 3, 5, 4).astype("float32")
    inputs = keras.Input((None, None, 4))
    both = keras.Model(inputs, heads.global_pool(inputs, "concat_pool"))
    np.testing.assert_allclose(
        np.asarray(both(x)),
        np.concatenate([x.max(axis=(1, 2)), x.mean(axis=(1, 2))], -1),
        rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="head='gem'"):
        heads.global_pool(inputs, "gem")


def test_mixed_precision_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = Classifier(ENCODER, classes=6, input_shape=(64, 64, 3))
        assert model.get_layer("head_fc").compute_dtype == "float16"
        logits = model(images(1))
        embedding = embedding_model(model)(images(1))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert logits.dtype == "float32" and embedding.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(logits)))


@pytest.mark.torch
def test_timm_weights_load_into_the_nested_encoder(timm_model):
    state = timm_model(ENCODER).state_dict()
    model = Classifier(ENCODER, classes=2, input_shape=(64, 64, 3))
    result = weights.load_torch_state_dict(model, state)
    assert not result.missing and not result.unexpected
    np.testing.assert_array_equal(
        model.get_layer("encoder").get_layer("conv1_0").kernel.numpy(),
        state["conv1.0.weight"].numpy().transpose(2, 3, 1, 0))


def test_keras_file_reloads_in_a_fresh_process(tmp_path):
    model = randomize(Classifier(ENCODER, classes=5,
                                 input_shape=(None, None, 3), dropout=0.2))
    x = images()
    path = tmp_path / "classifier.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import numpy as np
        import keras
        import kaggle_tf.models
        from kaggle_tf.models.classifier import embedding_model
        model = keras.saving.load_model({str(path)!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "logits.npy")!r}, np.asarray(model(x)))
        np.save({str(tmp_path / "embedding.npy")!r},
                np.asarray(embedding_model(model)(x)))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, os.environ.get("PYTHONPATH", "")]), TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "logits.npy"),
                                  np.asarray(model(x)))
    np.testing.assert_array_equal(np.load(tmp_path / "embedding.npy"),
                                  np.asarray(embedding_model(model)(x)))
    assert classifier.EMBEDDING_LAYER == "embedding"
