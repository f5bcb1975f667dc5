"""Severstal: Steel Defect Detection -> records (plugin, see `__init__`).

Layout of `cfg.data.raw_dir` (as on Kaggle):

    train.csv                 ImageId,ClassId,EncodedPixels (one row per
                              image-class with a defect; the first release's
                              ImageId_ClassId,EncodedPixels is accepted too)
    train_images/<id>.jpg     1600 x 256, grayscale content in 3 channels
    test_images/<id>.jpg
    sample_submission.csv     ImageId,EncodedPixels,ClassId (4 rows per image)

One record per image: the JPEG bytes as stored, a bit-packed mask of the
4 classes (absolute, 1-based, column-major RLE decoded), class presence
labels. Images without a row in train.csv have empty masks.

Example:

>>> from tfrecords_tools.competitions import steel
>>> steel.make_sample("/tmp/steel", n=8, size=(64, 400))  # doctest: +SKIP
>>> sorted(os.listdir("/tmp/steel"))                      # doctest: +SKIP
['sample_submission.csv', 'test_images', 'train.csv', 'train_images']
"""

import csv
import io
import os

import numpy as np
from PIL import Image

from tfrecords_tools import draw as draw_lib
from tfrecords_tools import encode
from tfrecords_tools import schema
from tfrecords_tools.items import BadInput
from tfrecords_tools.items import Item
from tfrecords_tools.readers import csv_table
from tfrecords_tools.readers import image_file
from tfrecords_tools.readers import rle_text
from tfrecords_tools.readers.paths import safe_join

CLASSES = ("1", "2", "3", "4")
KIND = "segmentation"
FOLD_STRATEGY = "stratified"
KAGGLE_SLUG = "severstal-steel-defect-detection"
DEFAULT_SIZE = (256, 1600)
# The kernel budget (`kaggle_tf.kernel`): public test images, the limit.
TEST_ITEMS = 5506
KERNEL_LIMIT_HOURS = 1
DEFAULT_N = 64
# Records depend on no `cfg.data` key besides the folds and shards.
CONFIG_KEYS = ()
TRAIN_CSV = "train.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"
TRAIN_DIR = "train_images"
TEST_DIR = "test_images"


# --- reading -------------------------------------------------------------

def _train_rows(path):
    """train.csv (either release) -> [(line, image_id, class, rle)]."""
    rows = csv_table.read_rows(path, ("EncodedPixels",))
    if not rows:
        return []
    header = rows[0][1]
    out = []
    if "ImageId_ClassId" in header:
        for line, row in rows:
            key = row["ImageId_ClassId"]
            image_id, _, cls = key.rpartition("_")
            if not image_id:
                raise BadInput(path, f"row {line}: ImageId_ClassId "
                                     f"{key!r} lacks '_<class>'")
            out.append((line, image_id, cls, row["EncodedPixels"]))
    elif "ImageId" in header and "ClassId" in header:
        for line, row in rows:
            out.append((line, row["ImageId"], row["ClassId"],
                        row["EncodedPixels"]))
    else:
        raise BadInput(path, "header must be ImageId,ClassId,EncodedPixels "
                             "or ImageId_ClassId,EncodedPixels; found "
                             f"{','.join(header)}")
    return out


def _listing(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder)
                  if f.lower().endswith((".jpg", ".jpeg", ".png")))


def _report(error, on_error):
    if on_error is None:
        raise error
    on_error(error)


def list_items(cfg, split: str = "train", on_error=None) -> list:
    """One `Item` per image of `split`, sorted by ImageId.

    Train: every image in `train_images/` plus the CSV rows; an image named
    in train.csv without a file is a bad row. Test: the ImageIds of
    `sample_submission.csv` (or the listing of `test_images/` without it).

    Raises:
        BadInput: naming the CSV and row (or the missing file), unless
            `on_error` collects it.
    """
    raw = cfg.data.raw_dir
    if split == "train":
        return _train_items(raw, on_error)
    if split == "test":
        return _test_items(raw, on_error)
    raise ValueError(f"split must be 'train' or 'test'. Received: {split!r}")


def _train_items(raw, on_error):
    csv_path = os.path.join(raw, TRAIN_CSV)
    folder = os.path.join(raw, TRAIN_DIR)
    if not os.path.isdir(folder):
        raise BadInput(folder, "train image folder not found")
    rles, lines, bad = {}, {}, set()
    for line, image_id, cls, rle in _train_rows(csv_path):
        try:
            safe_join(folder, image_id, source=csv_path, row=line)
            if cls not in CLASSES:
                raise BadInput(csv_path, f"row {line}: ClassId must be 1..4."
                                         f" Received: {cls!r}", image_id)
            try:
                rle_text.parse_runs(rle)
            except ValueError as e:
                raise BadInput(csv_path, f"row {line}: {e}",
                               image_id) from None
            if (image_id, cls) in lines and rle:
                raise BadInput(csv_path, f"row {line}: duplicate row for "
                                         f"image {image_id} class {cls} "
                                         f"(first at row "
                                         f"{lines[image_id, cls]})",
                               image_id)
        except BadInput as e:
            e.item_id = image_id
            bad.add(image_id)
            _report(e, on_error)
            continue
        if rle.strip():
            rles.setdefault(image_id, {})[cls] = rle
            lines[image_id, cls] = line
    files = set(_listing(folder))
    items = []
    for image_id in sorted(files | set(rles)):
        if image_id in bad:
            continue
        if image_id not in files:
            line = min(v for (i, _), v in lines.items() if i == image_id)
            _report(BadInput(csv_path, f"row {line}: image "
                                       f"{TRAIN_DIR}/{image_id} not found",
                             image_id), on_error)
            continue
        classes = rles.get(image_id, {})
        items.append(Item(
            id=image_id,
            paths=(os.path.join(folder, image_id),),
            labels=tuple(int(c in classes) for c in CLASSES),
            data={"rles": dict(classes), "csv": csv_path,
                  "rows": {c: lines[image_id, c] for c in classes}}))
    return items


def _test_items(raw, on_error):
    folder = os.path.join(raw, TEST_DIR)
    sub_path = os.path.join(raw, SAMPLE_SUBMISSION)
    if os.path.isfile(sub_path):
        rows = csv_table.read_rows(sub_path, ("EncodedPixels",))
        ids = {}
        for line, row in rows:
            if "ImageId" in row:
                image_id = row["ImageId"]
            elif "ImageId_ClassId" in row:
                image_id = row["ImageId_ClassId"].rpartition("_")[0]
            else:
                raise BadInput(sub_path, "header lacks ImageId")
            ids.setdefault(image_id, line)
        source = sub_path
    else:
        ids = {i: None for i in _listing(folder)}
        source = folder
    items = []
    for image_id in sorted(ids):
        line = ids[image_id]
        try:
            path = safe_join(folder, image_id, source=source, row=line)
            if not os.path.isfile(path):
                where = f"row {line}: " if line is not None else ""
                raise BadInput(source, f"{where}image {TEST_DIR}/"
                                       f"{image_id} not found", image_id)
        except BadInput as e:
            e.item_id = image_id
            _report(e, on_error)
            continue
        items.append(Item(id=image_id, paths=(path,)))
    return items


def encode_item(item: Item, cfg) -> dict:
    """Reads the JPEG (checked by a full decode) and draws the masks.

    Raises:
        BadInput: a missing/corrupt/truncated image, or an RLE run past the
            image (naming train.csv and the row).
    """
    path = item.paths[0]
    data, info = image_file.read_image(path)
    features = {
        schema.ID: item.id,
        schema.IMAGE: [data],
        schema.IMAGE_FORMAT: info.format,
        schema.HEIGHT: info.height,
        schema.WIDTH: info.width,
        schema.CHANNELS: info.channels,
    }
    if item.labels:
        shape = (info.height, info.width)
        masks = np.zeros(shape + (len(CLASSES),), bool)
        for cls, rle in item.data["rles"].items():
            k = CLASSES.index(cls)
            try:
                masks[..., k] = rle_text.runs_to_mask(
                    *rle_text.parse_runs(rle), shape)
            except ValueError as e:
                row = item.data["rows"][cls]
                raise BadInput(item.data["csv"], f"row {row}: {e}",
                               item.id) from None
        features[schema.MASK] = encode.pack_mask(masks)
        features[schema.LABELS] = [float(v) for v in item.labels]
    return features


def draw(features: dict) -> np.ndarray:
    """The image with class 1..4 overlaid in red, green, blue, yellow."""
    return draw_lib.default_draw(features, len(CLASSES))


# --- sample --------------------------------------------------------------

# Label patterns of the first images, so that every class, an image
# without defects and multi-class images appear even in tiny samples.
_FIRST_PATTERNS = ((1,), (2,), (3,), (4,), (), (1, 3), (3, 4), (2, 4))
_PATTERNS = ((), (1,), (2,), (3,), (4,), (1, 3), (3, 4), (2, 3), (1, 4))
_WEIGHTS = (0.30, 0.12, 0.08, 0.25, 0.10, 0.05, 0.05, 0.03, 0.02)


def make_sample(out_dir: str, n: int = None, size=None,
                seed: int = 0) -> None:
    """Writes a tiny Severstal dataset in Kaggle's layout.

    Args:
        out_dir: the folder to create (files are overwritten).
        n: training images. Defaults to `64`; test images are `n // 4`.
        size: `(height, width)`. Defaults to `(256, 1600)`.
        seed: same seed, same bytes.

    Defects are drawn with strong contrast: class 1 clusters of small dark
    pits, class 2 small bright crazing patches, class 3 long bright
    scratches or bands, class 4 large dark patches. About 30% of the images
    have no defect and some have several classes.

    Example:

    >>> make_sample("/tmp/steel", n=8, size=(64, 400), seed=0)  # doctest: +SKIP
    """
    n = DEFAULT_N if n is None else int(n)
    h, w = DEFAULT_SIZE if size is None else tuple(int(v) for v in size)
    if n < 1 or h < 8 or w < 8:
        raise ValueError(f"need n >= 1 and a size of at least 8x8. "
                         f"Received: n={n}, size={h}x{w}")
    rng = np.random.default_rng(seed)
    n_test = max(n // 4, 1)
    ids = _unique_ids(rng, n + n_test)
    for sub in (TRAIN_DIR, TEST_DIR):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    rows = []
    for i, image_id in enumerate(ids):
        train = i < n
        if i < len(_FIRST_PATTERNS) and train:
            pattern = _FIRST_PATTERNS[i]
        elif i - n < len(_FIRST_PATTERNS) and not train:
            pattern = _FIRST_PATTERNS[(i - n) % len(_FIRST_PATTERNS)]
        else:
            pattern = _PATTERNS[rng.choice(len(_PATTERNS), p=_WEIGHTS)]
        image, masks = _draw_steel(rng, h, w, pattern)
        folder = TRAIN_DIR if train else TEST_DIR
        _write_jpeg(os.path.join(out_dir, folder, image_id), image)
        if train:
            for cls in pattern:
                rows.append((image_id, cls,
                             rle_text.mask_to_rle(masks[cls - 1])))
    rows.sort()
    _write_csv(os.path.join(out_dir, TRAIN_CSV),
               ("ImageId", "ClassId", "EncodedPixels"), rows)
    full = f"1 {h * w}"
    sub_rows = [(image_id, full, cls) for image_id in sorted(ids[n:])
                for cls in range(1, 5)]
    _write_csv(os.path.join(out_dir, SAMPLE_SUBMISSION),
               ("ImageId", "EncodedPixels", "ClassId"), sub_rows)


def _unique_ids(rng, count):
    ids = []
    seen = set()
    while len(ids) < count:
        name = "".join(rng.choice(list("0123456789abcdef"), 9)) + ".jpg"
        if name not in seen:
            seen.add(name)
            ids.append(name)
    return ids


def _write_jpeg(path, gray):
    buf = io.BytesIO()
    rgb = np.repeat(gray[..., None], 3, -1)
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)


def _write_csv(path, header, rows):
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def _background(rng, h, w):
    """Rolled-steel texture: horizontal streaks, a soft gradient, noise."""
    rows = rng.normal(0, 6, (h, 1)).cumsum(0) * 0.15
    streaks = np.repeat(rows, w, 1)
    x = np.linspace(0, 1, w)[None, :]
    shade = 12 * np.sin(2 * np.pi * (x * rng.uniform(0.5, 1.5)
                                     + rng.uniform()))
    noise = rng.normal(0, 5, (h, w))
    return 120 + streaks + shade + noise


def _ellipse(h, w, cy, cx, ry, rx, angle=0.0):
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u = (dx * c + dy * s) / max(rx, 0.5)
    v = (-dx * s + dy * c) / max(ry, 0.5)
    return u * u + v * v <= 1.0


def _band(h, w, y0, x0, y1, x1, half_width):
    """Pixels within `half_width` of the segment (y0, x0)-(y1, x1)."""
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = y1 - y0, x1 - x0
    length2 = max(dy * dy + dx * dx, 1e-6)
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / length2, 0, 1)
    py, px = y0 + t * dy, x0 + t * dx
    return (yy - py) ** 2 + (xx - px) ** 2 <= half_width ** 2


def _draw_steel(rng, h, w, pattern):
    """(uint8 image, {class: mask}) with one defect region per class."""
    image = _background(rng, h, w)
    masks = np.zeros((4, h, w), bool)
    sy, sx = h / 256.0, w / 1600.0
    slots = rng.permutation(4)  # one quarter of the width per class
    for j, cls in enumerate(pattern):
        lo = slots[j] * w / 4.0
        hi = lo + w / 4.0
        cx = rng.uniform(lo + 0.3 * (hi - lo), lo + 0.7 * (hi - lo))
        cy = rng.uniform(0.3 * h, 0.7 * h)
        m = np.zeros((h, w), bool)
        if cls == 1:    # pits: small dark spots
            for _ in range(rng.integers(4, 9)):
                r = max(2.0, rng.uniform(4, 9) * sy)
                m |= _ellipse(h, w, cy + rng.uniform(-40, 40) * sy,
                              cx + rng.uniform(-80, 80) * sx, r,
                              r * rng.uniform(1, 1.6))
            value = 35
        elif cls == 2:  # crazing: small bright patch
            ry, rx = max(3.0, 22 * sy), max(4.0, 45 * sx)
            m = _ellipse(h, w, cy, cx, ry, rx, rng.uniform(-0.4, 0.4))
            value = 235
        elif cls == 3:  # scratches: long thin bright bands
            for _ in range(rng.integers(1, 3)):
                half = rng.uniform(0.35, 0.5) * (hi - lo)
                y0 = cy + rng.uniform(-60, 60) * sy
                y1 = y0 + rng.uniform(-25, 25) * sy
                m |= _band(h, w, y0, cx - half, y1, cx + half,
                           max(1.5, rng.uniform(3, 7) * sy))
            value = 245
        else:           # class 4: large dark patch
            ry = max(4.0, rng.uniform(55, 90) * sy)
            rx = max(6.0, rng.uniform(70, 150) * sx)
            m = _ellipse(h, w, cy, cx, ry, rx, rng.uniform(-0.3, 0.3))
            value = 15
        image[m] = value + rng.normal(0, 4, int(m.sum()))
        masks[cls - 1] = m
    return np.clip(image, 0, 255).astype(np.uint8), masks
