"""tfrecords_tools.folds: balance, groups, determinism."""

import collections

import numpy as np
import pytest

from tfrecords_tools import folds
from tfrecords_tools.items import Item


def test_stratified_balances_each_stratum_and_fold_sizes():
    rng = np.random.default_rng(0)
    strata = rng.choice(["0000", "0010", "1000", "0011", "0100"], 103,
                        p=[0.45, 0.3, 0.1, 0.1, 0.05])
    f = folds.stratified_folds(strata, 5, seed=7)
    sizes = np.bincount(f, minlength=5)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 103
    for s in set(strata):
        counts = np.bincount(f[strata == s], minlength=5)
        assert counts.max() - counts.min() <= 1, s
    np.testing.assert_array_equal(f, folds.stratified_folds(strata, 5, 7))
    assert not np.array_equal(f, folds.stratified_folds(strata, 5, 8))


def test_rare_strata_do_not_warn_or_fail():
    f = folds.stratified_folds(["a"] * 7 + ["rare"], 5, seed=0)
    assert sorted(np.bincount(f).tolist()) == [1, 1, 2, 2, 2]


def test_grouped_keeps_groups_together_and_balances():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 40, 300).astype(str)
    strata = np.array([str(int(g) % 3 == 0) for g in groups])
    f = folds.grouped_folds(groups, 5, seed=3, strata=strata)
    per_group = collections.defaultdict(set)
    for g, k in zip(groups, f):
        per_group[g].add(int(k))
    assert all(len(v) == 1 for v in per_group.values())
    sizes = np.bincount(f, minlength=5)
    assert sizes.min() > 0.6 * sizes.mean()
    positives = np.bincount(f[strata == "True"], minlength=5)
    assert positives.min() > 0.5 * positives.mean()


def test_multilabel_iterative_balances_rare_labels():
    rng = np.random.default_rng(2)
    labels = (rng.random((200, 6)) < [0.4, 0.2, 0.1, 0.05, 0.05, 0.03])
    f = folds.multilabel_folds(labels.astype(int), 4, seed=0)
    for k in range(6):
        counts = np.bincount(f[labels[:, k]], minlength=4)
        assert counts.max() - counts.min() <= 2, (k, counts)
    np.testing.assert_array_equal(f, folds.multilabel_folds(
        labels.astype(int), 4, seed=0))


def test_random_and_errors():
    f = folds.random_folds(11, 3, seed=0)
    assert sorted(np.bincount(f).tolist()) == [3, 4, 4]
    with pytest.raises(ValueError, match="cannot fill 5 folds"):
        folds.random_folds(3, 5, seed=0)
    items = [Item(id=str(i), labels=(i % 2,)) for i in range(6)]
    with pytest.raises(ValueError, match="needs a group"):
        folds.assign_folds(items, 2, "grouped", 0)
    with pytest.raises(ValueError, match="choices: random"):
        folds.assign_folds(items, 2, "nope", 0)
    f = folds.assign_folds(items, 2, "stratified", 0)
    assert np.bincount(f[[0, 2, 4]]).tolist() in ([1, 2], [2, 1])
