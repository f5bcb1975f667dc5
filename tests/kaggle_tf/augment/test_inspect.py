"""`python -m kaggle_tf.inspect augment` on the tiny steel records."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from kaggle_tf import inspect

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SIIM = os.path.join(ROOT, "configs", "transforms", "siim_1st.json")


def _config(tmp_path, steel_records, **augment):
    cfg, _ = steel_records
    data = {"task": "steel", "seed": 1,
            "data": {"raw_dir": cfg.data.raw_dir,
                     "records_dir": cfg.data.records_dir,
                     "image_size": list(cfg.data.image_size)},
            "augment": {"transforms": SIIM, "seed": 3, **augment}}
    path = tmp_path / "steel_aug.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_augment_picture(tmp_path, steel_records):
    out = tmp_path / "pics" / "aug.png"
    code = inspect.main(["augment", "--config",
                         _config(tmp_path, steel_records), "--out",
                         str(out), "--n", "3"])
    assert code == 0
    picture = np.asarray(Image.open(out))
    assert picture.shape[0] > 300 and picture.shape[1] >= 1000
    assert picture[..., :3].std() > 10  # not blank


def test_bad_config_exits_2_and_writes_nothing(tmp_path, steel_records,
                                               capsys):
    out = tmp_path / "aug.png"
    path = _config(tmp_path, steel_records)
    with pytest.raises(SystemExit) as info:
        inspect.main(["augment", "--config", path, "--out", str(out),
                      "--set", "augment.nope=1"])
    assert info.value.code == 2
    assert inspect.main(["augment", "--config", path, "--out", str(out),
                         "--set", "augment.transforms=null"]) == 2
    assert inspect.main(["augment", "--config", path, "--out", str(out),
                         "--set",
                         'augment.transforms=[{"__class_fullname__":'
                         '"Blur"}]']) == 2
    assert "Blur" in capsys.readouterr().err
    assert not out.exists()
