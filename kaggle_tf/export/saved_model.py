"""SavedModel export for TF Serving and offline Kaggle kernels.

`export(cfg, out_dir)` writes `out_dir/<version>/` (TF Serving's layout:
numbered versions, the newest served) holding one graph with the fold and
checkpoint ensemble, TTA and post-processing inside. Signatures:

- `serving_default`: `image_bytes` (string, (B,)) encoded JPEG/PNG as Kaggle
  ships them -> `probs` and `masks` (segmentation) or `probs` and `labels`
  (classification).
- `predict_images`: `images` float32 (B, H, W, C) in [0, 1] (for DICOM tasks,
  the windowed/normalized array) -> the same outputs.

The graph holds only TensorFlow ops: reloading it needs TensorFlow alone,
not kaggle_tf.
"""

import os

import keras
import tensorflow as tf

from kaggle_tf.export import postprocess_tf
from kaggle_tf.inference import predict as predict_lib

SEGMENTATION = ("unet", "fpn")


def next_version(out_dir):
    """1 + the largest numeric version folder in `out_dir` (1 if none)."""
    if not tf.io.gfile.exists(out_dir):
        return 1
    versions = [int(n.rstrip("/")) for n in tf.io.gfile.listdir(out_dir)
                if n.rstrip("/").isdigit()]
    return max(versions, default=0) + 1


def _decode(image_bytes, size, channels):
    def one(data):
        image = tf.io.decode_image(data, channels=channels,
                                   expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        return tf.image.resize(image, size)

    return tf.map_fn(one, image_bytes,
                     fn_output_signature=tf.TensorSpec(
                         (size[0], size[1], channels), tf.float32))


class ServingModule(tf.Module):
    """The exported graph: ensemble -> resize -> post-processing."""

    def __init__(self, cfg, model, params):
        super().__init__()
        self.model = model
        self.size = tuple(cfg.data.image_size)
        self.channels = cfg.data.channels
        self.segmentation = cfg.model.arch in SEGMENTATION
        self.original = predict_lib.ORIGINAL_SIZE.get(cfg.task)
        classes = cfg.model.classes
        th = predict_lib._per_class(params["thresholds"], classes,
                                    "thresholds")
        self.thresholds = tf.constant(th, tf.float32)
        if self.segmentation:
            areas = predict_lib._per_class(params["min_area"], classes,
                                           "min_area")
            self.min_area = tf.constant(areas, tf.int32)
        self.triplet = params.get("triplet")

    def outputs(self, images):
        probs = tf.cast(self.model(images, training=False), tf.float32)
        if not self.segmentation:
            labels = tf.cast(probs > self.thresholds, tf.uint8)
            return {"probs": probs, "labels": labels}
        if self.original is not None:
            probs = tf.image.resize(probs, self.original)
        if self.triplet:
            top, area, bottom = self.triplet
            masks = postprocess_tf.triplet_tf(probs, top, int(area), bottom)
        else:
            masks = postprocess_tf.apply_thresholds_tf(
                probs, self.thresholds, self.min_area)
        return {"probs": probs, "masks": tf.cast(masks, tf.uint8)}


def export(cfg, out_dir, tta=None, folds=None, version=None):
    """Writes the SavedModel; returns the version folder's path."""
    paths = predict_lib.checkpoint_paths(cfg, folds)
    mode = tta or cfg.inference.tta
    model = predict_lib.ensemble_model(cfg, paths, mode)
    params = predict_lib.load_postprocess(cfg)
    module = ServingModule(cfg, model, params)
    h, w = cfg.data.image_size
    c = cfg.data.channels

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name="image_bytes")])
    def serving_default(image_bytes):
        return module.outputs(_decode(image_bytes, (h, w), c))

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, c], tf.float32,
                                                name="images")])
    def predict_images(images):
        return module.outputs(images)

    version = version or next_version(out_dir)
    final = os.path.join(out_dir, str(version))
    if tf.io.gfile.exists(final):
        raise FileExistsError(f"{final} exists; versions are immutable")
    tmp = os.path.join(out_dir, f".tmp-{version}-{os.getpid()}")
    tf.io.gfile.makedirs(out_dir)
    tf.saved_model.save(
        module, tmp,
        signatures={"serving_default": serving_default,
                    "predict_images": predict_images})
    tf.io.gfile.rename(tmp, final)
    keras.backend.clear_session()
    return final
