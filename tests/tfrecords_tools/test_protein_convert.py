"""Protein (HPA): sample -> convert -> records, checked against raw files."""

import csv
import glob
import io
import os

import numpy as np
import pytest
from PIL import Image

from competition_samples import config_maker
from competition_samples import parsed_records
from competition_samples import sample_and_convert
from tfrecords_tools import convert
from tfrecords_tools import schema
from tfrecords_tools.competitions import protein
from tfrecords_tools.items import BadInput

N, SIZE = 40, 32


_cfg = config_maker("protein", {"channels": 4, "image_size": [SIZE, SIZE],
                                 "folds": 3, "shard_size": 8})


def _targets(raw):
    with open(os.path.join(raw, "train.csv"), encoding="utf-8") as f:
        return {r["Id"]: r["Target"] for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    raw, out, _, manifest = sample_and_convert(
        tmp_path_factory, "protein", "protein", _cfg, N, SIZE, 0)
    return raw, out, manifest


def test_sample_layout(converted):
    raw, _, _ = converted
    targets = _targets(raw)
    assert len(targets) == N
    counts = np.zeros(28)
    for target in targets.values():
        for k in target.split():
            counts[int(k)] += 1
    assert counts[0] == counts.max() and counts[0] >= 0.25 * N  # imbalanced
    for sample_id in targets:
        for color in protein.COLORS:
            with Image.open(raw / "train" / f"{sample_id}_{color}.png") as im:
                assert im.mode == "L" and im.size == (SIZE, SIZE)
    with open(raw / "sample_submission.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Id", "Predicted"]
    assert len(glob.glob(str(raw / "test" / "*_yellow.png"))) == len(rows) - 1


def test_records_match_raw_files(converted):
    raw, out, manifest = converted
    targets = _targets(raw)
    records = parsed_records(out)
    assert len(records) == N == manifest["splits"]["train"]["records"]
    for rec in records:
        sample_id = rec[schema.ID][0].decode()
        hot = np.zeros(28)
        hot[[int(k) for k in targets[sample_id].split()]] = 1
        np.testing.assert_array_equal(rec[schema.LABELS], hot)
        assert len(rec[schema.IMAGE]) == 4 and rec[schema.CHANNELS] == [4]
        for data, color in zip(rec[schema.IMAGE], protein.COLORS):
            with open(raw / "train" / f"{sample_id}_{color}.png", "rb") as f:
                assert data == f.read()  # kept as stored
    assert len(parsed_records(out, "test")) == manifest["splits"]["test"][
        "records"] > 0


def test_green_channel_carries_the_classes(converted):
    raw, _, _ = converted
    checked = set()
    for sample_id, target in _targets(raw).items():
        classes = {int(k) for k in target.split()}
        channels = {}
        for color in ("green", "blue"):
            with Image.open(raw / "train" / f"{sample_id}_{color}.png") as im:
                channels[color] = np.asarray(im, np.float32)
        nuclei = channels["blue"] > 100
        green = channels["green"]
        if 0 in classes:   # nucleoplasm: bright nuclei
            assert np.median(green[nuclei]) > 150
        outside = np.median(green[~nuclei])
        assert (outside > 60) == (25 in classes)  # cytosol
        if classes - {0, 25}:  # grating patches
            assert (green[~nuclei] > 200).mean() > 0.01
        checked |= classes
    assert {0, 25} <= checked
    patterns = {protein.pattern_of(k) for k in range(28)}
    assert len(patterns) == 28


def test_folds_multilabel_cover_all(converted):
    raw, out, manifest = converted
    folds = {}
    labels = {}
    for rec in parsed_records(out):
        folds[rec[schema.ID][0].decode()] = rec[schema.FOLD][0]
        labels[rec[schema.ID][0].decode()] = np.array(rec[schema.LABELS])
    assert set(folds) == set(_targets(raw))
    assert manifest["fold_strategy"] == "multilabel"
    for fold in range(3):
        members = [labels[i] for i in folds if folds[i] == fold]
        assert 10 <= len(members) <= 16
        assert np.stack(members)[:, 0].sum() >= 2  # class 0 in every fold


def test_composite_adds_yellow():
    rgby = np.array([[[10, 20, 30, 100], [200, 200, 0, 100]]], np.uint8)
    np.testing.assert_array_equal(protein.composite(rgby),
                                  [[[110, 120, 30], [255, 255, 0]]])



def test_bad_inputs(tmp_path):
    raw = tmp_path / "raw"
    protein.make_sample(str(raw), n=8, size=16, seed=1)
    ids = sorted(_targets(raw))
    os.remove(raw / "train" / f"{ids[0]}_blue.png")
    png = raw / "train" / f"{ids[1]}_yellow.png"
    png.write_bytes(png.read_bytes()[:30])            # truncated PNG
    rgb = raw / "train" / f"{ids[2]}_red.png"         # not grayscale
    Image.new("RGB", (16, 16)).save(rgb)
    cfg = _cfg(raw, tmp_path / "rec", folds=2)
    with pytest.raises(BadInput, match=rf"train.csv: row \d+: image "
                                       rf"train/{ids[0]}_blue.png not found"):
        convert.convert(cfg, progress=False)
    manifest = convert.convert(cfg, skip_bad=True, progress=False)
    assert manifest["splits"]["train"]["records"] == 5
    with open(tmp_path / "rec" / "errors.csv", encoding="utf-8") as f:
        errors = f.read()
    for name in (f"{ids[0]}_blue", f"{ids[1]}_yellow.png",
                 f"{ids[2]}_red.png"):
        assert name in errors
    assert "grayscale" in errors


def test_bad_target_names_row(tmp_path):
    raw = tmp_path / "raw"
    protein.make_sample(str(raw), n=4, size=16, seed=1)
    lines = (raw / "train.csv").read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ",3 28"
    (raw / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput, match="train.csv: row 3: Target class"):
        protein.list_items(_cfg(raw, tmp_path / "rec", folds=2))


def test_draw_composite_beside_green(converted):
    _, out, _ = converted
    rec = parsed_records(out)[0]
    rgby = np.stack([np.asarray(Image.open(io.BytesIO(d)))
                     for d in rec[schema.IMAGE]], -1)
    picture = protein.draw(rec)
    assert picture.shape == (SIZE, 2 * SIZE, 3)
    np.testing.assert_array_equal(picture[:, :SIZE],
                                  protein.composite(rgby))
    for c in range(3):
        np.testing.assert_array_equal(picture[:, SIZE:, c], rgby[..., 1])
