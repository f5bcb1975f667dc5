"""kaggle_tf.tasks.siim through the pipeline, against the raw files."""

import glob
import os

import numpy as np
import pydicom
import pytest

from competition_samples import config_maker
from competition_samples import sample_and_convert
from competition_samples import siim_rle_decode
from kaggle_tf.data import pipeline

SIZE = 32


_cfg = config_maker("siim", {"image_size": [SIZE, SIZE], "folds": 2,
                              "shard_size": 4, "channels": 3},
                    train={"batch_size": 4})


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    raw, _, cfg, _ = sample_and_convert(
        tmp_path_factory, "siim_reader", "siim", _cfg, 12, SIZE, 5)
    files = {os.path.basename(p)[:-4]: p for p in glob.glob(
        str(raw / "dicom-images-*" / "*" / "*" / "*.dcm"))}
    masks = {}
    with open(raw / "train-rle.csv", encoding="utf-8") as f:
        for line in f.read().splitlines()[1:]:
            image_id, rle = line.split(", ")
            masks[image_id] = masks.get(image_id, False) | siim_rle_decode(
                rle, SIZE, SIZE)
    return cfg, files, masks


def test_batches_match_raw_files(sample):
    cfg, files, masks = sample
    seen = set()
    for batch in pipeline.make_dataset(cfg, [0, 1], training=False,
                                       with_meta=True):
        for b, raw_id in enumerate(batch["id"].numpy()):
            image_id = raw_id.decode()
            seen.add(image_id)
            pixels = pydicom.dcmread(files[image_id]).pixel_array / 255.0
            image = batch["images"].numpy()[b]
            for c in range(3):
                np.testing.assert_allclose(image[..., c], pixels, atol=1e-6)
            mask = batch["segmentation_masks"].numpy()[b, ..., 0]
            np.testing.assert_array_equal(mask, masks[image_id])
            assert batch["labels"].numpy()[b, 0] == masks[image_id].any()
    assert seen == set(masks)


def test_resized_training_batches(sample):
    cfg, _, _ = sample
    small = _cfg(cfg.data.raw_dir, cfg.data.records_dir, image_size=[16, 24])
    batch = next(iter(pipeline.make_dataset(small, [0], training=True)))
    assert batch["images"].shape == (4, 16, 24, 3)
    assert batch["segmentation_masks"].shape == (4, 16, 24, 1)
    assert set(np.unique(batch["segmentation_masks"].numpy())) <= {0.0, 1.0}


def test_test_split_ids(sample):
    cfg, files, masks = sample
    ids = {v.decode() for b in pipeline.make_dataset(
        cfg, None, training=False, split="test", with_meta=True)
        for v in b["id"].numpy()}
    assert ids == set(files) - set(masks) and ids
