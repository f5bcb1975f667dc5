"""kaggle_tf.data.series: whole ICH series, in slice order, padded."""

import os

import numpy as np
import pytest

from competition_samples import config_maker
from competition_samples import ich_labels
from competition_samples import sample_and_convert
from kaggle_tf import config
from kaggle_tf.data import series
from tfrecords_tools import dicom

SIZE = 32
WINDOWS = [[40, 80], [80, 200], [40, 380]]
SUBTYPES = ("epidural", "intraparenchymal", "intraventricular",
            "subarachnoid", "subdural", "any")


_cfg = config_maker("rsna_ich", {"image_size": [SIZE, SIZE], "folds": 2,
                                  "shard_size": 2, "windows": WINDOWS,
                                  "max_series_length": 6},
                    seed=1, train={"batch_size": 2})


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    raw, _, cfg, _ = sample_and_convert(
        tmp_path_factory, "series", "rsna_ich", _cfg, 32, SIZE, 4)
    slices = {}  # series -> [(z, id)] from the DICOM headers
    for name in os.listdir(raw / "stage_2_train"):
        meta = dicom.read_meta(raw / "stage_2_train" / name)
        slices.setdefault(meta["series_instance_uid"], []).append(
            (meta["z"], name[:-4]))
    return cfg, raw, ich_labels(raw, SUBTYPES), {k: [i for _, i in sorted(v)]
                              for k, v in slices.items()}


def _expected_image(raw, image_id):
    hu = dicom.read_hu(raw / "stage_2_train" / f"{image_id}.dcm")
    return np.stack([dicom.window(hu, c, w) for c, w in WINDOWS], -1)


def test_eval_series_in_slice_order_cover_every_slice(sample):
    cfg, raw, labels, slices = sample
    got = {}
    for batch in series.make_series_dataset(cfg, [0, 1], training=False):
        assert batch["images"].shape[1:] == (6, SIZE, SIZE, 3)
        images = batch["images"].numpy()
        for b in range(images.shape[0]):
            mask = batch["mask"].numpy()[b]
            n = int(mask.sum())
            np.testing.assert_array_equal(mask, [1] * n + [0] * (6 - n))
            ids = [v.decode() for v in batch["id"].numpy()[b][:n]]
            index = batch["index"].numpy()[b]
            name = batch["series"].numpy()[b].decode()
            assert (index[n:] == -1).all()
            for j, image_id in enumerate(ids):
                assert slices[name][index[j]] == image_id
                got.setdefault(name, {})[int(index[j])] = image_id
                np.testing.assert_allclose(
                    images[b, j], _expected_image(raw, image_id), atol=1e-6)
                np.testing.assert_array_equal(
                    batch["labels"].numpy()[b, j],
                    labels[image_id])
            assert not images[b, n:].any()
    assert {k: [v[i] for i in sorted(v)] for k, v in got.items()} == slices
    assert max(len(v) for v in slices.values()) > 6  # chunked series


def test_training_windows_are_consecutive(sample):
    cfg, _, _, slices = sample
    ds = series.make_series_dataset(cfg, [0], training=True)
    batches = list(ds)
    assert batches and all(b["images"].shape[0] == 2 for b in batches)
    for batch in batches:
        for b in range(2):
            n = int(batch["mask"].numpy()[b].sum())
            index = batch["index"].numpy()[b][:n]
            name = batch["series"].numpy()[b].decode()
            assert n == min(6, len(slices[name]))
            np.testing.assert_array_equal(index, index[0] + np.arange(n))
            ids = [v.decode() for v in batch["id"].numpy()[b][:n]]
            assert ids == slices[name][index[0]:index[0] + n]


def test_folds_are_respected(sample):
    cfg, _, _, _ = sample
    names = [{v.decode() for b in series.make_series_dataset(
        cfg, [k], training=False) for v in b["series"].numpy() if v}
        for k in (0, 1)]
    assert names[0] and names[1] and not names[0] & names[1]


def test_wrong_task_and_missing_records(tmp_path):
    cfg = config.from_dict({"task": "steel"})
    with pytest.raises(ValueError, match="rsna_ich"):
        series.make_series_dataset(cfg, [0], training=False)
    cfg = _cfg(tmp_path, tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        series.make_series_dataset(cfg, [0], training=False)
