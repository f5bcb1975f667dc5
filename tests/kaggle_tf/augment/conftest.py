"""Fixtures of the augment tests (helpers live in augment_helpers)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from augment_helpers import blob_mask  # noqa: E402
from augment_helpers import smooth_image  # noqa: E402


@pytest.fixture
def image():
    return smooth_image()


@pytest.fixture
def mask():
    return blob_mask()
