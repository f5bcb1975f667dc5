"""Pseudo-labelled series in the sequence stage of RSNA ICH: their
windows are drawn into every training epoch at `data.pseudo_weight`,
never into validation nor oof.npz (checked by ids)."""

import os
import sys

import numpy as np
import pytest

from kaggle_tf import config as config_lib
from kaggle_tf.data import pseudo
from kaggle_tf.training import run
from kaggle_tf.training import sequence
from series_toys import toy_data

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "inference"))

import series_runs  # noqa: E402


def toy_windows(data, fold):
    rows = np.flatnonzero(data["fold"] == fold)
    return [rows[w] for w in sequence.series_windows(
        data["series"][rows], data["index"][rows], 8)]


@pytest.mark.parametrize("share, n_extra", [(0.5, 12), (0.25, 4),
                                            (0.8, 48), (None, 24),
                                            (1.0, 24)])
def test_each_epoch_draws_the_pseudo_share(share, n_extra):
    data = toy_data(n_series=36, length=4)        # 18 + 18 windows
    real, extra = toy_windows(data, 0)[:12], toy_windows(data, 1)
    extra = extra + extra[:6]                      # 24 pseudo windows
    batches = sequence.SeriesBatches(data, real, 4, shuffle=True, seed=3,
                                     extra_windows=extra,
                                     extra_share=share)
    n_real = 0 if share == 1.0 else len(real)
    assert batches.extra_count == n_extra
    assert len(batches) == -(-(n_real + n_extra) // 4)
    draws = []
    for epoch in (0, 1):
        batches.set_epoch(epoch)
        got = [tuple(r) for i in range(len(batches))
               for r in batches.rows(i)]
        real_got = [w for w in got if w in {tuple(r) for r in real}]
        assert sorted(real_got) == sorted(tuple(r) for r in real[:n_real])
        pseudo_got = [w for w in got if w not in set(real_got)]
        assert len(pseudo_got) == n_extra
        assert set(pseudo_got) <= {tuple(r) for r in extra}
        draws.append(pseudo_got)
    if n_extra < len(extra):
        assert sorted(draws[0]) != sorted(draws[1])  # redrawn each epoch


@pytest.fixture(scope="module")
def ich_run(tmp_path_factory):
    raw, records = series_runs.converted_ich(tmp_path_factory, "ich_seq_pl",
                                             5)
    root = records.parent
    return root, series_runs.save_series_run(raw, records, root, "seq",
                                             seed=4, folds=(0,))


def test_sequence_fold_trains_on_pseudo_series_never_validates(
        ich_run, monkeypatch):
    from kaggle_tf.predict import main

    root, cfg = ich_run
    assert main(["--config", str(root / "seq.json"), "--save-probs"]) == 0
    data = cfg.to_dict()
    data.pop("source")
    data["output_dir"] = str(root / "seq_pl")
    data["pseudo"] = {"source": cfg.output_dir, "mode": "soft",
                      "records_dir": str(root / "pseudo")}
    data["data"].update(pseudo_records=str(root / "pseudo"),
                        pseudo_weight=0.5)
    data["schedule"] = {"stages": []}
    data["train"].update(epochs=1, batch_size=2)
    data["callbacks"] = {"top_k": 1, "average_top_k": False}
    mixed = config_lib.from_dict(data)
    manifest = pseudo.write_records(mixed)
    pseudo_ids = set(manifest["pseudo"]["ids"])
    assert pseudo_ids
    seen = {True: set(), False: set()}
    counts = {}
    real_rows = sequence.SeriesBatches.rows

    def rows(self, i):
        out = real_rows(self, i)
        seen[self.shuffle].update(self.data["ids"][np.concatenate(out)])
        counts[self.shuffle] = len(self)
        return out

    monkeypatch.setattr(sequence.SeriesBatches, "rows", rows)
    run.run(mixed, 0)
    fold = os.path.join(mixed.output_dir, "fold0")
    with np.load(os.path.join(fold, sequence.PSEUDO_EMBEDDINGS)) as f:
        assert set(f["ids"]) == pseudo_ids
        assert set(f["fold"]) == {-1}
        with np.load(os.path.join(cfg.output_dir, "test_probs.npz")) as t:
            probs = dict(zip(t["ids"], t["probs"].astype(np.float32)))
        np.testing.assert_allclose(
            f["labels"], np.stack([probs[i] for i in f["ids"]]), atol=1e-6)
    with np.load(os.path.join(fold, "embeddings.npz")) as f:
        real = dict(zip(f["ids"], f["fold"]))
    assert seen[True] & pseudo_ids                     # trained on them
    assert seen[True] <= pseudo_ids | {i for i, k in real.items() if k == 1}
    assert seen[False] == {i for i, k in real.items() if k == 0}
    with np.load(os.path.join(fold, "oof.npz")) as f:
        oof_ids = set(f["ids"])
    assert oof_ids == seen[False] and not oof_ids & pseudo_ids
    # The epoch: its real windows and as many pseudo-labelled ones.
    train_windows, _ = sequence.split_windows(
        mixed, sequence.cached_embeddings(mixed, 0, fold), 0)
    assert counts[True] == -(-2 * len(train_windows) // 2)
    with open(os.path.join(fold, "history.csv")) as f:
        assert len(f.read().strip().splitlines()) == 2
    assert manifest["pseudo"]["kept_series"] == manifest["splits"]["train"][
        "records"] > 0
