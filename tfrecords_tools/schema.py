"""The TFRecord schema: feature keys and file names, defined once.

Imported by the writer (`tfrecords_tools.encode`, `tfrecords_tools.writer`)
and by the readers (`tfrecords_tools.decode`, `kaggle_tf.tasks.*`), so
the two sides cannot drift apart. This module has no TensorFlow import.

One record = one `tf.train.Example` per image (or per stacked sample):

| key               | type        | content                                  |
|-------------------|-------------|------------------------------------------|
| `image/id`        | bytes       | the competition's id (`0002cc93b.jpg`)   |
| `image/encoded`   | bytes list  | encoded images as stored (JPEG or PNG);  |
|                   |             | several = channels or slices stacked     |
| `image/format`    | bytes       | `jpeg` or `png`                          |
| `image/height`    | int64       | height of the stored image               |
| `image/width`     | int64       | width of the stored image                |
| `image/channels`  | int64       | channels after decoding and stacking     |
| `mask/encoded`    | bytes       | single-channel PNG, bit k = class k + 1  |
|                   |             | (uint8 up to 8 classes, uint16 up to 16) |
| `labels`          | float list  | class presence / multi-hot / targets     |
| `fold`            | int64       | cross-validation fold; -1 in test shards |
| `group`           | bytes       | patient / study id used to group folds   |
| `series/id`       | bytes       | DICOM series (sequence tasks)            |
| `image/position`  | float       | slice position along the series          |

A task uses the keys it needs; `kaggle_tf.tasks.<task>` says which.

Example:

>>> from tfrecords_tools import schema
>>> schema.shard_name("train", 3, 16)
'train-00003-of-00016.tfrec'
"""

import re

SCHEMA_VERSION = 1

ID = "image/id"
IMAGE = "image/encoded"
IMAGE_FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS = "image/channels"
MASK = "mask/encoded"
LABELS = "labels"
FOLD = "fold"
GROUP = "group"
SERIES = "series/id"
POSITION = "image/position"

# Value types of every key, for `encode.to_example` and the manifest.
BYTES, INT64, FLOAT = "bytes", "int64", "float"
TYPES = {
    ID: BYTES,
    IMAGE: BYTES,
    IMAGE_FORMAT: BYTES,
    HEIGHT: INT64,
    WIDTH: INT64,
    CHANNELS: INT64,
    MASK: BYTES,
    LABELS: FLOAT,
    FOLD: INT64,
    GROUP: BYTES,
    SERIES: BYTES,
    POSITION: FLOAT,
}

TEST_FOLD = -1
SPLITS = ("train", "test")
MANIFEST = "manifest.json"
FOLDS_CSV = "folds.csv"
ERRORS_CSV = "errors.csv"
# Listing caches of a records dir (e.g. DICOM headers), kept across runs.
CACHE_DIR = ".cache"
SHARD_SUFFIX = ".tfrec"
SHARD_RE = re.compile(r"^(train|test)-(\d{5})-of-(\d{5})\.tfrec$")
MAX_MASK_CLASSES = 16


def shard_name(split: str, index: int, count: int) -> str:
    """The file name of shard `index` of `count` (Model Garden style).

    Example:

    >>> shard_name("test", 0, 2)
    'test-00000-of-00002.tfrec'
    """
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def shard_pattern(split: str) -> str:
    """A glob matching every final shard of `split` (never a temp file)."""
    return f"{split}-?????-of-?????{SHARD_SUFFIX}"


def mask_dtype(classes: int) -> str:
    """`uint8` or `uint16`: the PNG depth that holds one bit per class.

    Raises:
        ValueError: more than 16 classes.
    """
    if classes <= 8:
        return "uint8"
    if classes <= MAX_MASK_CLASSES:
        return "uint16"
    raise ValueError(f"a bit-packed mask holds at most {MAX_MASK_CLASSES} "
                     f"classes. Received: classes={classes}")
