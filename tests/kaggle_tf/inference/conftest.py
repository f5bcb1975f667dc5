"""Fixtures for inference tests: tiny runs with saved fold checkpoints."""

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import tiny_runs  # noqa: E402


@pytest.fixture(scope="module")
def steel_run(tmp_path_factory):
    """A steel config (64 x 128, 4 classes) with fold0 and fold1 saved."""
    root = tmp_path_factory.mktemp("steel_run")
    cfg = tiny_runs.make_config(root / "run", records_dir=root / "records")
    tiny_runs.save_folds(cfg, (0, 1))
    return cfg
