"""TFRecord shards -> batched `tf.data.Dataset` of dicts, for any task.

The steps, in order:

1. shards of the split that hold the requested folds (listed with
   `tf.io.gfile.glob`, checked against `manifest.json`), shuffled per epoch
   in training;
2. interleaved reading (`TFRecordDataset`), parsing with the task's spec,
   keeping only the requested folds (`expand` for multi-example records);
3. shuffle of the still-encoded examples (training; `cfg.data.shuffle_buffer`,
   seeded by `cfg.seed`): shuffling before decoding keeps the buffer small
   (a decoded 256 x 1600 steel example with its masks is ~11 MB);
4. decode + resize (bilinear images, nearest masks) to
   `cfg.data.image_size`; `cfg.data.cache` caches decoded examples (then
   the shuffle moves after the cache);
5. repeat (training), the sliding sample rate
   (`kaggle_tf.data.sampling.with_sample_rate`, when `sample_rate` is set),
   batch (`drop_remainder` in training: static shapes for XLA/TPU), the
   augmenter, prefetch.

With an augmenter that takes them (`kaggle_tf.augment.Augmenter`), the
training stream of a segmentation task keeps the stored forms up to it:
masks packed a bit per class (`packed_masks`, uint8, as the records hold
them) and, where no resize is needed, 8-bit images; the augmenter converts
them inside its compiled function, so batches come out as the table below
says. That spares a float copy of every mask channel and image on the way
(decoding, batching, the augmenter's own packing).

Training streams of the training folds (never validation) also draw the
pseudo-labelled records of `cfg.data.pseudo_records` (`kaggle_tf.pseudo`,
fold -1) at `cfg.data.pseudo_weight`.

Only TensorFlow ops: no `py_function`, so the pipeline runs on TPU hosts.

Batches (K classes, H, W = `cfg.data.image_size`, C = `cfg.data.channels`):

| key                  | shape          | when                             |
|----------------------|----------------|----------------------------------|
| `images`             | (B, H, W, C)   | always; float32 in [0, 1]        |
| `segmentation_masks` | (B, H, W, K)   | train split, segmentation tasks  |
| `labels`             | (B, K)         | train split: presence/multi-hot  |
| `id`, `fold`         | (B,)           | `with_meta=True`                 |

Example:

>>> ds = make_dataset(cfg, folds=[1, 2, 3, 4], training=True)  # doctest: +SKIP
>>> model.fit(to_keras(ds, cfg), steps_per_epoch=100)          # doctest: +SKIP
"""

import tensorflow as tf

from kaggle_tf import tasks
from kaggle_tf.data import records
from kaggle_tf.data import sampling
from tfrecords_tools import schema

AUTOTUNE = tf.data.AUTOTUNE
META_KEYS = ("id", "fold")
# Epoch e's shuffling seed is cfg.seed + EPOCH_SEED_STRIDE * e.
EPOCH_SEED_STRIDE = 1_000_003
FUNCTION_GRAPH_SEED = 87_654_321


def _manifest(cfg):
    manifest = records.read_manifest(cfg.data.records_dir)
    records.check_manifest(manifest, cfg, cfg.data.records_dir)
    return manifest


def count_records(cfg, folds=None, split: str = "train",
                  unit: str = "examples") -> int:
    """Examples (or records) of `split` in `folds` (None = all).

    Counts come from the manifest. `unit="examples"` counts what
    `make_dataset` yields (an ICH series record expands into its slices);
    `unit="records"` counts the records themselves.

    Example:

    >>> count_records(cfg, [0, 1])      # doctest: +SKIP
    26
    """
    manifest = _manifest(cfg)
    summary = manifest["splits"][split]
    per_fold = summary["records_per_fold"]
    if unit == "examples":
        per_fold = summary.get("examples_per_fold", per_fold)
    if folds is None:
        return int(sum(per_fold.values()))
    return int(sum(per_fold.get(str(int(f)), 0) for f in folds))


def make_dataset(cfg, folds, training: bool, *, split: str = "train",
                 sample_rate=None, augmenter=None, repeat=None,
                 batch_size=None, with_meta: bool = False,
                 epoch_examples=None, first_epoch=0):
    """The batched dataset of `split`, restricted to `folds`.

    Args:
        cfg: a validated config (`cfg.task`, `cfg.data.*`, `cfg.seed`,
            `cfg.train.batch_size`).
        folds: fold ids to keep; None = every record (the test split).
        training: shuffles, repeats and drops the last partial batch.
        split: "train" or "test" (test records carry no targets).
        sample_rate: fraction of examples with a non-empty target per
            epoch (float or `tf.Variable`); None keeps the natural mix.
        augmenter: called as `augmenter(batch, training=True)` on batches.
        repeat: repeat forever. Defaults to `training`.
        batch_size: defaults to `cfg.train.batch_size`.
        with_meta: also yield `id` and `fold`.
        epoch_examples: with `repeat`, examples per epoch: each epoch is
            then a stream of its own, shuffled with a seed of
            `(cfg.seed, epoch)`, so that training resumed at an epoch sees
            the same examples as an uninterrupted run. None (and with
            `data.cache`, whose cache fills over one full pass): one
            continuous stream (seeded once).
        first_epoch: the epoch the stream starts at (with
            `epoch_examples`). Defaults to 0.

    Returns:
        A `tf.data.Dataset` of dict batches (see the module docstring).

    Raises:
        FileNotFoundError: no manifest or a missing shard.
        ValueError: records of another task or fold count.
    """
    manifest = _manifest(cfg)
    task = tasks.get(cfg.task)
    repeat = training if repeat is None else repeat
    batch_size = batch_size or cfg.train.batch_size
    files = records.shard_files(cfg.data.records_dir, manifest, split, folds)
    if not files:
        raise ValueError(f"no {split} records in folds {folds} of "
                         f"{cfg.data.records_dir}")
    seed = cfg.seed
    spec = task.features(split)
    pseudo = None
    if (training and split == "train" and folds is not None
            and cfg.data.pseudo_records):
        pseudo = _pseudo_source(cfg, folds)

    def parsed_records(seed, files=files, folds=folds):
        ds = tf.data.Dataset.from_tensor_slices(files)
        if training:
            ds = ds.shuffle(len(files), seed=seed,
                            reshuffle_each_iteration=True)
        ds = ds.interleave(tf.data.TFRecordDataset,
                           cycle_length=min(len(files), 8), block_length=1,
                           num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.map(lambda s: tf.io.parse_single_example(s, spec),
                    num_parallel_calls=AUTOTUNE)
        if folds is not None:
            keep = tf.constant(sorted(int(f) for f in folds), tf.int64)
            ds = ds.filter(lambda p: tf.reduce_any(
                tf.equal(tf.cast(p[schema.FOLD], tf.int64), keep)))
        if task.expand is not None:
            ds = ds.flat_map(lambda p: task.expand(p, cfg, split))
        return ds

    # The augmenter moves binary masks packed a bit per class, and reads
    # 8-bit images; records store them so: they stay so until it converts
    # them (masks one-hot float32, images float32 in [0, 1]). Not with
    # pseudo-labelled records, whose stored size may differ (then their
    # images would be float, the others' not).
    stored_forms = (augmenter is not None and split == "train"
                    and pseudo is None
                    and getattr(augmenter, "takes_stored_forms", False)
                    and task.decodes_stored_forms())
    mask_classes = len(task.classes) if stored_forms else None

    def decode(parsed, manifest=manifest):
        if stored_forms:
            return task.decode(parsed, cfg, split, manifest,
                               stored_forms=True)
        return task.decode(parsed, cfg, split, manifest)

    shuffle = training and cfg.data.shuffle_buffer > 1
    cached = None
    if cfg.data.cache:
        cached = parsed_records(seed).map(
            decode, num_parallel_calls=AUTOTUNE).cache()

    def examples(seed):
        """Decoded examples, shuffled (then repeated, resampled)."""
        if cached is not None:
            ds = cached
            if shuffle:
                ds = ds.shuffle(cfg.data.shuffle_buffer, seed=seed,
                                reshuffle_each_iteration=True)
        else:
            ds = parsed_records(seed)
            if shuffle:
                ds = ds.shuffle(cfg.data.shuffle_buffer, seed=seed,
                                reshuffle_each_iteration=True)
            ds = ds.map(decode, num_parallel_calls=AUTOTUNE)
        if repeat:
            ds = ds.repeat()
        if pseudo is not None and repeat:
            ds = _mix_pseudo(ds, pseudo, seed, parsed_records, decode,
                             shuffle, cfg)
        if sample_rate is not None:
            ds = sampling.with_sample_rate(ds, sample_rate, seed)
        return ds

    # A cache fills during one full pass: epochs shorter than a pass would
    # never complete it, so a cached dataset stays one continuous stream.
    if repeat and epoch_examples and cached is None:
        # Epoch e is its own stream, seeded by (seed, e): a run resumed at
        # epoch k sees exactly the examples an uninterrupted run saw.
        def epoch(e):
            # The op seeds are tensors here; TensorFlow pairs each with the
            # graph's seed and fails when that is 0 (`cfg.seed` 0), so this
            # function's graph gets a fixed one of its own.
            tf.random.set_seed(FUNCTION_GRAPH_SEED)
            return examples(seed + EPOCH_SEED_STRIDE * e).take(
                epoch_examples)

        ds = tf.data.Dataset.range(int(first_epoch), 2 ** 62).flat_map(
            epoch)
    else:
        ds = examples(seed)
    if not with_meta:
        ds = ds.map(_drop_meta)
    ds = ds.batch(batch_size, drop_remainder=training,
                  num_parallel_calls=AUTOTUNE)
    if augmenter is not None:
        if repeat and epoch_examples and cached is None \
                and epoch_examples % batch_size == 0 \
                and getattr(augmenter, "takes_step_seed", False):
            # Batch b of the run draws from (seed, b): the augmentation is
            # a function of the step, whatever the epoch the stream starts.
            aug_seed = augmenter.seed if getattr(
                augmenter, "seed", None) is not None else seed
            first_batch = int(first_epoch) * (epoch_examples // batch_size)
            ds = ds.enumerate(start=first_batch).map(
                lambda b, batch: _augment(augmenter, batch, tf.stack(
                    [tf.constant(aug_seed, tf.int64), b]), mask_classes),
                num_parallel_calls=AUTOTUNE)
        else:
            ds = ds.map(lambda b: _augment(augmenter, b,
                                           mask_classes=mask_classes),
                        num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def pseudo_examples(manifest) -> int:
    """Examples in a pseudo-labelled records manifest (an ICH series
    counts as its slices, as `count_records` does)."""
    summary = manifest["splits"]["train"]
    per_fold = summary.get("examples_per_fold") or summary[
        "records_per_fold"]
    return int(sum(per_fold.values()))


def pseudo_share(cfg, folds, unit="examples"):
    """The share of pseudo-labelled examples in the training stream of
    `folds`: `data.pseudo_weight`, or (null) their share by count; 0.0
    without `data.pseudo_records`."""
    if not cfg.data.pseudo_records:
        return 0.0
    if cfg.data.pseudo_weight is not None:
        return float(cfg.data.pseudo_weight)
    manifest = records.read_manifest(cfg.data.pseudo_records)
    if unit == "examples":
        n = pseudo_examples(manifest)
    else:
        n = int(manifest["splits"]["train"]["records"])
    return n / max(n + count_records(cfg, folds, unit=unit), 1)


def training_examples(cfg, folds, unit="examples") -> int:
    """Examples of one training epoch over `folds`, pseudo-labelled ones
    included.

    Without `data.pseudo_records`: the real examples, R. With them at
    share w (`pseudo_share`): R / (1 - w), so that an epoch still draws
    about one pass of the real examples, plus the pseudo-labelled ones
    at their share (w null: R + P, one pass over both); with w = 1 (only
    pseudo-labels): their count, P.

    Example:

    >>> training_examples(cfg, [1, 2, 3, 4])  # doctest: +SKIP
    40                                    # 32 real, pseudo_weight 0.2
    """
    real = count_records(cfg, folds, unit=unit)
    if not cfg.data.pseudo_records:
        return real
    w = pseudo_share(cfg, folds, unit)
    if w >= 1.0:
        manifest = records.read_manifest(cfg.data.pseudo_records)
        return (pseudo_examples(manifest) if unit == "examples"
                else int(manifest["splits"]["train"]["records"]))
    return int(round(real / (1.0 - w)))


def _pseudo_source(cfg, folds):
    """(files, manifest, weight) of `data.pseudo_records`."""
    where = cfg.data.pseudo_records
    manifest = records.read_manifest(where)
    records.check_manifest(manifest, cfg, where)
    files = records.shard_files(where, manifest, "train", None)
    return files, manifest, pseudo_share(cfg, folds)


def _mix_pseudo(ds, pseudo, seed, parsed_records, decode, shuffle, cfg):
    """The training stream with pseudo-labelled examples drawn in at
    `weight` (both streams repeat)."""
    files, manifest, weight = pseudo
    extra = parsed_records(seed + 1, files, None)
    if shuffle:
        extra = extra.shuffle(cfg.data.shuffle_buffer, seed=seed + 1,
                              reshuffle_each_iteration=True)
    extra = extra.map(lambda p: decode(p, manifest),
                      num_parallel_calls=AUTOTUNE).repeat()
    return mix(ds.repeat(), extra, weight, seed)


def mix(real, extra, weight, seed, until_real_ends=False):
    """`real` with elements of `extra` drawn in at share `weight`.

    `until_real_ends`: the stream ends with `real` (a finite `real`, an
    `extra` that repeats); else both go on as they are.
    """
    if weight >= 1.0:
        return extra
    if weight <= 0.0:
        return real
    return tf.data.Dataset.sample_from_datasets(
        [real, extra], weights=[1.0 - weight, weight], seed=seed,
        stop_on_empty_dataset=until_real_ends)


def _drop_meta(example):
    return {k: v for k, v in example.items() if k not in META_KEYS}


def _augment(augmenter, batch, seed=None, mask_classes=None):
    """Runs the augmenter on the tensors it knows; meta passes through.
    `mask_classes`: the batch holds `packed_masks` of that many classes
    (the augmenter returns them as `segmentation_masks`)."""
    meta = {k: batch[k] for k in META_KEYS if k in batch}
    kwargs = {} if mask_classes is None else {"mask_classes": mask_classes}
    if seed is not None:
        kwargs["seed"] = seed
    out = dict(augmenter(_drop_meta(batch), training=True, **kwargs))
    out.update(meta)
    return out


def shard_by_example(ds):
    """`ds` split among multi-worker workers by example, not by file.

    Under `MultiWorkerMirroredStrategy` tf.data's automatic sharding
    gives each worker whole shard files, and fails when a fold has fewer
    files than there are workers. By example (`AutoShardPolicy.DATA`)
    every worker reads the same seeded stream and keeps its part of each
    global batch, for any file count. One worker or one machine: no
    effect.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return ds.with_options(options)


def divisible_batches(ds, devices):
    """Every batch of `ds` cut to a multiple of `devices` examples.

    Keras' JAX trainer shards each batch over the devices with the layout
    of the epoch's first batch, so a last batch whose size the devices do
    not divide fails (`IndivisibleError`). Cut here, only the last batch
    loses examples (fewer than `devices`); a batch left empty is dropped.
    Batches are `model.fit` structures (`to_keras`).

    Example:

    >>> ds = tf.data.Dataset.range(5).batch(4)
    >>> [len(b) for b in divisible_batches(ds, 2)]
    [4]
    """
    devices = int(devices)

    def cut(*batch):
        n = tf.shape(tf.nest.flatten(batch)[0])[0]
        keep = n - n % devices
        out = tf.nest.map_structure(lambda t: t[:keep], batch)
        return out if len(batch) > 1 else out[0]

    def nonempty(*batch):
        return tf.shape(tf.nest.flatten(batch)[0])[0] > 0

    return ds.map(cut).filter(nonempty)


def to_keras(ds, cfg):
    """Dict batches -> `(images, targets)` for `model.fit`.

    Targets: the masks for segmentation models (`unet`, `fpn`), with
    `model.aux_head` a dict `{"masks", "labels"}` matching the model's
    outputs; the labels for classifiers.

    Example:

    >>> ds = make_dataset(cfg, [1, 2], training=True)   # doctest: +SKIP
    >>> model.fit(to_keras(ds, cfg), steps_per_epoch=10)  # doctest: +SKIP
    """
    key = tasks.get(cfg.task).target_key(cfg)
    aux = key == "segmentation_masks" and cfg.model.aux_head

    def split(batch):
        if aux:
            return batch["images"], {"masks": batch[key],
                                     "labels": batch["labels"]}
        return batch["images"], batch[key]

    return ds.map(split, num_parallel_calls=AUTOTUNE)
