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
MIN_AREA = [0, 100, 100, 10 ** 6]
MASK_SIZE = [80, 160]
# The classifier gate: class 1 (index 0) needs a probability >= 1, so its
# masks are always empty; the others always pass.
GATES = [1.0, 0.0, 0.0, 0.0]


@pytest.fixture(scope="session")
def steel_export(tmp_path_factory):
    """(cfg, version folder) of a 2-fold steel run with a gating
    classifier, exported with hflip TTA through the CLI; its records say
    the raw images are 80 x 160."""
    from kaggle_tf.export import __main__ as cli

    root = tmp_path_factory.mktemp("steel_export")
    records = root / "records"
    records.mkdir()
    (records / "manifest.json").write_text(
        json.dumps({"image_size": MASK_SIZE}))
    clf = tiny_runs.make_config(root / "cls", arch="classifier", classes=4)
    tiny_runs.save_folds(clf, (0,), scale=3.0)
    clf_path = root / "cls.json"
    clf_data = clf.to_dict()
    clf_data.pop("source")
    clf_path.write_text(json.dumps(clf_data))
    cfg = tiny_runs.make_config(root / "run", records_dir=records,
                                tta="hflip", thresholds=THRESHOLDS,
                                min_area=MIN_AREA,
                                classifier_config=str(clf_path),
                                classifier_threshold=GATES)
    tiny_runs.save_folds(cfg, (0, 1))
    config_path = root / "steel.json"
    data = cfg.to_dict()
    data.pop("source")
    config_path.write_text(json.dumps(data))
    out = root / "exports"
    assert cli.main(["--config", str(config_path), "--out", str(out)]) == 0
    return cfg, str(out / "1")
