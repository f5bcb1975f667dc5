"""What to say when the competition's raw files are not there yet.

`explain(cfg, error)` turns a "not found" `BadInput` raised while listing
the raw files into one that names the expected file or folder, the
competition's Kaggle slug (`KAGGLE_SLUG` of
`tfrecords_tools.competitions.<task>`), the download command, and the
sample generator to try the pipeline without the data.

Example:

>>> text = message("steel", "data/severstal-steel-defect-detection")
>>> "kaggle competitions download -c severstal-steel-defect-" in text
True
"""

import os
import re

from tfrecords_tools import competitions
from tfrecords_tools.items import BadInput

# "<folder>/<file> not found": the folder named must hold a word character
# (".../x.dcm not found" names no folder).
_MISSING_IN = re.compile(
    r"(?:image |\.\.\./)?([\w.-]*[A-Za-z0-9_][\w.-]*)/[^/\s]+ not found")


def slug(task: str) -> str:
    return competitions.get(task).KAGGLE_SLUG


def message(task: str, raw_dir: str) -> str:
    """The download instructions, one line."""
    return (f"the {task} data is not there yet: download it with "
            f"`kaggle competitions download -c {slug(task)}` and unzip it "
            f"into data.raw_dir ({raw_dir}), or try the pipeline on a "
            f"sample: `python -m tfrecords_tools.sample --task {task} "
            f"--out {raw_dir}`")


def missing_path(raw_dir: str, error: BadInput):
    """The missing file or folder behind `error`, or None when the error
    is about something else (or about one file of a present folder)."""
    if "not found" not in error.reason:
        return None
    if not os.path.exists(error.path):
        return error.path
    found = _MISSING_IN.search(error.reason)
    if found:
        folder = os.path.join(raw_dir, found.group(1))
        if not os.path.isdir(folder):
            return folder
    return None


def explain(cfg, error: BadInput) -> BadInput:
    """`error` with the download instructions when the raw data is
    missing, else `error` itself."""
    if os.path.isfile(cfg.data.raw_dir):
        return BadInput(cfg.data.raw_dir, "is a file; data.raw_dir must be "
                        "the folder holding the competition's files ("
                        f"{message(cfg.task, cfg.data.raw_dir)})",
                        error.item_id)
    path = missing_path(cfg.data.raw_dir, error)
    if path is None:
        return error
    if not os.path.isdir(cfg.data.raw_dir):
        path = cfg.data.raw_dir
    return BadInput(path, f"not found; {message(cfg.task, cfg.data.raw_dir)}",
                    error.item_id)
