"""tfrecords_tools.dicom: HU, windows, metadata and bad files."""

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tfrecords_tools import dicom


def _write(path, pixels, **kw):
    kw.setdefault("sop_class_uid", dicom.CT_IMAGE_STORAGE)
    kw.setdefault("sop_instance_uid", "1.2.3.4")
    dicom.write(path, pixels, **kw)
    return str(path)


def _window_ref(hu, c, w):
    lo, hi = c - w / 2, c + w / 2
    return np.clip((hu - lo) / (hi - lo), 0, 1)


def test_signed_int16_rescale_is_float(tmp_path):
    rng = np.random.default_rng(0)
    stored = rng.integers(-2000, 32767, (16, 16)).astype(np.int16)
    stored[0, 0], stored[0, 1] = -32768, 32767  # int16 overflow traps
    path = _write(tmp_path / "a.dcm", stored, RescaleSlope=1,
                  RescaleIntercept=-1024)
    hu = dicom.read_hu(path)
    assert hu.dtype == np.float32 and hu.shape == (16, 16)
    np.testing.assert_array_equal(hu, stored.astype(np.float64) - 1024)
    assert hu[0, 0] == -33792 and hu[0, 1] == 31743


def test_unsigned_slope_and_window(tmp_path):
    stored = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    path = _write(tmp_path / "a.dcm", stored, RescaleSlope=0.5,
                  RescaleIntercept=-100)
    hu = dicom.read_hu(path)
    ref = stored * 0.5 - 100
    np.testing.assert_allclose(hu, ref)
    for c, w in ((40, 80), (80, 200), (40, 380), (600, 2800)):
        got = dicom.window(hu, c, w)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, _window_ref(ref, c, w), atol=1e-6)
        assert got.min() >= 0 and got.max() <= 1


def test_window_hand_worked():
    got = dicom.window(np.array([-100.0, 0.0, 40.0, 60.0, 80.0, 500.0]),
                       40, 80)
    np.testing.assert_allclose(got, [0, 0, 0.5, 0.75, 1, 1])
    stack = dicom.windows(np.array([[40.0]]), [[40, 80], [80, 200]])
    np.testing.assert_allclose(stack, [[[0.5, 0.3]]])
    with pytest.raises(ValueError, match="width"):
        dicom.window(np.zeros(2), 40, 0)


def test_monochrome1_is_inverted(tmp_path):
    rng = np.random.default_rng(1)
    stored = rng.integers(0, 4096, (8, 8)).astype(np.uint16)
    m1 = _write(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1",
                bits_stored=12)
    m2 = _write(tmp_path / "m2.dcm", (4095 - stored).astype(np.uint16),
                bits_stored=12)
    np.testing.assert_array_equal(dicom.read_hu(m1), dicom.read_hu(m2))
    np.testing.assert_array_equal(dicom.read_hu(m1), 4095 - stored)
    s8 = rng.integers(0, 256, (8, 8)).astype(np.uint8)
    m8 = _write(tmp_path / "m8.dcm", s8, photometric="MONOCHROME1")
    np.testing.assert_array_equal(dicom.read_hu(m8), 255 - s8.astype(int))
    signed = rng.integers(-500, 500, (8, 8)).astype(np.int16)
    ms = _write(tmp_path / "ms.dcm", signed, photometric="MONOCHROME1")
    np.testing.assert_array_equal(dicom.read_hu(ms), -1 - signed.astype(int))


def test_rsna_ich_12bit_repair(tmp_path):
    true_hu = np.array([[-1000, -500, -1], [0, 40, 80], [1000, 2000, 3095]])
    stored = np.mod(true_hu, 4096).astype(np.uint16)  # the wrapped file
    path = _write(tmp_path / "q.dcm", stored, bits_stored=12,
                  RescaleSlope=1, RescaleIntercept=1)
    meta = dicom.read_meta(path)
    assert meta["bits_stored"] == 12 and meta["pixel_representation"] == 0
    np.testing.assert_array_equal(dicom.read_hu(path), true_hu)
    # Not repaired: a normal intercept, or 16 bits stored.
    ok = _write(tmp_path / "ok.dcm", stored, bits_stored=12,
                RescaleSlope=1, RescaleIntercept=-1024)
    np.testing.assert_array_equal(dicom.read_hu(ok), stored - 1024.0)
    b16 = _write(tmp_path / "b16.dcm", stored, RescaleSlope=1,
                 RescaleIntercept=1)
    np.testing.assert_array_equal(dicom.read_hu(b16), stored + 1.0)


def test_read_meta_multivalued_window(tmp_path):
    path = _write(
        tmp_path / "a.dcm", np.zeros((4, 6), np.int16),
        sop_instance_uid="ID_0a1b2c3d4", PatientID="ID_99", Modality="CT",
        StudyInstanceUID="ID_s1", SeriesInstanceUID="ID_r1",
        ImagePositionPatient=["-125", "-120.5", "183.25"], InstanceNumber=7,
        WindowCenter=["36", "40"], WindowWidth=["80", "120"],
        RescaleSlope="1", RescaleIntercept="-1024")
    meta = dicom.read_meta(path)
    assert meta["sop_instance_uid"] == "ID_0a1b2c3d4"
    assert meta["patient_id"] == "ID_99"
    assert meta["study_instance_uid"] == "ID_s1"
    assert meta["series_instance_uid"] == "ID_r1"
    assert meta["z"] == 183.25 and meta["instance_number"] == 7
    assert meta["window_center"] == 36.0 and meta["window_width"] == 80.0
    assert meta["intercept"] == -1024.0 and meta["slope"] == 1.0
    assert (meta["rows"], meta["columns"]) == (4, 6)
    single = _write(tmp_path / "b.dcm", np.zeros((2, 2), np.int16),
                    WindowCenter="40", WindowWidth="80")
    m = dicom.read_meta(single)
    assert (m["window_center"], m["window_width"]) == (40.0, 80.0)
    assert m["z"] is None and m["instance_number"] is None


def test_written_file_is_complete_part10(tmp_path):
    path = _write(tmp_path / "a.dcm", np.ones((4, 4), np.uint16),
                  bits_stored=12, sop_class_uid=dicom.MR_IMAGE_STORAGE)
    with open(path, "rb") as f:
        head = f.read(132)
    assert head[128:] == b"DICM"
    with dicom.lenient():
        ds = pydicom.dcmread(path)
        syntax = ds.file_meta.TransferSyntaxUID
        assert syntax == pydicom.uid.ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPClassUID == dicom.MR_IMAGE_STORAGE
        assert ds.SOPClassUID == dicom.MR_IMAGE_STORAGE
        assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored,
                ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel) == (
                    4, 4, 16, 12, 11, 0, 1)
        assert ds.PhotometricInterpretation == "MONOCHROME2"


def test_ct_small_plausible_hu():
    path = get_testdata_file("CT_small.dcm")
    hu = dicom.read_hu(path)
    ds = pydicom.dcmread(path)
    ref = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept)
    np.testing.assert_array_equal(hu, ref)
    assert hu.shape == (128, 128)
    assert -1100 < hu.min() < 0 < hu.max() < 3000
    meta = dicom.read_meta(path)
    assert meta["patient_id"] == "1CT1"
    assert meta["z"] == pytest.approx(-75.699997)


@pytest.mark.parametrize("damage", ["truncated_pixels", "truncated_header",
                                    "garbage", "empty", "missing"])
def test_bad_files_name_the_file(tmp_path, damage):
    good = _write(tmp_path / "good.dcm", np.ones((32, 32), np.int16))
    data = (tmp_path / "good.dcm").read_bytes()
    bad = tmp_path / f"{damage}.dcm"
    if damage == "truncated_pixels":
        bad.write_bytes(data[:-100])
    elif damage == "truncated_header":
        bad.write_bytes(data[:200])
    elif damage == "garbage":
        bad.write_bytes(b"not a dicom file" * 20)
    elif damage == "empty":
        bad.write_bytes(b"")
    with pytest.raises(dicom.DicomError, match=damage):
        dicom.read_hu(bad)
    if damage != "truncated_pixels":
        with pytest.raises(dicom.DicomError, match=damage):
            dicom.read_meta(bad)
