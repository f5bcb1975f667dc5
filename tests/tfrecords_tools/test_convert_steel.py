"""Steel sample -> convert -> records: content, folds, resume, bad inputs."""

import csv
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from steel_helpers import raw_records
from steel_helpers import read_records
from steel_helpers import truth_masks

from tfrecords_tools import convert
from tfrecords_tools import encode
from tfrecords_tools import schema
from tfrecords_tools import writer
from tfrecords_tools.items import BadInput

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _final_files(records_dir):
    """Everything under records_dir named like a final shard or manifest."""
    found = glob.glob(os.path.join(str(records_dir), "**", "*-of-*.tfrec*"),
                      recursive=True)
    found += glob.glob(os.path.join(str(records_dir), "**", "*tfrec"),
                       recursive=True)
    return sorted(set(found))


def _write_config(path, cfg):
    data = {"task": cfg.task, "seed": cfg.seed,
            "data": {k: getattr(cfg.data, k) for k in (
                "raw_dir", "records_dir", "image_size", "folds",
                "fold_strategy", "shard_size", "shuffle_buffer")}}
    path.write_text(json.dumps(data))
    return str(path)


def test_records_match_the_csv(steel_records, steel_raw, steel_spec):
    cfg, manifest = steel_records
    h, w = steel_spec["size"]
    truth = truth_masks(steel_raw, h, w)
    records = read_records(cfg.data.records_dir)
    assert sorted(records) == sorted(truth)
    for image_id, ex in records.items():
        masks = encode.unpack_mask(ex[schema.MASK][0], 4)
        np.testing.assert_array_equal(masks, truth[image_id])
        assert ex[schema.LABELS] == [float(v) for v in
                                     truth[image_id].any((0, 1))]
        with open(steel_raw / "train_images" / image_id, "rb") as f:
            assert ex[schema.IMAGE][0] == f.read()   # bytes as stored
        assert (ex[schema.HEIGHT][0], ex[schema.WIDTH][0]) == (h, w)
        assert ex[schema.IMAGE_FORMAT] == [b"jpeg"]


def test_test_split(steel_records, steel_raw):
    cfg, manifest = steel_records
    records = read_records(cfg.data.records_dir, "test")
    with open(steel_raw / "sample_submission.csv", newline="") as f:
        ids = {row["ImageId"] for row in csv.DictReader(f)}
    assert set(records) == ids
    for ex in records.values():
        assert ex[schema.FOLD] == [schema.TEST_FOLD]
        assert schema.MASK not in ex and schema.LABELS not in ex
    assert manifest["splits"]["test"]["records"] == len(ids)


def test_folds_disjoint_covering_and_stratified(steel_records, steel_raw,
                                                steel_spec):
    cfg, manifest = steel_records
    records = read_records(cfg.data.records_dir)
    fold_of = {i: ex[schema.FOLD][0] for i, ex in records.items()}
    with open(os.path.join(cfg.data.records_dir, "folds.csv"),
              newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["id"]: int(r["fold"]) for r in rows} == fold_of
    assert len(rows) == len(fold_of) == steel_spec["n"]
    assert set(fold_of.values()) == set(range(5))
    sizes = np.bincount(list(fold_of.values()))
    assert sizes.max() - sizes.min() <= 1
    patterns = {}
    for image_id, ex in records.items():
        key = tuple(ex[schema.LABELS])
        patterns.setdefault(key, []).append(fold_of[image_id])
    for key, folds in patterns.items():
        counts = np.bincount(folds, minlength=5)
        assert counts.max() - counts.min() <= 1, key
    per_fold_class = manifest["splits"]["train"]["records_per_fold_class"]
    for c in "1234":
        counts = [per_fold_class[str(f)][c] for f in range(5)]
        assert max(counts) - min(counts) <= 2, (c, counts)
    # Each shard holds one fold; the manifest agrees with the records.
    for shard in manifest["splits"]["train"]["shards"]:
        path = os.path.join(cfg.data.records_dir, shard["file"])
        assert writer.count_records(path) == shard["records"]
    assert manifest["splits"]["train"]["records_per_fold"] == {
        str(f): int(n) for f, n in enumerate(sizes)}


def test_manifest(steel_records, steel_raw, steel_spec):
    cfg, manifest = steel_records
    h, w = steel_spec["size"]
    truth = truth_masks(steel_raw, h, w)
    presence = np.array([m.any((0, 1)) for m in truth.values()])
    train = manifest["splits"]["train"]
    assert manifest["schema_version"] == schema.SCHEMA_VERSION
    assert manifest["task"] == "steel" and manifest["kind"] == "segmentation"
    assert manifest["image_size"] == [h, w] and manifest["channels"] == 3
    assert manifest["classes"] == ["1", "2", "3", "4"]
    assert manifest["fold_strategy"] == "stratified"
    assert train["records_per_class"] == {
        str(k + 1): int(presence[:, k].sum()) for k in range(4)}
    assert train["records_without_labels"] == int((~presence.any(1)).sum())
    assert [s["file"] for s in train["shards"]] == [
        schema.shard_name("train", i, len(train["shards"]))
        for i in range(len(train["shards"]))]
    assert all(s["records"] <= 4 for s in train["shards"])
    assert manifest["skipped"] == 0 and len(manifest["input_hash"]) == 64
    assert not os.path.exists(os.path.join(cfg.data.records_dir,
                                           writer.STAGING))


def test_rerun_writes_nothing(steel_records, capsys):
    cfg, manifest = steel_records
    files = sorted(glob.glob(os.path.join(cfg.data.records_dir, "*")))
    before = {p: os.stat(p).st_mtime_ns for p in files}
    assert convert.convert(cfg, progress=True) == manifest
    assert "up to date" in capsys.readouterr().err
    assert {p: os.stat(p).st_mtime_ns for p in files} == before


def test_changed_input_reconverts(steel_raw, make_steel_config, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(steel_raw, raw)
    cfg = make_steel_config(raw, tmp_path / "rec", shard_size=64)
    first = convert.convert(cfg, progress=False)
    with open(raw / "train.csv") as f:
        listed = f.read()
    victim = [i for i in sorted(os.listdir(raw / "train_images"))
              if i not in listed][0]       # an image without defect rows
    os.remove(raw / "train_images" / victim)
    second = convert.convert(cfg, progress=False)
    assert second["input_hash"] != first["input_hash"]
    assert second["splits"]["train"]["records"] == \
        first["splits"]["train"]["records"] - 1
    assert victim not in read_records(tmp_path / "rec")


def test_resume_after_kill(steel_records, make_steel_config, tmp_path):
    cfg, _ = steel_records
    out = tmp_path / "rec"
    killed = make_steel_config(cfg.data.raw_dir, out)
    config_path = _write_config(tmp_path / "steel.json", killed)
    env = dict(os.environ, **{writer.PAUSE_ENV: "60",
                              "TF_CPP_MIN_LOG_LEVEL": "2"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfrecords_tools.convert", "--config",
         config_path, "--quiet"], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    staging = out / writer.STAGING
    deadline = time.time() + 60
    try:
        while not list(staging.glob("*.part")) and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    parts = list(staging.glob("*.part"))
    assert len(parts) == 1, "the writer should pause after one shard"
    assert not (out / schema.MANIFEST).exists()
    assert _final_files(out) == []
    inode = os.stat(parts[0]).st_ino
    resumed = convert.convert(killed, progress=False)
    # The staged shard was kept (moved, not rewritten) ...
    assert os.stat(out / parts[0].name[:-len(writer.PART_SUFFIX)]
                   ).st_ino == inode
    # ... and the result equals an uninterrupted run.
    assert raw_records(out) == raw_records(cfg.data.records_dir)
    assert resumed["splits"] == steel_records[1]["splits"]


def test_first_release_csv_format(steel_records, steel_raw,
                                  make_steel_config, tmp_path):
    cfg, _ = steel_records
    raw = tmp_path / "raw"
    shutil.copytree(steel_raw, raw)
    with open(raw / "train.csv", newline="") as f:
        rows = {(r["ImageId"], r["ClassId"]): r["EncodedPixels"]
                for r in csv.DictReader(f)}
    with open(raw / "train.csv", "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["ImageId_ClassId", "EncodedPixels"])
        for image_id in sorted(os.listdir(raw / "train_images")):
            for c in "1234":
                out.writerow([f"{image_id}_{c}",
                              rows.get((image_id, c), "")])
    convert.convert(make_steel_config(raw, tmp_path / "rec"),
                    progress=False)
    assert raw_records(tmp_path / "rec") == raw_records(cfg.data.records_dir)


# --- bad inputs ----------------------------------------------------------

def _csv_rows(raw):
    with open(raw / "train.csv", newline="") as f:
        return list(csv.reader(f))


def _set_csv(raw, rows):
    with open(raw / "train.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def _defect_image(raw):
    """(image id, line number) of the last train.csv row."""
    rows = _csv_rows(raw)
    return rows[-1][0], len(rows)


def _missing_image(raw):
    image_id, _ = _defect_image(raw)
    line = 1 + [r[0] for r in _csv_rows(raw)].index(image_id)
    os.remove(raw / "train_images" / image_id)
    return "train.csv", f"row {line}: image train_images/{image_id}", 39


def _corrupt_image(raw):
    image_id, _ = _defect_image(raw)
    (raw / "train_images" / image_id).write_bytes(b"\xff\xd8not a jpeg" * 50)
    return image_id, "corrupt", 39


def _truncated_image(raw):
    image_id, _ = _defect_image(raw)
    path = raw / "train_images" / image_id
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return image_id, "truncated", 39


def _malformed_rle(raw):
    rows = _csv_rows(raw)
    rows[3][2] = "12 x 7"
    _set_csv(raw, rows)
    return "train.csv", "row 4: malformed RLE", 39


def _rle_past_image(raw):
    rows = _csv_rows(raw)
    rows[2][2] = "25000 9000"
    _set_csv(raw, rows)
    return "train.csv", "row 3: RLE run ends at pixel", 39


def _escaping_id(raw):
    rows = _csv_rows(raw)
    (raw.parent / "evil.jpg").write_bytes(
        (raw / "train_images" / rows[1][0]).read_bytes())
    rows.append(["../evil.jpg", "1", "1 5"])
    _set_csv(raw, rows)
    return "train.csv", f"row {len(rows)}: path '../evil.jpg' escapes", 40


@pytest.mark.parametrize("damage", [
    _missing_image, _corrupt_image, _truncated_image, _malformed_rle,
    _rle_past_image, _escaping_id])
def test_bad_input(damage, steel_raw, make_steel_config, tmp_path, capsys):
    raw = tmp_path / "raw"
    shutil.copytree(steel_raw, raw)
    names, reason, kept = damage(raw)
    cfg = make_steel_config(raw, tmp_path / "rec")
    config_path = _write_config(tmp_path / "steel.json", cfg)
    assert convert.main(["--config", config_path, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert names in err and reason in err, err
    out = tmp_path / "rec"
    assert _final_files(out) == []
    assert not (out / schema.MANIFEST).exists()

    assert convert.main(["--config", config_path, "--quiet",
                         "--skip-bad"]) == 0
    with open(out / schema.ERRORS_CSV, newline="") as f:
        errors = list(csv.DictReader(f))
    assert len(errors) == 1
    assert names in errors[0]["file"] and reason in (
        errors[0]["file"] + ": " + errors[0]["reason"])
    manifest = json.loads((out / schema.MANIFEST).read_text())
    assert manifest["skipped"] == 1
    assert manifest["splits"]["train"]["records"] == kept
    assert len(read_records(out)) == kept
    # Without --skip-bad, records with skipped inputs are an error (and
    # are left as they are).
    assert convert.main(["--config", config_path, "--quiet"]) == 1
    assert names in capsys.readouterr().err
    assert (out / schema.MANIFEST).exists()


def test_cli_exit_code_and_message(steel_raw, make_steel_config, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(steel_raw, raw)
    image_id, _, _ = _truncated_image(raw)
    config_path = _write_config(
        tmp_path / "steel.json", make_steel_config(raw, tmp_path / "rec"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-m", "tfrecords_tools.convert", "--config",
         config_path, "--workers", "2"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert image_id in done.stderr and "truncated" in done.stderr
    assert _final_files(tmp_path / "rec") == []


def test_bad_config_key_exits_2(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"task": "steel", "data": {"nope": 1}}))
    with pytest.raises(SystemExit) as e:
        convert.main(["--config", str(path)])
    assert e.value.code == 2
    assert "data.nope" in capsys.readouterr().err


def test_duplicate_rows_and_bad_class(steel_raw, make_steel_config,
                                      tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(steel_raw, raw)
    rows = _csv_rows(raw)
    rows.append([rows[1][0], "7", "1 3"])
    _set_csv(raw, rows)
    cfg = make_steel_config(raw, tmp_path / "rec")
    with pytest.raises(BadInput, match=f"row {len(rows)}: ClassId must be"):
        convert.convert(cfg, progress=False)


def test_reader_only_keys_keep_records_new_seed_changes_folds(
        steel_records, make_steel_config, tmp_path):
    cfg, manifest = steel_records
    same = make_steel_config(cfg.data.raw_dir, cfg.data.records_dir,
                             image_size=[32, 200], shuffle_buffer=8,
                             channels=1)
    assert convert.convert(same, progress=False) == manifest   # no rewrite
    other = make_steel_config(cfg.data.raw_dir, tmp_path / "rec")
    other.seed = 7
    reseeded = convert.convert(other, progress=False)
    assert reseeded["plan_hash"] != manifest["plan_hash"]
    with open(os.path.join(cfg.data.records_dir, "folds.csv")) as f:
        a = f.read()
    with open(tmp_path / "rec" / "folds.csv") as f:
        b = f.read()
    ids = [{line.split(",")[0] for line in t.splitlines()} for t in (a, b)]
    assert a != b and ids[0] == ids[1]


def test_manifest_checksums_and_verify(steel_raw, make_steel_config,
                                       tmp_path, capsys):
    """Each shard's size and sha256 are in the manifest; --verify finds a
    flipped byte and a truncation, naming the shard."""
    import hashlib

    cfg = make_steel_config(steel_raw, tmp_path / "rec", shard_size=8)
    manifest = convert.convert(cfg, progress=False)
    entries = [e for split in schema.SPLITS
               for e in manifest["splits"][split]["shards"]]
    assert len(entries) >= 3
    for entry in entries:
        path = os.path.join(cfg.data.records_dir, entry["file"])
        with open(path, "rb") as f:
            data = f.read()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    config_path = _write_config(tmp_path / "c.json", cfg)
    assert convert.main(["--config", config_path, "--verify"]) == 0
    assert "every shard matches" in capsys.readouterr().out

    flipped = os.path.join(cfg.data.records_dir, entries[0]["file"])
    with open(flipped, "r+b") as f:
        f.seek(entries[0]["bytes"] // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    cut = os.path.join(cfg.data.records_dir, entries[1]["file"])
    with open(cut, "r+b") as f:
        f.truncate(entries[1]["bytes"] - 7)
    assert convert.main(["--config", config_path, "--verify"]) == 1
    err = capsys.readouterr().err
    assert f"{flipped}: checksum differs" in err
    assert f"{cut}: " in err and "bytes, the manifest says" in err
    assert "2 damaged shard(s)" in err
    untouched = os.path.join(cfg.data.records_dir, entries[2]["file"])
    assert untouched not in err
    # The advice holds: without the manifest, a conversion writes anew.
    os.remove(os.path.join(cfg.data.records_dir, schema.MANIFEST))
    convert.convert(cfg, progress=False)
    assert convert.main(["--config", config_path, "--verify"]) == 0
