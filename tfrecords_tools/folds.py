"""Cross-validation folds: stratified, grouped, multilabel or random.

Every function returns one fold id per item (numpy int64), is a pure
function of its inputs and `seed`, and keeps fold sizes within one item of
each other where the strategy allows.

- `stratified_folds`: by a stratum per item (Severstal: the class-presence
  pattern such as "0010"); each stratum is spread evenly over the folds.
- `grouped_folds`: items of a group (patient, study) share a fold; with
  strata, groups are placed greedily so each stratum stays balanced.
- `multilabel_folds`: iterative stratification of a multi-hot matrix
  (HPA), via `iterstrat`.
- `random_folds`: a seeded shuffle.

Example:

>>> stratified_folds(["a", "a", "b", "b"], n_folds=2, seed=0).tolist()
[0, 1, 0, 1]
"""

import collections

import numpy as np

STRATEGIES = ("random", "stratified", "grouped", "multilabel")


def _check(n, n_folds, what="items"):
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds. Received: {n_folds}")
    if n < n_folds:
        raise ValueError(f"{n} {what} cannot fill {n_folds} folds")


def random_folds(n: int, n_folds: int, seed: int) -> np.ndarray:
    """A seeded shuffle cut into `n_folds` near-equal folds."""
    _check(n, n_folds)
    folds = np.empty(n, np.int64)
    order = np.random.default_rng(seed).permutation(n)
    folds[order] = np.arange(n) % n_folds
    return folds


def stratified_folds(strata, n_folds: int, seed: int) -> np.ndarray:
    """Spreads each stratum evenly (within one) over the folds.

    Strata are dealt round-robin, largest first, continuing the rotation
    from one stratum to the next, so fold sizes differ by at most one.
    Unlike sklearn's StratifiedKFold, rare strata (fewer members than
    folds) are fine.
    """
    strata = [str(s) for s in strata]
    _check(len(strata), n_folds)
    rng = np.random.default_rng(seed)
    members = collections.defaultdict(list)
    for i, s in enumerate(strata):
        members[s].append(i)
    folds = np.empty(len(strata), np.int64)
    position = 0
    for key in sorted(members, key=lambda k: (-len(members[k]), k)):
        index = np.array(members[key])[rng.permutation(len(members[key]))]
        folds[index] = (position + np.arange(len(index))) % n_folds
        position += len(index)
    return folds


def grouped_folds(groups, n_folds: int, seed: int,
                  strata=None) -> np.ndarray:
    """Keeps each group in one fold; balances strata when given.

    Groups are visited largest first (ties in seeded random order) and
    each goes to the fold where its items' strata are least represented,
    then the smallest fold.
    """
    groups = [str(g) for g in groups]
    strata = ["" for _ in groups] if strata is None else [str(s)
                                                          for s in strata]
    members = collections.defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    _check(len(members), n_folds, "groups")
    rng = np.random.default_rng(seed)
    keys = sorted(members)
    keys = [keys[i] for i in rng.permutation(len(keys))]
    keys.sort(key=lambda k: -len(members[k]))
    sizes = np.zeros(n_folds, np.int64)
    per_stratum = collections.defaultdict(lambda: np.zeros(n_folds))
    folds = np.empty(len(groups), np.int64)
    for key in keys:
        index = members[key]
        cost = np.zeros(n_folds)
        for i in index:
            cost += per_stratum[strata[i]]
        best = min(range(n_folds), key=lambda f: (cost[f], sizes[f], f))
        folds[index] = best
        sizes[best] += len(index)
        for i in index:
            per_stratum[strata[i]][best] += 1
    return folds


def multilabel_folds(labels, n_folds: int, seed: int) -> np.ndarray:
    """Iterative stratification of `(items, classes)` multi-hot labels."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    labels = np.asarray(labels, np.int64)
    _check(len(labels), n_folds)
    folds = np.empty(len(labels), np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True,
                                         random_state=seed)
    x = np.zeros((len(labels), 1))
    for fold, (_, val) in enumerate(splitter.split(x, labels)):
        folds[val] = fold
    return folds


def assign_folds(items, n_folds: int, strategy: str,
                 seed: int) -> np.ndarray:
    """Fold ids for `Item`s with one of `STRATEGIES`.

    Args:
        items: `tfrecords_tools.items.Item` list (labels, group, stratum).
        n_folds: number of folds.
        strategy: "random", "stratified", "grouped" or "multilabel".
        seed: the config's seed.

    Raises:
        ValueError: an unknown strategy, or "grouped" without groups.
    """
    if strategy == "random":
        return random_folds(len(items), n_folds, seed)
    if strategy == "stratified":
        return stratified_folds([it.stratum for it in items], n_folds, seed)
    if strategy == "grouped":
        missing = [it.id for it in items if it.group is None]
        if missing:
            raise ValueError(f"fold_strategy 'grouped' needs a group for "
                             f"every item; {missing[0]} has none")
        return grouped_folds([it.group for it in items], n_folds, seed,
                             [it.stratum for it in items])
    if strategy == "multilabel":
        return multilabel_folds([it.labels for it in items], n_folds, seed)
    raise ValueError(f"unknown fold strategy {strategy!r}; choices: "
                     f"{', '.join(STRATEGIES)}")
