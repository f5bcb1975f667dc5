"""kaggle_tf.tasks.rsna_ich: series expanded into windowed slices."""

import os

import numpy as np
import pytest

from competition_samples import config_maker
from competition_samples import ich_labels
from competition_samples import sample_and_convert
from kaggle_tf.data import pipeline
from kaggle_tf.tasks import rsna_ich as reader
from tfrecords_tools import dicom

SIZE = 32
WINDOWS = [[40, 80], [80, 200], [40, 380]]
SUBTYPES = ("epidural", "intraparenchymal", "intraventricular",
            "subarachnoid", "subdural", "any")


_cfg = config_maker("rsna_ich", {"image_size": [SIZE, SIZE], "folds": 2,
                                  "shard_size": 2, "windows": WINDOWS,
                                  "channels": 3},
                    train={"batch_size": 4})


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    raw, out, _, _ = sample_and_convert(
        tmp_path_factory, "ich_reader", "rsna_ich", _cfg, 24, SIZE, 6)
    return raw, out, ich_labels(raw, SUBTYPES)


def _hu(raw, image_id, folder="stage_2_train"):
    return dicom.read_hu(os.path.join(raw, folder, f"{image_id}.dcm"))


def test_slices_match_raw_files(sample):
    raw, out, labels = sample
    seen = []
    for batch in pipeline.make_dataset(_cfg(raw, out), [0, 1],
                                       training=False, with_meta=True):
        for b, raw_id in enumerate(batch["id"].numpy()):
            image_id = raw_id.decode()
            seen.append(image_id)
            hu = _hu(raw, image_id)
            want = np.stack([dicom.window(hu, c, w) for c, w in WINDOWS], -1)
            np.testing.assert_allclose(batch["images"].numpy()[b], want,
                                       atol=1e-6)
            np.testing.assert_array_equal(batch["labels"].numpy()[b],
                                          labels[image_id])
    assert sorted(seen) == sorted(labels)


def test_no_windows_is_full_range_repeated(sample):
    raw, out, _ = sample
    cfg = _cfg(raw, out, windows=[])
    batch = next(iter(pipeline.make_dataset(cfg, [0], training=False,
                                            with_meta=True)))
    image_id = batch["id"].numpy()[0].decode()
    want = np.clip((_hu(raw, image_id) + 1024) / 4096, 0, 1)
    for c in range(3):
        np.testing.assert_allclose(batch["images"].numpy()[0, ..., c], want,
                                   atol=1e-6)


def test_training_and_test_split(sample):
    raw, out, _ = sample
    cfg = _cfg(raw, out, image_size=[16, 16], shuffle_buffer=8)
    batch = next(iter(pipeline.make_dataset(cfg, [1], training=True)))
    assert batch["images"].shape == (4, 16, 16, 3)
    assert batch["labels"].shape == (4, 6)
    ids = [v.decode() for b in pipeline.make_dataset(
        cfg, None, training=False, split="test", with_meta=True)
        for v in b["id"].numpy()]
    assert sorted(ids) == sorted(f[:-4] for f in os.listdir(
        raw / "stage_2_test"))


def test_window_hu_vs_numpy():
    import tensorflow as tf

    hu = np.linspace(-1100, 3000, 64, dtype=np.float32).reshape(8, 8, 1)
    got = reader.window_hu(tf.constant(hu), WINDOWS).numpy()
    for k, (c, w) in enumerate(WINDOWS):
        np.testing.assert_allclose(got[..., k], dicom.window(hu[..., 0], c, w),
                                   atol=1e-6)


def test_channels_must_match_windows(sample):
    raw, out, _ = sample
    cfg = _cfg(raw, out, windows=[[40, 80], [80, 200]])
    with pytest.raises(ValueError, match="data.windows"):
        pipeline.make_dataset(cfg, [0], training=False)
