"""RSNA ICH: sample -> convert -> series records in slice order."""

import glob
import os

import numpy as np
import pydicom
import pytest

from competition_samples import config_maker
from competition_samples import ich_labels
from competition_samples import parsed_records
from competition_samples import sample_and_convert
from tfrecords_tools import convert
from tfrecords_tools import dicom
from tfrecords_tools import schema
from tfrecords_tools.competitions import rsna_ich
from tfrecords_tools.items import BadInput

N, SIZE = 40, 32
SUBTYPES = ("epidural", "intraparenchymal", "intraventricular",
            "subarachnoid", "subdural", "any")


_cfg = config_maker("rsna_ich", {"image_size": [SIZE, SIZE], "folds": 2,
                                  "shard_size": 2})


def _reference_hu(path):
    """HU with plain pydicom + numpy (the competition's known fix)."""
    with dicom.lenient():
        ds = pydicom.dcmread(path)
        p = ds.pixel_array.astype(np.float64)
        slope = float(ds.RescaleSlope)
        intercept = float(ds.RescaleIntercept)
        if (ds.BitsStored == 12 and ds.PixelRepresentation == 0
                and intercept > -100):
            p = p + 1000
            p[p >= 4096] -= 4096
            intercept = -1000
        tags = {"series": ds.SeriesInstanceUID, "patient": ds.PatientID,
                "z": float(ds.ImagePositionPatient[2])}
        return p * slope + intercept, tags


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    raw, out, _, manifest = sample_and_convert(
        tmp_path_factory, "ich", "rsna_ich", _cfg, N, SIZE, 0)
    return raw, out, manifest


def test_sample_layout(converted):
    raw, _, _ = converted
    with open(raw / "stage_2_train.csv", encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines[0] == "ID,Label"
    assert len(lines) - 1 == 6 * (N + 2)  # two images duplicated
    assert len(set(lines[1:])) == 6 * N
    labels = ich_labels(raw, SUBTYPES, int)
    files = sorted(glob.glob(str(raw / "stage_2_train" / "ID_*.dcm")))
    assert {os.path.basename(p)[:-4] for p in files} == set(labels)
    assert all(v[5] == max(v[:5]) for v in labels.values())
    assert 0 < sum(v[5] for v in labels.values()) < N
    quirk = multi = signed = 0
    for path in files:
        with dicom.lenient():
            ds = pydicom.dcmread(path)
            assert ds.Modality == "CT" and ds.Rows == SIZE
            assert ds.SOPInstanceUID == os.path.basename(path)[:-4]
            quirk += float(ds.RescaleIntercept) > -100
            multi += ds["WindowCenter"].VM > 1
            signed += ds.PixelRepresentation == 1
    assert quirk and multi and signed
    with open(raw / "stage_2_sample_submission.csv", encoding="utf-8") as f:
        sub = f.read().splitlines()
    assert sub[0] == "ID,Label" and (len(sub) - 1) % 6 == 0
    assert len(glob.glob(str(raw / "stage_2_test" / "*.dcm"))) == (
        len(sub) - 1) // 6


def test_series_records_in_slice_order(converted):
    raw, out, manifest = converted
    labels = ich_labels(raw, SUBTYPES, int)
    records = parsed_records(out)
    assert manifest["kind"] == "sequence"
    seen = []
    for rec in records:
        ids = [v.decode() for v in rec[schema.ID]]
        seen.extend(ids)
        z = rec[schema.POSITION]
        assert z == sorted(z) and len(z) == len(ids) >= 4
        np.testing.assert_array_equal(
            np.reshape(rec[schema.LABELS], (-1, 6)),
            [labels[i] for i in ids])
        series = rec[schema.SERIES][0].decode()
        for image_id, data, zi in zip(ids, rec[schema.IMAGE], z):
            hu, tags = _reference_hu(
                raw / "stage_2_train" / f"{image_id}.dcm")
            assert tags["series"] == series
            assert tags["patient"] == rec[schema.GROUP][0].decode()
            assert tags["z"] == pytest.approx(zi)
            np.testing.assert_array_equal(rsna_ich.png_hu(data), hu)
    assert sorted(seen) == sorted(labels)
    file_order = sorted(seen)
    assert file_order != seen  # names are not in slice order
    test = parsed_records(out, "test")
    assert sum(len(r[schema.ID]) for r in test) == len(
        glob.glob(str(raw / "stage_2_test" / "*.dcm")))


def test_quirk_files_are_repaired(converted):
    raw, out, _ = converted
    checked = 0
    for rec in parsed_records(out):
        image_id = rec[schema.ID][0].decode()
        path = raw / "stage_2_train" / f"{image_id}.dcm"
        meta = dicom.read_meta(path)
        if meta["intercept"] > -100:
            hu = rsna_ich.png_hu(rec[schema.IMAGE][0])
            assert hu.min() == -1000  # air, not 3097
            brain = hu[SIZE // 2, SIZE // 2]
            assert 0 <= brain <= 90
            checked += 1
    assert checked


def test_folds_grouped_by_patient(converted):
    raw, out, _ = converted
    patient_folds = {}
    for rec in parsed_records(out):
        patient = rec[schema.GROUP][0].decode()
        patient_folds.setdefault(patient, set()).add(rec[schema.FOLD][0])
    assert all(len(f) == 1 for f in patient_folds.values())
    assert set.union(*patient_folds.values()) == {0, 1}



def test_bad_inputs(tmp_path):
    raw = tmp_path / "raw"
    rsna_ich.make_sample(str(raw), n=16, size=16, seed=1)
    labels = ich_labels(raw, SUBTYPES, int)
    ids = sorted(labels)
    header_bad = raw / "stage_2_train" / f"{ids[0]}.dcm"
    header_bad.write_bytes(b"garbage")
    pixels_bad = raw / "stage_2_train" / f"{ids[1]}.dcm"
    with dicom.lenient():
        ds = pydicom.dcmread(pixels_bad)
        ds.PixelData = ds.PixelData[:-8]  # short pixel data, header intact
        ds.save_as(pixels_bad)
    cfg = _cfg(raw, tmp_path / "rec")
    with pytest.raises(BadInput, match=f"{ids[0]}.dcm"):
        convert.convert(cfg, progress=False)
    (tmp_path / "rec").mkdir(exist_ok=True)
    manifest = convert.convert(cfg, skip_bad=True, progress=False)
    with open(tmp_path / "rec" / "errors.csv", encoding="utf-8") as f:
        errors = f.read()
    assert f"{ids[0]}.dcm" in errors and f"{ids[1]}.dcm" in errors
    kept = [i.decode() for r in parsed_records(tmp_path / "rec")
            for i in r[schema.ID]]
    assert ids[0] not in kept and ids[1] not in kept
    assert manifest["skipped"] == 2
    series_of = {}
    for image_id in labels:
        if image_id == ids[0]:
            continue
        meta = dicom.read_meta(raw / "stage_2_train" / f"{image_id}.dcm")
        series_of[image_id] = meta["series_instance_uid"]
    dropped = {i for i, s in series_of.items()
               if s == series_of[ids[1]]}  # the series of the bad pixels
    assert set(kept) == set(series_of) - dropped


def test_bad_csv_rows(tmp_path):
    raw = tmp_path / "raw"
    rsna_ich.make_sample(str(raw), n=8, size=16, seed=2)
    path = raw / "stage_2_train.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("intraventricular", "intraventriculr")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput, match="stage_2_train.csv: row 4: ID must"):
        rsna_ich.list_items(_cfg(raw, tmp_path / "rec"))
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("intraventriculr", "intraventricular")
    lines[4] = lines[4][:-1] + ("1" if lines[4].endswith("0") else "0")
    lines.append(lines[4][:-1] + ("1" if lines[4].endswith("0") else "0"))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput, match="repeats with another Label"):
        rsna_ich.list_items(_cfg(raw, tmp_path / "rec"))


def test_draw_windows_side_by_side(converted):
    _, out, _ = converted
    rec = parsed_records(out)[0]
    picture = rsna_ich.draw(rec)
    mid = len(rec[schema.IMAGE]) // 2
    hu = rsna_ich.png_hu(rec[schema.IMAGE][mid])
    assert picture.shape[1] == 3 * SIZE and picture.dtype == np.uint8
    top = 2  # a red bar may mark a bleeding slice
    for k, (c, w) in enumerate(rsna_ich.WINDOWS):
        want = (dicom.window(hu, c, w) * 255).astype(np.uint8)
        np.testing.assert_array_equal(
            picture[top:SIZE, k * SIZE:(k + 1) * SIZE, 0], want[top:])
    assert picture.shape[0] > SIZE  # the strip of every slice below


def test_header_listing_cached_and_invalidated(tmp_path):
    from tfrecords_tools.readers import dicom as dicom_reader

    raw = tmp_path / "raw"
    rsna_ich.make_sample(str(raw), n=12, size=16, seed=2)
    total = len(glob.glob(str(raw / "stage_2_*" / "*.dcm")))
    cfg = _cfg(raw, tmp_path / "rec")
    stats = dicom_reader.HEADER_STATS

    def listing():
        before = dict(stats)
        manifest = convert.convert(cfg, progress=False)
        return ({k: stats[k] - before[k] for k in stats},
                manifest["splits"]["train"]["records"])

    first, records = listing()
    assert first == {"read": total, "cached": 0}
    again, records_again = listing()  # a rerun reads no header
    assert again == {"read": 0, "cached": total}
    assert records_again == records
    changed = sorted(glob.glob(str(raw / "stage_2_train" / "*.dcm")))[3]
    stamp = os.stat(changed)
    os.utime(changed, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    after, _ = listing()  # the changed file only is read again
    assert after == {"read": 1, "cached": total - 1}
