"""RSNA lumbar: sample -> convert -> per-study stacks, labels, coordinates."""

import csv
import glob
import io
import os
import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image

from competition_samples import config_maker
from competition_samples import parsed_records
from competition_samples import sample_and_convert
from tfrecords_tools import convert
from tfrecords_tools import dicom
from tfrecords_tools import schema
from tfrecords_tools.competitions import rsna_lumbar
from tfrecords_tools.items import BadInput

N, SIZE, OUT = 6, 48, 32
STACKS = {"sagittal_t1": 4, "sagittal_t2_stir": 3, "axial_t2": 6}
KINDS = {"Sagittal T1": "sagittal_t1", "Sagittal T2/STIR": "sagittal_t2_stir",
         "Axial T2": "axial_t2"}
SEVERITY = {"Normal/Mild": 0, "Moderate": 1, "Severe": 2, "": -1}


_cfg = config_maker("rsna_lumbar", {"image_size": [OUT, OUT], "folds": 2,
                                     "shard_size": 2, "stack_slices": STACKS})


def _csv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _reference_stack(folder, wanted):
    """Slices by numeric instance, picked evenly, resized, 8-bit scaled."""
    numbers = sorted(int(f[:-4]) for f in os.listdir(folder))
    pick = np.rint(np.linspace(0, len(numbers) - 1, wanted)).astype(int)
    images = []
    for i in pick:
        with dicom.lenient():
            ds = pydicom.dcmread(os.path.join(folder, f"{numbers[i]}.dcm"))
            assert int(ds.InstanceNumber) == numbers[i]
            pixels = ds.pixel_array.astype(np.float32)
        images.append(np.asarray(Image.fromarray(pixels, mode="F").resize(
            (OUT, OUT), Image.BILINEAR)))
    stack = np.stack(images)
    top = np.percentile(stack, 99.5)
    return np.clip(np.rint(stack * 255 / top), 0, 255), numbers, pick


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    raw, out, _, manifest = sample_and_convert(
        tmp_path_factory, "lumbar", "rsna_lumbar", _cfg, N, SIZE, 0)
    return raw, out, manifest


def test_sample_layout(converted):
    raw, _, _ = converted
    train = _csv(raw / "train.csv")
    assert list(train[0]) == ["study_id"] + list(rsna_lumbar.CLASSES)
    values = {v for row in train for k, v in row.items() if k != "study_id"}
    assert values <= set(SEVERITY) and {"Normal/Mild", "Severe"} <= values
    series = _csv(raw / "train_series_descriptions.csv")
    assert {r["series_description"] for r in series} == set(KINDS)
    for r in series:
        folder = raw / "train_images" / r["study_id"] / r["series_id"]
        names = os.listdir(folder)
        assert "1.dcm" in names and len(names) >= 8
        with dicom.lenient():
            ds = pydicom.dcmread(folder / "1.dcm")
            assert ds.Modality == "MR" and "RescaleIntercept" not in ds
            assert ds.PhotometricInterpretation == "MONOCHROME2"
            assert ds.pixel_array.dtype == np.uint16
    coords = _csv(raw / "train_label_coordinates.csv")
    assert {c["condition"] for c in coords} == {
        "Spinal Canal Stenosis", "Left Neural Foraminal Narrowing",
        "Right Neural Foraminal Narrowing", "Left Subarticular Stenosis",
        "Right Subarticular Stenosis"}
    assert {c["level"] for c in coords} == {"L1/L2", "L2/L3", "L3/L4",
                                            "L4/L5", "L5/S1"}
    sub = _csv(raw / "sample_submission.csv")
    assert list(sub[0]) == ["row_id", "normal_mild", "moderate", "severe"]
    tests = {r["study_id"] for r in _csv(raw / "test_series_descriptions.csv")}
    assert len(sub) == 25 * len(tests)
    assert sub[0]["row_id"].endswith("_spinal_canal_stenosis_l1_l2")


def test_records_match_raw_files(converted):
    raw, out, manifest = converted
    train = {r["study_id"]: r for r in _csv(raw / "train.csv")}
    series = {}
    for r in _csv(raw / "train_series_descriptions.csv"):
        series[r["study_id"], KINDS[r["series_description"]]] = r["series_id"]
    coords = {}
    for c in _csv(raw / "train_label_coordinates.csv"):
        name = (c["condition"].lower().replace(" ", "_") + "_"
                + c["level"].lower().replace("/", "_"))
        coords[c["study_id"], rsna_lumbar.CLASSES.index(name)] = c
    records = parsed_records(out)
    assert len(records) == N == manifest["splits"]["train"]["records"]
    assert manifest["channels"] == sum(STACKS.values())
    for rec in records:
        study = rec[schema.ID][0].decode()
        severity, xyz = rsna_lumbar.split_labels(rec[schema.LABELS])
        np.testing.assert_array_equal(
            severity, [SEVERITY[train[study][c]]
                       for c in rsna_lumbar.CLASSES])
        images = [np.asarray(Image.open(io.BytesIO(d)))
                  for d in rec[schema.IMAGE]]
        assert len(images) == sum(STACKS.values())
        start, picks = 0, {}
        for kind, _ in rsna_lumbar.SERIES_TYPES:
            folder = raw / "train_images" / study / series[study, kind]
            ref, numbers, pick = _reference_stack(folder, STACKS[kind])
            got = np.stack(images[start:start + STACKS[kind]])
            assert np.abs(got.astype(int) - ref).max() <= 1
            picks[series[study, kind]] = (numbers, pick)
            assert [v.decode() for v in rec[schema.SERIES][
                start:start + STACKS[kind]]] == [
                    f"{kind}/{series[study, kind]}"] * STACKS[kind]
            start += STACKS[kind]
        for k in range(25):
            c = coords.get((study, k))
            if c is None:
                np.testing.assert_array_equal(xyz[k], [-1, -1, -1])
                continue
            numbers, pick = picks[c["series_id"]]
            position = numbers.index(int(c["instance_number"]))
            assert xyz[k, 0] == np.argmin(np.abs(pick - position))
            meta = dicom.read_meta(raw / "train_images" / study / c[
                "series_id"] / f"{c['instance_number']}.dcm")
            np.testing.assert_allclose(
                xyz[k, 1:], [float(c["x"]) / meta["columns"],
                             float(c["y"]) / meta["rows"]], rtol=1e-5)
    assert len(parsed_records(out, "test")) == manifest["splits"]["test"][
        "records"] >= 2


def test_folds_by_study_cover_all(converted):
    raw, out, _ = converted
    folds = {r[schema.ID][0].decode(): r[schema.FOLD][0]
             for r in parsed_records(out)}
    assert set(folds) == {r["study_id"] for r in _csv(raw / "train.csv")}
    assert sorted(set(folds.values())) == [0, 1]
    assert all(r[schema.GROUP] == r[schema.ID] for r in parsed_records(out))


def test_pick_slices():
    assert rsna_lumbar.pick_slices(17, 10).tolist() == [
        0, 2, 4, 5, 7, 9, 11, 12, 14, 16]
    assert rsna_lumbar.pick_slices(1, 3).tolist() == [0, 0, 0]
    assert rsna_lumbar.pick_slices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]



def test_missing_series_type_gives_black_slices(tmp_path):
    raw = tmp_path / "raw"
    rsna_lumbar.make_sample(str(raw), n=2, size=32, seed=1)
    path = raw / "train_series_descriptions.csv"
    rows = path.read_text().splitlines()
    study = rows[1].split(",")[0]
    rows = [r for r in rows if not (r.startswith(study + ",")
                                    and r.endswith("Axial T2"))]
    path.write_text("\n".join(rows) + "\n")
    cfg = _cfg(raw, tmp_path / "rec")
    item = [i for i in rsna_lumbar.list_items(cfg) if i.id == study][0]
    features = rsna_lumbar.encode_item(item, cfg)
    axial = features[schema.IMAGE][-STACKS["axial_t2"]:]
    for data in axial:
        assert not np.asarray(Image.open(io.BytesIO(data))).any()
    assert features[schema.SERIES][-1] == "axial_t2/"


def test_bad_inputs(tmp_path):
    raw = tmp_path / "raw"
    rsna_lumbar.make_sample(str(raw), n=4, size=32, seed=2)
    series = _csv(raw / "train_series_descriptions.csv")
    gone = raw / "train_images" / series[0]["study_id"] / series[0][
        "series_id"]
    shutil.rmtree(gone)
    broken = sorted(glob.glob(str(raw / "train_images" / series[3][
        "study_id"] / series[3]["series_id"] / "*.dcm")))
    with open(broken[0], "r+b") as f:
        f.truncate(300)
    # Every slice of a picked series is read: break one that is picked.
    cfg = _cfg(raw, tmp_path / "rec")
    with pytest.raises(BadInput, match=r"train_series_descriptions.csv: "
                                       r"row 2: no DICOM files"):
        convert.convert(cfg, progress=False)
    manifest = convert.convert(cfg, skip_bad=True, progress=False)
    assert manifest["splits"]["train"]["records"] == 2
    with open(tmp_path / "rec" / "errors.csv", encoding="utf-8") as f:
        errors = f.read()
    assert "no DICOM files" in errors
    assert os.path.basename(broken[0]) in errors


def test_draw_one_strip_per_series_type(converted):
    _, out, _ = converted
    rec = parsed_records(out)[0]
    picture = rsna_lumbar.draw(rec)
    assert picture.shape == (3 * OUT, max(STACKS.values()) * OUT, 3)
    first = np.asarray(Image.open(io.BytesIO(rec[schema.IMAGE][0])))
    tile = picture[:OUT, :OUT]
    plain = (tile[..., 0] == tile[..., 1])  # not a red coordinate mark
    np.testing.assert_array_equal(tile[..., 1][plain], first[plain])
    assert (picture[OUT:2 * OUT, STACKS["sagittal_t2_stir"] * OUT:] == 0).all()
