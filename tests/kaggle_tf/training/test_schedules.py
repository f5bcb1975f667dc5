import math

import numpy as np
import pytest

from kaggle_tf.training import lr_find
from kaggle_tf.training import schedules


def test_cosine_hand_worked():
    # lr(t) = min + (base - min) / 2 * (1 + cos(pi * t / T))
    assert schedules.lr_at("cosine", 1e-4, 0, 10) == pytest.approx(1e-4)
    assert schedules.lr_at("cosine", 1e-4, 5, 10) == pytest.approx(5e-5)
    assert schedules.lr_at("cosine", 1e-4, 10, 10) == pytest.approx(0.0)
    assert schedules.lr_at("cosine", 1e-4, 10, 10, min_lr=1e-6) == \
        pytest.approx(1e-6)


def test_warm_restarts_restart_every_period():
    lr = [schedules.lr_at("cosine_restarts", 1.0, t, 6, restart_epochs=2)
          for t in np.arange(0, 6, 0.5)]
    # Period 2 epochs: 1, cos at 1/4, 1/2, 3/4 of the period, then restart.
    expected = [0.5 * (1 + math.cos(math.pi * (t % 2) / 2))
                for t in np.arange(0, 6, 0.5)]
    np.testing.assert_allclose(lr, expected)
    assert lr[4] == 1.0 and lr[8] == 1.0


def test_one_cycle_peaks_at_30_percent():
    ts = np.linspace(0, 10, 101)
    lrs = [schedules.lr_at("one_cycle", 1e-3, t, 10) for t in ts]
    assert ts[int(np.argmax(lrs))] == pytest.approx(3.0)
    assert lrs[0] == pytest.approx(1e-3 / 25)
    assert lrs[-1] == pytest.approx(1e-3 / 1e4)


def test_constant_and_unknown():
    assert schedules.lr_at("constant", 3e-4, 7.3, 10) == 3e-4
    with pytest.raises(ValueError, match="cosine"):
        schedules.lr_at("linear", 1.0, 0, 1)


def test_lr_finder_suggests_the_steepest_descent():
    lrs = np.logspace(-6, 0, 61)
    # A loss that falls fastest (in log-LR) at 1e-3 and diverges after.
    x = np.log10(lrs)
    loss = 2.0 - np.tanh((x + 3.0) * 2.0) + np.where(x > -1, (x + 1) ** 2, 0)
    suggested = lr_find.suggest(lrs, loss)
    assert 10 ** -3.15 < suggested < 10 ** -2.85
