"""Run under one Keras backend: every recipe's model, loss and streaming
metric on fixed inputs, one compiled train step, written to an npz.

    KERAS_BACKEND=tensorflow python probe.py OUT.npz DIR   builds the
        models (seeded), saves them to DIR/<recipe>.keras and the inputs
        to DIR/inputs.npz; the train step is TF's graph step (XLA's is
        `test_xla_steps.py`'s).
    KERAS_BACKEND=jax python probe.py OUT.npz DIR          loads those
        `.keras` files and inputs; the train step is JAX's default jit.
        With two host devices (XLA_FLAGS) it also trains one step under
        `get_strategy("auto")` (DataParallel) and on one device.

Keys of OUT.npz: `<recipe>/outputs`, `<recipe>/loss`, `<recipe>/metric`,
`<recipe>/step_loss`, `<recipe>/stepped/<i>` (weights after one SGD
step), `<recipe>/recipe_step_finite` (the recipe's own optimizer: encoder
LR, gradient accumulation), `loss/<name>` for every registered loss, and
`dp/...`, `bf16/...` under JAX.
"""

import os
import sys
import time
import types

import keras
import numpy as np

from kaggle_tf import config
from kaggle_tf import losses
from kaggle_tf import models
from kaggle_tf import tasks
from kaggle_tf.training import image
from kaggle_tf.training import optimizers
from kaggle_tf.training import stages

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BATCH = 2
SIZE = [32, 32]
# recipe -> (config file, extra overrides)
RECIPES = {
    "steel": ("steel.json", []),
    "steel_cls": ("steel_cls.json", []),
    "siim": ("siim.json", []),
    "protein": ("protein.json", []),
    "rsna_ich": ("rsna_ich.json", []),
    "rsna_ich_seq": ("rsna_ich_seq.json", []),
    "rsna_lumbar": ("rsna_lumbar.json", [
        "data.channels=6",
        "data.stack_slices={\"sagittal_t1\":2,\"sagittal_t2_stir\":2,\"axial_t2\":2}"]),
}
SEQUENCE_EMBEDDING = 16
# Recipes whose optimizer is not the plain one: protein's encoder LR,
# RSNA lumbar's gradient accumulation (one JAX step each).
OWN_OPTIMIZER = ("protein", "rsna_lumbar")
START = time.time()


def recipe_config(name):
    path, extra = RECIPES[name]
    return config.load(os.path.join(ROOT, "configs", path), [
        "model.encoder=test_resnet", "model.encoder_weights=null",
        f"data.image_size={SIZE}", *extra])


def build(cfg):
    if cfg.model.arch == "sequence":
        return models.build(cfg.model, None,
                            embedding_dim=SEQUENCE_EMBEDDING)
    return image.build_model(cfg)


def extra_models():
    """Architectures no recipe uses by default: FPN, U-Net with scSE
    attention and an aux head."""
    fpn = types.SimpleNamespace(arch="fpn", encoder="test_resnet", classes=4,
                                encoder_weights=None, aux_head=False)
    unet = types.SimpleNamespace(
        arch="unet", encoder="test_resnet", classes=4, encoder_weights=None,
        decoder_channels=[16, 16, 16, 16, 16], decoder_attention="scse",
        aux_head=True)
    return {"fpn": fpn, "unet_scse_aux": unet}


def input_of(model, rng):
    """Random inputs for `model` (a dict for several named inputs)."""
    def one(tensor):
        shape = [BATCH if d is None and i == 0 else (5 if d is None else d)
                 for i, d in enumerate(tensor.shape)]
        if "bool" in str(tensor.dtype) or tensor.name.endswith("mask"):
            return np.ones(shape, dtype=str(tensor.dtype))
        return rng.uniform(size=shape).astype(str(tensor.dtype))

    if len(model.inputs) == 1:
        return one(model.inputs[0])
    return {t.name: one(t) for t in model.inputs}


def target_of(cfg, logits, rng):
    if cfg.loss.name in ("lumbar_log_loss", "categorical_crossentropy",
                         "lovasz_softmax"):
        k = logits.shape[-1]
        return np.eye(k, dtype="float32")[rng.integers(0, k,
                                                       logits.shape[:-1])]
    return (rng.uniform(size=logits.shape) < 0.3).astype("float32")


def numpy(x):
    if isinstance(x, dict):
        return {k: numpy(v) for k, v in x.items()}
    return np.asarray(keras.ops.convert_to_numpy(x))


def loss_inputs():
    """name -> (y_true, y_pred logits) on shapes the loss takes."""
    rng = np.random.default_rng(7)
    seg = rng.normal(size=(2, 16, 16, 3)).astype("float32")
    cls = rng.normal(size=(4, 6)).astype("float32")
    lumbar = rng.normal(size=(3, 25, 3)).astype("float32")

    def binary(x):
        return (rng.uniform(size=x.shape) < 0.3).astype("float32")

    def onehot(x):
        return np.eye(x.shape[-1], dtype="float32")[
            rng.integers(0, x.shape[-1], x.shape[:-1])]

    table = {"lsep": (binary(cls), cls),
             "weighted_log_loss": (binary(cls), cls),
             "lumbar_log_loss": (onehot(lumbar), lumbar),
             "categorical_crossentropy": (onehot(seg), seg),
             "lovasz_softmax": (onehot(seg), seg)}
    return {name: table.get(name, (binary(seg), seg))
            for name in losses.names()}


def one_step(model, cfg, x, y, optimizer, jit):
    model.compile(optimizer=optimizer, loss=stages.stage_loss(
        cfg, stages.resolve_stages(cfg)[0]), jit_compile=jit)
    return float(model.train_on_batch(x, y))


def data_parallel(out, directory):
    """One SGD step on the global batch: DataParallel over the host
    devices against one device, same weights."""
    from kaggle_tf.training.distribution import get_strategy

    cfg = recipe_config("steel")
    rng = np.random.default_rng(3)
    single = keras.saving.load_model(os.path.join(directory, "steel.keras"),
                                     compile=False)
    x = rng.uniform(size=(4, *SIZE, 3)).astype("float32")
    y = (rng.uniform(size=(4, *SIZE, 4)) < 0.3).astype("float32")
    out["dp/single_loss"] = one_step(single, cfg, x, y,
                                     keras.optimizers.SGD(0.05), True)
    single_w = single.get_weights()
    strategy = get_strategy("auto")
    out["dp/replicas"] = strategy.num_replicas_in_sync
    with strategy.scope():
        dp = keras.saving.load_model(os.path.join(directory, "steel.keras"),
                                     compile=False)
        loss = one_step(dp, cfg, x, y, keras.optimizers.SGD(0.05), True)
    out["dp/loss"] = loss
    out["dp/sharded"] = int(len(dp.weights[0].value.sharding.device_set))
    for i, (a, b) in enumerate(zip(single_w, dp.get_weights())):
        out[f"dp/single/{i}"] = a
        out[f"dp/parallel/{i}"] = b
    keras.distribution.set_distribution(None)


def mixed_bfloat16(out, directory):
    """Under mixed_bfloat16: the dtypes of logits, loss and metric."""
    cfg = recipe_config("steel")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = image.build_model(cfg)
        x = np.random.default_rng(0).uniform(
            size=(2, *SIZE, 3)).astype("float32")
        logits = model(x, training=False)
        y = (np.random.default_rng(1).uniform(size=logits.shape)
             < 0.3).astype("float32")
        loss = stages.stage_loss(cfg, stages.resolve_stages(cfg)[0])(
            y, logits)
        metric = tasks.get(cfg.task).metrics(cfg)[0]
        metric.update_state(y, logits)
        out["bf16/conv_dtype"] = str(model.layers[2].compute_dtype)
        out["bf16/logits_dtype"] = str(logits.dtype)
        out["bf16/loss_dtype"] = str(loss.dtype)
        out["bf16/metric_dtype"] = str(metric.result().dtype)
        out["bf16/step_loss"] = one_step(model, cfg, x, y,
                                         keras.optimizers.SGD(0.01), True)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def log(*words):
    print(f"[{time.time() - START:.0f} s]", *words, file=sys.stderr,
          flush=True)


def main(out_path, directory):
    backend = keras.backend.backend()
    tensorflow = backend == "tensorflow"
    out = {}
    rng = np.random.default_rng(0)
    inputs = {} if tensorflow else dict(np.load(
        os.path.join(directory, "inputs.npz")))
    names = list(RECIPES) + list(extra_models())
    for name in names:
        cfg = recipe_config(name if name in RECIPES else "steel")
        path = os.path.join(directory, f"{name}.keras")
        if tensorflow:
            keras.utils.set_random_seed(0)
            model = (build(cfg) if name in RECIPES else
                     models.build(extra_models()[name],
                                  (*SIZE, 3)))
            model.save(path)
            x = input_of(model, rng)
            logits = numpy(model(x, training=False))
            main_logits = logits["masks"] if isinstance(logits,
                                                        dict) else logits
            for key, value in (x if isinstance(x, dict)
                               else {"": x}).items():
                inputs[f"{name}/x/{key}"] = value
            inputs[f"{name}/y"] = target_of(cfg, main_logits, rng)
        else:
            model = keras.saving.load_model(path, compile=False)
        x = {k.split("/x/")[1]: v for k, v in inputs.items()
             if k.startswith(f"{name}/x/")}
        x = x.get("", x)
        y = inputs[f"{name}/y"]
        logits = numpy(model(x, training=False))
        if isinstance(logits, dict):
            for key, value in logits.items():
                out[f"{name}/outputs/{key}"] = value
            continue
        out[f"{name}/outputs"] = logits
        log(name, "built")
        loss = stages.stage_loss(cfg, stages.resolve_stages(cfg)[0])
        out[f"{name}/loss"] = numpy(loss(y, logits))
        metric = tasks.get(cfg.task).metrics(cfg)[0]
        metric.update_state(y, logits)
        metric.update_state(y[::-1], logits)
        out[f"{name}/metric"] = numpy(metric.result())
        # One step, SGD (comparable): jit on JAX, TF's graph step.
        jit = not tensorflow
        out[f"{name}/step_loss"] = one_step(
            model, cfg, x, y, keras.optimizers.SGD(0.01), jit)
        for i, w in enumerate(model.get_weights()):
            out[f"{name}/stepped/{i}"] = w
        log(name, "stepped")
        if tensorflow or name not in OWN_OPTIMIZER:
            continue
        # The recipe's own optimizer (encoder LR, accumulation) on JAX.
        fresh = keras.saving.load_model(path, compile=False)
        opt = optimizers.make_optimizer(cfg, 1e-3, fresh)
        step = one_step(fresh, cfg, x, y, opt, True)
        out[f"{name}/recipe_step_finite"] = bool(np.isfinite(step) and all(
            np.isfinite(w).all() for w in fresh.get_weights()))
    for name, (y, logits) in loss_inputs().items():
        out[f"loss/{name}"] = numpy(losses.build(name)(y, logits))
    if tensorflow:
        np.savez(os.path.join(directory, "inputs.npz"), **inputs)
    else:
        mixed_bfloat16(out, directory)
        if len(keras.distribution.list_devices()) > 1:
            data_parallel(out, directory)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
