"""SIIM: sample -> convert -> records, checked against the raw files."""

import glob
import io
import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from PIL import Image

from competition_samples import config_maker
from competition_samples import parsed_records
from competition_samples import sample_and_convert
from competition_samples import siim_rle_decode
from tfrecords_tools import convert
from tfrecords_tools import dicom
from tfrecords_tools import encode
from tfrecords_tools import schema
from tfrecords_tools.competitions import siim
from tfrecords_tools.items import BadInput

N, SIZE = 16, 64


_cfg = config_maker("siim", {"image_size": [SIZE, SIZE], "folds": 3,
                              "shard_size": 4})


def _dicoms(raw, folder):
    out = {}
    for path in glob.glob(os.path.join(raw, folder, "*", "*", "*.dcm")):
        out[os.path.basename(path)[:-4]] = path
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    raw, out, _, manifest = sample_and_convert(
        tmp_path_factory, "siim", "siim", _cfg, N, SIZE, 3)
    return raw, out, manifest


def test_sample_layout_and_csv(converted):
    raw, _, _ = converted
    with open(raw / "train-rle.csv", encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines[0] == "ImageId, EncodedPixels"
    ids = [line.split(", ")[0] for line in lines[1:]]
    empty = [line for line in lines[1:] if line.endswith(", -1")]
    assert 0.2 <= (len(set(ids)) - len(empty)) / len(set(ids)) <= 0.6
    assert len(ids) > len(set(ids))  # an image with two regions
    files = _dicoms(raw, "dicom-images-train")
    assert set(ids) == set(files)
    with open(raw / "sample_submission.csv", encoding="utf-8") as f:
        sub = f.read().splitlines()
    assert sub[0] == "ImageId,EncodedPixels"
    assert {s.split(",")[0] for s in sub[1:]} == set(
        _dicoms(raw, "dicom-images-test"))
    path = next(iter(files.values()))
    with dicom.lenient():
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.SOPInstanceUID == os.path.basename(path)[:-4]
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert (ds.Rows, ds.Columns, ds.BitsStored) == (SIZE, SIZE, 8)
        assert ds.Modality == "CR" and ds.ViewPosition in ("PA", "AP")
        assert ds.PatientSex in ("M", "F") and int(ds.PatientAge) > 0
        study, series = path.split(os.sep)[-3:-1]
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == (study, series)


def test_records_match_raw_files(converted):
    raw, out, manifest = converted
    files = _dicoms(raw, "dicom-images-train")
    rles = {}
    with open(raw / "train-rle.csv", encoding="utf-8") as f:
        for line in f.read().splitlines()[1:]:
            image_id, rle = line.split(", ")
            rles.setdefault(image_id, []).append(rle)
    records = parsed_records(out)
    assert len(records) == N == manifest["splits"]["train"]["records"]
    for rec in records:
        image_id = rec[schema.ID][0].decode()
        ds = pydicom.dcmread(files[image_id])
        with Image.open(io.BytesIO(rec[schema.IMAGE][0])) as im:
            np.testing.assert_array_equal(np.asarray(im), ds.pixel_array)
        truth = np.zeros((SIZE, SIZE), bool)
        for rle in rles[image_id]:
            truth |= siim_rle_decode(rle, SIZE, SIZE)
        mask = encode.unpack_mask(rec[schema.MASK][0], 1)[..., 0]
        np.testing.assert_array_equal(mask, truth)
        assert rec[schema.LABELS] == [float(truth.any())]
        assert rec[schema.GROUP][0].decode() == ds.PatientID
    test = parsed_records(out, "test")
    assert len(test) == len(_dicoms(raw, "dicom-images-test"))
    assert all(r[schema.FOLD] == [schema.TEST_FOLD] for r in test)


def test_folds_grouped_by_patient_and_cover_all(converted):
    raw, out, _ = converted
    files = _dicoms(raw, "dicom-images-train")
    fold_of, patient_folds, positives = {}, {}, {}
    for rec in parsed_records(out):
        image_id = rec[schema.ID][0].decode()
        fold = rec[schema.FOLD][0]
        fold_of[image_id] = fold
        patient = pydicom.dcmread(files[image_id]).PatientID
        patient_folds.setdefault(patient, set()).add(fold)
        positives[fold] = positives.get(fold, 0) + int(rec[schema.LABELS][0])
    assert set(fold_of) == set(files)
    assert all(len(f) == 1 for f in patient_folds.values())
    assert len(patient_folds) < len(files)  # patients with several images
    assert sorted(set(fold_of.values())) == [0, 1, 2]
    assert all(positives.get(f, 0) >= 1 for f in range(3))



def test_relative_rle_hand_worked():
    m = np.zeros((3, 4), bool)
    m[1:, 0] = True
    m[1, 3] = True
    assert siim.relative_rle(m) == "1 2 7 1"
    assert siim.relative_rle(np.zeros((3, 4))) == "-1"
    np.testing.assert_array_equal(siim_rle_decode("1 2 7 1", 3, 4), m)


def test_bad_inputs(tmp_path):
    raw = tmp_path / "raw"
    siim.make_sample(str(raw), n=8, size=32, seed=1)
    files = _dicoms(raw, "dicom-images-train")
    ids = sorted(files)
    os.remove(files[ids[0]])                       # a row names no file
    with open(files[ids[1]], "rb") as f:           # a truncated DICOM
        data = f.read()
    with open(files[ids[1]], "wb") as f:
        f.write(data[:-200])
    cfg = _cfg(raw, tmp_path / "rec", folds=2)
    with pytest.raises(BadInput, match="train-rle.csv: row [0-9]+: image"):
        convert.convert(cfg, progress=False)
    manifest = convert.convert(cfg, skip_bad=True, progress=False)
    assert manifest["splits"]["train"]["records"] == 6
    with open(tmp_path / "rec" / "errors.csv", encoding="utf-8") as f:
        errors = f.read()
    assert "train-rle.csv" in errors and ids[0] in errors
    assert os.path.basename(files[ids[1]]) in errors


def test_cli_exit_code_names_file(tmp_path):
    raw = tmp_path / "raw"
    siim.make_sample(str(raw), n=6, size=32, seed=2)
    path = sorted(_dicoms(raw, "dicom-images-train").values())[0]
    with open(path, "wb") as f:
        f.write(b"broken")
    cfg_path = tmp_path / "siim.json"
    cfg_path.write_text(
        '{"task": "siim", "data": {"raw_dir": "%s", "records_dir": "%s", '
        '"folds": 2, "image_size": [32, 32]}}' % (raw, tmp_path / "rec"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "tfrecords_tools.convert", "--config",
         str(cfg_path), "--quiet"], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert os.path.basename(path) in result.stderr


def test_draw_overlays_the_mask(converted):
    _, out, _ = converted
    rec = next(r for r in parsed_records(out) if r[schema.LABELS][0] > 0)
    picture = siim.draw(rec)
    mask = encode.unpack_mask(rec[schema.MASK][0], 1)[..., 0]
    assert picture.shape == (SIZE, SIZE, 3) and picture.dtype == np.uint8
    red = picture[..., 0].astype(int) - picture[..., 1]
    assert (red[mask] > 50).all() and (red[~mask] == 0).all()
