"""Pseudo-labelled records: counted in their manifest, mixed into every
training fold and never into a validation fold (checked by ids)."""

import os

import numpy as np
import pytest

from kaggle_tf import config as config_lib
from kaggle_tf import layout
from kaggle_tf.data import pipeline
from kaggle_tf.data import pseudo
from kaggle_tf.data import records
from tfrecords_tools import encode
from tfrecords_tools import schema


def ids_of_test_split(cfg):
    ds = pipeline.make_dataset(cfg, None, training=False, split="test",
                               with_meta=True, batch_size=8)
    return [i for b in ds for i in records.id_strings(b["id"])]


def with_pseudo(cfg, tmp_path, **pseudo_cfg):
    data = cfg.to_dict()
    data["output_dir"] = str(tmp_path / "run")
    data["pseudo"] = {"records_dir": str(tmp_path / "pseudo"),
                      **pseudo_cfg}
    return config_lib.from_dict(data)


@pytest.fixture
def predicted(steel_records, tmp_path):
    """A steel run's test_probs.npz: the first half of the test images
    confident (probabilities 0.02 / 0.98), the rest not (0.5)."""
    base, _ = steel_records
    cfg = with_pseudo(base, tmp_path, confidence=[0.9])
    ids = ids_of_test_split(cfg)
    h, w = cfg.data.image_size
    rng = np.random.default_rng(0)
    probs = np.where(rng.random((len(ids), h, w, 4)) < 0.1, 0.98, 0.02)
    probs[len(ids) // 2:] = 0.5
    os.makedirs(cfg.output_dir)
    np.savez(os.path.join(cfg.output_dir, layout.TEST_PROBS),
             ids=np.array(ids), probs=probs.astype(np.float16))
    return cfg, ids, probs


def test_records_and_manifest_count_the_confident_images(predicted):
    cfg, ids, probs = predicted
    manifest = pseudo.write_records(cfg)
    kept = ids[:len(ids) // 2]
    assert manifest["splits"]["train"]["records"] == len(kept)
    assert sorted(manifest["pseudo"]["ids"]) == sorted(kept)
    total = sum(e["records"] for e in manifest["splits"]["train"]["shards"])
    assert total == len(kept)
    from kaggle_tf.data.records import shard_files
    import tensorflow as tf

    files = shard_files(cfg.pseudo.records_dir, manifest, "train")
    first = encode.from_example(next(iter(
        tf.data.TFRecordDataset(files[:1]).as_numpy_iterator())))
    assert first[schema.FOLD] == [schema.TEST_FOLD]
    i = ids.index(first[schema.ID][0].decode())
    mask = encode.unpack_mask(first[schema.MASK][0], 4)
    np.testing.assert_array_equal(mask, probs[i] >= 0.5)


def test_pseudo_ids_are_in_training_folds_never_in_validation(
        predicted, tmp_path):
    cfg, ids, _ = predicted
    pseudo.write_records(cfg)
    data = cfg.to_dict()
    data["data"].update(pseudo_records=cfg.pseudo.records_dir,
                        pseudo_weight=0.5)
    mixed = config_lib.from_dict(data)
    kept = set(ids[:len(ids) // 2])
    for fold in (0, 3):
        train_folds = [f for f in range(cfg.data.folds) if f != fold]
        train = pipeline.make_dataset(mixed, train_folds, training=True,
                                      with_meta=True, batch_size=8,
                                      epoch_examples=16)
        seen = [(i, int(f)) for b in train.take(6)
                for i, f in zip(records.id_strings(b["id"]),
                                np.asarray(b["fold"]))]
        pseudo_seen = {i for i, f in seen if f == schema.TEST_FOLD}
        assert pseudo_seen and pseudo_seen <= kept
        assert {f for _, f in seen} - {schema.TEST_FOLD} <= set(train_folds)
        val = pipeline.make_dataset(mixed, [fold], training=False,
                                    with_meta=True, batch_size=8)
        val_ids = [i for b in val for i in records.id_strings(b["id"])]
        plain = pipeline.make_dataset(cfg, [fold], training=False,
                                      with_meta=True, batch_size=8)
        assert val_ids == [i for b in plain
                           for i in records.id_strings(b["id"])]
        assert not set(val_ids) & set(ids)


def test_soft_labels_are_refused_for_masks(predicted):
    cfg, _, _ = predicted
    data = cfg.to_dict()
    data["pseudo"]["mode"] = "soft"
    with pytest.raises(pseudo.PseudoError, match="soft"):
        pseudo.write_records(config_lib.from_dict(data))
    with pytest.raises(config_lib.ConfigError, match="data.pseudo_weight"):
        config_lib.from_dict({"data": {"pseudo_weight": 2}})


def test_epoch_steps_count_the_mixed_stream(predicted):
    """steps = real / (1 - pseudo_weight) // batch; null weight: real +
    pseudo; weight 1: the pseudo-labelled examples alone."""
    from kaggle_tf.training import image

    cfg, ids, _ = predicted
    manifest = pseudo.write_records(cfg)
    n_pseudo = manifest["splits"]["train"]["records"]
    folds = [1, 2, 3, 4]
    real = pipeline.count_records(cfg, folds)
    assert image._epoch_steps(cfg, folds, 4) == real // 4
    data = cfg.to_dict()
    data["data"]["pseudo_records"] = cfg.pseudo.records_dir
    for weight, examples in ((0.25, round(real / 0.75)),
                             (None, real + n_pseudo), (1.0, n_pseudo),
                             (0.0, real)):
        data["data"]["pseudo_weight"] = weight
        mixed = config_lib.from_dict(data)
        assert pipeline.training_examples(mixed, folds) == examples
        assert image._epoch_steps(mixed, folds, 4) == max(examples // 4, 1)
    assert round(real / 0.75) > real + n_pseudo  # the rules differ here
