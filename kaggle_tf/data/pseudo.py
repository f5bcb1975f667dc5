"""Pseudo-labelled records: a finished run's test predictions as training data.

`write_records(cfg)` reads the run's `test_probs.npz` (`ids`, `probs`;
`kaggle_tf.predict --save-probs` writes it, for an ensemble too) and the
test records of `cfg.data.records_dir`, and writes the images again with
labels into `cfg.pseudo.records_dir`, in the records' format (one split,
`train`, fold -1, shards of `data.shard_size`, each with its size and
sha256 in `manifest.json`, written last):

- `pseudo.mode="hard"`: a class is positive when its probability is at
  least `pseudo.thresholds[c]` (segmentation: per pixel, at the stored
  image size after a bilinear resize of the model-size probabilities);
  an image is kept only when every class is confident: its probability
  (segmentation: its highest pixel's) is >= `pseudo.confidence[c]` or
  <= 1 - `pseudo.confidence[c]`;
- `pseudo.mode="soft"` (classification): the probabilities are the labels,
  every image kept.

Series records (RSNA ICH: one record per series) stay series: each slice
gets its labels from its own row of `test_probs.npz` (the slice ids), as
above, and a series is kept when every slice is confident. The manifest
counts series as records and slices as examples.

Training mixes them in with `data.pseudo_records` (`make_dataset` and
`series.make_series_dataset` of the training folds only; validation never
sees them): `data.pseudo_weight` is
the share of pseudo-labelled examples in the training stream (null: their
share by count).

Example:

>>> manifest = write_records(cfg)                      # doctest: +SKIP
>>> manifest["splits"]["train"]["records"]             # doctest: +SKIP
812
"""

import os

import numpy as np
import tensorflow as tf
from PIL import Image

from kaggle_tf import files
from kaggle_tf import layout
from kaggle_tf import tasks
from kaggle_tf.data import records
from tfrecords_tools import encode
from tfrecords_tools import schema
from tfrecords_tools import writer


class PseudoError(ValueError):
    """Predictions that cannot become pseudo-labels; names the file."""


def _per_class(values, k, key):
    values = list(values)
    if len(values) == 1:
        values = values * k
    if len(values) != k:
        raise PseudoError(f"`{key}` needs 1 or {k} values. Received: "
                          f"{values}")
    return np.asarray(values, np.float64)


def _resize(probs, height, width):
    """(h, w, K) model-size probabilities -> (height, width, K), bilinear."""
    if probs.shape[:2] == (height, width):
        return probs
    return np.stack([np.asarray(Image.fromarray(
        probs[..., c].astype(np.float32)).resize((width, height),
                                                 Image.BILINEAR))
        for c in range(probs.shape[-1])], axis=-1)


def label(cfg, probs, height=None, width=None):
    """One image's pseudo-label: `(features to add, kept)`."""
    task = tasks.get(cfg.task)
    seg = task.kind == "segmentation"
    probs = np.asarray(probs, np.float64)
    if seg and probs.ndim == 2:
        probs = probs[..., None]
    k = probs.shape[-1]
    conf = _per_class(cfg.pseudo.confidence, k, "pseudo.confidence")
    if cfg.pseudo.mode == "soft":
        return {schema.LABELS: probs.reshape(-1).tolist()}, True
    th = _per_class(cfg.pseudo.thresholds, k, "pseudo.thresholds")
    score = probs.reshape(-1, k).max(axis=0) if seg else probs
    kept = bool(np.all((score >= conf) | (score <= 1 - conf)))
    if not seg:
        return {schema.LABELS: (probs >= th).astype(np.float32).tolist()}, \
            kept
    masks = _resize(probs, height, width) >= th
    presence = masks.reshape(-1, k).any(axis=0).astype(np.float32)
    return {schema.MASK: encode.pack_mask(masks),
            schema.LABELS: presence.tolist()}, kept


def load_predictions(cfg):
    """{id: probs} of the source run's test_probs.npz."""
    source = cfg.pseudo.source or cfg.output_dir
    path = layout.RunLayout(source).path(layout.TEST_PROBS)
    ids, probs = files.load_npz(path, ("ids", "probs"),
                                hint="run python -m kaggle_tf.predict "
                                     "--save-probs on that run first")
    return path, {str(i): p for i, p in zip(ids, probs)}


def _image_record(cfg, features, predictions, path):
    """One test image's record -> (features, kept, [image id])."""
    image_id = features[schema.ID][0].decode()
    if image_id not in predictions:
        raise PseudoError(f"{path}: no prediction for test image "
                          f"{image_id}; predict the test set again")
    extra, keep = label(cfg, predictions[image_id],
                        int(features.get(schema.HEIGHT, [0])[0]),
                        int(features.get(schema.WIDTH, [0])[0]))
    features.update(extra)
    return features, keep, [image_id]


def _series_record(cfg, features, predictions, path):
    """One test series' record -> (features, kept, slice ids).

    Every slice gets its labels (T x K, row-major, as the converter's
    training records); the series is kept only when every slice is
    confident (a series is one training example of the sequence model).
    """
    ids = [v.decode() for v in features[schema.ID]]
    series = features.get(schema.SERIES, [b"?"])[0].decode()
    labels, keep = [], True
    for image_id in ids:
        if image_id not in predictions:
            raise PseudoError(f"{path}: no prediction for slice {image_id} "
                              f"of test series {series}; predict the test "
                              "set again")
        extra, kept = label(cfg, predictions[image_id])
        labels.extend(extra[schema.LABELS])
        keep = keep and kept
    features[schema.LABELS] = labels
    return features, keep, ids


def write_records(cfg):
    """Writes the pseudo-labelled records; returns their manifest.

    Series records (RSNA ICH) are written as the converter writes training
    series: one record per series, its slices' labels `T x K` row-major.
    """
    task = tasks.get(cfg.task)
    series = bool(task.series)
    if not series and task.kind not in ("segmentation", "classification"):
        raise PseudoError(f"pseudo-labels take image or series records; "
                          f"task {cfg.task!r} has {task.kind} records")
    if cfg.pseudo.mode == "soft" and task.kind == "segmentation":
        raise PseudoError("`pseudo.mode` 'soft' gives soft class labels; "
                          "segmentation masks are hard: use 'hard'")
    out = cfg.pseudo.records_dir
    if not out:
        raise PseudoError("`pseudo.records_dir` must name the folder of the "
                          "pseudo-labelled records")
    path, predictions = load_predictions(cfg)
    source = records.read_manifest(cfg.data.records_dir)
    shards = records.shard_files(cfg.data.records_dir, source, "test")
    tf.io.gfile.makedirs(out)
    old = os.path.join(out, schema.MANIFEST)
    if tf.io.gfile.exists(old):  # stale until the new one is written
        tf.io.gfile.remove(old)
    one = _series_record if series else _image_record
    kept, seen, dropped, kept_ids, examples = [], 0, 0, [], 0
    for raw in tf.data.TFRecordDataset(shards).as_numpy_iterator():
        features, keep, ids = one(cfg, encode.from_example(raw),
                                  predictions, path)
        seen += len(ids)
        if not keep:
            dropped += 1
            continue
        features[schema.FOLD] = schema.TEST_FOLD
        kept.append(encode.serialize(features))
        kept_ids.extend(ids)
        examples += len(ids)
    if not kept:
        raise PseudoError(f"{path}: no test {'series' if series else 'image'}"
                          " is confident enough (lower pseudo.confidence)")
    size = cfg.data.shard_size
    count = -(-len(kept) // size)
    entries = []
    for s in range(count):
        name = schema.shard_name("train", s, count)
        final = os.path.join(out, name)
        n = writer.write_part(final, kept[s * size:(s + 1) * size])
        entries.append({"file": name, "records": n, "fold": schema.TEST_FOLD,
                        "bytes": tf.io.gfile.stat(final).length,
                        "sha256": writer.file_sha256(final)})
    for stale in writer.final_shards(out, "train"):
        if stale not in {e["file"] for e in entries}:
            tf.io.gfile.remove(os.path.join(out, stale))
    fold = str(schema.TEST_FOLD)
    empty = {"records": 0, "skipped": 0, "shards": [],
             "records_per_fold": {}, "examples_per_fold": {}}
    info = {"predictions": path, "mode": cfg.pseudo.mode,
            "thresholds": list(cfg.pseudo.thresholds),
            "confidence": list(cfg.pseudo.confidence),
            "test_images": seen, "kept": examples, "ids": kept_ids}
    if series:
        info.update(test_series=len(kept) + dropped, kept_series=len(kept))
    manifest = {
        **{k: source[k] for k in ("schema_version", "task", "kind",
                                  "classes", "num_classes", "channels",
                                  "image_size", "folds", "seed")},
        "features": {"train": {k: schema.TYPES[k] for k in sorted(
            set(source["features"].get("test", {})) | {
                schema.LABELS, schema.FOLD}
            | ({schema.MASK} if task.kind == "segmentation" else set()))},
            "test": {}},
        "shard_size": size,
        "splits": {"train": {
            "records": len(kept), "skipped": dropped, "shards": entries,
            "records_per_fold": {fold: len(kept)},
            "examples_per_fold": {fold: examples}}, "test": empty},
        "pseudo": info,
        "skipped": 0, "errors_csv": None,
    }
    writer.write_json(os.path.join(out, schema.MANIFEST), manifest)
    return manifest
