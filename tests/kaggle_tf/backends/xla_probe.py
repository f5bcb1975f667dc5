"""Every recipe's full train step, compiled by XLA and run eagerly.

    python xla_probe.py OUT.npz

For each recipe of `RECIPES` (`probe.py`'s models: the `test_resnet`
encoder at 32 x 32): the recipe's model, the first stage's loss, its
optimizer (`optimizers.make_optimizer`: encoder LR, AdamW, gradient
accumulation) and the task's streaming metrics; `grad_accum_steps` train
steps (so the accumulated update is applied) eagerly and with
`jit_compile=True`, from the same weights.

Dropout's random draws differ between TensorFlow's kernels and XLA's, so
the rates are set to 0 before the steps (the layers are still traced and
compiled); Adam's epsilon is raised (see `EPSILON`). The test runs this with `XLA_FLAGS` that lower XLA's CPU
code-generation effort (`--xla_backend_optimization_level=0` ...): the
same HLO is compiled, in seconds instead of tens of seconds.

Keys of OUT.npz: `<recipe>/<eager|xla>/<log name>` (loss and metrics),
`<recipe>/<eager|xla|start>/<i>` (weights), `<recipe>/jit_compile`.
"""

import sys
import time

import keras
import numpy as np

import probe
from kaggle_tf import tasks
from kaggle_tf.training import optimizers
from kaggle_tf.training import stages

TINY_DECODER = "model.decoder_channels=[8, 8, 8, 8, 8]"
# name -> (config, overrides): every recipe, and the variants whose model
# differs (FPN; the scSE U-Net). The narrow U-Net decoder and LSTM keep
# each compile short.
RECIPES = {
    "steel": ("steel.json", [TINY_DECODER]),
    "steel_fpn": ("steel_fpn.json", []),
    "steel_cls": ("steel_cls.json", []),
    "siim": ("siim.json", [TINY_DECODER]),
    "siim_seunet": ("siim_seunet.json", [
        "model.decoder_channels=[16, 16, 16, 16, 16]"]),
    "protein": ("protein.json", []),
    "rsna_ich": ("rsna_ich.json", []),
    "rsna_ich_seq": ("rsna_ich_seq.json", ["model.units=16"]),
    "rsna_lumbar": probe.RECIPES["rsna_lumbar"],
}
# Adam's first step is lr * g / (|g| + epsilon): with Keras' 1e-7 that is
# lr * sign(g), so float noise on a near-zero gradient turns into a whole
# step of either sign. A larger epsilon keeps the step a smooth function
# of the gradient, which the weights then compare.
EPSILON = 1e-3
START = time.time()


def without_dropout(model):
    for layer in model._flatten_layers():
        if isinstance(layer, (keras.layers.Dropout,
                              keras.layers.SpatialDropout2D)):
            layer.rate = 0.0


def steps(model, cfg, x, y, weights, jit):
    model.set_weights(weights)
    optimizer = optimizers.make_optimizer(cfg, cfg.optimizer.lr, model)
    if hasattr(optimizer, "epsilon"):
        optimizer.epsilon = EPSILON
    model.compile(
        optimizer=optimizer,
        loss=stages.stage_loss(cfg, stages.resolve_stages(cfg)[0]),
        metrics=tasks.get(cfg.task).metrics(cfg),
        jit_compile=jit, run_eagerly=not jit)
    for _ in range(max(cfg.train.grad_accum_steps, 1)):
        logs = model.train_on_batch(x, y, return_dict=True)
    return logs, model.get_weights()


def main(out_path):
    out = {}
    for name, recipe in RECIPES.items():
        probe.RECIPES[name] = recipe
        cfg = probe.recipe_config(name)
        keras.utils.set_random_seed(0)
        model = probe.build(cfg)
        without_dropout(model)
        rng = np.random.default_rng(0)
        x = probe.input_of(model, rng)
        y = probe.target_of(cfg, probe.numpy(model(x, training=False)), rng)
        start = model.get_weights()
        for i, w in enumerate(start):
            out[f"{name}/start/{i}"] = w
        for mode in ("eager", "xla"):
            logs, weights = steps(model, cfg, x, y, start, mode == "xla")
            for key, value in logs.items():
                out[f"{name}/{mode}/{key}"] = np.asarray(value)
            for i, w in enumerate(weights):
                out[f"{name}/{mode}/{i}"] = w
            print(f"[{time.time() - START:.0f} s] {name} {mode}",
                  {k: float(v) for k, v in logs.items()}, file=sys.stderr,
                  flush=True)
        out[f"{name}/jit_compile"] = np.asarray(model.jit_compile)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1])
