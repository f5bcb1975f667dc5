"""DICOM folders and files for the plugins: listings and BadInput errors.

`tfrecords_tools.dicom` does the pixel and header work; this module wraps
it for the converter: every failure becomes a `BadInput` naming the file
and the record it belongs to.

Example:

>>> files = index_folder("dicom-images-train")       # doctest: +SKIP
>>> files["1.2.276.0.7230010.3.1.4.8323329.5597"]    # doctest: +SKIP
'dicom-images-train/<study>/<series>/1.2.276....5597.dcm'
"""

import os

from tfrecords_tools import dicom
from tfrecords_tools.items import BadInput


def index_folder(folder: str) -> dict:
    """Every `.dcm` under `folder` (recursively): {file stem: path}.

    Raises:
        BadInput: the folder is missing, or two files share a stem.
    """
    if not os.path.isdir(folder):
        raise BadInput(folder, "DICOM folder not found")
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not name.lower().endswith(".dcm"):
                continue
            stem = name[:-4]
            path = os.path.join(root, name)
            if stem in found:
                raise BadInput(path, f"duplicate image id {stem} (also "
                                     f"{found[stem]})")
            found[stem] = path
    return found


def read_meta(path: str, item_id: str = None) -> dict:
    """`tfrecords_tools.dicom.read_meta`, raising `BadInput`."""
    try:
        return dicom.read_meta(path)
    except dicom.DicomError as e:
        raise BadInput(path, _reason(e, path), item_id) from None


def read_hu(path: str, item_id: str = None):
    """`tfrecords_tools.dicom.read_hu`, raising `BadInput`."""
    try:
        return dicom.read_hu(path)
    except dicom.DicomError as e:
        raise BadInput(path, _reason(e, path), item_id) from None


def _reason(error, path):
    text = str(error)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def check_pixel_bytes(path: str, meta: dict, item_id: str = None) -> None:
    """Cheap truncation check from the header: the file must be at least
    as long as its pixel data (rows x columns x bits allocated / 8).
    Compressed transfer syntaxes are not checked.

    Raises:
        BadInput: the file is shorter, naming it.
    """
    if meta.get("compressed"):
        return
    expected = meta["rows"] * meta["columns"] * meta["bits_allocated"] // 8
    size = os.path.getsize(path)
    if size < expected:
        raise BadInput(path, f"truncated DICOM: {size} bytes, the "
                             f"{meta['rows']}x{meta['columns']} pixel data "
                             f"alone needs {expected}", item_id)
