"""SavedModel export of image models for TF Serving and Kaggle kernels.

`export(cfg, out_dir)` writes `out_dir/<version>/` (TF Serving's layout:
numbered versions, the newest served) holding one graph with the fold and
checkpoint ensemble, TTA and post-processing inside:

    image_bytes (B,) string            images (B, H, W, C) float32
      -> decode_image, [0, 1], resize        |
      -> ensemble of TTA-wrapped checkpoints (kaggle_tf.inference.predict)
      -> postprocess_tf: thresholds + min area or triplet (model resolution)
         [-> classifier gating]  -> bilinear resize to Kaggle's mask size

Signatures:

- `serving_default`: `image_bytes` (string, `(batch,)`), encoded JPEG/PNG
  as Kaggle ships them (HPA: one 4-channel PNG, R, G, B, Y) ->
  `probs` and `masks` (segmentation) or `probs` and `labels`
  (classification).
- `predict_images`: `images` float32 `(batch, H, W, C)` in [0, 1] at
  `cfg.data.image_size` (for DICOM tasks, the windowed array) -> the same
  outputs.

The outputs equal `kaggle_tf.inference.predict.Predictor` on the same
images. The graph holds only TensorFlow ops (no `PyFunc`): serving or
reloading it needs TensorFlow alone, not kaggle_tf or Keras.

Example:

>>> path = export(cfg, "exports/steel")          # exports/steel/1
>>> served = tf.saved_model.load(path)
>>> out = served.signatures["serving_default"](image_bytes=tf.constant(
...     [open("test_images/0a1b2c.jpg", "rb").read()]))
>>> out["masks"].shape                           # (1, 256, 1600, 4)
"""

import os

import numpy as np
import tensorflow as tf

from kaggle_tf import tasks
from kaggle_tf.export import saved_model
from kaggle_tf.inference import predict as predict_lib
from kaggle_tf.postprocess import tf_ops

INPUT_BYTES = saved_model.INPUT_BYTES
INPUT_IMAGES = saved_model.INPUT_IMAGES


class ServingGraph:
    """The exported computation: ensemble -> post-processing.

    A plain object, not a `tf.Module`: the SavedModel tracks only the
    variables (`variables`), not the Keras layer tree, which keeps it small
    and quick to save and load.

    Args:
        cfg: a validated config.
        model: the ensemble (`predict.ensemble_model`), images ->
            probabilities.
        params: `predict.load_postprocess(cfg)`.
        classifier: the gating classifier's ensemble, or None.
    """

    def __init__(self, cfg, model, params, classifier=None):
        self.model = model
        self.classifier = classifier
        task = tasks.get(cfg.task)
        self.segmentation = task.predicts_masks(cfg)
        self.at_least_one = task.at_least_one
        self.original = predict_lib.mask_size(cfg)
        # The output's last axis: RSNA lumbar's 75 logits come out as
        # (25, 3), thresholded per severity as predict does.
        classes = model.output_shape[-1]
        p = predict_lib.class_params(params, classes)
        self.thresholds = p["thresholds"]
        self.min_area = p["min_area"]
        self.triplet = p["triplet"]
        self.gate = np.asarray(cfg.inference.classifier_threshold,
                               np.float32)

    @property
    def variables(self):
        """The `tf.Variable`s the graph reads (ensemble and classifier)."""
        models = [self.model] + ([self.classifier] if self.classifier
                                 else [])
        return [v.value for m in models for v in m.variables]

    def _masks(self, probs, images):
        if self.triplet is not None:
            top, area, bottom = self.triplet
            masks = tf_ops.triplet_tf(probs, top, area, bottom)
            pixel = bottom
        else:
            masks = tf_ops.apply_thresholds_tf(
                probs, self.thresholds, self.min_area)
            pixel = self.thresholds
        if self.classifier is not None:
            size = self.classifier.input_shape[1:3]
            x = images
            if None not in size and tuple(size) != tuple(images.shape[1:3]):
                x = tf.image.resize(images, size, method="bilinear")
            class_probs = tf.cast(self.classifier(x, training=False),
                                  tf.float32)
            masks = tf_ops.gating_tf(masks, class_probs, self.gate)
        if self.original is not None and tuple(probs.shape[1:3]) != tuple(
                self.original):
            keep = tf.reduce_any(masks > 0, axis=[1, 2], keepdims=True)
            probs = tf.image.resize(probs, self.original, method="bilinear")
            masks = tf.cast(tf.logical_and(probs > tf.constant(pixel),
                                           keep), tf.uint8)
        return probs, masks

    def outputs(self, images):
        """images `(batch, H, W, C)` -> the signature's output dict."""
        probs = tf.cast(self.model(images, training=False), tf.float32)
        return self.finish(probs, images)

    def finish(self, probs, images):
        """Ensemble probabilities -> the signature's output dict (`images`
        feed the gating classifier)."""
        if self.segmentation:
            probs, masks = self._masks(probs, images)
            return {"probs": probs, "masks": tf.cast(masks, tf.uint8)}
        labels = probs > tf.constant(self.thresholds)
        if self.at_least_one:
            top = tf.one_hot(tf.argmax(probs, axis=-1), probs.shape[-1],
                             on_value=True, off_value=False)
            empty = tf.logical_not(tf.reduce_any(labels, -1, keepdims=True))
            labels = tf.logical_or(labels, tf.logical_and(empty, top))
        return {"probs": probs, "labels": tf.cast(labels, tf.uint8)}


def build_graph(cfg, tta=None, folds=None, float32=False):
    """The `ServingGraph` of a config's trained folds, and its Predictor
    (`float32`: mixed-precision checkpoints computing in float32)."""
    predictor = predict_lib.Predictor(cfg, tta, folds, float32)
    return ServingGraph(cfg, predictor.model, predictor.params,
                        predictor.classifier), predictor


def export(cfg, out_dir, tta=None, folds=None, version=None):
    """Writes an image model's SavedModel with both signatures (the
    arguments, return value and errors of `export.run.export`)."""
    version = version or saved_model.next_version(out_dir)
    final = os.path.join(out_dir, str(version))
    if tf.io.gfile.exists(final):
        raise FileExistsError(f"{final} exists; versions are immutable")
    graph, predictor = build_graph(cfg, tta, folds)
    shape = predictor.model.input_shape
    c = shape[-1]
    h, w = (shape[1], shape[2]) if None not in shape[1:3] else tuple(
        cfg.data.image_size)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name=INPUT_BYTES)])
    def serving_default(image_bytes):
        return graph.outputs(saved_model.decode(image_bytes, (h, w), c))

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, c], tf.float32,
                                                name=INPUT_IMAGES)])
    def predict_images(images):
        return graph.outputs(images)

    return saved_model.save(graph.variables,
                {"serving_default": serving_default,
                 "predict_images": predict_images}, out_dir, version)


