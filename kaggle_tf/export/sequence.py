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

An ensemble of series experiments (`export.ensemble`) is one SavedModel
with the same signatures: every member's folds inside, each member's HU
resized and windowed with its own `data.image_size` and `data.windows`,
probabilities blended by weight (`ensemble.merge`). `predict_series`
takes images at the first member's size and windows (resized to each
member's); it is left out when the members' windows differ.

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


class SeriesMember:
    """One series model of a SavedModel: its `series_ensemble`, the slice
    size and windows its data pipeline gives it, and its blend weight."""

    def __init__(self, model, image_size, windows, weight=1.0):
        self.model = model
        self.size = tuple(int(v) for v in image_size)
        self.windows = tuple(tuple(float(v) for v in w) for w in windows)
        self.weight = float(weight)


def member_of(cfg, folds=None, weight=1.0):
    """The `SeriesMember` of a series config (its folds loaded)."""
    task = tasks.get(cfg.task)
    return SeriesMember(seq_inference.series_ensemble(cfg, folds),
                        cfg.data.image_size, task.windows(cfg), weight)


def signatures(task, members, geometric=False):
    """`{"serving_default", "predict_series"}` of the weighted blend of
    `members` (one member: its model alone).

    `serving_default` windows the HU for each member with its own size and
    windows; `predict_series` takes images windowed with the first
    member's windows at its size (resized to each member's); it is left
    out when the members' windows differ (windowed images cannot be
    windowed again).
    """
    total = sum(m.weight for m in members)
    first = members[0]
    h, w = first.size
    c = len(first.windows)

    def outputs(images_of, mask):
        blend = None
        for m in members:
            p = tf.cast(m.model({"images": images_of(m), "mask": mask},
                                training=False), tf.float32)
            if len(members) == 1:
                blend = p
                break
            if geometric:
                p = tf.math.log(tf.maximum(p, 1e-7))
            p = (m.weight / total) * p
            blend = p if blend is None else blend + p
        if len(members) > 1:
            if geometric:
                blend = tf.exp(blend)
            blend = blend * tf.cast(mask > 0, tf.float32)[..., None]
        return {"probs": blend, "labels": tf.cast(blend > 0.5, tf.uint8)}

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, None], tf.float32, name=INPUT_HU),
        tf.TensorSpec([None, None], tf.float32, name=INPUT_MASK)])
    def serving_default(hu, mask):
        return outputs(lambda m: window_series(task, hu, m.size, m.windows),
                       mask)

    out = {"serving_default": serving_default}
    if any(m.windows != first.windows for m in members):
        return out

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, h, w, c], tf.float32, name=INPUT_IMAGES),
        tf.TensorSpec([None, None], tf.float32, name=INPUT_MASK)])
    def predict_series(images, mask):
        return outputs(lambda m: resize_series(images, m.size), mask)

    out["predict_series"] = predict_series
    return out


def resize_series(images, size):
    """`(B, T, H, W, C)` -> `(B, T, size, C)`, bilinear (as is if equal)."""
    if tuple(images.shape[2:4]) == tuple(size):
        return images
    shape = tf.shape(images)
    flat = tf.reshape(images, tf.concat([[-1], shape[2:]], axis=0))
    flat = tf.image.resize(flat, size, method="bilinear")
    return tf.reshape(flat, tf.concat(
        [shape[:2], tf.constant(size, tf.int32), shape[4:]], axis=0))


def save(members, out_dir, version=None, task=None, geometric=False):
    """Writes the `signatures` of `members` as `out_dir/<version>/`."""
    version = version or saved_model.next_version(out_dir)
    variables = [v.value for m in members for v in m.model.variables]
    return saved_model.save(variables,
                            signatures(task, members, geometric),
                            out_dir, version)


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
    return save([member_of(cfg, folds)], out_dir, version,
                tasks.get(cfg.task))
