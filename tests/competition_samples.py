"""Helpers for tests that write a competition sample and convert it.

Importable from every test folder as `competition_samples` (this folder is
on `sys.path` because of `tests/conftest.py`).
"""

import csv
import glob
import os

import numpy as np


def sample_and_convert(tmp_path_factory, name, task, make_cfg, n, size,
                       seed):
    """Writes a `task` sample (n, size, seed) and converts it.

    `make_cfg(raw, out)` gives the conversion config. Returns
    (raw, out, cfg, manifest): the sample and records folders below a new
    `tmp_path_factory` folder `name`.
    """
    from tfrecords_tools import competitions
    from tfrecords_tools import convert

    root = tmp_path_factory.mktemp(name)
    raw, out = root / "raw", root / "records"
    competitions.get(task).make_sample(str(raw), n=n, size=size, seed=seed)
    cfg = make_cfg(raw, out)
    manifest = convert.convert(cfg, progress=False)
    return raw, out, cfg, manifest


def parsed_records(out, split="train"):
    """The parsed features of every `split` record of `out`, in file order."""
    import tensorflow as tf

    from tfrecords_tools import encode

    files = sorted(glob.glob(os.path.join(str(out), f"{split}-*.tfrec")))
    return [encode.from_example(r.numpy())
            for r in tf.data.TFRecordDataset(files)]


def ich_labels(raw, subtypes, cast=float):
    """{image id: [label per subtype]} from RSNA ICH's stage_2_train.csv."""
    labels = {}
    with open(os.path.join(raw, "stage_2_train.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            image_id, subtype = row["ID"].rsplit("_", 1)
            labels.setdefault(image_id, {})[subtype] = cast(row["Label"])
    return {k: [v[s] for s in subtypes] for k, v in labels.items()}


def siim_rle_decode(text, h, w):
    """SIIM relative column-major RLE, re-derived with plain numpy."""
    flat = np.zeros(h * w, bool)
    values = [int(v) for v in text.split()] if text.strip() != "-1" else []
    pos = 0
    for start, length in zip(values[0::2], values[1::2]):
        pos += start
        flat[pos:pos + length] = True
        pos += length
    return flat.reshape(w, h).T


def config_maker(task, data, **top):
    """`make_cfg(raw, out, **more_data)`: a `task` config whose `data` is
    `data` updated by `more_data`, with `top` (e.g. `train=...`) beside."""
    def make_cfg(raw, out, **more_data):
        from kaggle_tf import config

        return config.from_dict({"task": task, **top, "data": {
            "raw_dir": str(raw), "records_dir": str(out), **data,
            **more_data}})

    return make_cfg
