"""U-Net ResNet34 train and inference speed: Keras on TensorFlow vs JAX.

    python benchmarks/bench_backends.py [--size 256x512] [--batch 4]
        [--iters 3] [--warmup 1]

Each backend runs in its own subprocess (Keras reads `KERAS_BACKEND` at
import) on whatever devices that backend sees, so the same command runs
unchanged on a CPU, a GPU or a TPU VM. Both use the same weights (saved
once as `.weights.h5`), the same fixed batch, float32:

* train: one step of `train_on_batch` (Adam, BCE with logits), compiled
  (`jit_compile=True` on TF, JAX's jit);
* infer: `predict_on_batch`.

Images per second come from the best timed step, after the warm-up steps
(tracing and compiling). Prints a table, then the JAX / TF ratios.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(args):
    import keras
    import numpy as np


    h, w = args.size
    from kaggle_tf.models.decoders.unet import Unet

    model = Unet("resnet34", input_shape=(h, w, 3), classes=4,
                 encoder_weights=None)
    if os.path.exists(args.weights):
        model.load_weights(args.weights)
    else:
        model.save_weights(args.weights)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch, h, w, 3)).astype("float32")
    y = (rng.uniform(size=(args.batch, h, w, 4)) < 0.1).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  jit_compile=True)
    result = {"backend": keras.backend.backend(),
              "devices": keras.distribution.list_devices()
              if keras.backend.backend() == "jax" else "tf"}
    for mode, step in (("infer", lambda: model.predict_on_batch(x)),
                       ("train", lambda: model.train_on_batch(x, y))):
        start = time.perf_counter()
        for _ in range(args.warmup):
            step()
        warm = time.perf_counter() - start
        times = []
        for _ in range(args.iters):
            start = time.perf_counter()
            np.asarray(step())
            times.append(time.perf_counter() - start)
        result[mode] = {"img_s": args.batch / min(times), "warmup_s": warm}
    print("RESULT " + json.dumps(result, default=str))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="256x512")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.size = [int(v) for v in args.size.split("x")]
    if args.backend:
        return child(args)
    weights = os.path.join(tempfile.mkdtemp(), "unet_r34.weights.h5")
    results = {}
    for backend in ("tensorflow", "jax"):
        env = dict(os.environ, KERAS_BACKEND=backend,
                   TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--backend", backend,
             "--weights", weights, "--size", "x".join(map(str, args.size)),
             "--batch", str(args.batch), "--iters", str(args.iters),
             "--warmup", str(args.warmup)],
            env=env, capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines()
                 if l.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"{backend} failed:\n{proc.stderr[-2000:]}")
        results[backend] = json.loads(lines[-1][len("RESULT "):])
    print(f"U-Net ResNet34 {args.size[0]}x{args.size[1]}, batch "
          f"{args.batch}, float32")
    print(f"{'backend':<12}{'train img/s':>12}{'infer img/s':>12}"
          f"{'warm-up s':>11}")
    for backend, r in results.items():
        print(f"{backend:<12}{r['train']['img_s']:>12.2f}"
              f"{r['infer']['img_s']:>12.2f}"
              f"{r['train']['warmup_s'] + r['infer']['warmup_s']:>11.1f}")
    for mode in ("train", "infer"):
        ratio = (results["jax"][mode]["img_s"]
                 / results["tensorflow"][mode]["img_s"])
        print(f"jax / tensorflow {mode}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
