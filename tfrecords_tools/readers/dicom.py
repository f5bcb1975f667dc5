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


# --- header listings: parallel, cached -----------------------------------

# Header reads of this process (`read_headers`): "read" files parsed,
# "cached" files answered by the cache. Tests and benchmarks read them.
HEADER_STATS = {"read": 0, "cached": 0}
CACHE_VERSION = 1


def _header(job):
    """(fields, None) or (None, (path, reason)); runs in a worker."""
    path, fields = job
    try:
        meta = read_meta(path)
    except BadInput as e:
        return None, (e.path, e.reason)
    return [meta[f] for f in fields], None


def read_headers(paths, fields, workers: int = 1, cache_path=None,
                 root=None) -> dict:
    """Header fields of many DICOMs, in parallel and cached.

    Args:
        paths: the `.dcm` files (existing).
        fields: the `tfrecords_tools.dicom.read_meta` keys to keep.
        workers: processes reading headers (spawned; 1 = this one).
        cache_path: a gzipped JSON file (any `tf.io.gfile` path) that keeps
            each file's fields under its path (relative to `root`), size
            and mtime: a rerun reads only the files that are new or whose
            size or mtime changed. None: no cache.
        root: the folder the cached paths are relative to.

    Returns:
        {path: {field: value}} for the readable files and {path:
        BadInput} for the others (these are not cached: read again next
        time).
    """
    fields = tuple(fields)
    cached = _load_cache(cache_path, fields)
    out, todo, stamps, entries = {}, [], {}, {}
    for path in paths:
        st = os.stat(path)
        key = os.path.relpath(path, root) if root else path
        stamp = [st.st_size, st.st_mtime_ns]
        stamps[path] = (key, stamp)
        hit = cached.get(key)
        if hit is not None and hit[:2] == stamp:
            out[path] = dict(zip(fields, hit[2:]))
            entries[key] = hit
        else:
            todo.append(path)
    HEADER_STATS["cached"] += len(out)
    HEADER_STATS["read"] += len(todo)
    for path, (values, error) in zip(todo, _map_headers(todo, fields,
                                                        workers)):
        if error is not None:
            out[path] = BadInput(error[0], error[1])
            continue
        out[path] = dict(zip(fields, values))
        key, stamp = stamps[path]
        entries[key] = stamp + values
    if cache_path and (todo or len(entries) != len(cached)):
        _save_cache(cache_path, fields, entries)
    return out


def _map_headers(paths, fields, workers):
    jobs = [(path, fields) for path in paths]
    if workers <= 1 or len(jobs) < 64:
        return [_header(job) for job in jobs]
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(workers, os.cpu_count() or workers)) as pool:
        return pool.map(_header, jobs,
                        chunksize=max(16, len(jobs) // (8 * workers)))


def _load_cache(path, fields) -> dict:
    if not path:
        return {}
    import gzip
    import json

    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = json.loads(gzip.decompress(f.read()))
    except (tf.errors.NotFoundError, OSError, ValueError):
        return {}
    if (data.get("version") != CACHE_VERSION
            or tuple(data.get("fields", ())) != fields):
        return {}
    return data.get("files", {})


def _save_cache(path, fields, entries) -> None:
    import gzip
    import json

    import tensorflow as tf

    from tfrecords_tools import writer

    tf.io.gfile.makedirs(os.path.dirname(path))
    data = {"version": CACHE_VERSION, "fields": list(fields),
            "files": entries}
    writer.write_bytes(path, gzip.compress(
        json.dumps(data, separators=(",", ":")).encode(), 1))
