"""Trains a steel U-Net on one replica and on two mirrored replicas.

    python mirrored_probe.py OUT.npz

Splits the CPU into two logical devices (before TensorFlow initialises),
then for every case of `CASES` builds the model, augmenter, loss and
optimizer with the project's builders (`training.image`,
`training.optimizers`, `losses`) from `configs/steel.json` plus the case's
overrides, and fits the same data at the same global batch under
`OneDeviceStrategy` and under `MirroredStrategy` over the two devices,
starting from the same weights.

Keys of OUT.npz: `<case>/<one|two>/<i>` (weights after fitting),
`<case>/initial/<i>`, `<case>/<one|two>/loss` (per-epoch train loss) and
`<case>/two/replicas` (the replica count the run saw).
"""

import os
import sys

import tensorflow as tf

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration(),
           tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kaggle_tf import config as config_lib  # noqa: E402
from kaggle_tf import losses  # noqa: E402
from kaggle_tf.training import augmented  # noqa: E402
from kaggle_tf.training import distribution  # noqa: E402
from kaggle_tf.training import image  # noqa: E402
from kaggle_tf.training import optimizers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
CONFIG = os.path.join(ROOT, "configs", "steel.json")
GLOBAL_BATCH = 4
STEPS = 4
EPOCHS = 1
# Flips with p=1 are the same on every replica, whatever its random draws.
FLIPS = ('[{"__class_fullname__": "HorizontalFlip", "p": 1.0}, '
         '{"__class_fullname__": "VerticalFlip", "p": 1.0}]')
BASE = [
    "data.image_size=[32, 64]", "model.encoder=test_resnet",
    "model.encoder_weights=null",
    "model.decoder_channels=[8, 8, 8, 4, 4]", "augment.transforms=null",
    # Dice per image: a mean over images, so the same on split batches.
    "loss.per_image=true",
    # SGD: Adam turns the float noise of near-zero gradients (which differs
    # with the summation order of two replicas) into full-size steps.
    "optimizer.name=sgd", "optimizer.lr=0.02",
    f"train.batch_size={GLOBAL_BATCH}", "train.jit_compile=false",
    # BatchNorm statistics over the global batch, so that two replicas
    # normalise like one.
    "train.sync_batchnorm=true",
]
CASES = {
    "augment_in_model": [f"augment.transforms={FLIPS}",
                         "augment.placement=model", "augment.seed=0"],
    "encoder_lr": ["optimizer.encoder_lr_mult=0.1"],
    "ema": ["train.ema=0.5"],
    "grad_accum": ["train.grad_accum_steps=2"],
    # With clipping after averaging, the encoder's LR, decoupled weight
    # decay (applied on update steps only) and EMA (every step). A small
    # LR: Adam turns the float noise of near-zero gradients into steps of
    # up to the LR (seen: 1.7e-5 on one weight of 2304 at LR 1e-3).
    "grad_accum_adamw": ["train.grad_accum_steps=2", "optimizer.name=adamw",
                         "optimizer.lr=0.0002", "optimizer.weight_decay=0.5",
                         "optimizer.clipnorm=0.05",
                         "optimizer.encoder_lr_mult=0.1", "train.ema=0.5"],
    # The default: each replica's BatchNorm normalises its half batch.
    "local_batchnorm": ["train.sync_batchnorm=false"],
}


def data():
    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * STEPS
    x = rng.random((n, 32, 64, 3)).astype("float32")
    # Asymmetric boxes, so the flips change the loss.
    m = np.zeros((n, 32, 64, 4), "float32")
    for i in range(n):
        c = i % 4
        r, q = rng.integers(0, 20), rng.integers(0, 40)
        m[i, r:r + 9, q:q + 5 + 3 * c, c] = 1.0
    return x, m


def fit(cfg, strategy, initial, x, m):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = image.build_model(cfg)
        synced = distribution.sync_batchnorm(cfg, model, strategy)
        assert synced == 0 or strategy.num_replicas_in_sync > 1
        if initial is not None:
            model.set_weights(initial)
        start = model.get_weights()
        augmenter = image.augmenter_of(cfg)
        if augmenter is not None and cfg.augment.placement == "model":
            model = augmented.wrap(model, augmenter)
        model.compile(
            optimizer=optimizers.make_optimizer(cfg, cfg.optimizer.lr, model),
            loss=losses.build(cfg.loss), jit_compile=False)
    history = model.fit(x, m, batch_size=GLOBAL_BATCH, epochs=EPOCHS,
                        shuffle=False, verbose=0)
    return start, augmented.unwrap(model).get_weights(), \
        history.history["loss"], synced


def keras_accumulation_fails(cfg, strategy, x, m):
    """How Keras' own accumulation ends on `strategy`: "merge_call" (the
    failure `training.accumulation` works around) or "no"."""
    base = {"sgd": keras.optimizers.SGD, "adamw": keras.optimizers.AdamW}[
        cfg.optimizer.name]
    with strategy.scope():
        model = image.build_model(cfg)
        model.compile(optimizer=base(**optimizers.optimizer_kwargs(
            cfg, cfg.optimizer.lr)), loss=losses.build(cfg.loss),
            jit_compile=False)
    try:
        model.fit(x[:GLOBAL_BATCH], m[:GLOBAL_BATCH],
                  batch_size=GLOBAL_BATCH, epochs=1, verbose=0)
        return "no"
    except RuntimeError as e:
        return "merge_call" if "merge_call" in str(e) else str(e)


def main(out):
    x, m = data()
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    arrays = {}
    for case, extra in CASES.items():
        cfg = config_lib.load(CONFIG, BASE + extra)
        if case == "grad_accum":
            arrays[f"{case}/keras_two"] = np.asarray(
                keras_accumulation_fails(cfg, two, x, m))
        start, w_one, loss_one, _ = fit(cfg, one, None, x, m)
        _, w_two, loss_two, synced = fit(cfg, two, start, x, m)
        arrays[f"{case}/two/synced_layers"] = np.asarray(synced)
        for i, w in enumerate(start):
            arrays[f"{case}/initial/{i}"] = w
        for i, (a, b) in enumerate(zip(w_one, w_two)):
            arrays[f"{case}/one/{i}"] = a
            arrays[f"{case}/two/{i}"] = b
        arrays[f"{case}/one/loss"] = np.asarray(loss_one)
        arrays[f"{case}/two/loss"] = np.asarray(loss_two)
        arrays[f"{case}/two/replicas"] = np.asarray(
            two.num_replicas_in_sync)
        print(case, loss_one, loss_two, flush=True)
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
