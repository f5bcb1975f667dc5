"""SIIM-ACR Pneumothorax Segmentation -> records (plugin, see `__init__`).

Layout of `cfg.data.raw_dir` (stage 1, as on Kaggle):

    train-rle.csv             `ImageId, EncodedPixels` (note the space): one
                              row per pneumothorax region, relative
                              column-major RLE, ` -1` for none
    dicom-images-train/<study>/<series>/<ImageId>.dcm   CR, MONOCHROME2,
                              8-bit, 1024 x 1024; PatientID, PatientSex,
                              PatientAge, ViewPosition in the header
    dicom-images-test/<study>/<series>/<ImageId>.dcm
    sample_submission.csv     ImageId,EncodedPixels

One record per image: an 8-bit grayscale PNG of the DICOM pixels, the
union of the image's RLE rows as a one-class mask, `labels` = [has mask],
`group` = PatientID. Folds are grouped by patient and stratified by
has-mask. DICOMs without a row in train-rle.csv carry no label and are
left out.

Example:

>>> from tfrecords_tools.competitions import siim
>>> siim.make_sample("/tmp/siim", n=12, size=(64, 64))  # doctest: +SKIP
>>> sorted(os.listdir("/tmp/siim"))                     # doctest: +SKIP
['dicom-images-test', 'dicom-images-train', 'sample_submission.csv',
 'train-rle.csv']
"""

import io
import os

import numpy as np
from PIL import Image

from tfrecords_tools import dicom
from tfrecords_tools import draw as draw_lib
from tfrecords_tools import encode
from tfrecords_tools import schema
from tfrecords_tools.items import BadInput
from tfrecords_tools.items import Item
from tfrecords_tools.readers import csv_table
from tfrecords_tools.readers import dicom as dicom_reader
from tfrecords_tools.readers import rle_text
from tfrecords_tools.synthetic import sample_size
from tfrecords_tools.synthetic import write_lines

CLASSES = ("pneumothorax",)
KIND = "segmentation"
FOLD_STRATEGY = "grouped"
KAGGLE_SLUG = "siim-acr-pneumothorax-segmentation"
DEFAULT_SIZE = (1024, 1024)
DEFAULT_N = 40
# The records depend on no `cfg.data` key besides the folds and shards.
CONFIG_KEYS = ()
TRAIN_CSV = "train-rle.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"
TRAIN_DIR = "dicom-images-train"
TEST_DIR = "dicom-images-test"
EMPTY = "-1"


def _report(error, on_error):
    if on_error is None:
        raise error
    on_error(error)


# --- reading -------------------------------------------------------------

def list_items(cfg, split: str = "train", on_error=None,
               workers: int = 1) -> list:
    """One `Item` per image of `split`, sorted by ImageId.

    The train headers are read in `workers` processes and cached in
    `records_dir/.cache/` (per file, by size and mtime).

    Train: the ImageIds of train-rle.csv (rows of one image are united);
    each must have a DICOM under `dicom-images-train/`, whose header gives
    the PatientID (the fold group). Test: the ImageIds of
    sample_submission.csv (or every DICOM of `dicom-images-test/`).

    Raises:
        BadInput: naming the CSV and row (bad RLE, missing DICOM) or the
            DICOM (unreadable header), unless `on_error` collects it.
    """
    raw = cfg.data.raw_dir
    if split == "train":
        return _train_items(cfg, on_error, workers)
    if split == "test":
        return _test_items(raw, on_error)
    raise ValueError(f"split must be 'train' or 'test'. Received: {split!r}")


def _train_items(cfg, on_error, workers):
    raw = cfg.data.raw_dir
    csv_path = os.path.join(raw, TRAIN_CSV)
    rows = csv_table.read_rows(csv_path, ("ImageId", "EncodedPixels"))
    files = dicom_reader.index_folder(os.path.join(raw, TRAIN_DIR))
    rles, lines, bad = {}, {}, set()
    for line, row in rows:
        image_id, rle = row["ImageId"], row["EncodedPixels"]
        if image_id in bad:
            continue
        try:
            if not image_id:
                raise BadInput(csv_path, f"row {line}: empty ImageId")
            try:
                rle_text.parse_runs(rle, "relative")
            except ValueError as e:
                raise BadInput(csv_path, f"row {line}: {e}",
                               image_id) from None
            if image_id not in files:
                raise BadInput(csv_path, f"row {line}: image {TRAIN_DIR}/"
                                         f".../{image_id}.dcm not found",
                               image_id)
        except BadInput as e:
            bad.add(image_id)
            rles.pop(image_id, None)
            _report(e, on_error)
            continue
        rles.setdefault(image_id, [])
        lines.setdefault(image_id, [])
        if rle not in ("", EMPTY):
            rles[image_id].append(rle)
            lines[image_id].append(line)
    headers = dicom_reader.read_headers(
        [files[i] for i in sorted(rles)], ("patient_id",), workers=workers,
        cache_path=os.path.join(cfg.data.records_dir, schema.CACHE_DIR,
                                "siim-train-headers.json.gz"),
        root=raw)
    items = []
    for image_id in sorted(rles):
        path = files[image_id]
        meta = headers[path]
        if isinstance(meta, BadInput):
            _report(BadInput(meta.path, meta.reason, image_id), on_error)
            continue
        positive = int(bool(rles[image_id]))
        items.append(Item(
            id=image_id, paths=(path,), labels=(positive,),
            group=meta["patient_id"] or image_id, strata=str(positive),
            data={"rles": tuple(rles[image_id]), "csv": csv_path,
                  "rows": tuple(lines[image_id])}))
    return items


def _test_items(raw, on_error):
    files = dicom_reader.index_folder(os.path.join(raw, TEST_DIR))
    sub_path = os.path.join(raw, SAMPLE_SUBMISSION)
    if os.path.isfile(sub_path):
        ids = {}
        for line, row in csv_table.read_rows(sub_path, ("ImageId",)):
            ids.setdefault(row["ImageId"], line)
    else:
        ids = {image_id: None for image_id in files}
    items = []
    for image_id in sorted(ids):
        if image_id not in files:
            _report(BadInput(sub_path, f"row {ids[image_id]}: image "
                                       f"{TEST_DIR}/.../{image_id}.dcm not "
                                       "found", image_id), on_error)
            continue
        items.append(Item(id=image_id, paths=(files[image_id],)))
    return items


def to_uint8(pixels) -> np.ndarray:
    """DICOM intensities -> uint8: as is when in 0..255, else min-max."""
    pixels = np.asarray(pixels, np.float32)
    lo, hi = float(pixels.min()), float(pixels.max())
    if lo >= 0 and hi <= 255:
        return np.rint(pixels).astype(np.uint8)
    scaled = (pixels - lo) * (255.0 / max(hi - lo, 1e-6))
    return np.rint(scaled).astype(np.uint8)


def png_bytes(array) -> bytes:
    """uint8 (H, W) / (H, W, C) or uint16 (H, W) -> PNG bytes."""
    buf = io.BytesIO()
    array = np.ascontiguousarray(array)
    if array.dtype == np.uint16:
        Image.fromarray(array.astype(np.uint16)).save(buf, "PNG")
    else:
        Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def encode_item(item: Item, cfg) -> dict:
    """Reads the DICOM into an 8-bit PNG and unites the RLE rows.

    Raises:
        BadInput: a missing/corrupt/truncated DICOM (naming it), or an RLE
            run past the image (naming train-rle.csv and the row).
    """
    path = item.paths[0]
    image = to_uint8(dicom_reader.read_hu(path, item.id))
    h, w = image.shape
    features = {
        schema.ID: item.id,
        schema.IMAGE: [png_bytes(image)],
        schema.IMAGE_FORMAT: "png",
        schema.HEIGHT: h,
        schema.WIDTH: w,
        schema.CHANNELS: 1,
    }
    if item.group is not None:
        features[schema.GROUP] = item.group
    if item.labels:
        mask = np.zeros((h, w), bool)
        for rle, row in zip(item.data["rles"], item.data["rows"]):
            try:
                mask |= rle_text.runs_to_mask(
                    *rle_text.parse_runs(rle, "relative"), (h, w))
            except ValueError as e:
                raise BadInput(item.data["csv"], f"row {row}: {e}",
                               item.id) from None
        features[schema.MASK] = encode.pack_mask(mask[..., None])
        features[schema.LABELS] = [float(mask.any())]
    return features


def draw(features: dict) -> np.ndarray:
    """The X-ray with the pneumothorax overlaid in red."""
    return draw_lib.default_draw(features, len(CLASSES))


# --- sample --------------------------------------------------------------

_ROOT = "1.2.276.0.7230010.3.1"


def relative_rle(mask) -> str:
    """A (H, W) mask -> SIIM's relative column-major RLE (`-1` if empty).

    Example:

    >>> m = np.zeros((3, 4), bool); m[1:, 0] = True; m[1, 3] = True
    >>> relative_rle(m)
    '1 2 7 1'
    """
    flat = np.asarray(mask, bool).T.reshape(-1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [0]])))
    starts, ends = edges[0::2], edges[1::2]
    if starts.size == 0:
        return EMPTY
    gaps = starts - np.concatenate([[0], ends[:-1]])
    return " ".join(f"{g} {n}" for g, n in zip(gaps, ends - starts))


def _size(size):
    return sample_size(size, DEFAULT_SIZE)


def _uid(kind, patient, image, stamp):
    return f"{_ROOT}.{kind}.8323329.{image}.{stamp}.{patient}"


def make_sample(out_dir: str, n: int = None, size=None,
                seed: int = 0) -> None:
    """Writes a tiny SIIM-ACR dataset in Kaggle's stage-1 layout.

    Args:
        out_dir: the folder to create (files are overwritten).
        n: training images. Defaults to `40`; test images are `n // 4`
            (at least 2).
        size: `(height, width)` or an int. Defaults to `(1024, 1024)`.
        seed: same seed, same bytes.

    Patients have 1 to 3 images. About a third of the images show a
    pneumothorax: a black region without lung texture at the outer edge of
    a lung, behind a bright pleural line; a few have two regions (two rows
    in train-rle.csv).

    Example:

    >>> make_sample("/tmp/siim", n=12, size=64, seed=0)  # doctest: +SKIP
    """
    n = DEFAULT_N if n is None else int(n)
    h, w = _size(size)
    if n < 2 or h < 16 or w < 16:
        raise ValueError(f"need n >= 2 and a size of at least 16x16. "
                         f"Received: n={n}, size={h}x{w}")
    rng = np.random.default_rng(seed)
    n_test = max(n // 4, 2)
    rows, test_ids = [], []
    index = 0
    image_no = 5000
    while index < n + n_test:
        patient_id = _uuid(rng)
        sex = str(rng.choice(["M", "F"]))
        age = str(int(rng.integers(18, 90)))
        for _ in range(int(rng.integers(1, 4))):
            if index >= n + n_test:
                break
            train = index < n
            image_no += int(rng.integers(1, 50))
            stamp = f"{1517875160 + int(rng.integers(0, 90))}"
            sop = _uid(4, int(rng.integers(100000, 999999)), image_no, stamp)
            study = _uid(2, int(rng.integers(100000, 999999)), image_no,
                         stamp)
            series = _uid(3, int(rng.integers(100000, 999999)), image_no,
                          stamp)
            if train:
                regions = int(rng.choice([0, 1, 2], p=[0.68, 0.22, 0.10]))
                if index < 2:  # both kinds in the tiniest samples
                    regions = index
            else:
                regions = int(rng.integers(0, 2))
            pixels, masks = _chest(rng, h, w, regions)
            folder = os.path.join(out_dir, TRAIN_DIR if train else TEST_DIR,
                                  study, series)
            os.makedirs(folder, exist_ok=True)
            dicom.write(
                os.path.join(folder, f"{sop}.dcm"), pixels,
                sop_class_uid=dicom.SECONDARY_CAPTURE_STORAGE,
                sop_instance_uid=sop, StudyInstanceUID=study,
                SeriesInstanceUID=series, PatientID=patient_id,
                PatientName=patient_id, PatientSex=sex, PatientAge=age,
                Modality="CR", BodyPartExamined="CHEST",
                ViewPosition=str(rng.choice(["PA", "AP"])),
                ConversionType="WSD", SeriesNumber="1", InstanceNumber="1",
                PixelSpacing=[0.168 * 1024 / h, 0.168 * 1024 / w],
                StudyDate="19010101", StudyTime="",
                SpecificCharacterSet="ISO_IR 100")
            if train:
                if masks:
                    rows.extend((sop, relative_rle(m)) for m in masks)
                else:
                    rows.append((sop, EMPTY))
            else:
                test_ids.append(sop)
            index += 1
    write_lines(os.path.join(out_dir, TRAIN_CSV),
                 ["ImageId, EncodedPixels"]
                 + [f"{i}, {r}" for i, r in rows])
    write_lines(os.path.join(out_dir, SAMPLE_SUBMISSION),
                 ["ImageId,EncodedPixels"]
                 + [f"{i},{EMPTY}" for i in test_ids])


def _uuid(rng):
    hexes = "".join(rng.choice(list("0123456789abcdef"), 32))
    return "-".join((hexes[:8], hexes[8:12], hexes[12:16], hexes[16:20],
                     hexes[20:]))


def _ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / max(ry, 0.5)) ** 2 + ((xx - cx) / max(rx, 0.5)) ** 2 \
        <= 1.0


def _smooth_noise(rng, h, w, cells):
    """Low-frequency noise in [-1, 1] from a coarse grid, upsampled."""
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((w, h), Image.BICUBIC)
    return np.clip(np.asarray(image), -1, 1)


def _chest(rng, h, w, regions):
    """(uint8 X-ray, [region masks]) of a frontal chest film."""
    image = 170 + 20 * _smooth_noise(rng, h, w, 4)
    yy, xx = np.mgrid[0:h, 0:w]
    image -= 40 * ((xx - w / 2) / (w / 2)) ** 2  # darker at the sides
    lungs = []
    for side in (-1, 1):
        cx = w / 2 + side * w * rng.uniform(0.19, 0.23)
        cy = h * rng.uniform(0.45, 0.5)
        lung = _ellipse(h, w, cy, cx, h * rng.uniform(0.3, 0.34),
                        w * rng.uniform(0.15, 0.18))
        lungs.append((lung, cx, cy, side))
        texture = 75 + 18 * _smooth_noise(rng, h, w, 12)
        image[lung] = texture[lung]
    image[np.abs(xx - w / 2) < w * 0.04] = 215  # spine
    masks = []
    sides = rng.permutation(2)
    for r in range(regions):
        lung, cx, cy, side = lungs[sides[r % 2]]
        outer = cx + side * w * 0.16
        region = lung & _ellipse(h, w, cy - h * rng.uniform(0.05, 0.15),
                                 outer, h * rng.uniform(0.2, 0.28),
                                 w * rng.uniform(0.09, 0.12))
        for m in masks:  # keep regions apart (one row per region)
            region &= ~m
        if not region.any():
            continue
        ring = region & ~(np.roll(region, 2, 1) & np.roll(region, -2, 1)
                          & np.roll(region, 2, 0) & np.roll(region, -2, 0))
        image[region] = 12
        image[ring & lung] = 235  # the pleural line
        masks.append(region)
    image += rng.normal(0, 3, (h, w))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), masks
