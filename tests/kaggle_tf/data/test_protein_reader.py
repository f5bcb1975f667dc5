"""kaggle_tf.tasks.protein through the pipeline."""

import csv

import numpy as np
import pytest
from PIL import Image

from competition_samples import config_maker
from competition_samples import sample_and_convert
from kaggle_tf.data import pipeline

SIZE = 32
COLORS = ("red", "green", "blue", "yellow")


_cfg = config_maker("protein", {"image_size": [SIZE, SIZE], "folds": 2,
                                 "shard_size": 8, "channels": 4},
                    train={"batch_size": 4})


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    raw, out, _, _ = sample_and_convert(
        tmp_path_factory, "protein_reader", "protein", _cfg, 12, SIZE, 5)
    with open(raw / "train.csv", encoding="utf-8") as f:
        targets = {r["Id"]: r["Target"] for r in csv.DictReader(f)}
    return raw, out, targets


def _channels(raw, sample_id):
    return np.stack([np.asarray(Image.open(
        raw / "train" / f"{sample_id}_{c}.png")) for c in COLORS], -1)


@pytest.mark.parametrize("channels", [4, 3])
def test_batches_match_raw_files(sample, channels):
    raw, out, targets = sample
    cfg = _cfg(raw, out, channels=channels)
    seen = set()
    for batch in pipeline.make_dataset(cfg, [0, 1], training=False,
                                       with_meta=True):
        for b, raw_id in enumerate(batch["id"].numpy()):
            sample_id = raw_id.decode()
            seen.add(sample_id)
            want = _channels(raw, sample_id)[..., :channels] / 255.0
            np.testing.assert_allclose(batch["images"].numpy()[b], want,
                                       atol=1e-6)
            hot = np.zeros(28)
            hot[[int(k) for k in targets[sample_id].split()]] = 1
            np.testing.assert_array_equal(batch["labels"].numpy()[b], hot)
    assert seen == set(targets)


def test_bad_channel_count(sample):
    raw, out, _ = sample
    cfg = _cfg(raw, out, channels=2)
    with pytest.raises(ValueError, match="data.channels must be 3 or 4"):
        pipeline.make_dataset(cfg, [0], training=False)
