"""RSNA intracranial hemorrhage: 6 labels per CT slice, series in order.

Metric: the weighted multilabel log loss (`any` weighs 2). Submission:
`ID_<slice>_<subtype>,Label` rows. No post-processing to tune.

Records -> examples: slices of a series, windowed HU.

A record holds one DICOM series in slice order (see
`tfrecords_tools.competitions.rsna_ich`): T 16-bit PNGs of `HU + 32768`,
the T slice ids, positions and T x 6 labels. For
`kaggle_tf.data.pipeline`, `expand` turns a series into its slices and
`decode` gives each slice `images` (H, W, C), `labels` (6,), `id`,
`fold`; `kaggle_tf.data.series` keeps series whole.

Windows come from `cfg.data.windows` (`[[center, width], ...]`, one
channel each); with none, one channel `clip((HU + 1024) / 4096, 0, 1)`.
Everything is TensorFlow ops, so it runs in `tf.data` on any device.

Example:

>>> hu = tf.constant([[[0.0], [40.0], [80.0]]])          # (1, 3, 1)
>>> window_hu(hu, [[40, 80]])[0, :, 0].numpy()
array([0. , 0.5, 1. ], dtype=float32)
"""

import numpy as np
import tensorflow as tf

from kaggle_tf.metrics import kaggle as kaggle_metrics
from kaggle_tf.metrics import streaming
from kaggle_tf.tasks import base
from tfrecords_tools import schema
from tfrecords_tools.competitions import rsna_ich
from tfrecords_tools.competitions.rsna_ich import CLASSES

HU_OFFSET = 32768.0
# Used when `cfg.data.windows` is empty: the full CT range in one channel.
FULL_RANGE = ((1024.0, 4096.0),)

FEATURES = {
    schema.ID: tf.io.VarLenFeature(tf.string),
    schema.SERIES: tf.io.FixedLenFeature([], tf.string),
    schema.GROUP: tf.io.FixedLenFeature([], tf.string, default_value=""),
    schema.IMAGE: tf.io.VarLenFeature(tf.string),
    schema.POSITION: tf.io.VarLenFeature(tf.float32),
    schema.LABELS: tf.io.VarLenFeature(tf.float32),
    schema.FOLD: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
}


def windows_of(cfg):
    """`cfg.data.windows` as a tuple of (center, width) floats."""
    pairs = [tuple(float(v) for v in w) for w in (cfg.data.windows or [])]
    for pair in pairs:
        if len(pair) != 2 or not pair[1] > 0:
            raise ValueError(f"each of data.windows must be [center, "
                             f"width > 0]. Received: {list(pair)}")
    return tuple(pairs) or FULL_RANGE


def window_hu(hu, windows):
    """HU `(..., 1)` -> `(..., len(windows))` float32 in [0, 1].

    Channel k is `clip((hu - (c_k - w_k / 2)) / w_k, 0, 1)`.
    """
    hu = tf.cast(hu, tf.float32)
    channels = [tf.clip_by_value((hu - (c - w / 2.0)) / w, 0.0, 1.0)
                for c, w in windows]
    return tf.concat(channels, axis=-1)


def parse_series(serialized):
    """A serialized series record -> dense tensors.

    Returns:
        dict: `image_bytes` (T,) string, `id` (T,) string, `position`
        (T,) float32, `labels` (T, 6) float32 (zeros for test records),
        `series` and `group` scalar strings, `fold` int64, `length` int32.
    """
    return parse_dense(tf.io.parse_single_example(serialized, FEATURES))


def parse_dense(f):
    """`tf.io.parse_single_example(..., FEATURES)` output -> dense tensors
    (see `parse_series`)."""
    pngs = tf.sparse.to_dense(f[schema.IMAGE], default_value="")
    length = tf.shape(pngs)[0]
    labels = tf.sparse.to_dense(f[schema.LABELS])
    labels = tf.cond(tf.size(labels) > 0,
                     lambda: tf.reshape(labels, [-1, len(CLASSES)]),
                     lambda: tf.zeros([length, len(CLASSES)]))
    return {
        "image_bytes": pngs,
        "id": tf.sparse.to_dense(f[schema.ID], default_value=""),
        "position": tf.sparse.to_dense(f[schema.POSITION]),
        "labels": labels,
        "series": f[schema.SERIES],
        "group": f[schema.GROUP],
        "fold": f[schema.FOLD],
        "length": length,
    }


def decode_slice(png, windows, image_size):
    """One 16-bit HU PNG -> `(height, width, len(windows))` float32."""
    stored = tf.io.decode_png(png, channels=1, dtype=tf.uint16)
    hu = tf.cast(stored, tf.float32) - HU_OFFSET
    h, w = image_size
    hu = tf.image.resize(hu, (h, w), method="bilinear")
    out = window_hu(hu, windows)
    return tf.ensure_shape(out, (h, w, len(windows)))


def decode_slices(pngs, windows, image_size):
    """`(T,)` PNG strings -> `(T, height, width, len(windows))` float32."""
    h, w = image_size
    spec = tf.TensorSpec((h, w, len(windows)), tf.float32)
    return tf.map_fn(lambda p: decode_slice(p, windows, image_size), pngs,
                     fn_output_signature=spec)


def to_slices(parsed):
    """A parsed series -> a dataset of its slices (before decoding).

    Each element: `image_bytes`, `id`, `labels` (6,), `position`,
    `series`, `group`, `index` (slice index in the series), `length`.
    """
    n = parsed["length"]
    return tf.data.Dataset.from_tensor_slices({
        "image_bytes": parsed["image_bytes"],
        "id": parsed["id"],
        "labels": parsed["labels"],
        "position": parsed["position"],
        "series": tf.fill([n], parsed["series"]),
        "group": tf.fill([n], parsed["group"]),
        "index": tf.range(n),
        "length": tf.fill([n], n),
    })


# --- kaggle_tf.data.pipeline contract ------------------------------------

def features(split: str) -> dict:
    """The parse spec of a series record (train and test alike)."""
    return dict(FEATURES)


def expand(parsed: dict, cfg, split: str):
    """A parsed series -> a dataset of its slices (still encoded)."""
    dense = parse_dense(parsed)
    n = dense["length"]
    return tf.data.Dataset.from_tensor_slices({
        schema.IMAGE: dense["image_bytes"],
        schema.ID: dense["id"],
        schema.LABELS: dense["labels"],
        schema.FOLD: tf.fill([n], dense["fold"]),
    })


def decode(parsed: dict, cfg, split: str, manifest: dict = None) -> dict:
    """One slice -> `images` (H, W, C) windowed in [0, 1], `labels` (6,).

    C is the number of `cfg.data.windows`; a single window (or none) is
    repeated to `cfg.data.channels`.

    Raises:
        ValueError: several windows and `cfg.data.channels` differing.
    """
    windows = windows_of(cfg)
    channels = cfg.data.channels
    if len(windows) not in (1, channels):
        raise ValueError(f"data.channels ({channels}) must equal the number "
                         f"of data.windows ({len(windows)})")
    image = decode_slice(parsed[schema.IMAGE], windows,
                         tuple(cfg.data.image_size))
    if len(windows) == 1 and channels > 1:
        image = tf.tile(image, [1, 1, channels])
    out = {"images": image, "id": parsed[schema.ID],
           "fold": parsed[schema.FOLD]}
    if split == "train":
        out["labels"] = tf.ensure_shape(parsed[schema.LABELS],
                                        (len(CLASSES),))
    return out


class RsnaIch(base.Task):
    name = "rsna_ich"
    classes = CLASSES
    kind = "sequence"
    metric = "rsna_ich_log_loss"
    higher_is_better = False
    sample_submission = rsna_ich.SAMPLE_SUBMISSION
    series = True

    def features(self, split):
        return features(split)

    def expand(self, parsed, cfg, split):
        return expand(parsed, cfg, split)

    def decode(self, parsed, cfg, split, manifest=None):
        return decode(parsed, cfg, split, manifest)

    # --- whole series (kaggle_tf.data.series) ---------------------------
    def windows(self, cfg):
        """`cfg.data.windows` as (center, width) pairs (see `windows_of`)."""
        return windows_of(cfg)

    def parse_series(self, serialized):
        return parse_series(serialized)

    def decode_slices(self, pngs, windows, image_size):
        return decode_slices(pngs, windows, image_size)

    def window_hu(self, hu, windows):
        return window_hu(hu, windows)

    def score(self, truth, probs, cfg=None):
        truth = np.asarray(truth)
        probs = np.asarray(probs, dtype=np.float64)
        return kaggle_metrics.rsna_ich_log_loss(truth.reshape(-1, 6),
                                                probs.reshape(-1, 6))

    def streaming_metric(self, cfg=None):
        return streaming.RsnaIchLogLoss(from_logits=base.from_logits(cfg),
                                        name=base.KAGGLE_METRIC)

    def fill(self, sample, path, predictions):
        """predictions: {image_id: 6 probabilities in CLASSES order}."""
        out = sample.copy()
        values = []
        for key in out["ID"]:
            image_id, subtype = key.rsplit("_", 1)
            if image_id not in predictions:
                base.missing(path, f"image {image_id}")
            values.append(float(predictions[image_id][CLASSES.index(subtype)]))
        out["Label"] = values
        return out

    def check_values(self, df, path):
        base.check_probabilities(df, path)


TASK = RsnaIch()
