"""Pseudo-labelled RSNA ICH series: written as the converter's series
records (per-slice labels from test_probs.npz), counted in their manifest,
mixed into the training series and slices, never into validation."""

import os

import numpy as np
import pytest
import tensorflow as tf

from competition_samples import config_maker
from competition_samples import sample_and_convert
from kaggle_tf import config as config_lib
from kaggle_tf import layout
from kaggle_tf.data import pipeline
from kaggle_tf.data import pseudo
from kaggle_tf.data import records
from kaggle_tf.data import series
from tfrecords_tools import encode
from tfrecords_tools import schema

WINDOWS = [[40, 80], [80, 200], [40, 380]]
# Per class: `any` (last) is never positive at 0.97.
THRESHOLDS = [0.5, 0.5, 0.5, 0.5, 0.5, 0.98]

_cfg = config_maker("rsna_ich", {"image_size": [32, 32], "folds": 2,
                                  "shard_size": 2, "windows": WINDOWS,
                                  "channels": 3, "max_series_length": 12,
                                  "shuffle_buffer": 8},
                    seed=3, train={"batch_size": 2})


@pytest.fixture(scope="module")
def ich(tmp_path_factory):
    _, _, cfg, _ = sample_and_convert(tmp_path_factory, "ich_pseudo",
                                      "rsna_ich", _cfg, 64, 32, 11)
    return cfg


def stored_records(records_dir, split):
    """The parsed features of every `split` record of a folder."""
    files = sorted(tf.io.gfile.glob(os.path.join(str(records_dir),
                                                 f"{split}-*.tfrec")))
    return [encode.from_example(r.numpy())
            for r in tf.data.TFRecordDataset(files)]



def with_pseudo(cfg, tmp_path, **pseudo_cfg):
    data = cfg.to_dict()
    data["output_dir"] = str(tmp_path / "run")
    data["pseudo"] = {"records_dir": str(tmp_path / "pseudo"),
                      "confidence": [0.9], **pseudo_cfg}
    return config_lib.from_dict(data)


@pytest.fixture
def predicted(ich, tmp_path):
    """test_probs.npz of every test slice: confident (0.03 / 0.97) except
    one slice of the second series (0.6), which drops that series."""
    cfg = with_pseudo(ich, tmp_path, thresholds=THRESHOLDS)
    stored = stored_records(cfg.data.records_dir, "test")
    assert len(stored) >= 3
    rng = np.random.default_rng(0)
    ids, probs = [], []
    for n, rec in enumerate(stored):
        for t, raw in enumerate(rec[schema.ID]):
            ids.append(raw.decode())
            p = np.where(rng.random(6) < 0.3, 0.97, 0.03)
            if n == 1 and t == 1:
                p[2] = 0.6
            probs.append(p)
    probs = np.asarray(probs)
    os.makedirs(cfg.output_dir)
    np.savez(os.path.join(cfg.output_dir, layout.TEST_PROBS),
             ids=np.array(ids), probs=probs.astype(np.float16))
    return cfg, stored, dict(zip(ids, probs))


def test_series_records_carry_each_slices_labels(predicted):
    cfg, stored, probs = predicted
    manifest = pseudo.write_records(cfg)
    kept = [r for n, r in enumerate(stored) if n != 1]
    kept_ids = [i.decode() for r in kept for i in r[schema.ID]]
    train = manifest["splits"]["train"]
    assert train["records"] == len(kept) and train["skipped"] == 1
    assert train["records_per_fold"] == {"-1": len(kept)}
    assert train["examples_per_fold"] == {"-1": len(kept_ids)}
    assert manifest["pseudo"]["ids"] == kept_ids
    assert manifest["pseudo"]["kept_series"] == len(kept)
    written = stored_records(cfg.pseudo.records_dir, "train")
    assert len(written) == len(kept)
    for got, src in zip(written, kept):
        ids = [i.decode() for i in got[schema.ID]]
        assert got[schema.SERIES] == src[schema.SERIES]
        assert ids == [i.decode() for i in src[schema.ID]]
        assert got[schema.IMAGE] == src[schema.IMAGE]
        assert got[schema.POSITION] == src[schema.POSITION]
        assert got[schema.FOLD] == [schema.TEST_FOLD]
        want = np.stack([probs[i] >= THRESHOLDS
                         for i in ids]).astype(np.float32)
        np.testing.assert_array_equal(
            np.reshape(got[schema.LABELS], (len(ids), 6)), want)
    # Soft labels: the probabilities themselves, every series kept.
    data = cfg.to_dict()
    data["pseudo"]["mode"] = "soft"
    manifest = pseudo.write_records(config_lib.from_dict(data))
    assert manifest["splits"]["train"]["records"] == len(stored)
    first = stored_records(cfg.pseudo.records_dir, "train")[0]
    ids = [i.decode() for i in first[schema.ID]]
    np.testing.assert_allclose(
        np.reshape(first[schema.LABELS], (len(ids), 6)),
        np.stack([probs[i] for i in ids]).astype(np.float16), atol=1e-6)


def series_ids(ds, take=None):
    ds = ds if take is None else ds.take(take)
    return [i for b in ds for i in records.id_strings(
        np.asarray(b["id"]).reshape(-1)) if i]


def test_pseudo_series_train_never_validate(predicted):
    cfg, _, _ = predicted
    manifest = pseudo.write_records(cfg)
    pseudo_ids = set(manifest["pseudo"]["ids"])
    data = cfg.to_dict()
    data["data"].update(pseudo_records=cfg.pseudo.records_dir,
                        pseudo_weight=0.5)
    mixed = config_lib.from_dict(data)
    for fold in (0, 1):
        train_folds = [1 - fold]
        real = set(series_ids(series.make_series_dataset(
            cfg, train_folds, training=False)))
        seen = series_ids(series.make_series_dataset(
            mixed, train_folds, training=True, repeat=True), take=12)
        assert set(seen) & pseudo_ids
        assert set(seen) <= pseudo_ids | real
        # One pass (no repeat): every real series once, pseudo ones mixed in.
        once = series_ids(series.make_series_dataset(
            mixed, train_folds, training=True, drop_remainder=False))
        assert sorted(i for i in once if i in real) == sorted(real)
        # Validation: the fold's own series only, as without pseudo-labels.
        val = series_ids(series.make_series_dataset(mixed, [fold],
                                                    training=False))
        assert val == series_ids(series.make_series_dataset(
            cfg, [fold], training=False))
        assert not set(val) & pseudo_ids
        # The slice classifier's stream: pseudo slices (fold -1) too.
        slices = pipeline.make_dataset(mixed, train_folds, training=True,
                                       with_meta=True, batch_size=8,
                                       epoch_examples=16)
        got = [(i, int(f)) for b in slices.take(6)
               for i, f in zip(records.id_strings(b["id"]),
                               np.asarray(b["fold"]))]
        assert {i for i, f in got if f == schema.TEST_FOLD} & pseudo_ids
        assert {i for i, f in got if f == schema.TEST_FOLD} <= pseudo_ids
        assert {f for _, f in got} <= {schema.TEST_FOLD, *train_folds}


def test_epoch_counts_the_pseudo_series(predicted):
    cfg, _, _ = predicted
    manifest = pseudo.write_records(cfg)
    n_slices = manifest["splits"]["train"]["examples_per_fold"]["-1"]
    n_series = manifest["splits"]["train"]["records"]
    data = cfg.to_dict()
    data["data"]["pseudo_records"] = cfg.pseudo.records_dir
    by_count = config_lib.from_dict(data)
    real = pipeline.count_records(cfg, [0])
    real_series = pipeline.count_records(cfg, [0], unit="records")
    assert pipeline.training_examples(by_count, [0]) == real + n_slices
    assert pipeline.training_examples(by_count, [0], unit="records") == (
        real_series + n_series)
