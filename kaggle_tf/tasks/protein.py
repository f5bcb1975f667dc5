"""Human Protein Atlas: 28-class multilabel classification of RGBY cells.

Records: the red, green, blue and yellow PNGs as stored;
`data.channels` = 4 gives RGBY, 3 gives RGB (yellow left out). Metric:
macro F1 over the 28 classes. Submission: `Id,Predicted` with the
space-separated class ids; an empty prediction takes its most probable
class (an empty row scores 0). Post-processing tuned on OOF: a threshold
per class.

Example:

>>> from kaggle_tf import tasks
>>> len(tasks.get("protein").classes)
28
"""

import numpy as np
import tensorflow as tf

from kaggle_tf.metrics import kaggle as kaggle_metrics
from kaggle_tf.metrics import streaming
from kaggle_tf.postprocess import tune as search
from kaggle_tf.tasks import base
from tfrecords_tools import decode as codec
from tfrecords_tools import schema
from tfrecords_tools.competitions import protein


class Protein(base.ClassificationTask):
    name = "protein"
    classes = protein.CLASSES
    metric = "f1_macro"
    sample_submission = protein.SAMPLE_SUBMISSION
    at_least_one = True

    def features(self, split):
        spec = {
            schema.ID: tf.io.FixedLenFeature([], tf.string),
            schema.IMAGE: tf.io.FixedLenFeature([len(protein.COLORS)],
                                                tf.string),
            schema.FOLD: tf.io.FixedLenFeature(
                [], tf.int64, default_value=schema.TEST_FOLD),
        }
        if split == "train":
            spec[schema.LABELS] = tf.io.FixedLenFeature([len(self.classes)],
                                                        tf.float32)
        return spec

    def decode(self, parsed, cfg, split, manifest=None):
        """A parsed record -> `images` (H, W, 3 or 4), `labels`, meta."""
        channels = cfg.data.channels
        if channels not in (3, 4):
            raise ValueError(f"protein images have 4 channels (RGBY) or 3 "
                             f"(RGB): data.channels must be 3 or 4. "
                             f"Received: {channels}")
        image = codec.decode_images(parsed[schema.IMAGE], channels)
        out = {
            "images": codec.resize_image(image, cfg.data.image_size,
                                         (manifest or {}).get("image_size")),
            "id": parsed[schema.ID],
            "fold": parsed[schema.FOLD],
        }
        if split == "train":
            out["labels"] = tf.ensure_shape(parsed[schema.LABELS],
                                            (len(self.classes),))
        return out

    def score(self, truth, probs, cfg=None):
        probs = np.asarray(probs, dtype=np.float64)
        pred = probs > kaggle_metrics.thresholds_for(cfg, probs.shape[-1])
        return kaggle_metrics.f1_macro(np.asarray(truth) >= 0.5, pred)

    def streaming_metric(self, cfg=None):
        classes = len(self.classes) if cfg is None else int(cfg.model.classes)
        return streaming.F1Macro(num_classes=classes,
                                 threshold=base.threshold(cfg),
                                 from_logits=base.from_logits(cfg),
                                 name=base.KAGGLE_METRIC)

    def tune(self, cfg, probs, truth, thresholds=None, min_areas=None,
             bottom_thresholds=None):
        """A threshold per class, on macro F1."""
        base.check_layout(probs, truth, (2,), "(N, classes)", "protein")
        th = base.config_param(cfg.inference.thresholds, probs.shape[1],
                               "thresholds")
        before = search.score_class_thresholds(probs, truth, th)
        best = search.search_class_thresholds(probs, truth, thresholds)
        return {"thresholds": best["thresholds"], "min_area": None,
                "triplet": None, "metric_before": before,
                "metric_after": best["score"]}

    def add_rows(self, predictions, ids, outputs):
        """{id: class ids}, from the labels."""
        for image_id, row in zip(ids, outputs["labels"]):
            predictions[image_id] = np.flatnonzero(row)

    def fill(self, sample, path, predictions):
        """predictions: {id: iterable of class ids}."""
        out = sample.copy()
        values = []
        for key in out["Id"]:
            if key not in predictions:
                base.missing(path, f"image {key}")
            values.append(" ".join(str(int(c))
                                   for c in sorted(predictions[key])))
        out["Predicted"] = values
        return out


TASK = Protein()
