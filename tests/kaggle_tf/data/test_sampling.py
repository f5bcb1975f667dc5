"""Sliding sample rate: counts over many examples (binomial tolerance)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf.data import sampling

N = 200          # distinct examples, 30% positive
DRAWS = 4000     # examples counted per check


def _examples(key="segmentation_masks", positive_share=0.3):
    positive = np.arange(N) < int(N * positive_share)
    if key == "segmentation_masks":
        target = np.zeros((N, 4, 4, 1), "float32")
        target[positive, 1, 2, 0] = 1.0
    else:
        target = np.zeros((N, 3), "float32")
        target[positive, 2] = 1.0
    return tf.data.Dataset.from_tensor_slices({
        "images": np.zeros((N, 4, 4, 1), "float32"), key: target,
        "index": np.arange(N)}).shuffle(N, seed=0).repeat()


def _positive_share(ds, count=DRAWS, key="segmentation_masks"):
    flags = ds.map(lambda e: tf.reduce_any(e[key] > 0)).batch(count)
    return float(next(iter(flags)).numpy().mean())


def _tolerance(rate, count=DRAWS):
    return 4.5 * np.sqrt(max(rate * (1 - rate), 1e-4) / count)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_float_rate(rate):
    ds = sampling.with_sample_rate(_examples(), rate, seed=1)
    assert abs(_positive_share(ds) - rate) <= _tolerance(rate)


def test_natural_mix_differs_and_labels_decide_when_no_masks():
    assert abs(_positive_share(_examples()) - 0.3) < 0.05
    ds = sampling.with_sample_rate(_examples("labels"), 0.7, seed=2)
    assert abs(_positive_share(ds, key="labels") - 0.7) <= _tolerance(0.7)


def test_variable_rate_changes_between_epochs_without_rebuilding():
    scheduler = sampling.SampleRateScheduler(None, [0.8, 0.6, 0.4])
    ds = sampling.with_sample_rate(_examples(), scheduler.variable, seed=3)
    flags = iter(ds.map(lambda e: tf.reduce_any(
        e["segmentation_masks"] > 0)).batch(DRAWS))
    for epoch, rate in enumerate([0.8, 0.6, 0.4, 0.4]):
        scheduler.on_epoch_begin(epoch)
        assert float(scheduler.variable.numpy()) == pytest.approx(rate)
        share = float(next(flags).numpy().mean())
        assert abs(share - rate) <= _tolerance(rate), (epoch, share)


def test_scheduler_in_model_fit():
    scheduler = sampling.SampleRateScheduler(None, [0.9, 0.1])
    ds = sampling.with_sample_rate(_examples(), scheduler.variable, seed=4)
    ds = ds.map(lambda e: (tf.reshape(e["images"], [16]), tf.cast(
        tf.reduce_any(e["segmentation_masks"] > 0), tf.float32)[None]))
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(1)])
    share = keras.metrics.MeanMetricWrapper(
        lambda y_true, y_pred: y_true, name="share")
    model.compile(optimizer="sgd", loss="mse", metrics=[share])
    history = model.fit(ds.batch(100), epochs=2, steps_per_epoch=20,
                        callbacks=[scheduler], shuffle=False, verbose=0)
    shares = history.history["share"]
    # A few prefetched batches may carry the previous epoch's rate.
    assert abs(shares[0] - 0.9) < 0.05, shares
    assert abs(shares[1] - 0.1) < 0.12, shares
    assert history.history["sample_rate"] == pytest.approx([0.9, 0.1])


def test_custom_predicate_and_element_spec():
    base = _examples()
    ds = sampling.with_sample_rate(
        base, 0.5, seed=5, is_positive=lambda e: e["index"] % 2 == 0)
    assert ds.element_spec == base.element_spec
    even = ds.map(lambda e: e["index"] % 2 == 0).batch(DRAWS)
    assert abs(float(np.mean(next(iter(even)))) - 0.5) <= _tolerance(0.5)


def test_same_seed_same_stream():
    a = sampling.with_sample_rate(_examples(), 0.5, seed=6)
    b = sampling.with_sample_rate(_examples(), 0.5, seed=6)

    def take(ds):
        return next(iter(ds.map(lambda e: e["index"]).batch(50)))

    np.testing.assert_array_equal(take(a), take(b))


def test_errors():
    with pytest.raises(ValueError, match="rate"):
        sampling.with_sample_rate(_examples(), 1.5)
    with pytest.raises(ValueError, match="float scalar"):
        sampling.with_sample_rate(_examples(), tf.Variable([0.5]))
    with pytest.raises(ValueError, match="segmentation_masks"):
        sampling.with_sample_rate(
            tf.data.Dataset.from_tensors({"images": np.zeros(2)}), 0.5)
    with pytest.raises(ValueError, match="schedule"):
        sampling.SampleRateScheduler(None, [])
    with pytest.raises(ValueError, match="schedule"):
        sampling.SampleRateScheduler(None, [0.5, 2.0])


def test_schedule_helpers_and_config():
    assert sampling.rate_at([0.8, 0.6], 5) == 0.6
    assert sampling.rate_at(lambda epoch: 0.1 * epoch, 3) == pytest.approx(
        0.3)
    scheduler = sampling.SampleRateScheduler(None, [0.8, 0.6, 0.4])
    clone = sampling.SampleRateScheduler.from_config(scheduler.get_config())
    assert clone.schedule == [0.8, 0.6, 0.4]
    assert float(clone.variable.numpy()) == pytest.approx(0.8)


def test_packed_masks_are_positive_where_any_class_bit_is_set():
    from kaggle_tf.data.sampling import is_positive

    empty = np.zeros((4, 4, 1), np.uint8)
    for bit in range(8):
        one = empty.copy()
        one[2, 3, 0] = 1 << bit
        assert bool(is_positive({"packed_masks": tf.constant(one)}))
    assert not bool(is_positive({"packed_masks": tf.constant(empty)}))
