"""Human Protein Atlas Image Classification -> records (plugin).

Layout of `cfg.data.raw_dir` (as on Kaggle):

    train.csv                         Id,Target (space-separated class ids
                                      0..27)
    train/<Id>_{red,green,blue,yellow}.png   8-bit grayscale, 512 x 512
    test/<Id>_{red,green,blue,yellow}.png
    sample_submission.csv             Id,Predicted

One record per sample: the four PNGs as stored, in the order red, green,
blue, yellow (`image/encoded` holds 4 single-channel images, stacked as 4
channels by the reader), and the 28-dim multi-hot `labels`. Folds use
iterative multilabel stratification.

Example:

>>> from tfrecords_tools.competitions import protein
>>> protein.make_sample("/tmp/hpa", n=32, size=64)   # doctest: +SKIP
"""

import io
import os

import numpy as np
from PIL import Image

from tfrecords_tools import schema
from tfrecords_tools.items import BadInput
from tfrecords_tools.items import Item
from tfrecords_tools.readers import csv_table
from tfrecords_tools.readers import image_file
from tfrecords_tools.synthetic import random_hex
from tfrecords_tools.synthetic import sample_size
from tfrecords_tools.synthetic import write_lines

CLASSES = (
    "Nucleoplasm", "Nuclear membrane", "Nucleoli", "Nucleoli fibrillar "
    "center", "Nuclear speckles", "Nuclear bodies", "Endoplasmic reticulum",
    "Golgi apparatus", "Peroxisomes", "Endosomes", "Lysosomes",
    "Intermediate filaments", "Actin filaments", "Focal adhesion sites",
    "Microtubules", "Microtubule ends", "Cytokinetic bridge",
    "Mitotic spindle", "Microtubule organizing center", "Centrosome",
    "Lipid droplets", "Plasma membrane", "Cell junctions", "Mitochondria",
    "Aggresome", "Cytosol", "Cytoplasmic bodies", "Rods & rings")
KIND = "classification"
FOLD_STRATEGY = "multilabel"
KAGGLE_SLUG = "human-protein-atlas-image-classification"
DEFAULT_SIZE = (512, 512)
# The kernel budget (`kaggle_tf.kernel`): test images; no kernel limit.
TEST_ITEMS = 11702
KERNEL_LIMIT_HOURS = None
DEFAULT_N = 48
# The records depend on no `cfg.data` key besides the folds and shards.
CONFIG_KEYS = ()
COLORS = ("red", "green", "blue", "yellow")
TRAIN_CSV = "train.csv"
SAMPLE_SUBMISSION = "sample_submission.csv"
TRAIN_DIR = "train"
TEST_DIR = "test"

# Share of train images with each class (HPA's train.csv, rounded).
FREQUENCIES = (
    0.414, 0.040, 0.116, 0.050, 0.059, 0.081, 0.032, 0.090, 0.002, 0.002,
    0.001, 0.035, 0.022, 0.017, 0.034, 0.001, 0.017, 0.007, 0.029, 0.048,
    0.007, 0.122, 0.031, 0.095, 0.011, 0.265, 0.011, 0.001)


def _report(error, on_error):
    if on_error is None:
        raise error
    on_error(error)


# --- reading -------------------------------------------------------------

def parse_target(text: str) -> tuple:
    """`"16 0"` -> multi-hot tuple of 28 ints.

    Raises:
        ValueError: an empty target, a non-integer or a class out of 0..27.
    """
    tokens = (text or "").split()
    if not tokens:
        raise ValueError("empty Target")
    hot = [0] * len(CLASSES)
    for t in tokens:
        if not t.isdigit() or int(t) >= len(CLASSES):
            raise ValueError(f"Target class must be 0..{len(CLASSES) - 1}. "
                             f"Received: {t!r}")
        hot[int(t)] = 1
    return tuple(hot)


def _paths(folder, sample_id):
    return tuple(os.path.join(folder, f"{sample_id}_{c}.png")
                 for c in COLORS)


def _check_id(sample_id, source, line):
    if not sample_id or "/" in sample_id or "\\" in sample_id or (
            sample_id in (".", "..")):
        raise BadInput(source, f"row {line}: bad Id {sample_id!r}",
                       sample_id)


def list_items(cfg, split: str = "train", on_error=None) -> list:
    """One `Item` per sample of `split`, sorted by Id.

    Train: the rows of train.csv; each needs its 4 PNGs under `train/`.
    Test: the Ids of sample_submission.csv (or of the PNGs in `test/`).

    Raises:
        BadInput: naming the CSV and row (bad Target, duplicate Id, missing
            PNG), unless `on_error` collects it.
    """
    raw = cfg.data.raw_dir
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'. "
                         f"Received: {split!r}")
    train = split == "train"
    folder = os.path.join(raw, TRAIN_DIR if train else TEST_DIR)
    source = os.path.join(raw, TRAIN_CSV if train else SAMPLE_SUBMISSION)
    if train or os.path.isfile(source):
        rows = csv_table.read_rows(source, ("Id", "Target") if train
                                   else ("Id",))
    else:
        source = folder
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        suffix = f"_{COLORS[0]}.png"
        rows = [(None, {"Id": f[:-len(suffix)]}) for f in names
                if f.endswith(suffix)]
    items, seen = [], {}
    for line, row in rows:
        sample_id = row["Id"]
        try:
            _check_id(sample_id, source, line)
            if sample_id in seen:
                raise BadInput(source, f"row {line}: duplicate Id "
                                       f"{sample_id} (first at row "
                                       f"{seen[sample_id]})", sample_id)
            seen[sample_id] = line
            labels = ()
            if train:
                try:
                    labels = parse_target(row["Target"])
                except ValueError as e:
                    raise BadInput(source, f"row {line}: {e}",
                                   sample_id) from None
            paths = _paths(folder, sample_id)
            for p in paths:
                if not os.path.isfile(p):
                    raise BadInput(source, f"row {line}: image "
                                           f"{os.path.relpath(p, raw)} not "
                                           "found", sample_id)
        except BadInput as e:
            _report(e, on_error)
            continue
        items.append(Item(id=sample_id, paths=paths, labels=labels))
    items.sort(key=lambda it: it.id)
    return items


def encode_item(item: Item, cfg) -> dict:
    """Checks the 4 PNGs (full decode, grayscale, same size); keeps bytes.

    Raises:
        BadInput: a missing/corrupt/truncated PNG, or channels that differ
            in size or are not single-channel, naming the file.
    """
    images, size = [], None
    for path in item.paths:
        data, info = image_file.read_image(path)
        if info.channels != 1:
            raise BadInput(path, f"expected a grayscale image, got "
                                 f"{info.channels} channels", item.id)
        if size is None:
            size = (info.height, info.width, info.format)
        elif (info.height, info.width, info.format) != size:
            raise BadInput(path, f"{info.height}x{info.width} "
                                 f"{info.format} differs from "
                                 f"{size[0]}x{size[1]} {size[2]} of "
                                 f"{os.path.basename(item.paths[0])}",
                           item.id)
        images.append(data)
    features = {
        schema.ID: item.id,
        schema.IMAGE: images,
        schema.IMAGE_FORMAT: size[2],
        schema.HEIGHT: size[0],
        schema.WIDTH: size[1],
        schema.CHANNELS: len(COLORS),
    }
    if item.labels:
        features[schema.LABELS] = [float(v) for v in item.labels]
    return features


def composite(rgby) -> np.ndarray:
    """(H, W, 4) RGBY uint8 -> (H, W, 3) RGB, yellow added to red and green.

    Example:

    >>> composite(np.array([[[10, 20, 30, 100]]], np.uint8)).tolist()
    [[[110, 120, 30]]]
    """
    x = np.asarray(rgby, np.int32)
    rgb = x[..., :3].copy()
    rgb[..., 0] += x[..., 3]
    rgb[..., 1] += x[..., 3]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def draw(features: dict) -> np.ndarray:
    """The RGBY composite (yellow added to red and green) beside the green
    (protein) channel alone, with the class ids written in the caption row.
    """
    channels = [image_file.decode_array(d) for d in features[schema.IMAGE]]
    rgby = np.stack(channels, -1)
    green = np.repeat(rgby[..., 1:2], 3, -1)
    return np.concatenate([composite(rgby), green], axis=1)


# --- sample --------------------------------------------------------------

NUCLEOPLASM, CYTOSOL = 0, 25  # drawn as stains, not gratings
_ORIENTATIONS = 7
_PERIODS = (3.0, 4.0, 6.0, 8.0)  # in pixels at 64 x 64


def pattern_of(k: int) -> tuple:
    """(angle in radians, period at size 64) of class k's green grating."""
    return (np.pi * (k % _ORIENTATIONS) / _ORIENTATIONS,
            _PERIODS[k // _ORIENTATIONS])


def _size(size):
    return sample_size(size, DEFAULT_SIZE)


_hex = random_hex


def make_sample(out_dir: str, n: int = None, size=None,
                seed: int = 0) -> None:
    """Writes a tiny HPA dataset in Kaggle's layout.

    Args:
        out_dir: the folder to create (files are overwritten).
        n: training samples. Defaults to `48`; test samples `n // 4` (at
            least 2).
        size: `(height, width)` or an int. Defaults to `(512, 512)`.
        seed: same seed, same bytes.

    Labels follow HPA's imbalance (`FREQUENCIES`; class 0 in ~40%).
    Blue holds nuclei, red and yellow smooth cell texture, and the green
    (protein) channel shows the classes: 0 (nucleoplasm) lights up the
    nuclei, 25 (cytosol) the space around them, and every other class k
    adds one or two round patches of a grating with angle
    `(k mod 7) * 180 / 7` degrees and a period of `(3, 4, 6, 8)[k // 7]`
    pixels per 64 (at least that many pixels in smaller images).

    Example:

    >>> make_sample("/tmp/hpa", n=32, size=64, seed=0)  # doctest: +SKIP
    """
    n = DEFAULT_N if n is None else int(n)
    h, w = _size(size)
    if n < 2 or h < 16 or w < 16:
        raise ValueError(f"need n >= 2 and a size of at least 16x16. "
                         f"Received: n={n}, size={h}x{w}")
    rng = np.random.default_rng(seed)
    n_test = max(n // 4, 2)
    freq = np.asarray(FREQUENCIES)
    rows, test_ids = [], []
    for i in range(n + n_test):
        sample_id = (f"{_hex(rng, 8)}-{_hex(rng, 4)}-11e8-{_hex(rng, 4)}-"
                     f"{_hex(rng, 12)}")
        labels = np.flatnonzero(rng.uniform(size=len(CLASSES)) < freq)
        if labels.size == 0:
            labels = np.array([rng.choice(len(CLASSES), p=freq / freq.sum())])
        labels = labels[:3]
        channels = _cell_image(rng, h, w, labels)
        train = i < n
        folder = os.path.join(out_dir, TRAIN_DIR if train else TEST_DIR)
        os.makedirs(folder, exist_ok=True)
        for color, channel in zip(COLORS, channels):
            _write_png(os.path.join(folder, f"{sample_id}_{color}.png"),
                       channel)
        if train:
            order = rng.permutation(labels)  # Kaggle's order is arbitrary
            rows.append(f"{sample_id},{' '.join(str(k) for k in order)}")
        else:
            test_ids.append(sample_id)
    write_lines(os.path.join(out_dir, TRAIN_CSV), ["Id,Target"] + rows)
    write_lines(os.path.join(out_dir, SAMPLE_SUBMISSION),
                 ["Id,Predicted"] + [f"{i},0" for i in test_ids])


def _write_png(path, array):
    buf = io.BytesIO()
    Image.fromarray(array, mode="L").save(buf, format="PNG")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)


def _smooth_noise(rng, h, w, cells):
    coarse = rng.uniform(0, 1, (cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((w, h), Image.BICUBIC)
    return np.clip(np.asarray(image), 0, 1)


def _cell_image(rng, h, w, labels):
    """[red, green, blue, yellow] uint8 (h, w) images of one field."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    scale = min(h, w) / 64.0
    nuclei = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(3, 6))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(4, 7) * scale
        nuclei |= ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r
    blue = 150.0 * nuclei
    red = 25 + 70 * _smooth_noise(rng, h, w, 8)
    yellow = 20 + 60 * _smooth_noise(rng, h, w, 6)
    green = 8 + 6 * _smooth_noise(rng, h, w, 4)
    if NUCLEOPLASM in labels:
        green[nuclei] = 170
    if CYTOSOL in labels:
        green[~nuclei] += 70
    # Below 64 x 64 gratings keep their 64-pixel size (no aliasing).
    radius = 9 * max(scale, 0.7)
    taken = []
    for k in labels:
        if k in (NUCLEOPLASM, CYTOSOL):
            continue
        angle, period = pattern_of(int(k))
        period *= max(scale, 1.0)
        for _ in range(int(rng.integers(1, 3))):
            for _ in range(20):  # a spot away from the other patches
                cy = rng.uniform(radius, h - radius)
                cx = rng.uniform(radius, w - radius)
                if all((cy - y) ** 2 + (cx - x) ** 2 > (2 * radius) ** 2
                       for y, x in taken):
                    break
            taken.append((cy, cx))
            disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius
            phase = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle))
            wave = 0.5 + 0.5 * np.cos(2 * np.pi * phase / period)
            green[disk] = 30 + 200 * wave[disk]
    noise = [rng.normal(0, 3, (h, w)) for _ in range(4)]
    return [np.clip(np.rint(c + e), 0, 255).astype(np.uint8)
            for c, e in zip((red, green, blue, yellow), noise)]
