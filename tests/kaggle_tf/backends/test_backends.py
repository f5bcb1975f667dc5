"""The same weights on TensorFlow and on JAX, and DataParallel on JAX.

One subprocess per backend runs `probe.py` (every recipe's model at 32 x
32 with the `test_resnet` encoder, FPN and a U-Net with scSE and an aux
head, every registered loss, every recipe's streaming metric, one SGD
train step): TensorFlow builds and saves the models, JAX loads those
`.keras` files. The JAX run sees two host devices
(`--xla_force_host_platform_device_count=2`), so it also trains one step
under `get_strategy("auto")` (`keras.distribution.DataParallel`) and on
one device at the same global batch.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
TIMEOUT_S = 900
# Models without dropout: their train step is deterministic on both
# backends (dropout's random draws differ by backend).
STEP_PARITY = ("steel", "siim", "rsna_ich")


def probe(backend, out, directory, **env):
    environ = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
                   CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT, **env)
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "probe.py"), str(out),
         str(directory)], env=environ, capture_output=True, text=True,
        timeout=TIMEOUT_S, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(np.load(out))


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    directory = tmp_path_factory.mktemp("backends")
    tf_out = probe("tensorflow", directory / "tf.npz", directory)
    jax_out = probe(
        "jax", directory / "jax.npz", directory,
        XLA_FLAGS="--xla_force_host_platform_device_count=2")
    return tf_out, jax_out


def _keys(out, suffix):
    return sorted(k for k in out if k.split("/")[1:2] == [suffix])


def test_every_architecture_gives_the_same_outputs(probes):
    tf_out, jax_out = probes
    keys = [k for k in tf_out if "/outputs" in k]
    names = {k.split("/")[0] for k in keys}
    assert {"steel", "steel_cls", "siim", "protein", "rsna_ich",
            "rsna_ich_seq", "rsna_lumbar", "fpn", "unet_scse_aux"} <= names
    for key in keys:
        assert tf_out[key].shape == jax_out[key].shape, key
        np.testing.assert_allclose(jax_out[key], tf_out[key], atol=1e-4,
                                   rtol=1e-4, err_msg=key)
        assert np.std(tf_out[key]) > 0, key


def test_every_loss_and_streaming_metric_agrees(probes):
    tf_out, jax_out = probes
    keys = [k for k in tf_out if k.startswith("loss/")
            or k.endswith("/loss") or k.endswith("/metric")]
    from kaggle_tf import losses

    assert {f"loss/{n}" for n in losses.names()} <= set(keys)
    for key in keys:
        assert np.isfinite(tf_out[key]).all(), key
        np.testing.assert_allclose(jax_out[key], tf_out[key], rtol=1e-5,
                                   atol=1e-5, err_msg=key)


def test_one_train_step_agrees_and_recipe_optimizers_run_on_jax(probes):
    tf_out, jax_out = probes
    for name in STEP_PARITY:
        key = f"{name}/step_loss"
        np.testing.assert_allclose(jax_out[key], tf_out[key], rtol=1e-5,
                                   atol=1e-5, err_msg=key)
        # Batch-norm statistics in training mode: float32 sums in
        # another order.
        for key in [k for k in tf_out if k.startswith(f"{name}/stepped/")]:
            np.testing.assert_allclose(jax_out[key], tf_out[key],
                                       rtol=1e-3, atol=1e-3, err_msg=key)
    finite = [k for k in jax_out if k.endswith("/recipe_step_finite")]
    assert len(finite) == 2
    assert all(bool(jax_out[k]) for k in finite), finite


def test_data_parallel_over_two_devices_equals_one_device(probes):
    _, out = probes
    assert int(out["dp/replicas"]) == 2
    assert int(out["dp/sharded"]) == 2      # variables on both devices
    np.testing.assert_allclose(out["dp/loss"], out["dp/single_loss"],
                               rtol=1e-5)
    n = len([k for k in out if k.startswith("dp/single/")])
    assert n > 10
    for i in range(n):
        np.testing.assert_allclose(out[f"dp/parallel/{i}"],
                                   out[f"dp/single/{i}"], rtol=1e-5,
                                   atol=1e-5, err_msg=str(i))


def test_mixed_bfloat16_keeps_losses_and_metrics_in_float32_on_jax(probes):
    _, out = probes
    assert str(out["bf16/conv_dtype"]) == "bfloat16"
    assert str(out["bf16/logits_dtype"]) == "float32"
    assert str(out["bf16/loss_dtype"]) == "float32"
    assert str(out["bf16/metric_dtype"]) == "float32"
    assert np.isfinite(out["bf16/step_loss"])
