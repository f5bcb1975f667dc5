"""MirroredStrategy over two logical CPUs trains like one replica.

`mirrored_probe.py` (one subprocess: the logical devices must be set
before TensorFlow initialises) fits a steel U-Net (`test_resnet` encoder,
32 x 64 images) from the same weights on the same data at the same global
batch, under `OneDeviceStrategy` and under `MirroredStrategy` with two
replicas, for: flips placed in the model (p=1, so every replica draws
the same transform), the encoder-LR optimizer, EMA, and gradient
accumulation (plain, and with AdamW's weight decay, clipping, the
encoder's LR and EMA). Keras' own accumulation cannot run on several
TensorFlow replicas (keras-team/keras#20582); ours
(`training.accumulation`) does, and the probe checks that Keras' still
fails there.

What differs between replicas by design is kept out of the comparison:
BatchNorm statistics are made global (`train.sync_batchnorm=true`) and
Dice is per image (a batch-wide Dice over two half batches is another
loss). Without the key (its default) each replica's BatchNorm normalises
its own half batch, and two replicas train differently.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
TIMEOUT_S = 600
CASES = ("augment_in_model", "encoder_lr", "ema", "grad_accum",
         "grad_accum_adamw")


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored") / "probe.npz"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=REPO, KERAS_BACKEND="tensorflow")
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "mirrored_probe.py"), str(out)],
        env=env, cwd=REPO, capture_output=True, text=True,
        timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return np.load(out)


def _weights(npz, case, part):
    n = len([k for k in npz.files
             if k.startswith(f"{case}/{part}/")
             and k.split("/")[-1].isdigit()])
    return [npz[f"{case}/{part}/{i}"] for i in range(n)]


@pytest.mark.parametrize("case", CASES)
def test_two_replicas_equal_one_at_the_global_batch(probe, case):
    assert int(probe[f"{case}/two/replicas"]) == 2
    assert int(probe[f"{case}/two/synced_layers"]) > 10
    np.testing.assert_allclose(probe[f"{case}/two/loss"],
                               probe[f"{case}/one/loss"], rtol=1e-5)
    initial = _weights(probe, case, "initial")
    one = _weights(probe, case, "one")
    two = _weights(probe, case, "two")
    assert len(one) == len(two) == len(initial) > 50
    moved = far_count = elements = 0
    for i, (a, b, start) in enumerate(zip(one, two, initial)):
        # Float32 summation order differs between one and two replicas
        # (and between runs of two: the all-reduce order); BatchNorm's
        # synchronized variance (E[x^2] - mean^2) is the noisiest.
        if case.endswith("adamw"):
            # Adam divides each element's update by that element's own
            # gradient size: an element whose gradient is float noise
            # still moves by ~lr (2e-4), in a direction the summation
            # order decides (on oneDNN CPUs: 151 of 20736 elements of one
            # kernel, up to 6.3e-5; elsewhere 2.4e-4). Those few (< 2% of
            # all elements) are bounded by a few steps of lr (atol 5 lr);
            # the rest agree as with SGD.
            far = np.abs(b - a) > 1e-5 + 1e-4 * np.abs(a)
            far_count += int(far.sum())
            elements += far.size
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=5 * 2e-4,
                                       err_msg=f"{case} weight {i}")
        else:
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{case} weight {i}")
        step = np.abs(a - start).max()
        if step > 1e-4:
            moved += 1
            # Agreement far below the size of the training step (SGD; for
            # Adam the float-noise elements above move by about a step).
            if not case.endswith("adamw"):
                assert np.abs(a - b).max() < 0.05 * step, (case, i)
    assert moved > 10, moved
    assert far_count <= 0.02 * elements, (case, far_count, elements)


def test_without_sync_batchnorm_two_replicas_normalise_their_halves(probe):
    case = "local_batchnorm"
    assert int(probe[f"{case}/two/synced_layers"]) == 0
    one = _weights(probe, case, "one")
    two = _weights(probe, case, "two")
    worst = max(float(np.abs(a - b).max()) for a, b in zip(one, two))
    assert worst > 1e-3, worst     # far beyond the synced cases' 1e-4


def test_checkpoints_of_a_synced_model_load_unsynchronized(tmp_path):
    import keras

    from kaggle_tf.training import callbacks

    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 1)(inputs)
    bn = keras.layers.BatchNormalization(synchronized=True)
    model = keras.Model(inputs, bn(x))
    path = str(tmp_path / "m.keras")
    callbacks.save_model(model, path)
    assert bn.synchronized is True          # restored after saving
    loaded = keras.saving.load_model(path, compile=False)
    assert [layer.synchronized for layer in loaded.layers
            if isinstance(layer, keras.layers.BatchNormalization)] == [False]


def test_keras_own_accumulation_still_fails_on_two_replicas(probe):
    # The reason for `training.accumulation`; when Keras' own accumulation
    # runs on several replicas, ours can go.
    assert str(probe["grad_accum/keras_two"]) == "merge_call"
