"""Streaming Keras metrics == the numpy Kaggle metric on the whole set."""

import dataclasses

import keras
import numpy as np
import pytest

from kaggle_tf import metrics
from kaggle_tf import tasks
from kaggle_tf.config.schema import Config
from kaggle_tf.metrics import kaggle


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def stream(metric, y_true, y_pred, batch=3):
    metric.reset_state()
    for i in range(0, len(y_true), batch):
        metric.update_state(y_true[i:i + batch], y_pred[i:i + batch])
    return float(metric.result())


def seg_case(seed, shape=(8, 6, 7, 4)):
    rng = np.random.default_rng(seed)
    truth = (rng.random(shape) > 0.75).astype("float32")
    truth[::3] = 0.0  # empty images
    logits = rng.normal(-1.0, 2.0, shape).astype("float32")
    logits[1] = -9.0  # empty prediction
    return truth, logits


def lumbar_case(seed, n=10):
    rng = np.random.default_rng(seed)
    truth = rng.choice(3, size=(n, 25), p=[0.6, 0.25, 0.15])
    truth[rng.random((n, 25)) < 0.1] = -1
    truth[2, :5] = -1
    logits = rng.normal(0, 1.5, (n, 25, 3)).astype("float32")
    return truth, logits


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_mean_dice_accumulates_pairs_not_batch_means():
    truth, logits = seg_case(0)
    thresholds = [0.3, 0.5, 0.6, 0.8]
    want = kaggle.mean_dice(truth, sigmoid(logits) > np.array(thresholds))
    metric = metrics.MeanDice(threshold=thresholds)
    assert stream(metric, truth, logits) == pytest.approx(want, abs=1e-6)
    # The mean of per-batch scores (unequal batches) is a different number.
    batch_means = [kaggle.mean_dice(truth[i:i + 3], sigmoid(
        logits[i:i + 3]) > np.array(thresholds)) for i in range(0, 8, 3)]
    assert abs(np.mean(batch_means) - want) > 1e-3
    # reset_state starts a new epoch.
    metric.reset_state()
    assert float(metric.result()) == 0.0
    assert stream(metric, truth, logits, batch=8) == pytest.approx(
        want, abs=1e-6)


def test_siim_dice_streams():
    truth, logits = seg_case(1, shape=(9, 8, 8, 1))
    probs = sigmoid(logits)
    want = kaggle.siim_dice(truth[..., 0], probs[..., 0] > 0.5)
    got = stream(metrics.SiimDice(from_logits=False), truth,
                 probs.astype("float32"), batch=4)
    assert got == pytest.approx(want, abs=1e-6)


def test_f1_macro_streams():
    rng = np.random.default_rng(2)
    truth = (rng.random((25, 28)) > 0.8).astype("float32")
    logits = rng.normal(-1, 1.5, (25, 28)).astype("float32")
    truth[:, 3] = 0.0
    logits[:, 3] = -5.0  # a 0/0 class
    want = kaggle.f1_macro(truth, sigmoid(logits) > 0.5)
    assert stream(metrics.F1Macro(), truth, logits, batch=4) == \
        pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("from_logits", [True, False])
def test_rsna_ich_log_loss_streams(from_logits):
    rng = np.random.default_rng(3)
    truth = (rng.random((11, 6)) > 0.6).astype("float32")
    logits = rng.normal(0, 3, (11, 6)).astype("float32")
    logits[0, 0] = 60.0  # saturates: the 1e-15 clip applies
    truth[0, 0] = 0.0
    probs = sigmoid(logits.astype(float))
    want = kaggle.rsna_ich_log_loss(truth, probs)
    y_pred = logits if from_logits else probs.astype("float32")
    got = stream(metrics.RsnaIchLogLoss(from_logits=from_logits), truth,
                 y_pred, batch=4)
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("onehot", [False, True])
def test_rsna_lumbar_log_loss_streams(onehot):
    truth, logits = lumbar_case(4)
    want = kaggle.rsna_lumbar_log_loss(truth, softmax(logits.astype(float)))
    y_true = truth.astype("float32")
    if onehot:
        y_true = np.where((truth >= 0)[..., None],
                          np.eye(3)[np.maximum(truth, 0)], 0.0)
    got = stream(metrics.RsnaLumbarLogLoss(), y_true,
                 logits.reshape(-1, 75), batch=3)
    assert got == pytest.approx(want, rel=1e-5)
    probs = softmax(logits.astype(float)).astype("float32")
    got = stream(metrics.RsnaLumbarLogLoss(from_logits=False,
                                           any_severe_weight=2.0),
                 y_true, probs, batch=4)
    terms = kaggle.rsna_lumbar_terms(truth, probs)
    want = (terms["spinal"] + terms["foraminal"] + terms["subarticular"]
            + 2.0 * terms["any_severe_spinal"]) / 5.0
    assert got == pytest.approx(want, rel=1e-5)


ALL = {
    "MeanDice": lambda: metrics.MeanDice(threshold=[0.4, 0.6],
                                         from_logits=False),
    "SiimDice": lambda: metrics.SiimDice(threshold=0.3),
    "F1Macro": lambda: metrics.F1Macro(num_classes=5, threshold=0.4),
    "RsnaIchLogLoss": lambda: metrics.RsnaIchLogLoss(from_logits=False),
    "RsnaLumbarLogLoss": lambda: metrics.RsnaLumbarLogLoss(
        any_severe_weight=0.5),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_serialization_round_trip(name):
    metric = ALL[name]()
    config = metric.get_config()
    blob = keras.saving.serialize_keras_object(metric)
    assert blob["registered_name"] == f"kaggle_tf>{name}"
    restored = keras.saving.deserialize_keras_object(blob)
    assert type(restored) is type(metric)
    assert restored.get_config() == config


def _model(input_shape, output_shape):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape)
    if len(input_shape) == 3:
        x = keras.layers.Conv2D(output_shape[-1], 3, padding="same")(inputs)
    else:
        x = keras.layers.Dense(int(np.prod(output_shape)))(inputs)
        x = keras.layers.Reshape(output_shape)(x)
    return keras.Model(inputs, x)


CASES = {
    "steel": ((8, 8, 3), (8, 8, 4)),
    "siim": ((8, 8, 3), (8, 8, 1)),
    "protein": ((5,), (28,)),
    "rsna_ich": ((5,), (6,)),
    "rsna_lumbar": ((5,), (25, 3)),
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_build_in_jit_compiled_evaluate(task):
    """The compiled metric over 3 batches == the numpy score of the set."""
    in_shape, out_shape = CASES[task]
    rng = np.random.default_rng(5)
    n = 7
    x = rng.normal(size=(n,) + in_shape).astype("float32")
    if task == "rsna_lumbar":
        y, _ = lumbar_case(6, n)
        y = y.astype("float32")
    else:
        y = (rng.random((n,) + out_shape) > 0.6).astype("float32")
    model = _model(in_shape, out_shape)
    built = tasks.metrics(task)
    assert built[0].name == "kaggle_metric"
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss=lambda t, p: keras.ops.mean(p * p), metrics=built,
                  jit_compile=True)
    assert model.jit_compile is True
    logs = model.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)
    # A train step (learning rate 0: the weights stay) accumulates the same.
    history = model.fit(x, y, batch_size=3, epochs=1, verbose=0)
    logits = keras.ops.convert_to_numpy(model(x)).astype(float)
    if task == "rsna_lumbar":
        want = tasks.score(task, y.astype(int), softmax(logits))
    else:
        want = tasks.score(task, y, sigmoid(logits))
    assert logs["kaggle_metric"] == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert history.history["kaggle_metric"][0] == pytest.approx(
        want, rel=1e-5, abs=1e-6)


def test_build_reads_the_config():
    cfg = Config(task="protein")
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, classes=5),
        loss=dataclasses.replace(cfg.loss, from_logits=False),
        inference=dataclasses.replace(cfg.inference,
                                      thresholds=[0.1, 0.2, 0.3, 0.4, 0.5]))
    (metric,) = tasks.metrics("protein", cfg)
    assert isinstance(metric, metrics.F1Macro)
    assert metric.num_classes == 5 and metric.from_logits is False
    assert metric.threshold == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert isinstance(tasks.metrics("rsna_lumbar")[0],
                      metrics.RsnaLumbarLogLoss)
    assert list(tasks.names()) == ["protein", "rsna_ich", "rsna_lumbar",
                                   "siim", "steel"]
    with pytest.raises(ValueError, match="choices are protein"):
        tasks.metrics("mnist")


def test_classifier_on_a_segmentation_task_gets_presence_f1():
    """Severstal's gate (steel_cls.json) learns (batch, 4) presence labels.
    """
    cfg = Config(task="steel")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, arch="classifier", classes=4))
    (metric,) = tasks.metrics("steel", cfg)
    assert isinstance(metric, metrics.F1Macro)
    assert metric.num_classes == 4 and metric.name == "kaggle_metric"
    truth = np.array([[1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 0, 0]], "float32")
    logits = np.array([[2, -1, 1, 3], [-2, -1, 2, 1], [-1, -3, -2, -1]],
                      "float32")
    metric.update_state(truth, logits)
    assert float(metric.result()) == pytest.approx(
        kaggle.f1_macro(truth, logits > 0), abs=1e-6)
    assert isinstance(tasks.metrics("steel", Config())[0], metrics.MeanDice)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="threshold"):
        metrics.MeanDice(threshold=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        metrics.F1Macro(num_classes=0)
    with pytest.raises(ValueError, match="threshold"):
        metrics.MeanDice(threshold=[0.5, 0.5]).update_state(
            np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match="sample weights"):
        metrics.F1Macro(num_classes=2).update_state(
            np.zeros((1, 2)), np.zeros((1, 2)), sample_weight=np.ones(1))


def test_saved_model_file_reloads_metrics(tmp_path):
    model = _model((4,), (28,))
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=tasks.metrics("protein"))
    x = np.zeros((2, 4), "float32")
    y = np.zeros((2, 28), "float32")
    model.evaluate(x, y, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    logs = again.evaluate(x, y, verbose=0, return_dict=True)
    assert "kaggle_metric" in logs
    found = [m for m in again.metrics[-1].metrics
             if isinstance(m, metrics.F1Macro)]
    assert found and found[0].num_classes == 28


def test_rsna_ich_padded_series_with_mask():
    """(batch, slices, 6) with a padding mask == numpy on the real slices."""
    rng = np.random.default_rng(7)
    truth = (rng.random((3, 5, 6)) > 0.6).astype("float32")
    logits = rng.normal(0, 2, (3, 5, 6)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]],
                    "float32")
    real = mask.astype(bool)
    want = kaggle.rsna_ich_log_loss(truth[real],
                                    sigmoid(logits[real].astype(float)))
    metric = metrics.RsnaIchLogLoss()
    metric.update_state(truth[:2], logits[:2], sample_weight=mask[:2])
    metric.update_state(truth[2:], logits[2:], sample_weight=mask[2:])
    assert float(metric.result()) == pytest.approx(want, rel=1e-5)
