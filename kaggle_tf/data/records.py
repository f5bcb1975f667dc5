"""Reading what `tfrecords_tools.convert` wrote: manifest, shards, ids.

The feature keys come from `tfrecords_tools.schema` (shared with the
writer). Every function here is TensorFlow ops or `tf.io.gfile`, so it runs
in `tf.data` on a TPU host and reads `gs://` paths.

Example:

>>> manifest = read_manifest("data/records/steel")       # doctest: +SKIP
>>> manifest["splits"]["train"]["records_per_fold"]       # doctest: +SKIP
{'0': 2514, '1': 2514, '2': 2514, '3': 2513, '4': 2513}
"""

import json
import os

import numpy as np
import tensorflow as tf

from tfrecords_tools import shard_check
from tfrecords_tools import schema
# The record codec lives beside the encoder, in `tfrecords_tools.decode`;
# the data layer's readers use it through these names.
from tfrecords_tools.decode import decode_image  # noqa: F401
from tfrecords_tools.decode import decode_images  # noqa: F401
from tfrecords_tools.decode import decode_mask  # noqa: F401
from tfrecords_tools.decode import resize_image  # noqa: F401
from tfrecords_tools.decode import resize_mask  # noqa: F401


def id_strings(values) -> list:
    """String ids from a dataset batch (bytes, any shape) -> `str` list,
    flattened in row-major order."""
    return [v.decode() if isinstance(v, bytes) else str(v)
            for v in np.asarray(values).ravel()]


def read_manifest(records_dir: str) -> dict:
    """Loads `records_dir/manifest.json`.

    Raises:
        FileNotFoundError: no manifest (the conversion has not finished).
        ValueError: a manifest of another schema version.
    """
    path = os.path.join(records_dir, schema.MANIFEST)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} not found: convert the raw data first "
            "(python -m tfrecords_tools.convert --config ...)")
    with tf.io.gfile.GFile(path, "rb") as f:
        text = f.read()
    try:
        manifest = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: damaged manifest ({e}); convert the raw "
                         "data again") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not a manifest (a JSON object expected);"
                         " convert the raw data again")
    version = manifest.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema version {version}, this reader expects "
            f"{schema.SCHEMA_VERSION}; convert the raw data again")
    return manifest


def check_manifest(manifest: dict, cfg, records_dir: str) -> None:
    """Raises ValueError when the records do not match the config."""
    where = os.path.join(records_dir, schema.MANIFEST)
    if manifest["task"] != cfg.task:
        raise ValueError(f"{where} holds task {manifest['task']!r}, the "
                         f"config says task={cfg.task!r}")
    if manifest["folds"] != cfg.data.folds:
        raise ValueError(
            f"{where} was written with {manifest['folds']} folds, the "
            f"config says data.folds={cfg.data.folds}; convert again")


def shard_files(records_dir: str, manifest: dict, split: str = "train",
                folds=None) -> list:
    """Shard paths of `split` (those holding `folds`; None = all).

    Files are listed with `tf.io.gfile.glob` and checked against the
    manifest, so a missing shard is an error rather than a silent gap.
    """
    if split not in manifest["splits"]:
        raise ValueError(f"split must be one of "
                         f"{sorted(manifest['splits'])}. Received: {split!r}")
    pattern = os.path.join(records_dir, schema.shard_pattern(split))
    found = {os.path.basename(p) for p in tf.io.gfile.glob(pattern)}
    wanted = None if folds is None else {int(f) for f in folds}
    files = []
    for shard in manifest["splits"][split]["shards"]:
        if wanted is not None and shard.get("fold") not in wanted:
            continue
        if shard["file"] not in found:
            raise FileNotFoundError(
                f"{os.path.join(records_dir, shard['file'])} is listed in "
                "the manifest but missing")
        files.append(os.path.join(records_dir, shard["file"]))
    shard_check.remember(files)
    return files

