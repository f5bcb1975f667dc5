"""Repository-wide pytest options: `--run-slow` opts into slow tests."""

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# torch (a parity reference) imports triton when present; triton loaded
# after TensorFlow crashes the process. The CPU references never need it.
sys.modules.setdefault("triton", None)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: use --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
