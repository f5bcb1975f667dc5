"""RSNA 2024 Lumbar Spine Degenerative Classification -> records (plugin).

Layout of `cfg.data.raw_dir` (as on Kaggle):

    train.csv                         study_id + 25 `<condition>_<level>`
                                      columns: Normal/Mild, Moderate, Severe
                                      or empty
    train_label_coordinates.csv       study_id,series_id,instance_number,
                                      condition,level,x,y
    train_series_descriptions.csv     study_id,series_id,series_description
    train_images/<study>/<series>/<instance>.dcm    MR, uint16, no rescale
    test_series_descriptions.csv, test_images/...
    sample_submission.csv             row_id,normal_mild,moderate,severe

One record per study. For each series type (`SERIES_TYPES`) the series
with the most label coordinates (then the lowest id) is read in
InstanceNumber order, `cfg.data.stack_slices[type]` slices are picked
evenly (`np.linspace`, rounded; fewer slices repeat), resized to
`cfg.data.image_size` and scaled to 8 bits per series (0 .. the 99.5th
percentile). A study without a series type gets black slices.

| key             | value                                                 |
|-----------------|-------------------------------------------------------|
| `image/id`      | study_id                                              |
| `image/encoded` | 8-bit PNGs: the Sagittal T1, then Sagittal T2/STIR,   |
|                 | then Axial T2 slices (stacked as channels)            |
| `series/id`     | per slice, `<series type>/<series_id>` (no id when    |
|                 | the study lacks that type)                            |
| `labels`        | 25 severities (0 Normal/Mild, 1 Moderate, 2 Severe,   |
|                 | -1 missing), then 25 x (stack index, x / width,       |
|                 | y / height) of the label coordinate (-1 when none)    |
| `group`         | study_id                                              |

The stack index of a coordinate counts from the start of its series
type's block, at the picked slice nearest to its instance.

Example:

>>> from tfrecords_tools.competitions import rsna_lumbar
>>> rsna_lumbar.make_sample("/tmp/lumbar", n=12, size=64)  # doctest: +SKIP
"""

import io
import os

import numpy as np
from PIL import Image

from tfrecords_tools import dicom
from tfrecords_tools import schema
from tfrecords_tools.items import BadInput
from tfrecords_tools.items import Item
from tfrecords_tools.readers import csv_table
from tfrecords_tools.readers import dicom as dicom_reader
from tfrecords_tools.synthetic import sample_size
from tfrecords_tools.synthetic import write_lines

CONDITIONS = ("spinal_canal_stenosis", "left_neural_foraminal_narrowing",
              "right_neural_foraminal_narrowing",
              "left_subarticular_stenosis", "right_subarticular_stenosis")
LEVELS = ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")
CLASSES = tuple(f"{c}_{lv}" for c in CONDITIONS for lv in LEVELS)
SEVERITIES = ("Normal/Mild", "Moderate", "Severe")
SUBMISSION_COLUMNS = ("normal_mild", "moderate", "severe")
# (config key of cfg.data.stack_slices, series_description)
SERIES_TYPES = (("sagittal_t1", "Sagittal T1"),
                ("sagittal_t2_stir", "Sagittal T2/STIR"),
                ("axial_t2", "Axial T2"))
# The series type where each condition is read (the seed's split).
CONDITION_SERIES = {"spinal_canal_stenosis": "sagittal_t2_stir",
                    "left_neural_foraminal_narrowing": "sagittal_t1",
                    "right_neural_foraminal_narrowing": "sagittal_t1",
                    "left_subarticular_stenosis": "axial_t2",
                    "right_subarticular_stenosis": "axial_t2"}
KIND = "classification"
FOLD_STRATEGY = "grouped"
KAGGLE_SLUG = "rsna-2024-lumbar-spine-degenerative-classification"
DEFAULT_SIZE = (512, 512)
# The kernel budget counts studies (25 submission rows each); the hidden
# test's study count and the kernel limit are not recorded.
TEST_UNIT = "study"
DEFAULT_N = 12
MISSING = -1
# The `cfg.data` keys the records depend on (stacks resized at conversion).
CONFIG_KEYS = ("stack_slices", "image_size")
TRAIN_CSV = "train.csv"
COORDINATES_CSV = "train_label_coordinates.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"
DESCRIPTIONS = {"train": "train_series_descriptions.csv",
                "test": "test_series_descriptions.csv"}
IMAGE_DIRS = {"train": "train_images", "test": "test_images"}


def _report(error, on_error):
    if on_error is None:
        raise error
    on_error(error)


def condition_key(text: str) -> str:
    """`"Left Neural Foraminal Narrowing"` -> `"left_neural_..."`."""
    return text.strip().lower().replace(" ", "_")


def level_key(text: str) -> str:
    """`"L1/L2"` -> `"l1_l2"`."""
    return text.strip().lower().replace("/", "_")


# --- reading -------------------------------------------------------------

def _read_severities(path):
    rows = csv_table.read_rows(path, ("study_id",) + CLASSES)
    out = {}
    for line, row in rows:
        study = row["study_id"]
        if not study.isdigit():
            raise BadInput(path, f"row {line}: study_id must be an integer."
                                 f" Received: {study!r}")
        values = []
        for name in CLASSES:
            v = row[name]
            if v == "":
                values.append(MISSING)
            elif v in SEVERITIES:
                values.append(SEVERITIES.index(v))
            else:
                raise BadInput(path, f"row {line}: {name} must be one of "
                                     f"{', '.join(SEVERITIES)} or empty. "
                                     f"Received: {v!r}", study)
        if study in out:
            raise BadInput(path, f"row {line}: duplicate study_id {study}",
                           study)
        out[study] = (tuple(values), line)
    return out


def _read_descriptions(path):
    rows = csv_table.read_rows(path, ("study_id", "series_id",
                                      "series_description"))
    names = [d for _, d in SERIES_TYPES]
    out = {}
    for line, row in rows:
        study, series = row["study_id"], row["series_id"]
        if not (study.isdigit() and series.isdigit()):
            raise BadInput(path, f"row {line}: study_id and series_id must "
                                 "be integers", study)
        desc = row["series_description"]
        if desc not in names:
            raise BadInput(path, f"row {line}: series_description must be "
                                 f"one of {', '.join(names)}. Received: "
                                 f"{desc!r}", study)
        kind = SERIES_TYPES[names.index(desc)][0]
        out.setdefault(study, []).append((kind, series, line))
    return out


def _read_coordinates(path):
    """{study: {class index: (series, instance, x, y, line)}}."""
    if not os.path.isfile(path):
        return {}
    rows = csv_table.read_rows(path, ("study_id", "series_id",
                                      "instance_number", "condition",
                                      "level", "x", "y"))
    out = {}
    for line, row in rows:
        name = f"{condition_key(row['condition'])}_{level_key(row['level'])}"
        if name not in CLASSES:
            raise BadInput(path, f"row {line}: unknown condition/level "
                                 f"{row['condition']!r} {row['level']!r}",
                           row["study_id"])
        try:
            value = (row["series_id"], int(row["instance_number"]),
                     float(row["x"]), float(row["y"]), line)
        except ValueError:
            raise BadInput(path, f"row {line}: instance_number, x and y "
                                 "must be numbers", row["study_id"]) from None
        out.setdefault(row["study_id"], {})[CLASSES.index(name)] = value
    return out


def instance_files(folder: str) -> list:
    """[(instance number, path)] of a series folder, in numeric order."""
    found = []
    for name in os.listdir(folder):
        stem, ext = os.path.splitext(name)
        if ext.lower() == ".dcm" and stem.isdigit():
            found.append((int(stem), os.path.join(folder, name)))
    return sorted(found)


def list_items(cfg, split: str = "train", on_error=None) -> list:
    """One `Item` per study of `split`, sorted by study_id.

    Train: the studies of train.csv; test: those of
    test_series_descriptions.csv. Each study's series come from the
    series descriptions; every listed series folder must hold DICOMs.

    Raises:
        BadInput: a bad CSV row, a study without series or a missing or
            empty series folder (naming the CSV and row), unless
            `on_error` collects it.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'. "
                         f"Received: {split!r}")
    raw = cfg.data.raw_dir
    desc_path = os.path.join(raw, DESCRIPTIONS[split])
    if split == "test" and not os.path.isfile(desc_path):
        return []
    descriptions = _read_descriptions(desc_path)
    if split == "train":
        csv_path = os.path.join(raw, TRAIN_CSV)
        severities = _read_severities(csv_path)
        coordinates = _read_coordinates(os.path.join(raw, COORDINATES_CSV))
        studies = {s: line for s, (_, line) in severities.items()}
    else:
        csv_path, severities, coordinates = desc_path, {}, {}
        studies = {s: rows[0][2] for s, rows in descriptions.items()}
    image_dir = os.path.join(raw, IMAGE_DIRS[split])
    items = []
    for study in sorted(studies, key=int):
        try:
            item = _study_item(study, split, studies[study], csv_path,
                               desc_path, image_dir, descriptions,
                               severities, coordinates)
        except BadInput as e:
            _report(e, on_error)
            continue
        items.append(item)
    return items


def _study_item(study, split, line, csv_path, desc_path, image_dir,
                descriptions, severities, coordinates):
    series_rows = descriptions.get(study)
    if not series_rows:
        raise BadInput(csv_path, f"row {line}: study {study} has no series "
                                 f"in {os.path.basename(desc_path)}", study)
    coords = coordinates.get(study, {})
    chosen = {}
    for kind, series, row in series_rows:
        folder = os.path.join(image_dir, study, series)
        files = instance_files(folder) if os.path.isdir(folder) else []
        if not files:
            where = os.path.relpath(folder, os.path.dirname(image_dir))
            raise BadInput(desc_path, f"row {row}: no DICOM files in "
                                      f"{where}", study)
        hits = sum(1 for c in coords.values() if c[0] == series)
        rank = (-hits, int(series))
        if kind not in chosen or rank < chosen[kind][0]:
            chosen[kind] = (rank, series, tuple(files))
    series = {kind: (chosen[kind][1], chosen[kind][2]) for kind in chosen}
    paths = tuple(p for kind, _ in SERIES_TYPES if kind in series
                  for _, p in series[kind][1])
    data = {"series": series, "coordinates": coords}
    if split == "test":
        return Item(id=study, paths=paths, group=study, data=data)
    values = severities[study][0]
    data["severity"] = values
    severe = max((v for v in values[:len(LEVELS)]), default=0)
    return Item(id=study, paths=paths,
                labels=tuple(int(v >= 1) for v in values),
                group=study, strata=str(max(severe, 0)), data=data)


def pick_slices(count: int, wanted: int) -> np.ndarray:
    """Indices of `wanted` slices spread evenly over `count`.

    Example:

    >>> pick_slices(5, 3).tolist(), pick_slices(2, 4).tolist()
    ([0, 2, 4], [0, 0, 1, 1])
    """
    if count < 1:
        raise ValueError(f"a series needs at least one slice. "
                         f"Received: {count}")
    return np.rint(np.linspace(0, count - 1, wanted)).astype(np.int64)


def to_uint8(stack) -> np.ndarray:
    """float (N, H, W) -> uint8 scaled from 0 to the 99.5th percentile."""
    stack = np.asarray(stack, np.float32)
    top = float(np.percentile(stack, 99.5)) if stack.size else 1.0
    lo = min(float(stack.min()), 0.0) if stack.size else 0.0
    scaled = (stack - lo) * (255.0 / max(top - lo, 1e-6))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _png(array):
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array), mode="L").save(buf, "PNG")
    return buf.getvalue()


def _resize(image, size):
    h, w = size
    if image.shape == (h, w):
        return np.asarray(image, np.float32)
    pil = Image.fromarray(np.asarray(image, np.float32), mode="F")
    return np.asarray(pil.resize((w, h), Image.BILINEAR))


def encode_item(item: Item, cfg) -> dict:
    """Reads, resamples, resizes and stores the study's three stacks.

    Raises:
        BadInput: a missing, truncated or corrupt DICOM, naming it.
    """
    h, w = (int(v) for v in cfg.data.image_size)
    pngs, slice_series, coords = [], [], {}
    for kind, _ in SERIES_TYPES:
        wanted = int(cfg.data.stack_slices[kind])
        if kind not in item.data["series"]:
            pngs.extend([_png(np.zeros((h, w), np.uint8))] * wanted)
            slice_series.extend([f"{kind}/"] * wanted)
            continue
        series_id, files = item.data["series"][kind]
        pick = pick_slices(len(files), wanted)
        read = {}
        for i in sorted(set(pick.tolist())):
            read[i] = dicom_reader.read_hu(files[i][1], item.id)
        stack = to_uint8(np.stack([_resize(read[i], (h, w)) for i in pick]))
        pngs.extend(_png(v) for v in stack)
        slice_series.extend([f"{kind}/{series_id}"] * wanted)
        numbers = np.array([n for n, _ in files])
        for k, (series, instance, x, y, _) in item.data[
                "coordinates"].items():
            if series != series_id:
                continue
            position = min(int(np.searchsorted(numbers, instance)),
                           len(numbers) - 1)
            index = int(np.argmin(np.abs(pick - position)))
            rows, cols = read[int(pick[index])].shape
            coords[k] = (float(index), x / cols, y / rows)
    features = {
        schema.ID: item.id,
        schema.GROUP: item.group,
        schema.SERIES: slice_series,
        schema.IMAGE: pngs,
        schema.IMAGE_FORMAT: "png",
        schema.HEIGHT: h,
        schema.WIDTH: w,
        schema.CHANNELS: len(pngs),
    }
    if "severity" in item.data:
        flat = []
        for k in range(len(CLASSES)):
            flat.extend(coords.get(k, (MISSING, MISSING, MISSING)))
        features[schema.LABELS] = ([float(v) for v in item.data["severity"]]
                                   + flat)
    return features


def split_labels(values) -> tuple:
    """`labels` of a record -> (severity (25,) int, coordinates (25, 3))."""
    values = np.asarray(values, np.float32)
    n = len(CLASSES)
    return (values[:n].astype(np.int64),
            values[n:n + 3 * n].reshape(n, 3))


def draw(features: dict) -> np.ndarray:
    """The three stacks as strips (one row per series type, a tile per
    slice); label coordinates are marked with a red dot."""
    from tfrecords_tools.readers import image_file

    images = [image_file.decode_array(d) for d in features[schema.IMAGE]]
    kinds = [(v.decode() if isinstance(v, bytes) else v).split("/")[0]
             for v in features[schema.SERIES]]
    h, w = images[0].shape[:2]
    coords = None
    if features.get(schema.LABELS):
        coords = split_labels(features[schema.LABELS])[1]
    blocks = [[i for i, k in enumerate(kinds) if k == kind]
              for kind, _ in SERIES_TYPES]
    width = max(len(b) for b in blocks) * w
    rows = []
    for (kind, _), block in zip(SERIES_TYPES, blocks):
        if not block:
            continue
        tiles = [np.repeat(images[i][..., None], 3, -1) for i in block]
        for k, name in enumerate(CLASSES):
            condition = name[:-len(LEVELS[0]) - 1]
            if (coords is None or CONDITION_SERIES[condition] != kind
                    or coords[k, 0] < 0):
                continue
            y = int(np.clip(coords[k, 2] * h, 1, h - 2))
            x = int(np.clip(coords[k, 1] * w, 1, w - 2))
            tiles[int(coords[k, 0])][y - 1:y + 2, x - 1:x + 2] = (255, 40, 40)
        row = np.concatenate(tiles, axis=1)
        rows.append(np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))))
    return np.concatenate(rows, axis=0)


# --- sample --------------------------------------------------------------

# Studies are healthy, moderately or severely degenerated (probabilities
# _GRADE_P); each grade has its severity frequencies (Normal/Mild,
# Moderate, Severe), so labels correlate within a study as in the real
# data. Overall: ~70% Normal/Mild, ~20% Moderate, ~10% Severe.
_GRADE_P = (0.6, 0.25, 0.15)
_SEVERITY_P = ((0.92, 0.06, 0.02), (0.45, 0.45, 0.10), (0.25, 0.35, 0.40))
_MISSING_P = 0.03
_DISC_T2 = (200.0, 120.0, 50.0)  # disc intensity on T2 by study grade
# Level y positions (fraction of the height) on sagittal images.
_LEVEL_Y = (0.22, 0.36, 0.50, 0.64, 0.78)
# Drawn intensity of a structure by severity: open, narrowed, blocked.
_SEVERITY_VALUE = (230.0, 120.0, 15.0)
_SLICE_RANGE = {"sagittal_t1": (8, 18), "sagittal_t2_stir": (8, 18),
                "axial_t2": (10, 31)}


def _size(size):
    return sample_size(size, DEFAULT_SIZE)


def make_sample(out_dir: str, n: int = None, size=None,
                seed: int = 0) -> None:
    """Writes a tiny RSNA 2024 lumbar spine dataset in Kaggle's layout.

    Args:
        out_dir: the folder to create (files are overwritten).
        n: training studies. Defaults to `12`; test studies `n // 4` (at
            least 2).
        size: `(height, width)` of the sagittal images or an int; axial
            series are 1x or 1.25x that size. Defaults to `(512, 512)`.
        seed: same seed, same bytes.

    Each study has a Sagittal T1 and a Sagittal T2/STIR series of 8 to 17
    slices and an Axial T2 series of 10 to 30, instances numbered from 1
    (so `10.dcm` sorts before `2.dcm` as text). Severity is drawn as the
    brightness of the structure at its level: bright open (Normal/Mild),
    gray (Moderate), black (Severe): the canal in the middle Sagittal
    T2/STIR slices, the left/right foramina in the first/last third of
    the Sagittal T1 slices, the left/right subarticular recesses in the
    level's fifth of the Axial T2 slices (patient left on image right).
    Severities correlate within a study (healthy, moderate and severe
    studies), whose discs look bright, gray or dark on Sagittal T2/STIR.
    About 3% of the labels are missing (empty, no coordinate row).

    Example:

    >>> make_sample("/tmp/lumbar", n=12, size=64, seed=0)  # doctest: +SKIP
    """
    n = DEFAULT_N if n is None else int(n)
    h, w = _size(size)
    if n < 2 or h < 32 or w < 32:
        raise ValueError(f"need n >= 2 and a size of at least 32x32. "
                         f"Received: n={n}, size={h}x{w}")
    rng = np.random.default_rng(seed)
    n_test = max(n // 4, 2)
    studies = sorted(set(int(v) for v in rng.integers(
        4_000_000, 4_290_000_000, 4 * (n + n_test))))
    studies = [studies[i] for i in rng.permutation(len(studies))[:n + n_test]]
    train_rows, coord_rows, series_rows = [], [], {"train": [], "test": []}
    sub_rows = []
    for j, study in enumerate(studies):
        split = "train" if j < n else "test"
        grade = int(rng.choice(3, p=_GRADE_P))
        severity = rng.choice(3, size=len(CLASSES), p=_SEVERITY_P[grade])
        missing = rng.uniform(size=len(CLASSES)) < _MISSING_P
        for kind, description in SERIES_TYPES:
            series = int(rng.integers(100_000, 4_290_000_000))
            lo, hi = _SLICE_RANGE[kind]
            count = int(rng.integers(lo, hi))
            shape = (h, w) if kind != "axial_t2" else (
                (h, w) if rng.uniform() < 0.5 else (h * 5 // 4, w * 5 // 4))
            folder = os.path.join(out_dir, IMAGE_DIRS[split], str(study),
                                  str(series))
            os.makedirs(folder, exist_ok=True)
            marks = _write_series(rng, folder, study, series, kind,
                                  description, count, shape, severity,
                                  grade)
            series_rows[split].append(f"{study},{series},{description}")
            if split == "train":
                for k, (instance, x, y) in sorted(marks.items()):
                    if missing[k]:
                        continue
                    condition, level = _names(k)
                    coord_rows.append((study, series, instance, condition,
                                       level, x, y))
        if split == "train":
            values = ["" if missing[k] else SEVERITIES[int(severity[k])]
                      for k in range(len(CLASSES))]
            train_rows.append((study, values))
        else:
            sub_rows.extend(f"{study}_{name},0.333333,0.333333,0.333333"
                            for name in CLASSES)
    train_rows.sort()
    write_lines(os.path.join(out_dir, TRAIN_CSV),
                 [",".join(("study_id",) + CLASSES)]
                 + [",".join([str(s)] + v) for s, v in train_rows])
    coord_rows.sort(key=lambda r: (r[0], CONDITIONS.index(
        condition_key(r[3])), r[4]))
    write_lines(os.path.join(out_dir, COORDINATES_CSV),
                 ["study_id,series_id,instance_number,condition,level,x,y"]
                 + [f"{a},{b},{c},{d},{e},{x:.6f},{y:.6f}"
                    for a, b, c, d, e, x, y in coord_rows])
    for split in ("train", "test"):
        write_lines(os.path.join(out_dir, DESCRIPTIONS[split]),
                     ["study_id,series_id,series_description"]
                     + series_rows[split])
    write_lines(os.path.join(out_dir, SAMPLE_SUBMISSION),
                 ["row_id," + ",".join(SUBMISSION_COLUMNS)] + sub_rows)


def _names(k):
    """Class index -> ("Left Neural Foraminal Narrowing", "L1/L2")."""
    condition = CONDITIONS[k // len(LEVELS)]
    level = LEVELS[k % len(LEVELS)]
    return (condition.replace("_", " ").title(),
            level.upper().replace("_", "/"))


def _disk(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _write_series(rng, folder, study, series, kind, description, count,
                  shape, severity, grade):
    """Writes one series; returns {class index: (instance, x, y)} of the
    slice and point where each of its conditions is drawn."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    marks = {}
    for s in range(count):
        image = 40 + 15 * rng.normal(size=(h, w))
        if kind == "axial_t2":
            level = min(s * len(LEVELS) // count, len(LEVELS) - 1)
            image[_disk(yy, xx, 0.42 * h, 0.5 * w, 0.16 * h, 0.22 * w)] = 90
            image[_disk(yy, xx, 0.62 * h, 0.5 * w, 0.07 * h, 0.07 * w)] = 230
            first = level * count // len(LEVELS)
            last = (level + 1) * count // len(LEVELS) - 1
            for side, condition in ((1, 3), (-1, 4)):  # left on image right
                k = condition * len(LEVELS) + level
                cy, cx = 0.6 * h, 0.5 * w + side * 0.13 * w
                image[_disk(yy, xx, cy, cx, 0.05 * h, 0.05 * w)] = \
                    _SEVERITY_VALUE[int(severity[k])]
                if s == (first + last) // 2:
                    marks[k] = (s + 1, cx, cy)
        else:
            image[(xx > 0.3 * w) & (xx < 0.5 * w)] = 110  # vertebral column
            # Discs: dark on T1; on T2 bright when healthy, darker in
            # degenerated studies (disc desiccation).
            disc = (_DISC_T2[grade] if kind == "sagittal_t2_stir" else 60)
            for y in _LEVEL_Y:
                image[np.abs(yy - y * h) < 0.02 * h] = disc
            third = max(count // 3, 1)
            canal = (xx > 0.55 * w) & (xx < 0.65 * w)
            if kind == "sagittal_t2_stir":
                image[canal] = 230  # CSF
            for level, y in enumerate(_LEVEL_Y):
                cy = y * h
                if kind == "sagittal_t2_stir":
                    cx = 0.6 * w
                    k = level
                    if third <= s < count - third:
                        image[canal & (np.abs(yy - cy) < 0.05 * h)] = \
                            _SEVERITY_VALUE[int(severity[k])]
                    if s == count // 2:
                        marks[k] = (s + 1, cx, cy)
                else:
                    cx = 0.6 * w
                    for condition, lo, hi, mid in (
                            (1, 0, third, third // 2),
                            (2, count - third, count,
                             count - third + third // 2)):
                        k = condition * len(LEVELS) + level
                        if lo <= s < hi:
                            image[_disk(yy, xx, cy, cx, 0.05 * h,
                                        0.06 * w)] = \
                                _SEVERITY_VALUE[int(severity[k])]
                        if s == mid:
                            marks[k] = (s + 1, cx, cy)
        pixels = np.clip(np.rint(image * 6), 0, 4095).astype(np.uint16)
        sagittal = kind != "axial_t2"
        dicom.write(
            os.path.join(folder, f"{s + 1}.dcm"), pixels,
            sop_class_uid=dicom.MR_IMAGE_STORAGE,
            sop_instance_uid=f"1.2.826.0.1.3680043.8.498.{study}.{series}."
                             f"{s + 1}",
            bits_stored=12, Modality="MR", PatientID=str(study),
            StudyInstanceUID=str(study), SeriesInstanceUID=str(series),
            SeriesDescription=description, InstanceNumber=str(s + 1),
            SliceThickness="4.0", PixelSpacing=["0.6875", "0.6875"],
            ImagePositionPatient=(
                [f"{-20.0 + 4.0 * s:.4f}", "-150.0", "100.0"] if sagittal
                else ["-120.0", "-110.0", f"{80.0 - 4.0 * s:.4f}"]),
            ImageOrientationPatient=(["0", "1", "0", "0", "0", "-1"]
                                     if sagittal
                                     else ["1", "0", "0", "0", "1", "0"]))
    return marks
