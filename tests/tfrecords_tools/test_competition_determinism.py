"""Every competition: samples and conversions are deterministic.

One test per property, parametrized over `competitions.names()`:

* the same seed writes the same sample bytes (through the sample CLI and
  `make_sample` alike), another seed other bytes;
* converting the same sample twice, the second time with 2 workers, gives
  the same plan hash and the same serialized records, shard by shard, for
  train and test.

`TINY` holds each task's tiny sample and conversion settings; a new task in
`competitions.names()` needs an entry there.
"""

import hashlib
import os

import pytest

from competition_samples import config_maker
from steel_helpers import raw_records
from tfrecords_tools import competitions
from tfrecords_tools import convert
from tfrecords_tools import sample

# task -> sample (n, (height, width), seed), the `data` section of a
# conversion config (`raw_dir` / `records_dir` added by `tiny_config`) and,
# where the sample's n is too few to fill the folds, "convert_n".
TINY = {
    "steel": {"sample": (6, (32, 200), 3),
              "data": {"image_size": [32, 200], "folds": 2,
                       "fold_strategy": "stratified", "shard_size": 2}},
    "siim": {"sample": (4, (32, 32), 7),
             "data": {"image_size": [32, 32], "folds": 2, "shard_size": 2}},
    "protein": {"sample": (4, (16, 16), 5),
                "data": {"channels": 4, "image_size": [16, 16], "folds": 2,
                         "shard_size": 2}},
    "rsna_ich": {"sample": (8, (16, 16), 5), "convert_n": 16,
                 "data": {"image_size": [16, 16], "folds": 2,
                          "shard_size": 2}},
    "rsna_lumbar": {"sample": (2, (32, 32), 5),
                    "data": {"image_size": [32, 32], "folds": 2,
                             "shard_size": 2,
                             "stack_slices": {"sagittal_t1": 4,
                                              "sagittal_t2_stir": 3,
                                              "axial_t2": 6}}},
}


def tiny_config(task, raw, out):
    return config_maker(task, TINY[task]["data"])(raw, out)


def digest(folder):
    """sha256 over the relative paths and bytes of every file below."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            h.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_every_task_has_tiny_settings():
    assert set(TINY) == set(competitions.names())


@pytest.mark.parametrize("task", competitions.names())
def test_sample_deterministic(task, tmp_path):
    n, (h, w), seed = TINY[task]["sample"]
    make_sample = competitions.get(task).make_sample
    assert sample.main(["--task", task, "--out", str(tmp_path / "a"),
                        "--n", str(n), "--size", f"{h}x{w}",
                        "--seed", str(seed)]) == 0
    make_sample(str(tmp_path / "b"), n=n, size=(h, w), seed=seed)
    make_sample(str(tmp_path / "c"), n=n, size=(h, w), seed=seed + 1)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


@pytest.mark.parametrize("task", competitions.names())
def test_same_records_converted_twice_with_two_workers(task, tmp_path):
    n, size, seed = TINY[task]["sample"]
    n = TINY[task].get("convert_n", n)
    raw = tmp_path / "raw"
    competitions.get(task).make_sample(str(raw), n=n, size=size, seed=seed)
    first = convert.convert(tiny_config(task, raw, tmp_path / "one"),
                            progress=False)
    again = convert.convert(tiny_config(task, raw, tmp_path / "two"),
                            workers=2, progress=False)
    assert again["plan_hash"] == first["plan_hash"]
    for split in ("train", "test"):
        one = raw_records(tmp_path / "one", split)
        assert one, (task, split)
        assert raw_records(tmp_path / "two", split) == one
