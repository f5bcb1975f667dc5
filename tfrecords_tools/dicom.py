"""DICOM files -> Hounsfield units, windows and metadata; and back (tests).

Reading follows the pitfalls of the Kaggle DICOM competitions:

- the rescale `HU = stored * RescaleSlope + RescaleIntercept` is done in
  float64 (adding -1024 to an int16 array overflows),
- stored values are signed or unsigned as `PixelRepresentation` says,
- `MONOCHROME1` images are inverted within their bit range, so that a
  bright pixel always has the high value,
- RSNA ICH's wrapped 12-bit CT images (`BitsStored` 12,
  `PixelRepresentation` 0, a `RescaleIntercept` tag > -100) are repaired
  as in the widely used fix:
  `p = stored + 1000; p[p >= 4096] -= 4096; HU = p * slope - 1000`,
- multi-valued `WindowCenter` / `WindowWidth` tags give their first value.

A missing, truncated or corrupt file raises `DicomError` naming the file.

Example:

>>> hu = read_hu("stage_2_train/ID_000039fa0.dcm")     # (512, 512) float32
>>> brain = window(hu, 40, 80)                         # in [0, 1]
>>> read_meta("stage_2_train/ID_000039fa0.dcm")["z"]
-125.0
"""

import contextlib
import os
import warnings

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

# SOP classes of the competitions' files.
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

# The RSNA ICH wrapped-intercept repair.
_WRAP_OFFSET = 1000
_WRAP_MODULUS = 4096


class DicomError(ValueError):
    """A DICOM file that cannot be read; the message names the file."""


@contextlib.contextmanager
def lenient():
    """Turns off pydicom's value validation inside the block.

    The competitions' files break the VR rules (RSNA ICH's UIDs are
    `ID_<hex>`, SIIM's `PatientAge` is `38`); pydicom would warn on every
    such value.
    """
    settings = pydicom.config.settings
    old = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = pydicom.config.IGNORE
    settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        yield
    finally:
        (settings.reading_validation_mode,
         settings.writing_validation_mode) = old


def read_dataset(path, pixels=True):
    """Reads a DICOM file with pydicom.

    Args:
        path: the `.dcm` file.
        pixels: read the pixel data too. Defaults to `True`.

    Returns:
        A `pydicom.Dataset`. Its values are validated when accessed: read
        them inside `with lenient():` to silence pydicom's warnings about
        the competitions' non-conforming values.

    Raises:
        DicomError: the file is missing or not a readable DICOM file.

    Example:

    >>> with lenient():
    ...     read_dataset("a.dcm", pixels=False).PatientID
    'ID_1'
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DicomError(f"{path}: DICOM file not found")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
    except Exception as e:  # pydicom raises many types on bad bytes
        raise DicomError(f"{path}: not a readable DICOM file "
                         f"({type(e).__name__}: {e})") from None
    if len(ds) == 0 or "TransferSyntaxUID" not in ds.file_meta:
        raise DicomError(f"{path}: truncated DICOM file (no data set after "
                         "the file meta header)")
    return ds


def first_value(value, default=None):
    """The first value of a possibly multi-valued tag, as a float.

    Example:

    >>> first_value(pydicom.multival.MultiValue(float, ["40", "80"]))
    40.0
    """
    if value is None or value == "":
        return default
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        if len(value) == 0:
            return default
        value = value[0]
    return float(value)


def stored_pixels(ds, path="<dataset>"):
    """The stored values of a one-frame grayscale image, as int64 (H, W).

    Signed or unsigned as `PixelRepresentation` says; no rescale.
    """
    try:
        with warnings.catch_warnings():
            # A short or overlong PixelData is an error here, not a warning.
            warnings.simplefilter("error")
            arr = ds.pixel_array
    except Exception as e:
        raise DicomError(f"{path}: unreadable pixel data "
                         f"({type(e).__name__}: {e})") from None
    if arr.ndim != 2:
        raise DicomError(f"{path}: expected one grayscale frame, got pixel "
                         f"data of shape {arr.shape}")
    return arr.astype(np.int64)


def to_hu(ds, path="<dataset>"):
    """Hounsfield units (CT) or rescaled intensity (MR, X-ray) of a dataset.

    Args:
        ds: a `pydicom.Dataset` with pixel data.
        path: the file name for error messages.

    Returns:
        float32 array (height, width).

    Example:

    >>> to_hu(pydicom.dcmread("CT_small.dcm")).min()
    -896.0
    """
    p = stored_pixels(ds, path)
    try:
        bits = int(ds.get("BitsStored", 16))
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        slope = first_value(ds.get("RescaleSlope"), 1.0)
        intercept = first_value(ds.get("RescaleIntercept"), 0.0)
    except (TypeError, ValueError) as e:
        raise DicomError(f"{path}: bad pixel tags ({e})") from None
    if (bits == 12 and not signed and intercept > -100
            and "RescaleIntercept" in ds
            and str(ds.get("Modality", "CT")).strip() == "CT"):
        p = p + _WRAP_OFFSET
        p[p >= _WRAP_MODULUS] -= _WRAP_MODULUS
        intercept = -float(_WRAP_OFFSET)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        # low..high of the stored range swap: unsigned 0..2^b-1, signed
        # -2^(b-1)..2^(b-1)-1; both are `low + high - p`.
        p = (-1 - p) if signed else ((1 << bits) - 1 - p)
    hu = p.astype(np.float64) * slope + intercept
    return hu.astype(np.float32)


def read_hu(path):
    """Reads a DICOM file as Hounsfield units (raw intensity for MR).

    See the module docstring for the rescale, sign, MONOCHROME1 and ICH
    12-bit rules.

    Args:
        path: the `.dcm` file.

    Returns:
        float32 array (height, width).

    Raises:
        DicomError: the file is missing, truncated or corrupt.

    Example:

    >>> read_hu("ID_000039fa0.dcm").shape
    (512, 512)
    """
    path = os.fspath(path)
    with lenient():
        return to_hu(read_dataset(path), path)


def window(hu, center, width):
    """Maps HU to [0, 1] through a window `center`/`width`.

    `clip((hu - (center - width / 2)) / width, 0, 1)`.

    Args:
        hu: array of Hounsfield units.
        center: window center (level).
        width: window width, > 0.

    Returns:
        float32 array shaped like `hu`.

    Example:

    >>> window(np.array([0.0, 40.0, 80.0]), 40, 80)
    array([0. , 0.5, 1. ], dtype=float32)
    """
    if not width > 0:
        raise ValueError(f"window width must be > 0. Received: width={width}")
    low = center - width / 2.0
    out = (np.asarray(hu, np.float64) - low) / width
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def windows(hu, centers_widths):
    """Several windows stacked as channels: (H, W) -> (H, W, len(windows)).

    Example:

    >>> windows(hu, [[40, 80], [80, 200], [40, 380]]).shape
    (512, 512, 3)
    """
    if not centers_widths:
        raise ValueError("windows needs at least one [center, width] pair")
    return np.stack([window(hu, c, w) for c, w in centers_widths], axis=-1)


def _text(ds, keyword):
    value = ds.get(keyword)
    return None if value is None else str(value)


def read_meta(path):
    """The header fields the competitions use, without the pixel data.

    Args:
        path: the `.dcm` file.

    Returns:
        dict with `sop_instance_uid`, `patient_id`, `study_instance_uid`,
        `series_instance_uid`, `series_description`, `modality`,
        `instance_number` (int or None), `z` (third ImagePositionPatient
        value or None), `window_center`, `window_width` (first values or
        None), `slope`, `intercept`, `rows`, `columns`, `bits_allocated`,
        `bits_stored`, `pixel_representation`, `photometric`,
        `transfer_syntax`, `compressed`, `patient_sex`, `patient_age`,
        `view_position`.

    Raises:
        DicomError: the file is missing or corrupt.

    Example:

    >>> meta = read_meta("ID_000039fa0.dcm")
    >>> meta["patient_id"], meta["z"], meta["window_center"]
    ('ID_eeaf99e7', 183.0, 30.0)
    """
    path = os.fspath(path)
    with lenient():
        ds = read_dataset(path, pixels=False)
        return _meta(ds, path)


def _meta(ds, path):
    try:
        position = ds.get("ImagePositionPatient")
        z = (float(position[2]) if position is not None and len(position) > 2
             else None)
        number = ds.get("InstanceNumber")
        return {
            "sop_instance_uid": _text(ds, "SOPInstanceUID"),
            "patient_id": _text(ds, "PatientID"),
            "study_instance_uid": _text(ds, "StudyInstanceUID"),
            "series_instance_uid": _text(ds, "SeriesInstanceUID"),
            "series_description": _text(ds, "SeriesDescription"),
            "modality": _text(ds, "Modality"),
            "instance_number": None if number in (None, "") else int(number),
            "z": z,
            "window_center": first_value(ds.get("WindowCenter")),
            "window_width": first_value(ds.get("WindowWidth")),
            "slope": first_value(ds.get("RescaleSlope"), 1.0),
            "intercept": first_value(ds.get("RescaleIntercept"), 0.0),
            "rows": int(ds.get("Rows", 0)),
            "columns": int(ds.get("Columns", 0)),
            "bits_allocated": int(ds.get("BitsAllocated", 0)),
            "bits_stored": int(ds.get("BitsStored", 0)),
            "pixel_representation": int(ds.get("PixelRepresentation", 0)),
            "photometric": _text(ds, "PhotometricInterpretation"),
            "transfer_syntax": _text(ds.file_meta, "TransferSyntaxUID"),
            "compressed": bool(ds.file_meta.TransferSyntaxUID.is_compressed),
            "patient_sex": _text(ds, "PatientSex"),
            "patient_age": _text(ds, "PatientAge"),
            "view_position": _text(ds, "ViewPosition"),
        }
    except (TypeError, ValueError, IndexError) as e:
        raise DicomError(f"{path}: bad header value ({e})") from None


def write(path, pixels, *, sop_class_uid, sop_instance_uid,
          photometric="MONOCHROME2", bits_stored=None, **attributes):
    """Writes a one-frame grayscale DICOM file (samples and tests).

    A complete Part-10 file: preamble, file meta (Explicit VR Little Endian),
    SOP class/instance UIDs and the Image Pixel module from `pixels`.
    Written under a temporary name and renamed when complete.

    Args:
        path: the `.dcm` file to write.
        pixels: (rows, columns) uint8, uint16 or int16 stored values.
        sop_class_uid: e.g. `CT_IMAGE_STORAGE`.
        sop_instance_uid: the image's UID.
        photometric: `MONOCHROME2` or `MONOCHROME1`. Defaults to
            `"MONOCHROME2"`.
        bits_stored: defaults to the dtype's bits.
        **attributes: more elements by keyword (`PatientID="ID_1"`,
            `RescaleIntercept=-1024`, `WindowCenter=[40, 80]`, ...).

    Example:

    >>> write("a.dcm", np.zeros((64, 64), np.int16),
    ...       sop_class_uid=CT_IMAGE_STORAGE, sop_instance_uid="1.2.3",
    ...       RescaleSlope=1, RescaleIntercept=-1024)
    """
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype not in (np.uint8, np.uint16, np.int16):
        raise ValueError(f"pixels must be uint8, uint16 or int16. "
                         f"Received: dtype={pixels.dtype} ({path})")
    with lenient():
        _write(path, pixels, sop_class_uid, sop_instance_uid, photometric,
               bits_stored, attributes)


def _write(path, pixels, sop_class_uid, sop_instance_uid, photometric,
           bits_stored, attributes):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = pydicom.FileDataset(os.fspath(path), {}, file_meta=meta,
                             preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    bits = bits_stored or pixels.dtype.itemsize * 8
    ds.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)
    tmp = f"{os.fspath(path)}.tmp-{os.getpid()}"
    ds.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, path)
