"""SIIM-ACR pneumothorax segmentation: one mask per chest X-ray.

Records: an 8-bit PNG of the DICOM and a one-class mask; the grayscale
image is repeated to `data.channels`. Metric: mean Dice over images, 1
where both are empty. Submission: one row per image, SIIM's RLE
(column-major, relative offsets), "-1" for no pneumothorax.
Post-processing tuned on OOF: the 1st place's triplet (top score
threshold, min area, bottom threshold).

Example:

>>> from kaggle_tf import tasks
>>> tasks.get("siim").rle_convention
'siim'
"""

import numpy as np

from kaggle_tf import rle
from kaggle_tf.metrics import kaggle as kaggle_metrics
from kaggle_tf.metrics import streaming
from kaggle_tf.postprocess import tune as search
from kaggle_tf.tasks import base
from tfrecords_tools.competitions import siim


class Siim(base.SegmentationTask):
    name = "siim"
    classes = siim.CLASSES
    metric = "siim_dice"
    sample_submission = siim.SAMPLE_SUBMISSION
    default_mask_size = siim.DEFAULT_SIZE
    rle_convention = "siim"
    stored_channels = 1

    def dice(self, truth, pred):
        return kaggle_metrics.siim_dice(truth, pred)

    def streaming_metric(self, cfg=None):
        threshold = base.threshold(cfg)
        if isinstance(threshold, list):
            threshold = threshold[0]
        return streaming.SiimDice(threshold=threshold,
                                  from_logits=base.from_logits(cfg),
                                  name=base.KAGGLE_METRIC)

    def tune(self, cfg, probs, truth, thresholds=None, min_areas=None,
             bottom_thresholds=None):
        """The triplet (top, min area, bottom), on SIIM's Dice."""
        if probs.ndim == 4 and probs.shape[-1] == 1:
            probs, truth = probs[..., 0], truth[..., 0]
        base.check_layout(probs, truth, (3,), "(N, H, W) or (N, H, W, 1)",
                          "siim")
        inf = cfg.inference
        if inf.triplet:
            top, area, bottom = inf.triplet
        else:
            top = bottom = float(base.config_param(inf.thresholds, 1,
                                                   "thresholds")[0])
            area = int(base.config_param(inf.min_area, 1, "min_area",
                                         np.int64)[0])
        before = search.score_triplet(probs, truth, top, int(area), bottom)
        best = search.search_triplet(
            probs, truth, thresholds,
            search.area_grid(min_areas, probs.shape[1:3]), bottom_thresholds)
        top, area, bottom = best["triplet"]
        return {"thresholds": [bottom], "min_area": [area],
                "triplet": [top, area, bottom], "metric_before": before,
                "metric_after": best["score"],
                "image_size": list(probs.shape[1:3])}

    def add_rows(self, predictions, ids, outputs):
        """{image_id: rle}, from the one-class masks."""
        for image_id, mask in zip(ids, outputs["masks"]):
            predictions[image_id] = rle.encode(mask[..., 0],
                                               convention=self.rle_convention)

    def submission_rows(self, sample):
        # The sample repeats ids that have several masks; one row each.
        return sample.drop_duplicates(subset=["ImageId"])

    def fill(self, sample, path, predictions):
        """predictions: {image_id: rle or "-1"}; one row per image."""
        out = self.submission_rows(sample).copy()
        values = []
        for key in out["ImageId"]:
            if key not in predictions:
                base.missing(path, f"image {key}")
            values.append(predictions[key] or siim.EMPTY)
        out["EncodedPixels"] = values
        return out


TASK = Siim()
