"""SequenceModel: numpy LSTM/GRU references, padding, end to end, saving."""

import functools
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from kaggle_tf.models import heads
from kaggle_tf.models.classifier import Classifier
from kaggle_tf.models.classifier import embedding_model
from kaggle_tf.models.sequence import SequenceModel
import model_helpers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
ATOL = 1e-5

randomize = functools.partial(model_helpers.randomize, std=0.4)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_numpy(x, kernel, recurrent, bias):
    """Keras' LSTM (gates i, f, c, o) over `(time, features)`."""
    units = recurrent.shape[0]
    h, c, out = np.zeros(units), np.zeros(units), []
    for step in x:
        z = step @ kernel + h @ recurrent + bias
        i, f, g, o = (z[k * units:(k + 1) * units] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out)


def gru_numpy(x, kernel, recurrent, bias):
    """Keras' GRU with `reset_after=True` (gates z, r, h)."""
    units = recurrent.shape[0]
    h, out = np.zeros(units), []
    for step in x:
        xz = step @ kernel + bias[0]
        hz = h @ recurrent + bias[1]
        z = sigmoid(xz[:units] + hz[:units])
        r = sigmoid(xz[units:2 * units] + hz[units:2 * units])
        candidate = np.tanh(xz[2 * units:] + r * hz[2 * units:])
        h = z * h + (1 - z) * candidate
        out.append(h)
    return np.stack(out)


def reference(model, x, rnn, bidirectional, num_layers):
    """The model's output on one unpadded series `(time, features)`."""
    step = lstm_numpy if rnn == "lstm" else gru_numpy
    for index in range(1, num_layers + 1):
        layer = model.get_layer(f"rnn_{index}")
        if bidirectional:
            forward = step(x, *[w.numpy() for w in
                                layer.forward_layer.weights])
            backward = step(x[::-1], *[w.numpy() for w in
                                       layer.backward_layer.weights])[::-1]
            x = np.concatenate([forward, backward], axis=-1)
        else:
            x = step(x, *[w.numpy() for w in layer.weights])
    fc = model.get_layer("head_fc")
    return x @ fc.kernel.numpy() + fc.bias.numpy()


def series(lengths, time, features, seed=1):
    """Embeddings padded with garbage to `time` steps, and the mask."""
    rng = np.random.RandomState(seed)
    x = rng.normal(0.0, 1.0, (len(lengths), time, features))
    mask = np.zeros((len(lengths), time), "float32")
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
        x[row, length:] = rng.normal(0.0, 50.0, (time - length, features))
    return x.astype("float32"), mask


@pytest.mark.parametrize("rnn, bidirectional, num_layers", [
    ("lstm", True, 2),
    ("gru", True, 1),
    ("lstm", False, 1),
    ("gru", False, 2),
])
def test_matches_numpy_and_ignores_padding(rnn, bidirectional, num_layers):
    model = randomize(SequenceModel(
        embedding_dim=4, classes=3, rnn=rnn, units=5, num_layers=num_layers,
        bidirectional=bidirectional, dropout=0.3))
    lengths = (5, 3)
    x, mask = series(lengths, time=8, features=4)
    out = np.asarray(model({"embeddings": x, "mask": mask}))
    assert out.shape == (2, 8, 3)
    for row, length in enumerate(lengths):
        want = reference(model, x[row, :length].astype("float64"), rnn,
                         bidirectional, num_layers)
        np.testing.assert_allclose(out[row, :length], want, rtol=0,
                                   atol=ATOL)
        # The unpadded series alone gives the same real steps.
        alone = model({"embeddings": x[row:row + 1, :length],
                       "mask": mask[row:row + 1, :length]})
        np.testing.assert_allclose(np.asarray(alone)[0], out[row, :length],
                                   rtol=0, atol=ATOL)
        # Padded steps output zeros.
        assert not np.any(out[row, length:])


def test_mask_dtypes_agree_and_mask_reaches_the_loss():
    model = randomize(SequenceModel(embedding_dim=4, classes=2, units=3))
    x, mask = series((4, 2), time=6, features=4)
    outs = [model({"embeddings": x, "mask": m})
            for m in (mask, mask.astype(bool), mask.astype("int32"))]
    for out in outs[1:]:
        np.testing.assert_array_equal(np.asarray(out), np.asarray(outs[0]))
    # Keras leaves masked (padded) steps out of the loss.
    labels = np.random.RandomState(0).randint(0, 2, (2, 6, 2))
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    padded = float(loss(labels.astype("float32"), outs[0]))
    real = np.asarray(outs[0])[mask > 0]
    want = float(loss(labels[mask > 0].astype("float32"), real))
    np.testing.assert_allclose(padded, want, rtol=1e-6)


def test_residual_adds_slice_logits():
    plain = randomize(SequenceModel(embedding_dim=4, classes=3, units=4,
                                    rnn="gru"))
    residual = SequenceModel(embedding_dim=4, classes=3, units=4, rnn="gru",
                             residual=True)
    residual.set_weights(plain.get_weights())
    assert sorted(residual.input) == ["embeddings", "mask", "slice_logits"]
    x, mask = series((5, 2), time=5, features=4)
    slice_logits = np.random.RandomState(3).randn(2, 5, 3).astype("float32")
    got = np.asarray(residual({"embeddings": x, "mask": mask,
                               "slice_logits": slice_logits}))
    want = (np.asarray(plain({"embeddings": x, "mask": mask}))
            + slice_logits) * mask[..., None]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_end_to_end_equals_encoder_then_embeddings():
    e2e = randomize(SequenceModel(encoder="test_resnet",
                                  input_shape=(32, 32, 3), classes=6,
                                  units=4, num_layers=1))
    assert sorted(e2e.input) == ["images", "mask"]
    assert e2e.get_layer("encoder").encoder_name == "test_resnet"
    on_embeddings = SequenceModel(embedding_dim=96, classes=6, units=4,
                                  num_layers=1)
    for name in ("rnn_1", "head_fc"):
        on_embeddings.get_layer(name).set_weights(
            e2e.get_layer(name).get_weights())
    rng = np.random.RandomState(0)
    slices = rng.rand(2, 4, 32, 32, 3).astype("float32")
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], "float32")
    slices[mask == 0] = 100.0  # garbage padding slices
    p5 = np.asarray(e2e.get_layer("encoder")(slices.reshape(8, 32, 32, 3))[
        "P5"])
    embeddings = p5.mean(axis=(1, 2)).reshape(2, 4, 96)
    got = np.asarray(e2e({"images": slices, "mask": mask}))
    want = np.asarray(on_embeddings({"embeddings": embeddings,
                                     "mask": mask}))
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    # The first series cut to its real slices: same real outputs.
    alone = e2e({"images": slices[:1, :3], "mask": mask[:1, :3]})
    np.testing.assert_allclose(np.asarray(alone)[0], got[0, :3], rtol=0,
                               atol=ATOL)


def test_end_to_end_on_a_classifier_embedding():
    classifier = Classifier("test_resnet", classes=6, head="concat_pool",
                            input_shape=(32, 32, 3))
    model = SequenceModel(encoder=embedding_model(classifier), classes=6,
                          units=4, rnn="gru", bidirectional=False)
    slices = np.random.RandomState(0).rand(2, 3, 32, 32, 3).astype(
        "float32")
    out = model({"images": slices, "mask": np.ones((2, 3))})
    assert out.shape == (2, 3, 6)
    assert model.get_layer("rnn_1").weights[0].shape == (192, 12)


def test_time_fold_and_unfold():
    x = np.arange(2 * 3 * 4, dtype="float32").reshape(2, 3, 2, 2)
    folded = heads.TimeFold()(x)
    np.testing.assert_array_equal(np.asarray(folded), x.reshape(6, 2, 2))
    back = heads.TimeUnfold()([folded, x])
    np.testing.assert_array_equal(np.asarray(back), x)
    assert heads.TimeFold().compute_output_shape((2, None, 5)) == (None, 5)


@pytest.mark.parametrize("kwargs, match", [
    ({"embedding_dim": None}, "embedding_dim=None"),
    ({"rnn": "transformer"}, "rnn='transformer'"),
    ({"units": 0}, "units=0"),
    ({"num_layers": 0}, "num_layers=0"),
    ({"classes": 1.5}, "classes=1.5"),
    ({"dropout": -0.1}, "dropout=-0.1"),
    ({"input_shape": (32, 32, 3)}, "input_shape"),
    ({"embedding_dim": None, "encoder": "test_resnet"}, "input_shape=None"),
    ({"encoder": "test_resnet", "input_shape": (32, 32, 3)},
     "embedding_dim=8"),
    ({"embedding_dim": None, "encoder": 3}, "encoder=3"),
    ({"pool": "gem"}, "head='gem'"),
])
def test_bad_arguments_are_named(kwargs, match):
    kwargs = {"embedding_dim": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        SequenceModel(**kwargs)


def test_mixed_precision_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = SequenceModel(encoder="test_resnet", input_shape=(32, 32, 3),
                              classes=6, units=4, residual=True)
        out = model({"images": np.ones((1, 2, 32, 32, 3), "float32"),
                     "mask": np.ones((1, 2), "float32"),
                     "slice_logits": np.zeros((1, 2, 6), "float32")})
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("head_fc").compute_dtype == "float16"
    assert out.dtype == "float32" and np.all(np.isfinite(np.asarray(out)))


def test_keras_files_reload_in_a_fresh_process(tmp_path):
    rng = np.random.RandomState(0)
    models = {
        "embeddings": randomize(SequenceModel(
            embedding_dim=4, classes=3, rnn="gru", units=4, residual=True,
            dropout=0.1)),
        "images": randomize(SequenceModel(
            encoder="test_resnet", input_shape=(32, 32, 3), classes=2,
            units=3, pool="concat_pool")),
    }
    x, mask = series((3, 2), time=4, features=4)
    inputs = {
        "embeddings": {"embeddings": x, "mask": mask,
                       "slice_logits": rng.randn(2, 4, 3).astype("float32")},
        "images": {"images": rng.rand(2, 3, 32, 32, 3).astype("float32"),
                   "mask": np.array([[1, 1, 1], [1, 0, 0]], "float32")},
    }
    for key, model in models.items():
        model.save(tmp_path / f"{key}.keras")
        np.savez(tmp_path / f"{key}_inputs.npz", **inputs[key])
    script = textwrap.dedent(f"""
        import numpy as np
        import keras
        import kaggle_tf.models
        import kaggle_tf.models.heads
        for key in ("embeddings", "images"):
            model = keras.saving.load_model(f"{tmp_path}/{{key}}.keras")
            inputs = dict(np.load(f"{tmp_path}/{{key}}_inputs.npz"))
            np.save(f"{tmp_path}/{{key}}_out.npy", np.asarray(model(inputs)))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, os.environ.get("PYTHONPATH", "")]), TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for key, model in models.items():
        np.testing.assert_array_equal(np.load(tmp_path / f"{key}_out.npy"),
                                      np.asarray(model(inputs[key])))
