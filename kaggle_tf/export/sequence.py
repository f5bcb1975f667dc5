"""SavedModel of the RSNA ICH sequence recipe: one series per row.

The graph is `kaggle_tf.inference.sequence.series_ensemble`: every
trained fold's slice classifier + sequence model, merged. Series of
different lengths are padded at the end and `mask` marks the real slices.

Signatures:

- `serving_default`: `hu` float32 `(batch, T, height, width)` Hounsfield
  units as `tfrecords_tools.dicom.read_hu` returns them (any size; resized
  bilinearly to `data.image_size` and windowed with `data.windows` in the
  graph, as the data pipeline does), slices in `ImagePositionPatient` z
  order, and `mask` float32 `(batch, T)` (1 = slice, 0 = padding) ->
  `probs` `(batch, T, 6)` (epidural, intraparenchymal, intraventricular,
  subarachnoid, subdural, any; 0 on padding) and `labels` uint8
  (`probs > 0.5`).
- `predict_series`: `images` float32 `(batch, T, H, W, C)` already
  windowed in [0, 1], and `mask` -> the same outputs.

Example:

>>> served = tf.saved_model.load("exports/rsna_ich_seq/1")  # doctest: +SKIP
>>> out = served.signatures["serving_default"](hu=hu[None], mask=mask[None])
>>> out["probs"].shape                                     # (1, T, 6)
"""

import tensorflow as tf

from kaggle_tf import tasks
from kaggle_tf.export import saved_model
from kaggle_tf.inference import sequence as seq_inference

INPUT_HU = "hu"
INPUT_IMAGES = "images"
INPUT_MASK = "mask"


def window_series(task, hu, image_size, windows):
    """`(B, T, h0, w0)` HU -> `(B, T, H, W, len(windows))` in [0, 1], with
    the windowing of `task` (a series plugin of `kaggle_tf.tasks`)."""
    h, w = image_size
    shape = tf.shape(hu)
    flat = tf.reshape(hu, tf.concat([[-1], shape[2:4], [1]], axis=0))
    flat = tf.image.resize(flat, (h, w), method="bilinear")
    x = task.window_hu(flat, windows)
    return tf.reshape(x, tf.concat([shape[:2], [h, w, len(windows)]],
                                   axis=0))


def export(cfg, out_dir, tta=None, folds=None, version=None):
    """Writes `out_dir/<version>/` with both signatures; returns its path.

    Raises:
        FileExistsError: the version folder exists.
        FileNotFoundError: no trained folds.
        ValueError: a TTA other than "none".
    """
    if tta not in (None, "none"):
        raise ValueError("--tta must be 'none' for model.arch="
                         f"'sequence'. Received: {tta!r}")
    task = tasks.get(cfg.task)
    model = seq_inference.series_ensemble(cfg, folds)
    version = version or saved_model.next_version(out_dir)
    h, w = (int(v) for v in cfg.data.image_size)
    windows = task.windows(cfg)
    c = len(windows)

    def outputs(images, mask):
        probs = tf.cast(model({"images": images, "mask": mask},
                              training=False), tf.float32)
        return {"probs": probs, "labels": tf.cast(probs > 0.5, tf.uint8)}

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, None], tf.float32, name=INPUT_HU),
        tf.TensorSpec([None, None], tf.float32, name=INPUT_MASK)])
    def serving_default(hu, mask):
        return outputs(window_series(task, hu, (h, w), windows), mask)

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, h, w, c], tf.float32, name=INPUT_IMAGES),
        tf.TensorSpec([None, None], tf.float32, name=INPUT_MASK)])
    def predict_series(images, mask):
        return outputs(images, mask)

    variables = [v.value for v in model.variables]
    return saved_model.save(variables,
                            {"serving_default": serving_default,
                             "predict_series": predict_series},
                            out_dir, version)
