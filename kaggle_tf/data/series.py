"""Whole RSNA ICH series as padded sequences, for CNN + LSTM models.

Each record of the rsna_ich task is one series with its slices already in
`ImagePositionPatient` order, so a sequence is one parsed record: no
grouping or sorting at read time, and everything is TensorFlow ops.

A series longer than `max_length` (`cfg.data.max_series_length`) is cut:
in training one random window of `max_length` consecutive slices, at
evaluation consecutive chunks covering every slice (so every slice gets a
prediction). Shorter ones are padded; `mask` is 1 on real slices.

Batches:

| key        | shape                   | content                            |
|------------|-------------------------|------------------------------------|
| `images`   | (B, T, H, W, C) float32 | `cfg.data.windows`, in [0, 1]      |
| `labels`   | (B, T, 6) float32       | epidural ... subdural, any         |
| `mask`     | (B, T) float32          | 1 = slice, 0 = padding             |
| `id`       | (B, T) string           | slice ids, "" for padding          |
| `index`    | (B, T) int32            | index in the series, -1 = padding  |
| `position` | (B, T) float32          | slice z                            |
| `series`   | (B,) string             | SeriesInstanceUID                  |

T = `max_length`, H, W = `cfg.data.image_size`, C = number of windows.

Training streams of the training folds (never validation, never the
test split) also draw the pseudo-labelled series of
`cfg.data.pseudo_records` (`kaggle_tf.pseudo`, fold -1) at
`cfg.data.pseudo_weight`.

Example:

>>> ds = make_series_dataset(cfg, folds=[0], training=False, batch_size=2)
>>> batch = next(iter(ds))
>>> batch["images"].shape                     # doctest: +SKIP
TensorShape([2, 64, 512, 512, 3])
"""

import tensorflow as tf

from kaggle_tf.data import pipeline
from kaggle_tf.data import records
from kaggle_tf import tasks

PER_SLICE = ("image_bytes", "id", "labels", "position")
# Series records are large (tens of slices): a smaller shuffle buffer.
MAX_SERIES_SHUFFLE = 64


def _chunks(parsed, max_length, training, seed):
    """A parsed series -> dataset of windows of at most `max_length`."""
    n = parsed["length"]
    if training:
        start = tf.random.uniform([], 0, tf.maximum(n - max_length, 0) + 1,
                                  dtype=tf.int32, seed=seed)
        starts = tf.reshape(start, [1])
    else:
        starts = tf.range(0, n, max_length)

    def take(start):
        end = tf.minimum(start + max_length, n)
        out = {k: parsed[k][start:end] for k in PER_SLICE}
        out["index"] = tf.range(start, end)
        out["series"] = parsed["series"]
        return out

    return tf.data.Dataset.from_tensor_slices(starts).map(take)


def _with_pseudo(ds, cfg, folds, seed, repeat):
    """The training series with the pseudo-labelled series of
    `data.pseudo_records` drawn in at their share (`data.pseudo_weight`,
    null: by count of series); without `repeat` the stream ends with the
    real series (about `pipeline.training_examples(unit="records")`)."""
    where = cfg.data.pseudo_records
    manifest = records.read_manifest(where)
    records.check_manifest(manifest, cfg, where)
    files = records.shard_files(where, manifest, "train", None)
    extra = tf.data.Dataset.from_tensor_slices(files).shuffle(
        len(files), seed=seed + 1, reshuffle_each_iteration=True)
    extra = extra.interleave(tf.data.TFRecordDataset,
                             cycle_length=min(len(files), 4),
                             num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=False)
    extra = extra.shuffle(min(cfg.data.shuffle_buffer, MAX_SERIES_SHUFFLE),
                          seed=seed + 1, reshuffle_each_iteration=True)
    weight = pipeline.pseudo_share(cfg, folds, unit="records")
    if repeat or weight < 1.0:  # weight 1, one pass: the pseudo series once
        extra = extra.repeat()
    return pipeline.mix(ds, extra, weight, seed, until_real_ends=not repeat)


def make_series_dataset(cfg, folds, training, batch_size=None,
                        split="train", max_length=None, seed=None,
                        drop_remainder=None, repeat=False):
    """A `tf.data.Dataset` of padded series batches (see the module doc).

    Args:
        cfg: a validated config of task `rsna_ich`.
        folds: fold ids to read; None for all (and for `split="test"`).
        training: shuffle, random windows of long series.
        batch_size: series per batch. Defaults to `cfg.train.batch_size`.
        split: "train" or "test". Defaults to `"train"`.
        max_length: T. Defaults to `cfg.data.max_series_length`.
        seed: shuffling and window seed. Defaults to `cfg.seed`.
        drop_remainder: drop a last smaller batch. Defaults to `training`
            (static shapes for TPUs).
        repeat: repeat forever. Defaults to `False`.

    Returns:
        The dataset of dict batches.

    Raises:
        FileNotFoundError: no manifest or a missing shard.
        ValueError: another task, or no shard of `folds`.
    """
    task = tasks.get(cfg.task)
    if not task.series:
        raise ValueError(f"make_series_dataset reads series records "
                         f"(rsna_ich). Received: task={cfg.task!r}")
    seed = cfg.seed if seed is None else seed
    manifest = records.read_manifest(cfg.data.records_dir)
    records.check_manifest(manifest, cfg, cfg.data.records_dir)
    files = records.shard_files(cfg.data.records_dir, manifest, split,
                                None if split == "test" else folds)
    if not files:
        raise ValueError(f"no {split} records in folds {folds} of "
                         f"{cfg.data.records_dir}")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset,
                       cycle_length=min(len(files), 4),
                       num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=not training)
    if training:
        ds = ds.shuffle(min(cfg.data.shuffle_buffer, MAX_SERIES_SHUFFLE),
                        seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if (training and split == "train" and folds is not None
            and cfg.data.pseudo_records):
        ds = _with_pseudo(ds, cfg, folds, seed, repeat)
    return series_batches(cfg, ds, training, batch_size=batch_size,
                          max_length=max_length, seed=seed,
                          drop_remainder=drop_remainder)


def series_batches(cfg, serialized, training, batch_size=None,
                   max_length=None, seed=None, drop_remainder=None):
    """Serialized series records -> the padded batches of the module doc.

    What `make_series_dataset` does after reading the shards; the offline
    kernel (`kaggle_tf.export.stream`) feeds it the records it encodes
    from the raw DICOMs, so both see the same chunks, padding and masks.

    Args:
        cfg: a validated config of a series task.
        serialized: a `tf.data.Dataset` of serialized series records.
        training, batch_size, max_length, seed, drop_remainder: as
            `make_series_dataset`.
    """
    task = tasks.get(cfg.task)
    batch_size = int(batch_size or cfg.train.batch_size)
    max_length = int(max_length or cfg.data.max_series_length)
    seed = cfg.seed if seed is None else seed
    drop_remainder = training if drop_remainder is None else drop_remainder
    windows = task.windows(cfg)
    h, w = (int(v) for v in cfg.data.image_size)
    ds = serialized.map(task.parse_series,
                        num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.flat_map(lambda p: _chunks(p, max_length, training, seed))

    def decode(chunk):
        n = tf.shape(chunk["id"])[0]
        return {
            "images": task.decode_slices(chunk["image_bytes"], windows,
                                             (h, w)),
            "labels": chunk["labels"],
            "mask": tf.ones([n], tf.float32),
            "id": chunk["id"],
            "index": tf.cast(chunk["index"], tf.int32),
            "position": chunk["position"],
            "series": chunk["series"],
        }

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=not training)
    c = len(windows)
    ds = ds.padded_batch(
        batch_size,
        padded_shapes={"images": [max_length, h, w, c],
                       "labels": [max_length, len(task.classes)],
                       "mask": [max_length], "id": [max_length],
                       "index": [max_length], "position": [max_length],
                       "series": []},
        padding_values={"images": 0.0, "labels": 0.0, "mask": 0.0,
                        "id": "", "index": -1, "position": 0.0,
                        "series": ""},
        drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
