"""Two MultiWorkerMirroredStrategy workers on localhost train like one
worker on the global batch.

Each worker runs in its own process with `TF_CONFIG` naming both (loopback
ports picked free), gets the strategy from `get_strategy("multiworker")`
and reads its half of every global batch (Keras distributes the dataset).
Keras divides each replica's loss by the replica count and the strategy
sums the gradients, so the update is the one of the global-batch mean.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

GLOBAL_BATCH = 8
STEPS = 4
TIMEOUT_S = 150

WORKER = textwrap.dedent("""
    import sys

    import keras
    import numpy as np
    import tensorflow as tf

    from kaggle_tf.training.distribution import get_strategy

    out, global_batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(global_batch * steps, 5)).astype("float32")
    y = rng.normal(size=(global_batch * steps, 2)).astype("float32")

    strategy = get_strategy("multiworker")
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync

    # Keras 3 `fit` calls `strategy.reduce` on the nested first batch and
    # on scalar logs with axis=0; MultiWorkerMirroredStrategy takes only
    # single values of rank >= 1 there. Reduce leaf by leaf, scalars
    # without an axis (harmless when the strategy already does it).
    _reduce = strategy.reduce

    def leaf_reduce(reduce_op, value, axis=None):
        def one(v):
            first = v.values[0] if isinstance(
                v, tf.distribute.DistributedValues) else v
            rank = getattr(getattr(first, "shape", None), "rank", None)
            return _reduce(reduce_op, v, axis=None if rank == 0 else axis)

        return tf.nest.map_structure(one, value)

    strategy.reduce = leaf_reduce

    # Keras distributes the global batches: each step, each worker gets
    # its half of the global batch (DATA sharding after the rebatch).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(
        global_batch).with_options(options)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                      loss="mse")
    initial = model.get_weights()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    np.savez(out, *initial, *model.get_weights())
""")


def _free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _single_worker(initial, x, y):
    import keras

    model = keras.Sequential([
        keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
        keras.layers.Dense(2)])
    model.set_weights(initial)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="mse")
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False,
              verbose=0)
    return model.get_weights()


def test_two_workers_equal_one_worker_at_the_global_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   CUDA_VISIBLE_DEVICES="", PYTHONPATH=repo,
                   TF_CONFIG=json.dumps({
                       "cluster": {"worker": workers},
                       "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / f"w{index}.npz"),
             str(GLOBAL_BATCH), str(STEPS)],
            env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for index, proc in enumerate(procs):
        assert proc.returncode == 0, f"worker {index}:\n{logs[index][-3000:]}"

    results = [np.load(tmp_path / f"w{i}.npz") for i in range(2)]
    arrays = [[r[f"arr_{k}"] for k in range(len(r.files))] for r in results]
    n = len(arrays[0]) // 2
    initial, trained = arrays[0][:n], arrays[0][n:]
    # Both workers hold the same (mirrored) weights.
    for a, b in zip(trained, arrays[1][n:]):
        np.testing.assert_array_equal(a, b)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 5)).astype("float32")
    y = rng.normal(size=(GLOBAL_BATCH * STEPS, 2)).astype("float32")
    want = _single_worker(initial, x, y)
    for got, ref, start in zip(trained, want, initial):
        assert not np.allclose(got, start)      # training moved them
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
