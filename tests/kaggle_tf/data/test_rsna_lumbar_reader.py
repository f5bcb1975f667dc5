"""kaggle_tf.tasks.rsna_lumbar: stacks as channels, severity tensors."""

import csv
import io

import numpy as np
import pytest
from PIL import Image

from competition_samples import config_maker
from competition_samples import parsed_records
from competition_samples import sample_and_convert
from kaggle_tf.data import pipeline
from tfrecords_tools import schema
from tfrecords_tools.competitions import rsna_lumbar

SIZE = 32
STACKS = {"sagittal_t1": 3, "sagittal_t2_stir": 2, "axial_t2": 5}
SEVERITY = {"Normal/Mild": 0, "Moderate": 1, "Severe": 2, "": -1}


_cfg = config_maker("rsna_lumbar", {"image_size": [SIZE, SIZE], "folds": 2,
                                     "shard_size": 2, "stack_slices": STACKS,
                                     "channels": 10},
                    train={"batch_size": 2})


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    raw, _, cfg, _ = sample_and_convert(
        tmp_path_factory, "lumbar_reader", "rsna_lumbar", _cfg, 4, SIZE, 6)
    with open(raw / "train.csv", encoding="utf-8") as f:
        rows = {r["study_id"]: r for r in csv.DictReader(f)}
    with open(raw / "train_label_coordinates.csv", encoding="utf-8") as f:
        coords = list(csv.DictReader(f))
    return cfg, rows, coords


def _stored_stacks(cfg):
    """study -> (H, W, 10) uint8 of the records (checked against the DICOMs
    in tests/tfrecords_tools/test_rsna_lumbar.py)."""
    return {ex[schema.ID][0].decode(): np.stack(
        [np.asarray(Image.open(io.BytesIO(d))) for d in ex[schema.IMAGE]], -1)
        for ex in parsed_records(cfg.data.records_dir)}


def test_batches_match_raw_labels(sample):
    cfg, rows, coords = sample
    stacks = _stored_stacks(cfg)
    seen = set()
    for batch in pipeline.make_dataset(cfg, [0, 1], training=False,
                                       with_meta=True):
        for b, raw_id in enumerate(batch["id"].numpy()):
            study = raw_id.decode()
            seen.add(study)
            np.testing.assert_allclose(batch["images"].numpy()[b],
                                       stacks[study] / 255.0, atol=1e-6)
            severity = np.array([SEVERITY[rows[study][c]]
                                 for c in rsna_lumbar.CLASSES])
            np.testing.assert_array_equal(batch["severity"].numpy()[b],
                                          severity)
            onehot = np.zeros((25, 3))
            onehot[severity >= 0, severity[severity >= 0]] = 1
            np.testing.assert_array_equal(batch["labels"].numpy()[b],
                                          onehot)
            np.testing.assert_array_equal(batch["label_mask"].numpy()[b],
                                          severity >= 0)
            xyz = batch["coordinates"].numpy()[b]
            named = {(c["condition"].lower().replace(" ", "_") + "_"
                      + c["level"].lower().replace("/", "_")): c
                     for c in coords if c["study_id"] == study}
            for k, name in enumerate(rsna_lumbar.CLASSES):
                if name not in named:
                    np.testing.assert_array_equal(xyz[k], [-1, -1, -1])
                else:
                    assert 0 <= xyz[k, 0] < 5
                    assert 0 < xyz[k, 1] < 1 and 0 < xyz[k, 2] < 1
    assert seen == set(rows)


def test_training_batch_and_channel_check(sample):
    cfg, _, _ = sample
    batch = next(iter(pipeline.make_dataset(cfg, [0], training=True)))
    assert batch["images"].shape == (2, SIZE, SIZE, 10)
    assert batch["labels"].shape == (2, 25, 3)
    bad = _cfg(cfg.data.raw_dir, cfg.data.records_dir, channels=3)
    with pytest.raises(ValueError, match="stack_slices"):
        pipeline.make_dataset(bad, [0], training=False)
