"""Shard files: staged atomic writes, resume, record counts, manifest.

A conversion writes each shard into the hidden staging folder
`<records_dir>/.convert/` as `<shard>.part` (through a `.tmp-<pid>` file
renamed when complete) with a small JSON state beside it (record count,
skipped inputs, the plan hash). Only when every shard of the plan is staged
are they moved to their final names (`train-00003-of-00016.tfrec`), then
`folds.csv`, `errors.csv` and, last, `manifest.json` are written. So:

- nothing named like a final shard exists before the conversion succeeded
  (the staging names never match `*-of-*.tfrec`);
- a killed run (even `kill -9`) resumes: staged parts whose state matches
  the plan and whose record count is verified are kept;
- a rerun after success finds the manifest up to date and writes nothing;
- the manifest records each shard's size and sha256, so
  `python -m tfrecords_tools.convert --verify` tells a damaged shard.

File access goes through `tf.io.gfile`, so `records_dir` may be `gs://`.

Example:

>>> n = write_part(".convert/train-00000-of-00001.tfrec.part",
...                [b"record"])                       # doctest: +SKIP
>>> count_records(".convert/train-00000-of-00001.tfrec.part")  # doctest: +SKIP
1
"""

import hashlib
import json
import os
import struct

import tensorflow as tf

from tfrecords_tools import schema

STAGING = ".convert"
PART_SUFFIX = ".part"
STATE_SUFFIX = ".json"
PAUSE_ENV = "TFRECORDS_TOOLS_PAUSE_AFTER_SHARD"


def _tmp_name(path):
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}")


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file and a rename."""
    tmp = _tmp_name(path)
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json(path: str, obj) -> None:
    """Atomic JSON write (sorted keys, indented)."""
    write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def read_json(path: str):
    """The JSON at `path`, or None when missing or unreadable."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return json.loads(f.read())
    except (tf.errors.NotFoundError, ValueError):
        return None


def write_part(path: str, records) -> int:
    """Writes serialized records to a TFRecord file atomically.

    Args:
        path: the final file name.
        records: an iterable of serialized `tf.train.Example` bytes.

    Returns:
        The number of records written.
    """
    tmp = _tmp_name(path)
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp) as w:
            for record in records:
                w.write(record)
                count += 1
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
    return count


def count_records(path: str) -> int:
    """Counts the records of a TFRecord file from its framing.

    Reads only the 12-byte record headers; a file that ends inside a record
    (truncated) returns -1. A missing file returns -1 too.
    """
    if not tf.io.gfile.exists(path):
        return -1
    size = tf.io.gfile.stat(path).length
    count, offset = 0, 0
    with tf.io.gfile.GFile(path, "rb") as f:
        while offset < size:
            header = f.read(12)
            if len(header) < 12:
                return -1
            (length,) = struct.unpack("<Q", header[:8])
            offset += 12 + length + 4
            if offset > size:
                return -1
            f.seek(offset)
            count += 1
    return count


def file_sha256(path: str, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file (any `tf.io.gfile` path)."""
    h = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def verify_shard(records_dir: str, entry: dict):
    """None when the manifest entry's shard is intact, else the reason.

    Checks that the file exists, its size and sha256 (manifests written
    before checksums existed have none: then the record count only) and
    that its record framing holds `entry["records"]` records.
    """
    path = os.path.join(records_dir, entry["file"])
    if not tf.io.gfile.exists(path):
        return "missing"
    size = tf.io.gfile.stat(path).length
    if "bytes" in entry and size != entry["bytes"]:
        return f"{size} bytes, the manifest says {entry['bytes']}"
    if "sha256" in entry and file_sha256(path) != entry["sha256"]:
        return "checksum differs from the manifest's (damaged)"
    count = count_records(path)
    if count != entry["records"]:
        return ("truncated" if count < 0 else
                f"{count} records, the manifest says {entry['records']}")
    return None


def pause_after_shard() -> None:
    """Sleeps `$TFRECORDS_TOOLS_PAUSE_AFTER_SHARD` seconds (tests only)."""
    seconds = float(os.environ.get(PAUSE_ENV, "0") or 0)
    if seconds > 0:
        import time

        time.sleep(seconds)


class Staging:
    """The staging folder of a records dir, tied to one plan hash."""

    def __init__(self, records_dir: str, plan_hash: str):
        self.records_dir = records_dir
        self.folder = os.path.join(records_dir, STAGING)
        self.plan_hash = plan_hash
        tf.io.gfile.makedirs(self.folder)

    def part_path(self, shard: str) -> str:
        return os.path.join(self.folder, shard + PART_SUFFIX)

    def state_path(self, shard: str) -> str:
        return os.path.join(self.folder, shard + STATE_SUFFIX)

    def done(self, shard: str):
        """The state of a verified staged part, or None if it must be redone.
        """
        state = read_json(self.state_path(shard))
        if not state or state.get("plan") != self.plan_hash:
            return None
        if count_records(self.part_path(shard)) != state.get("records"):
            return None
        return state

    def write(self, shard: str, records, state: dict) -> dict:
        """Stages a shard: state first, then the part (both atomic)."""
        records = list(records)
        state = dict(state, plan=self.plan_hash, records=len(records))
        write_json(self.state_path(shard), state)
        part = self.part_path(shard)
        write_part(part, records)
        # Checksummed where the shard was written (a Beam worker next to
        # the bucket), so that the manifest needs no second read of it.
        state.update(bytes=tf.io.gfile.stat(part).length,
                     sha256=file_sha256(part))
        write_json(self.state_path(shard), state)
        return state

    def promote(self, shard: str) -> None:
        """Moves a staged part to its final name in `records_dir`."""
        tf.io.gfile.rename(self.part_path(shard),
                           os.path.join(self.records_dir, shard),
                           overwrite=True)

    def remove(self) -> None:
        if tf.io.gfile.exists(self.folder):
            tf.io.gfile.rmtree(self.folder)


def final_shards(records_dir: str, split: str) -> list:
    """The final shard files of `split` in `records_dir` (sorted names)."""
    pattern = os.path.join(records_dir, schema.shard_pattern(split))
    return sorted(os.path.basename(p) for p in tf.io.gfile.glob(pattern))


def manifest_up_to_date(records_dir: str, plan_hash: str):
    """The manifest if it matches `plan_hash` and every shard verifies."""
    manifest = read_json(os.path.join(records_dir, schema.MANIFEST))
    if not manifest or manifest.get("plan_hash") != plan_hash:
        return None
    for split in manifest.get("splits", {}).values():
        for shard in split["shards"]:
            path = os.path.join(records_dir, shard["file"])
            if count_records(path) != shard["records"]:
                return None
    return manifest
