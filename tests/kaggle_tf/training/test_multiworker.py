"""Two MultiWorkerMirroredStrategy workers on localhost train like one
worker on the global batch.

Each worker runs in its own process with `TF_CONFIG` naming both (loopback
ports picked free), gets the strategy from `get_strategy("multiworker")`
and reads its half of every global batch (Keras distributes the dataset).
Keras divides each replica's loss by the replica count and the strategy
sums the gradients, so the update is the one of the global-batch mean.
Checked for plain SGD with momentum and for `EncoderLRAdam` (the
per-variable encoder learning rate on mirrored variables).
"""

import os
import sys
import textwrap

import localhost_workers
import numpy as np

GLOBAL_BATCH = 8
STEPS = 4
TIMEOUT_S = 150

# Shared by the workers and the single-worker reference.
MODELS = textwrap.dedent("""
    import keras

    from kaggle_tf.training import optimizers


    def data(global_batch, steps):
        import numpy as np

        rng = np.random.default_rng(0)
        x = rng.normal(size=(global_batch * steps, 5)).astype("float32")
        y = rng.normal(size=(global_batch * steps, 2)).astype("float32")
        return x, y


    def build(kind):
        \"\"\"'plain': SGD with momentum; 'encoder_lr': EncoderLRAdam.\"\"\"
        keras.utils.set_random_seed(0)
        inputs = keras.Input((5,))
        x = keras.layers.Dense(8, activation="tanh", name="encoder_dense")(
            inputs)
        model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
        if kind == "plain":
            opt = keras.optimizers.SGD(0.1, momentum=0.9)
        else:
            opt = optimizers.EncoderLRAdam(
                learning_rate=0.05, encoder_lr_mult=0.1,
                encoder_variables=optimizers.encoder_variable_paths(model))
        model.compile(optimizer=opt, loss="mse")
        return model
""")

WORKER = textwrap.dedent("""
    import sys

    import numpy as np
    import tensorflow as tf

    from kaggle_tf.training.distribution import get_strategy
    from mw_models import build, data

    out, global_batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    x, y = data(global_batch, steps)
    strategy = get_strategy("multiworker")
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync

    # Keras distributes the global batches: each step, each worker gets
    # its half of the global batch (DATA sharding after the rebatch).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(
        global_batch).with_options(options)
    arrays = {}
    for kind in ("plain", "encoder_lr"):
        with strategy.scope():
            model = build(kind)
        for i, w in enumerate(model.get_weights()):
            arrays[f"{kind}/initial/{i}"] = w
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
        for i, w in enumerate(model.get_weights()):
            arrays[f"{kind}/trained/{i}"] = w
    np.savez(out, **arrays)
""")


def _single_worker(build, kind, initial, x, y):
    model = build(kind)
    model.set_weights(initial)
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False,
              verbose=0)
    return model.get_weights()


def _weights(npz, kind, part):
    n = len([k for k in npz.files if k.startswith(f"{kind}/{part}/")])
    return [npz[f"{kind}/{part}/{i}"] for i in range(n)]


def test_two_workers_equal_one_worker_at_the_global_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    (tmp_path / "mw_models.py").write_text(MODELS)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    ended = localhost_workers.run_workers(
        lambda index: [sys.executable, str(script),
                       str(tmp_path / f"w{index}.npz"), str(GLOBAL_BATCH),
                       str(STEPS)],
        lambda index: {"PYTHONPATH": os.pathsep.join([repo,
                                                      str(tmp_path)])},
        cwd=str(tmp_path), timeout=TIMEOUT_S)
    for index, (code, log) in enumerate(ended):
        assert code == 0, f"worker {index}:\n{log[-3000:]}"

    results = [np.load(tmp_path / f"w{i}.npz") for i in range(2)]
    models = {}
    exec(MODELS, models)
    build = models["build"]
    x, y = models["data"](GLOBAL_BATCH, STEPS)
    for kind in ("plain", "encoder_lr"):
        initial = _weights(results[0], kind, "initial")
        trained = _weights(results[0], kind, "trained")
        # Both workers hold the same (mirrored) weights.
        for a, b in zip(trained, _weights(results[1], kind, "trained")):
            np.testing.assert_array_equal(a, b)
        want = _single_worker(build, kind, initial, x, y)
        for got, ref, start in zip(trained, want, initial):
            assert not np.allclose(got, start)      # training moved them
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6,
                                       err_msg=kind)
