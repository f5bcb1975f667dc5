"""RSNA 2024 lumbar spine: 25 conditions x 3 severities per study.

Metric: the weighted log loss of the competition (weights 1/2/4 by true
severity, plus any-severe-spinal). Submission: `row_id` =
`<study>_<condition>_<level>` with `normal_mild,moderate,severe`.
No post-processing to tune.

Records -> examples: slice stacks as channels, severities.

A record holds one study (see `tfrecords_tools.competitions.rsna_lumbar`):
the Sagittal T1, Sagittal T2/STIR and Axial T2 stacks of
`cfg.data.stack_slices` slices, stacked here as channels in that order,
so `cfg.data.channels` must be their sum (40 by default).

Examples (train):

| key           | shape           | content                              |
|---------------|-----------------|--------------------------------------|
| `images`      | (H, W, C) float32 | the stacks, in [0, 1]              |
| `labels`      | (25, 3) float32 | one-hot Normal/Mild, Moderate,       |
|               |                 | Severe; all zero when missing        |
| `severity`    | (25,) int32     | 0, 1, 2, or -1 when missing          |
| `label_mask`  | (25,) float32   | 1 where the label exists             |
| `coordinates` | (25, 3) float32 | (stack index, x / W, y / H), -1 when |
|               |                 | there is no coordinate               |

Rows follow train.csv's columns (condition-major, levels l1_l2..l5_s1).
All-zero rows make a categorical cross-entropy ignore missing labels.

Example:

>>> sorted(features("train"))
['fold', 'image/encoded', 'image/id', 'labels']
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from kaggle_tf.metrics import kaggle as kaggle_metrics
from kaggle_tf.metrics import streaming
from kaggle_tf.tasks import base
from tfrecords_tools import decode as records
from tfrecords_tools import schema
from tfrecords_tools.competitions import rsna_lumbar
from tfrecords_tools.competitions.rsna_lumbar import CLASSES
from tfrecords_tools.competitions.rsna_lumbar import SERIES_TYPES

SEVERITIES = 3
LABEL_WIDTH = len(CLASSES) * 4  # 25 severities + 25 x 3 coordinates


def features(split: str) -> dict:
    """The parse spec of a train or test record."""
    spec = {
        schema.ID: tf.io.FixedLenFeature([], tf.string),
        schema.IMAGE: tf.io.VarLenFeature(tf.string),
        schema.FOLD: tf.io.FixedLenFeature([], tf.int64,
                                           default_value=schema.TEST_FOLD),
    }
    if split == "train":
        spec[schema.LABELS] = tf.io.FixedLenFeature([LABEL_WIDTH],
                                                    tf.float32)
    return spec


def stack_sizes(cfg) -> list:
    """Slices of each stack, in channel order (`SERIES_TYPES`): e.g.
    `[10, 10, 20]`, what a `series_classifier`'s `series_channels` is."""
    return [int(cfg.data.stack_slices[kind]) for kind, _ in SERIES_TYPES]


def stack_channels(cfg) -> int:
    """Slices per study: the sum of `cfg.data.stack_slices`."""
    return sum(stack_sizes(cfg))


def split_labels(values):
    """`labels` (100,) -> severity (25,) int32, one-hot (25, 3), mask (25,),
    coordinates (25, 3)."""
    n = len(CLASSES)
    severity = tf.cast(tf.round(values[:n]), tf.int32)
    valid = severity >= 0
    onehot = tf.one_hot(tf.maximum(severity, 0), SEVERITIES)
    onehot *= tf.cast(valid, tf.float32)[:, None]
    coordinates = tf.reshape(values[n:], (n, 3))
    return severity, onehot, tf.cast(valid, tf.float32), coordinates


def decode(parsed: dict, cfg, split: str, manifest: dict = None) -> dict:
    """A parsed record -> `images` (H, W, C), the label tensors, meta.

    Raises:
        ValueError: `cfg.data.channels` differs from the stacked slices.
    """
    count = stack_channels(cfg)
    if cfg.data.channels != count:
        raise ValueError(f"data.channels ({cfg.data.channels}) must equal "
                         f"the slices of data.stack_slices ({count})")
    encoded = tf.sparse.to_dense(parsed[schema.IMAGE], default_value="")
    image = records.decode_images(encoded, count, 1)
    out = {
        "images": records.resize_image(image, cfg.data.image_size,
                                       (manifest or {}).get("image_size")),
        "id": parsed[schema.ID],
        "fold": parsed[schema.FOLD],
    }
    if split == "train":
        severity, onehot, mask, coordinates = split_labels(
            parsed[schema.LABELS])
        out.update(labels=onehot, severity=severity, label_mask=mask,
                   coordinates=coordinates)
    return out


def _stored_truth(truth):
    truth = np.asarray(truth)
    if truth.ndim == 2 and np.issubdtype(truth.dtype, np.unsignedinteger):
        # -1 (missing) stored as uint8 reads 255.
        truth = np.where(truth == np.iinfo(truth.dtype).max, -1,
                         truth.astype(np.int64))
    return truth


class RsnaLumbar(base.ClassificationTask):
    name = "rsna_lumbar"
    classes = CLASSES
    metric = "rsna_lumbar_log_loss"
    higher_is_better = False
    sample_submission = rsna_lumbar.SAMPLE_SUBMISSION

    def features(self, split):
        return features(split)

    def decode(self, parsed, cfg, split, manifest=None):
        return decode(parsed, cfg, split, manifest)

    def model_config(self, cfg):
        """A `series_classifier`'s null `series_channels` filled from
        `data.stack_slices`, in channel order."""
        if getattr(cfg.model, "series_channels", 0) is None:
            return dataclasses.replace(cfg.model,
                                       series_channels=stack_sizes(cfg))
        return cfg.model

    def adapt_model(self, model):
        """75 logits -> (25, 3): a softmax over each row's severities."""
        if model.output.shape[-1] != len(CLASSES) * SEVERITIES:
            return model
        logits = keras.layers.Reshape((len(CLASSES), SEVERITIES),
                                      name="severity_logits")(model.output)
        return keras.Model(model.input, logits, name=model.name)

    def score(self, truth, probs, cfg=None):
        return kaggle_metrics.rsna_lumbar_log_loss(
            _stored_truth(truth), np.asarray(probs, dtype=np.float64))

    def score_terms(self, truth, probs, cfg=None):
        return kaggle_metrics.rsna_lumbar_terms(_stored_truth(truth), probs)

    def streaming_metric(self, cfg=None):
        return streaming.RsnaLumbarLogLoss(from_logits=base.from_logits(cfg),
                                           name=base.KAGGLE_METRIC)

    def add_rows(self, predictions, ids, outputs):
        """{study_id: (25, 3) probabilities}."""
        for image_id, p in zip(ids, outputs["probs"]):
            predictions[image_id] = np.asarray(p).reshape(len(CLASSES), -1)

    def fill(self, sample, path, predictions):
        """predictions: {study_id: (25, 3) array, rows in train.csv's
        column order}; each row renormalized to sum to 1."""
        out = sample.copy()
        rows = []
        for row_id in out["row_id"]:
            study, rest = row_id.split("_", 1)
            if study not in predictions:
                base.missing(path, f"study {study}")
            p = np.asarray(predictions[study][CLASSES.index(rest)],
                           dtype=np.float64)
            rows.append(p / p.sum())
        rows = np.asarray(rows)
        for j, col in enumerate(rsna_lumbar.SUBMISSION_COLUMNS):
            out[col] = rows[:, j]
        return out

    def check_values(self, df, path):
        base.check_probabilities(df, path)


TASK = RsnaLumbar()
