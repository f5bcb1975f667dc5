"""LumbarLogLoss against numpy written from its definition."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf import losses
from kaggle_tf.config.schema import LossConfig
from kaggle_tf.losses.lumbar import LumbarLogLoss
from kaggle_tf.losses.lumbar import lumbar_log_loss
from kaggle_tf.metrics import kaggle


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_lumbar(ids, probs, weights=(1.0, 2.0, 4.0), any_weight=0.0):
    """Loops over studies and rows; ids (N, 25) with -1 = missing."""
    num = den = 0.0
    any_num = any_den = 0.0
    for study in range(ids.shape[0]):
        for row in range(25):
            y = ids[study, row]
            if y < 0:
                continue
            num += weights[y] * -np.log(probs[study, row, y])
            den += weights[y]
        spinal = [r for r in range(5) if ids[study, r] >= 0]
        if spinal:
            label = float(any(ids[study, r] == 2 for r in spinal))
            p = max(probs[study, r, 2] for r in spinal)
            w = max(weights[ids[study, r]] for r in spinal)
            any_num += w * -(label * np.log(p) + (1 - label) * np.log(1 - p))
            any_den += w
    rows = num / den if den else 0.0
    return rows + any_weight * (any_num / any_den if any_den else 0.0)


def _data(n=4, seed=0, missing=0.3):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 3, (n, 25))
    ids[rng.random((n, 25)) < missing] = -1
    ids[0, :5] = -1                       # a study without spinal labels
    ids[1, 2] = 2                         # and one with a severe spinal
    logits = rng.normal(0.0, 2.0, (n, 25, 3)).astype("float32")
    return ids, logits


def _one_hot(ids):
    onehot = np.eye(3, dtype="float32")[np.maximum(ids, 0)]
    return onehot * (ids >= 0)[..., None]


@pytest.mark.parametrize("any_weight", [0.0, 1.0, 2.5])
def test_matches_numpy_definition(any_weight):
    ids, logits = _data()
    want = np_lumbar(ids, np_softmax(logits.astype("float64")),
                     any_weight=any_weight)
    for y_true in (ids.astype("float32"), _one_hot(ids)):
        got = lumbar_log_loss(y_true, logits, any_severe_weight=any_weight)
        np.testing.assert_allclose(float(got), want, rtol=1e-5)
        loss = LumbarLogLoss(any_severe_weight=any_weight)
        np.testing.assert_allclose(float(loss(y_true, logits)), want,
                                   rtol=1e-5)
    # (batch, 75) outputs are reshaped.
    got = lumbar_log_loss(ids, logits.reshape(-1, 75),
                          any_severe_weight=any_weight)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_probabilities_and_custom_weights():
    ids, logits = _data(seed=1)
    probs = np_softmax(logits.astype("float64"))
    want = np_lumbar(ids, probs, weights=(1.0, 3.0, 5.0), any_weight=1.0)
    loss = LumbarLogLoss(severity_weights=[1.0, 3.0, 5.0],
                         any_severe_weight=1.0, from_logits=False)
    np.testing.assert_allclose(float(loss(ids, probs.astype("float32"))),
                               want, rtol=1e-5)


def test_hand_worked_value():
    # One study: a severe spinal row predicted 0.5 and 24 normal rows
    # predicted 0.8; CE = (4 log 2 + 24 log 1.25) / (4 + 24); any-severe:
    # label 1, p = max severe prob over spinal rows = 0.5, weight 4.
    ids = np.zeros((1, 25), int)
    ids[0, 0] = 2
    probs = np.tile([0.8, 0.1, 0.1], (1, 25, 1))
    probs[0, 0] = [0.25, 0.25, 0.5]
    rows = (4 * np.log(2) + 24 * np.log(1.25)) / 28
    loss = LumbarLogLoss(any_severe_weight=1.0, from_logits=False)
    np.testing.assert_allclose(float(loss(ids, probs)), rows + np.log(2),
                               rtol=1e-6)


def test_one_group_equals_the_kaggle_metric_terms():
    """Spinal rows only: the CE term is the metric's spinal term and the
    any-severe term its any_severe_spinal term."""
    ids, logits = _data(n=6, seed=2, missing=0.0)
    ids[:, 5:] = -1
    probs = np_softmax(logits.astype("float64"))
    terms = kaggle.rsna_lumbar_terms(ids, probs)
    ce = float(lumbar_log_loss(ids, logits))
    np.testing.assert_allclose(ce, terms["spinal"], rtol=1e-5)
    both = float(lumbar_log_loss(ids, logits, any_severe_weight=1.0))
    np.testing.assert_allclose(both - ce, terms["any_severe_spinal"],
                               rtol=1e-5)


def test_missing_labels_do_not_count():
    ids, logits = _data(seed=3)
    changed = logits.copy()
    changed[ids < 0] += 50.0                # predictions on missing rows
    loss = LumbarLogLoss(any_severe_weight=1.0)
    np.testing.assert_allclose(float(loss(ids, changed)),
                               float(loss(ids, logits)), rtol=1e-6)
    nothing = -np.ones((2, 25))
    assert float(loss(nothing, logits[:2])) == 0.0
    # -1 stored as uint8 reads 255: missing as well.
    as_uint8 = np.where(ids < 0, 255, ids).astype("uint8")
    np.testing.assert_allclose(float(loss(as_uint8, logits)),
                               float(loss(ids, logits)), rtol=1e-6)


def test_gradient_weights_rows_by_severity():
    """d loss / d logits of a row scales with its severity weight."""
    ids = np.array([[0, 1, 2] + [-1] * 22])
    logits = tf.Variable(np.zeros((1, 25, 3), "float32"))
    with tf.GradientTape() as tape:
        value = lumbar_log_loss(ids, logits)
    grad = tape.gradient(value, logits).numpy()[0]
    # softmax - one-hot = [-2/3, 1/3, 1/3] (or permuted), times w / 7.
    for row, w in zip(range(3), (1.0, 2.0, 4.0)):
        want = (np.full(3, 1 / 3) - np.eye(3)[row]) * w / 7.0
        np.testing.assert_allclose(grad[row], want, atol=1e-6)
    assert np.all(grad[3:] == 0)


def test_serialization_build_and_xla_step():
    loss = LumbarLogLoss(severity_weights=[1.0, 2.0, 4.0],
                         any_severe_weight=0.5)
    config = loss.get_config()
    assert LumbarLogLoss.from_config(config).get_config() == config
    blob = keras.saving.serialize_keras_object(loss)
    assert blob["registered_name"] == "kaggle_tf>LumbarLogLoss"
    assert "lumbar_log_loss" in losses.names()
    built = losses.build(LossConfig(name="lumbar_log_loss"))
    assert isinstance(built, LumbarLogLoss)
    assert built.severity_weights == [1.0, 2.0, 4.0]
    built = losses.build({"name": "lumbar_log_loss",
                          "class_weights": [1.0, 1.0, 2.0],
                          "from_logits": False})
    assert built.severity_weights == [1.0, 1.0, 2.0]
    assert built.from_logits is False
    with pytest.raises(ValueError, match="severity_weights.*3 values"):
        LumbarLogLoss(severity_weights=[1.0, 2.0])

    ids, _ = _data(seed=4)
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(75),
                              keras.layers.Reshape((25, 3))])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss,
                  jit_compile=True)
    history = model.fit(x, ids.astype("float32"), batch_size=4, epochs=1,
                        verbose=0)
    eager = float(loss(ids, model(x)))
    np.testing.assert_allclose(history.history["loss"][0], eager, rtol=1e-5)
