"""tfrecords_tools.writer: atomic parts, record counts, staging."""

import os

from tfrecords_tools import schema
from tfrecords_tools import writer


def test_write_part_and_count(tmp_path):
    path = str(tmp_path / "x.part")
    assert writer.write_part(path, [b"a", b"bb" * 100, b""]) == 3
    assert writer.count_records(path) == 3
    assert os.listdir(tmp_path) == ["x.part"]          # no temp left
    with open(path, "rb") as f:
        data = f.read()
    (tmp_path / "cut.part").write_bytes(data[:-3])
    assert writer.count_records(str(tmp_path / "cut.part")) == -1
    assert writer.count_records(str(tmp_path / "none.part")) == -1


def test_failed_write_leaves_nothing(tmp_path):
    def records():
        yield b"one"
        raise RuntimeError("boom")

    path = str(tmp_path / "y.part")
    try:
        writer.write_part(path, records())
    except RuntimeError:
        pass
    assert os.listdir(tmp_path) == []


def test_staging_verifies_plan_and_count(tmp_path):
    staging = writer.Staging(str(tmp_path), "plan-a")
    name = schema.shard_name("train", 0, 1)
    staging.write(name, [b"r1", b"r2"], {"errors": []})
    assert staging.done(name)["records"] == 2
    assert writer.Staging(str(tmp_path), "plan-b").done(name) is None
    with open(staging.part_path(name), "ab") as f:
        f.write(b"\0" * 5)                              # damaged part
    assert staging.done(name) is None
    # Temp and staged names never match the final shard pattern.
    import fnmatch

    pattern = schema.shard_pattern("train")
    names = os.listdir(staging.folder) + [".x.tmp-1"]
    assert not [n for n in names if fnmatch.fnmatch(n, pattern)]
    staging.promote(name)
    assert os.path.exists(tmp_path / name)
    assert writer.final_shards(str(tmp_path), "train") == [name]
