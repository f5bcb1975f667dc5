"""Severstal steel defect detection: 4 classes of defect masks.

Records: one JPEG and a 4-class bit-packed mask. Metric: mean Dice over
(image, class) pairs, 1 where both masks are empty. Submission: one row per
image and class, `EncodedPixels` in Severstal's RLE (column-major, 1-based).
Post-processing tuned on OOF: a threshold and a minimum area per class.

Example:

>>> from kaggle_tf import tasks
>>> tasks.get("steel").classes
('1', '2', '3', '4')
"""

import numpy as np

from kaggle_tf import rle
from kaggle_tf.metrics import kaggle as kaggle_metrics
from kaggle_tf.metrics import streaming
from kaggle_tf.postprocess import tune as search
from kaggle_tf.tasks import base
from tfrecords_tools.competitions import steel


class Steel(base.SegmentationTask):
    name = "steel"
    classes = steel.CLASSES
    metric = "mean_dice"
    sample_submission = steel.SAMPLE_SUBMISSION
    default_mask_size = steel.DEFAULT_SIZE
    rle_convention = "severstal"

    def dice(self, truth, pred):
        return kaggle_metrics.mean_dice(truth, pred)

    def streaming_metric(self, cfg=None):
        return streaming.MeanDice(threshold=base.threshold(cfg),
                                  from_logits=base.from_logits(cfg),
                                  name=base.KAGGLE_METRIC)

    def tune(self, cfg, probs, truth, thresholds=None, min_areas=None,
             bottom_thresholds=None):
        """Threshold x min area per class, on mean Dice."""
        base.check_layout(probs, truth, (4,), "(N, H, W, classes)", "steel")
        classes = probs.shape[-1]
        inf = cfg.inference
        if inf.triplet:
            top, area, bottom = inf.triplet
            before = float(np.mean([
                search.score_triplet(probs[..., c], truth[..., c], top, area,
                                     bottom)
                for c in range(classes)]))
        else:
            th = base.config_param(inf.thresholds, classes, "thresholds")
            areas = base.config_param(inf.min_area, classes, "min_area",
                                      np.int64)
            before = search.score_thresholds(probs, truth, th, areas)
        best = search.search_thresholds(
            probs, truth, thresholds,
            search.area_grid(min_areas, probs.shape[1:3]))
        return {"thresholds": best["thresholds"],
                "min_area": best["min_area"], "triplet": None,
                "metric_before": before, "metric_after": best["score"],
                "image_size": list(probs.shape[1:3])}

    def add_rows(self, predictions, ids, outputs):
        """{(image_id, class_id 1..4): rle}, from the masks."""
        for image_id, mask in zip(ids, outputs["masks"]):
            for c in range(mask.shape[-1]):
                predictions[(image_id, c + 1)] = rle.encode(
                    mask[..., c], convention=self.rle_convention)

    def fill(self, sample, path, predictions):
        """predictions: {(image_id, class_id 1..4): rle string}."""
        out = sample.copy()
        if "ImageId_ClassId" in out.columns:
            keys = [(k.rsplit("_", 1)[0], int(k.rsplit("_", 1)[1]))
                    for k in out["ImageId_ClassId"]]
        else:
            keys = list(zip(out["ImageId"], out["ClassId"].astype(int)))
        values = []
        for key in keys:
            if key not in predictions:
                base.missing(path, f"image {key[0]} class {key[1]}")
            values.append(predictions[key])
        out["EncodedPixels"] = values
        return out


TASK = Steel()
