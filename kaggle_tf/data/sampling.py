"""Sliding sample rate: a set fraction of non-empty examples per epoch.

SIIM's 1st place trained with 80% of images showing a pneumothorax, then
60%, then 40% (the natural share is about 22%). `with_sample_rate` splits
an example stream into positives and negatives and draws from them with
probability `rate` and `1 - rate`, so every output example is positive with
probability exactly `rate`, whatever the natural share. `rate` may be a
`tf.Variable` read for every example, so `SampleRateScheduler` can change
it at each epoch start without rebuilding the pipeline.

    examples --filter(positive)--> repeat --\\
                                              choose(u < rate) --> examples
    examples --filter(negative)--> repeat --/

Both branches read the input stream, so everything upstream runs twice.
Apply it before decoding where possible (with an `is_positive` that looks
at a cheap feature of the parsed record); then each branch decodes only
what it keeps.

Example:

>>> rate = tf.Variable(0.8, trainable=False)
>>> ds = with_sample_rate(examples.repeat(), rate, seed=42)
>>> callback = SampleRateScheduler(rate, [0.8, 0.6, 0.4])
>>> model.fit(ds.batch(8), epochs=3, steps_per_epoch=100,
...           callbacks=[callback])
"""

import keras
import tensorflow as tf

_BITS = 1 << 24


def is_positive(example):
    """True when any segmentation mask pixel > 0 (else any label > 0).

    Args:
        example: an unbatched example dict.

    Returns:
        A scalar bool tensor.

    Example:

    >>> is_positive({"labels": tf.constant([0.0, 1.0])}).numpy()
    True
    """
    # Packed masks (a bit per class) are positive where any bit is set.
    for key in ("segmentation_masks", "packed_masks", "labels"):
        if key in example:
            return tf.reduce_any(tf.convert_to_tensor(example[key]) > 0)
    raise ValueError(
        "with_sample_rate: examples need 'segmentation_masks' or 'labels' "
        f"(or pass is_positive). Received keys: {sorted(example)}")


def _check_rate(rate, where="rate"):
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) \
            or not 0.0 <= rate <= 1.0:
        raise ValueError(f"`{where}` must be a number in [0, 1]. "
                         f"Received: {rate!r}")
    return float(rate)


def with_sample_rate(ds, rate, seed=None, is_positive=None):
    """Resamples an example stream to a fraction `rate` of positives.

    Args:
        ds: a `tf.data.Dataset` of unbatched example dicts (normally
            shuffled and repeated). It must hold both kinds of example when
            `0 < rate < 1`, else the missing branch waits forever.
        rate: the fraction of positives, a number in [0, 1] or a scalar
            float `tf.Variable` (read for every example; examples already
            in prefetch buffers keep the rate they were drawn with).
        seed: integer seed for the positive/negative draws.
        is_positive: `fn(example) -> scalar bool`. Defaults to
            `is_positive` (any mask pixel, else any label, > 0).

    Returns:
        An infinite dataset with the same element spec as `ds`.

    Example:

    >>> ds = with_sample_rate(examples.repeat(), 0.8, seed=0)
    """
    if not isinstance(ds, tf.data.Dataset):
        raise ValueError("with_sample_rate: `ds` must be a tf.data.Dataset."
                         f" Received: {type(ds).__name__}")
    if isinstance(rate, tf.Variable):
        if rate.shape.rank != 0 or not rate.dtype.is_floating:
            raise ValueError("with_sample_rate: a `rate` variable must be a "
                             f"float scalar. Received: {rate!r}")
        rate_value = rate
    else:
        rate_value = tf.constant(_check_rate(rate), tf.float32)
    predicate = is_positive or globals()["is_positive"]
    positives = ds.filter(lambda e: predicate(e)).repeat()
    negatives = ds.filter(lambda e: tf.logical_not(predicate(e))).repeat()

    def choose(bits):
        u = tf.cast(tf.math.floormod(bits, _BITS), tf.float32) / _BITS
        # 0 = positive, 1 = negative.
        return tf.cast(u >= tf.cast(rate_value, tf.float32), tf.int64)

    choices = tf.data.Dataset.random(seed=seed).map(choose)
    return tf.data.Dataset.choose_from_datasets(
        [positives, negatives], choices, stop_on_empty_dataset=True)


def rate_at(schedule, epoch):
    """The scheduled rate of `epoch` (0-based); the last one repeats.

    Example:

    >>> rate_at([0.8, 0.6, 0.4], 7)
    0.4
    """
    if callable(schedule):
        return _check_rate(schedule(epoch), "schedule(epoch)")
    return schedule[min(epoch, len(schedule) - 1)]


@keras.saving.register_keras_serializable(package="kaggle_tf")
class SampleRateScheduler(keras.callbacks.Callback):
    """Sets the sample-rate variable at the start of every epoch.

    Args:
        variable: the scalar float `tf.Variable` given to
            `with_sample_rate`; None creates one (`.variable`), set to the
            first rate.
        schedule: a list of rates, one per epoch (the last repeats), as
            `cfg.sampling.schedule`, or `fn(epoch) -> rate`.

    Example:

    >>> scheduler = SampleRateScheduler(None, [0.8, 0.6, 0.4])
    >>> ds = with_sample_rate(examples, scheduler.variable, seed=0)
    >>> model.fit(ds.batch(8), epochs=3, steps_per_epoch=100,
    ...           callbacks=[scheduler])
    """

    def __init__(self, variable, schedule):
        super().__init__()
        if not callable(schedule):
            if not isinstance(schedule, (list, tuple)) or not schedule:
                raise ValueError("SampleRateScheduler: `schedule` must be a "
                                 "non-empty list of rates or a function. "
                                 f"Received: {schedule!r}")
            schedule = [_check_rate(r, "schedule") for r in schedule]
        self.schedule = schedule
        if variable is None:
            variable = tf.Variable(rate_at(schedule, 0), dtype=tf.float32,
                                   trainable=False, name="sample_rate")
        self.variable = variable

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(rate_at(self.schedule, epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["sample_rate"] = float(self.variable.numpy())

    def get_config(self):
        # The variable is runtime state; from_config makes a new one.
        return {"variable": None, "schedule": self.schedule}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
