"""RSNA Intracranial Hemorrhage Detection -> records (plugin).

Layout of `cfg.data.raw_dir` (stage 2, as on Kaggle):

    stage_2_train.csv                ID,Label: 6 rows per image, ID =
                                     ID_<hex>_<subtype>; duplicated rows
                                     exist and are merged
    stage_2_train/ID_<hex>.dcm       head CT slices, 512 x 512, 16-bit
    stage_2_test/ID_<hex>.dcm
    stage_2_sample_submission.csv    ID,Label

One record per DICOM series (`KIND = "sequence"`), its slices in order of
`ImagePositionPatient` z (then InstanceNumber, then id):

| key              | value                                             |
|------------------|---------------------------------------------------|
| `series/id`      | SeriesInstanceUID                                 |
| `image/id`       | the T slice ids (`ID_<hex>`), in slice order      |
| `image/encoded`  | T 16-bit grayscale PNGs of `HU + HU_OFFSET`       |
| `image/position` | the T z positions                                 |
| `labels`         | T x 6 floats, row-major, subtypes in `CLASSES` order |
| `group`          | PatientID (folds are grouped by patient)          |

HU come from `tfrecords_tools.dicom.read_hu` (rescale in float, the
12-bit intercept repair), rounded to integers; windows are applied by the
reader (`cfg.data.windows`), so changing them needs no conversion. A
slice-level reader unbatches the series. A slice whose header is
unreadable or whose file is shorter than its pixel data is a bad input on
its own; a slice whose pixels fail to decode makes its series a bad input.

Example:

>>> from tfrecords_tools.competitions import rsna_ich
>>> rsna_ich.make_sample("/tmp/ich", n=24, size=64)   # doctest: +SKIP
"""

import io
import os
import re

import numpy as np
from PIL import Image

from tfrecords_tools import dicom
from tfrecords_tools import schema
from tfrecords_tools.items import BadInput
from tfrecords_tools.items import Item
from tfrecords_tools.readers import csv_table
from tfrecords_tools.readers import dicom as dicom_reader
from tfrecords_tools.synthetic import random_hex
from tfrecords_tools.synthetic import sample_size
from tfrecords_tools.synthetic import write_lines

CLASSES = ("epidural", "intraparenchymal", "intraventricular",
           "subarachnoid", "subdural", "any")
KIND = "sequence"
FOLD_STRATEGY = "grouped"
KAGGLE_SLUG = "rsna-intracranial-hemorrhage-detection"
DEFAULT_SIZE = (512, 512)
# The kernel budget counts slices (6 submission rows each); the stage 2
# test count is not recorded, and the competition had no kernel limit.
TEST_UNIT = "slice"
KERNEL_LIMIT_HOURS = None
DEFAULT_N = 48
# The record depends on no `cfg.data` key besides the folds and shards.
CONFIG_KEYS = ()
TRAIN_CSV = "stage_2_train.csv"
SAMPLE_SUBMISSION = "stage_2_sample_submission.csv"
TRAIN_DIR = "stage_2_train"
TEST_DIR = "stage_2_test"
HU_OFFSET = 32768  # stored PNG value = HU + HU_OFFSET (uint16)
WINDOWS = ((40, 80), (80, 200), (40, 380))  # brain, subdural, soft tissue

_ID_RE = re.compile(r"^(ID_[0-9a-fA-F]+)_([a-z]+)$")


def _report(error, on_error):
    if on_error is None:
        raise error
    on_error(error)


# --- reading -------------------------------------------------------------

def read_labels(path: str, on_error=None) -> dict:
    """stage_2_train.csv -> {image id: (6 ints, first line)}.

    Identical duplicated rows are merged.

    Raises:
        BadInput: a malformed ID or Label, an unknown subtype, conflicting
            duplicates or an image without all 6 subtypes (naming the CSV
            and row), unless `on_error` collects it.
    """
    rows = csv_table.read_rows(path, ("ID", "Label"))
    values, first, bad = {}, {}, set()
    for line, row in rows:
        match = _ID_RE.match(row["ID"])
        image_id = match.group(1) if match else None
        try:
            if match is None or match.group(2) not in CLASSES:
                raise BadInput(path, f"row {line}: ID must be "
                                     f"ID_<hex>_<subtype> with a subtype in "
                                     f"{', '.join(CLASSES)}. Received: "
                                     f"{row['ID']!r}", image_id)
            if row["Label"] not in ("0", "1"):
                raise BadInput(path, f"row {line}: Label must be 0 or 1. "
                                     f"Received: {row['Label']!r}", image_id)
            k = CLASSES.index(match.group(2))
            seen = values.setdefault(image_id, {})
            first.setdefault(image_id, line)
            if k in seen and seen[k] != int(row["Label"]):
                raise BadInput(path, f"row {line}: {row['ID']} repeats with "
                                     f"another Label", image_id)
            seen[k] = int(row["Label"])
        except BadInput as e:
            if image_id is not None:
                bad.add(image_id)
            _report(e, on_error)
    out = {}
    for image_id in sorted(values):
        if image_id in bad:
            continue
        seen = values[image_id]
        if len(seen) != len(CLASSES):
            missing = [c for k, c in enumerate(CLASSES) if k not in seen]
            _report(BadInput(path, f"row {first[image_id]}: {image_id} "
                                   f"lacks {', '.join(missing)}", image_id),
                    on_error)
            continue
        out[image_id] = (tuple(seen[k] for k in range(len(CLASSES))),
                         first[image_id])
    return out


def _test_ids(raw):
    path = os.path.join(raw, SAMPLE_SUBMISSION)
    folder = os.path.join(raw, TEST_DIR)
    if not os.path.isfile(path):
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        return {f[:-4]: None for f in names if f.endswith(".dcm")}, folder
    ids = {}
    for line, row in csv_table.read_rows(path, ("ID",)):
        match = _ID_RE.match(row["ID"])
        if match is None:
            raise BadInput(path, f"row {line}: ID must be ID_<hex>_<subtype>."
                                 f" Received: {row['ID']!r}")
        ids.setdefault(match.group(1), line)
    return ids, path


def slice_order(slices) -> list:
    """Sorts `(id, path, meta, ...)` tuples by z, InstanceNumber, id."""
    def key(s):
        meta = s[2]
        z = meta["z"]
        number = meta["instance_number"]
        return (z is None, z if z is not None else 0.0,
                number if number is not None else 0, s[0])
    return sorted(slices, key=key)


# The header fields the listing keeps (and caches).
HEADER_FIELDS = ("series_instance_uid", "patient_id", "z",
                 "instance_number", "rows", "columns", "bits_allocated",
                 "compressed")


def header_cache_path(cfg, split: str) -> str:
    """Where the listing caches the headers of `split`'s DICOMs."""
    return os.path.join(cfg.data.records_dir, schema.CACHE_DIR,
                        f"rsna_ich-{split}-headers.json.gz")


def list_items(cfg, split: str = "train", on_error=None,
               workers: int = 1) -> list:
    """One `Item` per series of `split`, sorted by SeriesInstanceUID.

    Reads every image's header (PatientID, SeriesInstanceUID, z) in
    `workers` processes, and caches them in `records_dir/.cache/`: a rerun
    or a resumed conversion reads only the DICOMs that are new or whose
    size or mtime changed.

    Raises:
        BadInput: a bad CSV row, a missing DICOM (naming the CSV row), an
            unreadable header or a truncated file (naming the DICOM),
            unless `on_error` collects it.
    """
    raw = cfg.data.raw_dir
    if split == "train":
        source = os.path.join(raw, TRAIN_CSV)
        labels = read_labels(source, on_error)
        ids = {k: line for k, (_, line) in labels.items()}
        folder = os.path.join(raw, TRAIN_DIR)
    elif split == "test":
        ids, source = _test_ids(raw)
        labels = {}
        folder = os.path.join(raw, TEST_DIR)
    else:
        raise ValueError(f"split must be 'train' or 'test'. "
                         f"Received: {split!r}")
    paths = {image_id: os.path.join(folder, f"{image_id}.dcm")
             for image_id in sorted(ids)}
    existing = [p for p in paths.values() if os.path.isfile(p)]
    headers = dicom_reader.read_headers(
        existing, HEADER_FIELDS, workers=workers,
        cache_path=header_cache_path(cfg, split), root=raw)
    series = {}
    for image_id, path in paths.items():
        try:
            if path not in headers:
                line = ids[image_id]
                where = f"row {line}: " if line is not None else ""
                name = f"{os.path.basename(folder)}/{image_id}.dcm"
                raise BadInput(source, f"{where}image {name} not found",
                               image_id)
            meta = headers[path]
            if isinstance(meta, BadInput):
                raise BadInput(meta.path, meta.reason, image_id)
            dicom_reader.check_pixel_bytes(path, meta, image_id)
        except BadInput as e:
            _report(e, on_error)
            continue
        key = meta["series_instance_uid"] or f"unknown-series-{image_id}"
        series.setdefault(key, []).append((image_id, path, meta))
    items = []
    for key in sorted(series):
        slices = slice_order(series[key])
        slice_labels = tuple(labels[s[0]][0] for s in slices) if labels else ()
        patient = slices[0][2]["patient_id"] or key
        any_label = max((lab[-1] for lab in slice_labels), default=0)
        items.append(Item(
            id=key,
            paths=tuple(s[1] for s in slices),
            labels=(tuple(max(col) for col in zip(*slice_labels))
                    if slice_labels else ()),
            group=patient,
            strata=str(any_label),
            data={"ids": tuple(s[0] for s in slices),
                  "z": tuple(s[2]["z"] if s[2]["z"] is not None
                             else float(i) for i, s in enumerate(slices)),
                  "labels": slice_labels}))
    return items


def hu_png(hu) -> bytes:
    """HU (H, W) -> 16-bit PNG bytes of `round(HU) + HU_OFFSET`."""
    stored = np.clip(np.rint(np.asarray(hu, np.float64)) + HU_OFFSET, 0,
                     65535).astype("<u2")
    buf = io.BytesIO()
    # zlib level 1: a third of the default's time (752k slices) for ~10%
    # larger files; the decoded values are the same.
    Image.fromarray(stored).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def png_hu(data: bytes) -> np.ndarray:
    """The inverse of `hu_png`: float32 HU (numpy reference)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im).astype(np.float32) - HU_OFFSET


def _resize(hu, shape):
    image = Image.fromarray(np.asarray(hu, np.float32), mode="F")
    return np.asarray(image.resize((shape[1], shape[0]), Image.BILINEAR))


def encode_item(item: Item, cfg) -> dict:
    """Reads the series' slices as HU and stores them in slice order.

    Slices whose size differs from the first are resized to it.

    Raises:
        BadInput: a slice that is missing, truncated or corrupt, naming it.
    """
    pngs, shape = [], None
    for image_id, path in zip(item.data["ids"], item.paths):
        hu = dicom_reader.read_hu(path, image_id)
        if shape is None:
            shape = hu.shape
        elif hu.shape != shape:
            hu = _resize(hu, shape)
        pngs.append(hu_png(hu))
    features = {
        schema.ID: list(item.data["ids"]),
        schema.SERIES: item.id,
        schema.GROUP: item.group,
        schema.IMAGE: pngs,
        schema.IMAGE_FORMAT: "png",
        schema.HEIGHT: shape[0],
        schema.WIDTH: shape[1],
        schema.CHANNELS: 1,
        schema.POSITION: [float(z) for z in item.data["z"]],
    }
    if item.data["labels"]:
        features[schema.LABELS] = [float(v) for row in item.data["labels"]
                                   for v in row]
    return features


def draw(features: dict) -> np.ndarray:
    """The middle slice of the series in the brain, subdural and soft
    tissue windows side by side, a red bar over those with a hemorrhage
    label (`any`) and a strip of every slice (brain window) below.
    """
    images = features[schema.IMAGE]
    mid = len(images) // 2
    hu = png_hu(images[mid])
    h, w = hu.shape
    tiles = [np.repeat(dicom.window(hu, c, wd)[..., None], 3, -1)
             for c, wd in WINDOWS]
    top = (np.concatenate(tiles, axis=1) * 255).astype(np.uint8)
    labels = features.get(schema.LABELS) or []
    if labels and labels[mid * len(CLASSES) + len(CLASSES) - 1] > 0:
        top[:max(2, h // 32)] = (255, 40, 40)
    n = len(images)
    thumb_w = max(1, (3 * w) // max(n, 1))
    thumbs = []
    for data in images:
        t = dicom.window(png_hu(data), *WINDOWS[0])
        t = np.asarray(Image.fromarray((t * 255).astype(np.uint8)).resize(
            (thumb_w, thumb_w), Image.BILINEAR))
        thumbs.append(np.repeat(t[..., None], 3, -1))
    strip = np.concatenate(thumbs, axis=1)
    strip = np.pad(strip, ((0, 0), (0, top.shape[1] - strip.shape[1]),
                           (0, 0)))
    return np.concatenate([top, strip], axis=0)


# --- sample --------------------------------------------------------------

def _size(size):
    return sample_size(size, DEFAULT_SIZE)


_hex = random_hex


def make_sample(out_dir: str, n: int = None, size=None,
                seed: int = 0) -> None:
    """Writes a tiny RSNA ICH dataset in Kaggle's stage-2 layout.

    Args:
        out_dir: the folder to create (files are overwritten).
        n: training images (slices). Defaults to `48`; test images are
            `n // 4` (at least 4).
        size: `(height, width)` or an int. Defaults to `(512, 512)`.
        seed: same seed, same bytes.

    Series of 4 to 9 slices, 1 or 2 series per patient; file names are
    random ids, not in slice order. About 40% of the series bleed over a
    run of consecutive slices: blood is drawn at 75 HU (bright in the
    brain window) where its subtype lies (epidural lens, subdural
    crescent, parenchymal blob, ventricle, sulcal lines). Stored formats
    vary by series: signed int16 with -2000 outside the field of view,
    unsigned, and (the third series) the 12-bit wrong-intercept quirk;
    some WindowCenter/Width tags are multi-valued. Two images have their
    6 rows duplicated in stage_2_train.csv.

    Example:

    >>> make_sample("/tmp/ich", n=24, size=64, seed=0)  # doctest: +SKIP
    """
    n = DEFAULT_N if n is None else int(n)
    h, w = _size(size)
    if n < 4 or h < 16 or w < 16:
        raise ValueError(f"need n >= 4 and a size of at least 16x16. "
                         f"Received: n={n}, size={h}x{w}")
    rng = np.random.default_rng(seed)
    n_test = max(n // 4, 4)
    train_rows, test_ids, used = [], [], set()
    series_no = 0
    for split, total in (("train", n), ("test", n_test)):
        folder = os.path.join(out_dir, TRAIN_DIR if split == "train"
                              else TEST_DIR)
        os.makedirs(folder, exist_ok=True)
        done = 0
        while done < total:
            patient = f"ID_{_hex(rng, 8)}"
            for _ in range(int(rng.integers(1, 3))):
                if done >= total:
                    break
                length = int(min(rng.integers(4, 10), total - done))
                if total - done - length in (1, 2, 3):
                    length = total - done  # no series of < 4 slices
                style = ("quirk" if series_no % 5 == 2
                         else ("signed", "unsigned")[series_no % 2])
                if series_no == 0:
                    bleeds = True
                elif series_no == 1:
                    bleeds = False
                else:
                    bleeds = rng.uniform() < 0.4
                rows = _write_series(rng, folder, patient, length, h, w,
                                     style, bleeds, used)
                if split == "train":
                    train_rows.extend(rows)
                else:
                    test_ids.extend(image_id for image_id, _ in rows)
                series_no += 1
                done += length
    order = rng.permutation(len(train_rows))
    lines = ["ID,Label"]
    duplicated = {train_rows[i][0] for i in order[:2]}
    for i in order:
        image_id, labels = train_rows[i]
        block = [f"{image_id}_{c},{v}" for c, v in zip(CLASSES, labels)]
        lines.extend(block)
        if image_id in duplicated:
            lines.extend(block)
    write_lines(os.path.join(out_dir, TRAIN_CSV), lines)
    write_lines(os.path.join(out_dir, SAMPLE_SUBMISSION),
                 ["ID,Label"] + [f"{i}_{c},0.5" for i in sorted(test_ids)
                                 for c in CLASSES])


def _new_id(rng, used):
    while True:
        image_id = f"ID_{_hex(rng, 9)}"
        if image_id not in used:
            used.add(image_id)
            return image_id


def _write_series(rng, folder, patient, length, h, w, style, bleeds,
                  used):
    """Writes one series' DICOMs; returns [(image id, 6 labels)]."""
    study, series = f"ID_{_hex(rng, 10)}", f"ID_{_hex(rng, 10)}"
    z0, step = float(rng.uniform(-50, 150)), float(rng.choice([5.0, 4.5]))
    subtypes = ()
    if bleeds:
        subtypes = tuple(sorted(rng.choice(5, int(rng.integers(1, 3)),
                                           replace=False)))
        run = int(rng.integers(max(1, length // 3), length + 1))
        start = int(rng.integers(0, length - run + 1))
    multi = rng.uniform() < 0.5
    side = float(rng.choice([-1, 1]))  # the bleeding side
    rows = []
    for i in range(length):
        present = bleeds and start <= i < start + run
        labels = [0] * len(CLASSES)
        for k in subtypes if present else ():
            labels[k] = 1
        labels[-1] = int(any(labels[:-1]))
        hu, fov = _head_slice(rng, h, w, i / max(length - 1, 1),
                              subtypes if present else (), side)
        image_id = _new_id(rng, used)
        tags = dict(
            sop_class_uid=dicom.CT_IMAGE_STORAGE, sop_instance_uid=image_id,
            Modality="CT", PatientID=patient, StudyInstanceUID=study,
            SeriesInstanceUID=series, StudyID="", InstanceNumber=str(i + 1),
            ImagePositionPatient=["-125.000000", f"{-120.5 + 0.3 * i:.6f}",
                                  f"{z0 + step * i:.6f}"],
            ImageOrientationPatient=["1", "0", "0", "0", "1", "0"],
            SamplesPerPixel=1, PixelSpacing=["0.488281", "0.488281"],
            WindowCenter=["36", "36"] if multi else "30",
            WindowWidth=["80", "80"] if multi else "80",
            RescaleSlope="1.0")
        if style == "signed":
            stored = np.where(fov, hu + 1024, -2000).astype(np.int16)
            tags.update(RescaleIntercept="-1024.0")
        elif style == "unsigned":
            stored = np.clip(hu + 1024, 0, 4095).astype(np.uint16)
            tags.update(RescaleIntercept="-1024.0", bits_stored=12)
        else:  # the wrapped 12-bit files: HU = ((p + 1000) % 4096) - 1000
            stored = np.mod(np.clip(hu, -1000, 3095), 4096).astype(np.uint16)
            tags.update(RescaleIntercept="1.0", bits_stored=12)
        dicom.write(os.path.join(folder, f"{image_id}.dcm"), stored, **tags)
        rows.append((image_id, labels))
    return rows


def _ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _head_slice(rng, h, w, t, subtypes, side):
    """(int HU (h, w), field-of-view mask) of an axial head slice at
    relative height t in [0, 1], with blood of the given subtypes on the
    given side (-1 left, 1 right)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2, w / 2
    scale = 1.0 - 0.35 * abs(t - 0.4)  # smaller towards the vertex
    ry, rx = 0.42 * h * scale, 0.34 * w * scale
    bone = max(1.5, 0.04 * min(h, w))
    hu = np.full((h, w), -1000.0)
    head = _ellipse(yy, xx, cy, cx, ry, rx)
    brain = _ellipse(yy, xx, cy, cx, ry - bone, rx - bone)
    hu[head] = 1200 + rng.normal(0, 60, (h, w))[head]
    hu[brain] = 32 + rng.normal(0, 3, (h, w))[brain]
    vent = (_ellipse(yy, xx, cy - 0.05 * h, cx - 0.06 * w, 0.09 * h * scale,
                     0.03 * w * scale)
            | _ellipse(yy, xx, cy - 0.05 * h, cx + 0.06 * w,
                       0.09 * h * scale, 0.03 * w * scale))
    hu[vent] = 6
    for k in subtypes:
        if k == 0:    # epidural: lens against the skull
            blood = _ellipse(yy, xx, cy - 0.1 * h, cx + side * (rx - bone),
                             0.16 * h * scale, 0.07 * w) & brain
        elif k == 1:  # intraparenchymal: round blob
            blood = _ellipse(yy, xx, cy + 0.12 * h, cx + side * 0.15 * w,
                             0.07 * h, 0.07 * w)
        elif k == 2:  # intraventricular: fills the ventricles
            blood = vent
        elif k == 3:  # subarachnoid: thin lines in the sulci
            ring = brain & ~_ellipse(yy, xx, cy, cx, ry - 2.5 * bone,
                                     rx - 2.5 * bone)
            blood = ring & (np.sin(np.arctan2(yy - cy, xx - cx) * 9) > 0.6)
        else:         # subdural: crescent along the skull
            blood = brain & ~_ellipse(yy, xx, cy, cx - side * 0.03 * w,
                                      ry - bone, rx - bone - 0.04 * w)
        hu[blood] = 75 + rng.normal(0, 3, (h, w))[blood]
    fov = ((yy - cy) ** 2 + (xx - cx) ** 2) <= (0.5 * min(h, w)) ** 2
    hu = np.where(fov, hu, -1000.0)
    return np.rint(hu).astype(np.int64), fov
