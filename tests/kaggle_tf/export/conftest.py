"""Fixtures for export tests: a tiny steel run exported once."""

import json
import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                "inference"))

import tiny_runs  # noqa: E402

THRESHOLDS = [0.5, 0.4, 0.6, 0.3]
MIN_AREA = [0, 300, 100, 10 ** 6]
MASK_SIZE = [80, 160]


@pytest.fixture(scope="session")
def steel_export(tmp_path_factory):
    """(cfg, version folder) of a 2-fold steel run exported with hflip TTA
    through the CLI; its records say the raw images are 80 x 160."""
    from kaggle_tf.export import __main__ as cli

    root = tmp_path_factory.mktemp("steel_export")
    records = root / "records"
    records.mkdir()
    (records / "manifest.json").write_text(
        json.dumps({"image_size": MASK_SIZE}))
    cfg = tiny_runs.make_config(root / "run", records_dir=records,
                                tta="hflip", thresholds=THRESHOLDS,
                                min_area=MIN_AREA)
    tiny_runs.save_folds(cfg, (0, 1))
    config_path = root / "steel.json"
    data = cfg.to_dict()
    data.pop("source")
    config_path.write_text(json.dumps(data))
    out = root / "exports"
    assert cli.main(["--config", str(config_path), "--out", str(out)]) == 0
    return cfg, str(out / "1")
