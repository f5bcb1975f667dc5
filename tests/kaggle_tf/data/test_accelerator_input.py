"""The TPU input checks: static batches, divisible by the replicas, no
Python-function op."""

import pytest
import tensorflow as tf

from kaggle_tf.config import ConfigError
from kaggle_tf.data import accelerator_input


def _ds(drop_remainder=True, python=False):
    ds = tf.data.Dataset.range(12).map(
        lambda i: {"images": tf.fill([4, 4, 3], tf.cast(i, tf.float32))})
    if python:
        ds = ds.map(lambda b: {"images": tf.ensure_shape(tf.py_function(
            lambda x: x * 2, [b["images"]], tf.float32), [4, 4, 3])})
    return ds.batch(4, drop_remainder=drop_remainder)


def test_a_static_divisible_tf_only_pipeline_passes():
    accelerator_input.check(_ds(), 4)
    assert accelerator_input.python_ops(_ds()) == []


def test_a_dynamic_batch_is_refused():
    with pytest.raises(ConfigError, match="drop_remainder"):
        accelerator_input.check(_ds(drop_remainder=False), 2)


def test_a_batch_that_does_not_split_is_refused():
    with pytest.raises(ConfigError, match="train.batch_size.*3 replicas"):
        accelerator_input.check(_ds(), 3)


def test_a_python_function_is_refused_naming_the_fallback():
    assert accelerator_input.python_ops(_ds(python=True)) == ["EagerPyFunc"]
    with pytest.raises(ConfigError, match="augment.allow_cpu_fallback"):
        accelerator_input.check(_ds(python=True), 2)
