"""What a TPU needs of a training input pipeline, checked before training.

A TPU program is compiled for fixed shapes and runs every replica in
lockstep, so its training dataset must have

- a static batch dimension (batched with `drop_remainder=True`, which
  `pipeline.make_dataset(training=True)` does),
- a global batch divisible by the replica count (each core gets an equal
  share),
- no Python-function op (`tf.py_function` / `tf.numpy_function`: the
  albumentations CPU fallback, `augment.allow_cpu_fallback`), which a TPU
  worker's input service cannot run.

`check(ds, replicas)` raises a `ConfigError` naming the key to change.

Example:

>>> check(train_ds, strategy.num_replicas_in_sync)     # doctest: +SKIP
"""

import tensorflow as tf

from kaggle_tf.config import ConfigError

# The op types a `tf.py_function` / `tf.numpy_function` leaves in a graph.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})


def python_ops(ds):
    """The Python-function op types anywhere in `ds`'s graph (sorted)."""
    serialized = ds._as_serialized_graph(
        external_state_policy=tf.data.experimental.ExternalStatePolicy.IGNORE)
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(serialized.numpy())
    found = {node.op for node in graph.node if node.op in PYTHON_OPS}
    for function in graph.library.function:
        found.update(node.op for node in function.node_def
                     if node.op in PYTHON_OPS)
    return sorted(found)


def check(ds, replicas):
    """Raises a `ConfigError` when a TPU cannot take `ds`'s batches.

    Args:
        ds: the training dataset (dict or tuple batches).
        replicas: the strategy's `num_replicas_in_sync`.
    """
    ops = python_ops(ds)
    if ops:
        raise ConfigError(
            "augment.allow_cpu_fallback: the training input pipeline calls "
            f"Python ({', '.join(ops)}), which a TPU input pipeline cannot "
            "run; set augment.allow_cpu_fallback false and use transforms "
            "with a TF op")
    for spec in tf.nest.flatten(ds.element_spec):
        batch = spec.shape[0] if spec.shape.rank else None
        if batch is None:
            raise ConfigError(
                "train: a TPU needs static shapes, but the training batches "
                "have no fixed batch dimension (batch with "
                "drop_remainder=True)")
        if batch % replicas:
            raise ConfigError(
                f"train.batch_size: the global batch {batch} does not split "
                f"over {replicas} replicas (make it a multiple of {replicas})")
