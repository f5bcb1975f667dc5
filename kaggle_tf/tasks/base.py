"""The competition plugin contract: what differs between competitions.

A plugin is a `Task` subclass in `kaggle_tf/tasks/<task>.py`, named like
its converter module `tfrecords_tools/competitions/<task>.py`, with one
instance `TASK`. Everything the training side knows about a competition
is here; the stages above (training, inference, export, tune) only ever
call these methods:

| part            | members                                              |
|-----------------|------------------------------------------------------|
| facts           | `name`, `classes`, `kind`, `metric`,                 |
|                 | `higher_is_better`, `sample_submission`             |
| records         | `features(split)`, `decode(parsed, cfg, split,       |
|                 | manifest)`, optional `expand(parsed, cfg, split)`    |
| targets         | `target_key(cfg)`                                    |
| models          | `model_config(cfg)`, `adapt_model(model)`            |
| metric          | `score(truth, probs, cfg)` (numpy, Kaggle-exact),    |
|                 | `streaming_metric(cfg)` (Keras), `score_terms`       |
| post-processing | `tune(cfg, probs, truth, grids)`, `labels(...)`,    |
|                 | `mask_size(cfg, manifest)`, `rle_convention`         |
| submission      | `add_rows(predictions, ids, outputs)`,               |
|                 | `fill(sample, path, predictions)`,                   |
|                 | `submission_rows(sample)`, `check_values(df, path)`  |

`SegmentationTask` and `ClassificationTask` give the shared behaviour of
each kind; a plugin overrides what its competition does differently.
"""

import numpy as np

from kaggle_tf.config import ConfigError
from kaggle_tf.metrics import kaggle as kaggle_metrics
from kaggle_tf.metrics import streaming
from kaggle_tf.models.build import output_kind
from kaggle_tf.postprocess.params import per_class
from tfrecords_tools import decode as codec

# Images binarized and scored at a time by `SegmentationTask.score`.
SCORE_CHUNK = 64

KAGGLE_METRIC = "kaggle_metric"


class TuneError(ValueError):
    """Out-of-fold arrays that do not have the task's layout."""


def threshold(cfg):
    """`inference.thresholds` as one float or a per-class list (0.5)."""
    if cfg is None or getattr(cfg, "inference", None) is None:
        return 0.5
    values = [float(t) for t in (cfg.inference.thresholds or [0.5])]
    return values[0] if len(values) == 1 else values


def from_logits(cfg):
    return True if cfg is None else bool(cfg.loss.from_logits)


def config_param(values, classes, key, dtype=np.float32):
    """Per-class values of `inference.<key>`; bad lengths are config
    errors naming the key."""
    try:
        return per_class(values, classes, f"inference.{key}", dtype)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_layout(probs, truth, ndims, layout, task):
    if probs.ndim not in ndims or probs.shape != truth.shape:
        raise TuneError(
            f"{task} OOF probs and truth must both be {layout}. Received: "
            f"probs.shape={probs.shape}, truth.shape={truth.shape}")


def check_probabilities(df, path):
    """Raises ValueError when a value column holds NaN or leaves [0, 1]."""
    for col in df.columns[1:]:
        vals = df[col].astype(float)
        if not ((vals >= 0) & (vals <= 1)).all() or vals.isna().any():
            raise ValueError(f"{path}: `{col}` has values outside [0, 1]")


def missing(path, what):
    raise KeyError(f"{path}: no prediction for {what}")


class Task:
    """The training side of one competition (see the module docstring).

    Subclasses set the class attributes and override the methods their
    competition needs.
    """

    name = None
    classes = ()
    kind = None
    metric = None
    higher_is_better = True
    sample_submission = "sample_submission.csv"
    # Kaggle's mask size (H, W) when the records do not record one.
    default_mask_size = None
    rle_convention = None
    # Labels: an empty row gets its most probable class (HPA).
    at_least_one = False
    # Whether records hold whole series (model.arch="sequence" reads them).
    series = False

    # --- records -> examples ----------------------------------------------
    def features(self, split):
        """The `tf.io.parse_single_example` spec of a `split` record."""
        raise NotImplementedError

    def decode(self, parsed, cfg, split, manifest=None):
        """A parsed record -> one example (see `kaggle_tf.data.pipeline`)."""
        raise NotImplementedError

    def decodes_stored_forms(self):
        """Whether `decode` takes `stored_forms=True`: targets and images
        left in the forms the records store, for an augmenter that takes
        them so (see `kaggle_tf.data.pipeline`)."""
        return False

    # `expand(parsed, cfg, split) -> tf.data.Dataset`: defined by plugins
    # whose records hold several examples (an ICH series -> its slices).
    expand = None

    # --- targets and models -----------------------------------------------
    def predicts_masks(self, cfg):
        """Whether `cfg`'s model predicts this task's masks."""
        return (self.kind == "segmentation"
                and output_kind(cfg.model.arch) == "masks")

    def target_key(self, cfg):
        """The example key the model learns: masks or labels."""
        return "segmentation_masks" if self.predicts_masks(cfg) else "labels"

    def model_config(self, cfg):
        """`cfg.model` with the task's defaults filled in."""
        return cfg.model

    def adapt_model(self, model):
        """The built model in the layout the task's targets have."""
        return model

    # --- the Kaggle metric --------------------------------------------------
    def score(self, truth, probs, cfg=None):
        """Out-of-fold predictions -> the Kaggle metric (float)."""
        raise NotImplementedError

    def score_terms(self, truth, probs, cfg=None):
        """The parts of the score where the metric has some, else None."""
        return None

    def streaming_metric(self, cfg=None):
        """The Keras metric named "kaggle_metric" accumulating `score`."""
        raise NotImplementedError

    def metrics(self, cfg=None):
        """What `model.compile(metrics=...)` takes; the first is the
        Kaggle metric, logged as `kaggle_metric` / `val_kaggle_metric`."""
        return [self.streaming_metric(cfg)]

    # --- post-processing ----------------------------------------------------
    def tune(self, cfg, probs, truth, thresholds=None, min_areas=None,
             bottom_thresholds=None):
        """Searches post-processing on OOF; returns postprocess.json's
        fields. Default: nothing to tune (identity post-processing)."""
        value = float(self.score(truth, probs, cfg))
        return {"thresholds": None, "min_area": None, "triplet": None,
                "metric_before": value, "metric_after": value}

    def mask_size(self, manifest=None):
        """`(H, W)` of the submitted masks: the raw images' size as the
        manifest recorded it, else Kaggle's fixed size."""
        size = (manifest or {}).get("image_size")
        if size:
            return tuple(int(v) for v in size)
        return self.default_mask_size

    def labels(self, probs, thresholds):
        """Classification probabilities -> uint8 labels (`probs > t`);
        with `at_least_one` an empty row takes its most probable class."""
        probs = np.asarray(probs, np.float32)
        th = per_class(thresholds, probs.shape[-1], "inference.thresholds")
        labels = probs > th
        if self.at_least_one:
            empty = ~labels.any(axis=-1)
            top = np.argmax(probs, axis=-1)
            labels[empty, top[empty]] = True
        return labels.view(np.uint8)

    # --- submission ---------------------------------------------------------
    def add_rows(self, predictions, ids, outputs):
        """Adds a batch's post-processed outputs to `predictions`, the
        mapping `fill` reads."""
        for image_id, p in zip(ids, outputs["probs"]):
            predictions[image_id] = p

    def submission_rows(self, sample):
        """The rows of the sample submission that the file keeps."""
        return sample

    def fill(self, sample, path, predictions):
        """The sample submission with its value columns filled."""
        raise NotImplementedError

    def check_values(self, df, path):
        """Raises ValueError when a written submission's values are bad."""


class SegmentationTask(Task):
    """Masks per class, scored by Dice; a classifier trained on such a
    task (Severstal's gate) predicts per-class presence, scored by the
    macro F1 of presence."""

    kind = "segmentation"
    # Channels the images are stored with (SIIM: grayscale).
    stored_channels = None

    def features(self, split):
        return codec.segmentation_features(split, len(self.classes))

    def decode(self, parsed, cfg, split, manifest=None, stored_forms=False):
        channels = self.stored_channels or cfg.data.channels
        return codec.segmentation_example(parsed, cfg, split, manifest,
                                          len(self.classes), channels,
                                          stored_forms=stored_forms)

    def decodes_stored_forms(self):
        """Masks packed a bit per class fit uint8 up to 8 classes."""
        return len(self.classes) <= 8

    def dice(self, truth, pred):
        raise NotImplementedError

    def score(self, truth, probs, cfg=None):
        """Binarizes and scores `SCORE_CHUNK` images at a time: a fold's
        masks stay in their stored dtypes (float16 probabilities, int8
        truth), with no float64 or boolean copy of the whole fold (a
        Severstal fold at full size is ~2500 x 256 x 1600 x 4 values). Both
        Dice scores are means over images (Severstal: over image-class
        pairs), so the chunks' means weighted by their image counts are the
        score."""
        probs = np.asarray(probs)
        if probs.ndim == 3:  # one class without its axis (SIIM)
            probs = probs[..., None]
        thresholds = kaggle_metrics.thresholds_for(cfg, probs.shape[-1])
        truth = np.asarray(truth)
        if probs.ndim == 2:  # presence labels of a gate classifier
            return kaggle_metrics.f1_macro(truth >= 0.5, probs > thresholds)
        if len(truth) != len(probs):
            raise ValueError(
                "`truth` and `probs` need the same number of images. "
                f"Received: {len(truth)} and {len(probs)}")
        total, count = 0.0, 0
        for start in range(0, max(len(probs), 1), SCORE_CHUNK):
            chunk = slice(start, start + SCORE_CHUNK)
            # float16 > float64 compares the exact values (no rounding).
            pred = probs[chunk] > thresholds
            n = len(pred)
            total += self.dice(truth[chunk] >= 0.5, pred) * n
            count += n
        return total / count

    def presence_metric(self, cfg):
        return streaming.F1Macro(num_classes=int(cfg.model.classes),
                                 threshold=threshold(cfg),
                                 from_logits=from_logits(cfg),
                                 name=KAGGLE_METRIC)

    def metrics(self, cfg=None):
        if cfg is not None and not self.predicts_masks(cfg):
            return [self.presence_metric(cfg)]
        return [self.streaming_metric(cfg)]


class ClassificationTask(Task):
    """Per-image labels."""

    kind = "classification"
