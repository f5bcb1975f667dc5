"""Stage two of the RSNA ICH recipe on synthetic embeddings: windows,
padded batches, and an LSTM that uses the context of the series."""

import keras
import numpy as np

from kaggle_tf import losses
from kaggle_tf import models
from kaggle_tf.metrics import kaggle as kaggle_metrics
from kaggle_tf.training import sequence
from series_toys import toy_data


def test_series_windows_order_slices_and_cut_long_series():
    series = np.array(["a", "a", "a", "b", "b", "c"])
    index = np.array([2, 0, 1, 0, 1, 0])
    windows = sequence.series_windows(series, index, max_length=2)
    assert [list(w) for w in windows] == [[1, 2], [0], [3, 4], [5]]


def test_batches_pad_to_one_static_length_and_mask_the_padding():
    data = toy_data(n_series=3, length=5)
    windows = sequence.series_windows(data["series"], data["index"], 4)
    batches = sequence.SeriesBatches(data, windows, batch_size=4)
    x, y, w = batches[0]
    assert x["embeddings"].shape == (4, 4, 4)   # 6 windows of 4 and 1
    np.testing.assert_array_equal(w.sum(axis=1), [4, 1, 4, 1])
    np.testing.assert_array_equal(x["embeddings"][1, 1:], 0)
    np.testing.assert_array_equal(x["embeddings"][0],
                                  data["embeddings"][:4])
    np.testing.assert_array_equal(y[2], data["labels"][5:9])
    np.testing.assert_array_equal(x["mask"], w)


def test_the_lstm_learns_what_no_single_slice_can_tell():
    keras.utils.set_random_seed(0)
    data = toy_data()
    train_rows = np.flatnonzero(data["fold"] == 0)
    val_rows = np.flatnonzero(data["fold"] == 1)

    def windows(rows):
        return [rows[w] for w in sequence.series_windows(
            data["series"][rows], data["index"][rows], 8)]

    train = sequence.SeriesBatches(data, windows(train_rows), 8,
                                   shuffle=True)
    val = sequence.SeriesBatches(data, windows(val_rows), 8)
    model = models.SequenceModel(embedding_dim=4, classes=6, units=8,
                                 num_layers=1, residual=True)
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=losses.WeightedLogLoss())
    model.fit(train, epochs=40, verbose=0)
    rows, probs = sequence.predict_windows(model, val)
    truth = data["labels"][rows]
    ours = kaggle_metrics.rsna_ich_log_loss(truth, probs)
    # The best any per-slice model can do: a flagged slice is positive;
    # an unflagged one is positive with the posterior P(flag elsewhere).
    flag = data["embeddings"][rows, 0] > 1.5
    p_other = truth[~flag, 0].mean()
    per_slice = np.where(flag[:, None], 1 - 1e-6, p_other)
    best_slice = kaggle_metrics.rsna_ich_log_loss(
        truth, np.broadcast_to(per_slice, truth.shape))
    assert ours < 0.5 * best_slice, (ours, best_slice)
