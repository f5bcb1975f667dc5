"""U-Net ResNet34 speed and memory: kaggle_tf vs segmentation_models_pytorch.

    python benchmarks/bench_models.py [--sizes 256x512 256x1600] [--batch 4]
        [--iters 3] [--warmup 1] [--threads N] [--impls ours-xla ours smp]

Each (implementation, size, mode) runs in its own subprocess, so that the
peak resident memory (`ru_maxrss`) of one does not hide another's; all of
them in one invocation, on the same machine, with the same thread count
(TensorFlow's intra-op threads = `torch.set_num_threads`). Both models have
4 classes, random weights, float32, channels-last input for ours and
channels-first for smp.

* train: one optimizer step (Adam, BCE with logits) on a fixed batch;
  ours through `model.train_on_batch` (`jit_compile=True` for `ours-xla`),
  smp through forward / backward / step. Ours trims the freed heap during
  the warm-up steps, as `fit` does (`kaggle_tf.training.heap`);
  `ours-notrim` / `ours-xla-notrim` do not.
* infer: `predict_on_batch` (ours) / `model(x)` under `torch.inference_mode`
  in eval mode (smp).

Images per second come from the best timed step (the machine may be
shared; the median step is printed too) and exclude the warm-up steps
(where graphs are traced and XLA compiles; their total is `warm-up s`).
`model MB` is the peak RSS minus the RSS after imports. `tensor MB`
(ours only) is the peak of the bytes in use in TensorFlow's CPU allocator
(tensors and variables, what the steps actually asked for); peak RSS above
it is the allocator's pool (freed pages it keeps) plus the runtime itself.
PyTorch exposes no such figure on the CPU. Prints a table, then ours / smp
ratios (speed and peak RSS); see benchmarks/README.md, "Training memory vs
smp", for where the memory goes.
"""

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = 4


def rss_mb():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_ours(mode, height, width, args, jit, trim=True):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, ROOT)
    # First, as in `python -m kaggle_tf.fit`: TensorFlow then imports
    # without JAX (kaggle_tf.lean_imports).
    import kaggle_tf  # noqa: F401
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    import keras

    from kaggle_tf.models import Unet
    from kaggle_tf.training import heap

    baseline = rss_mb()
    model = Unet("resnet34", classes=CLASSES, input_shape=(height, width, 3))
    rng = np.random.RandomState(0)
    x = rng.rand(args.batch, height, width, 3).astype("float32")
    y = (rng.rand(args.batch, height, width, CLASSES) > 0.9).astype(
        "float32")
    model.compile(keras.optimizers.Adam(1e-4),
                  keras.losses.BinaryCrossentropy(from_logits=True),
                  jit_compile=jit)
    if mode == "train":
        def step():
            return float(model.train_on_batch(x, y))
    else:
        def step():
            return float(np.asarray(model.predict_on_batch(x)).mean())
    # What `fit` does (heap.TrimHeapWhileCompiling): the heap trimmed while
    # the compiling (warm-up) steps run.
    result = timed(step, args, baseline,
                   warmup_context=heap.trimming if trim else None)
    try:  # oneDNN's allocator (the default on x86) keeps statistics
        peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    except ValueError:
        peak = 0
    if peak:  # 0 with TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 (plain malloc)
        result["tensor_peak_mb"] = peak / 2 ** 20
    return result


def run_smp(mode, height, width, args):
    import numpy as np
    import segmentation_models_pytorch as smp
    import torch

    torch.set_num_threads(args.threads)
    baseline = rss_mb()
    torch.manual_seed(0)
    model = smp.Unet("resnet34", encoder_weights=None, classes=CLASSES)
    rng = np.random.RandomState(0)
    x = torch.from_numpy(rng.rand(args.batch, 3, height, width).astype(
        "float32"))
    y = torch.from_numpy((rng.rand(args.batch, CLASSES, height, width)
                          > 0.9).astype("float32"))
    if mode == "train":
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            return float(loss)
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                return float(model(x).mean())
    return timed(step, args, baseline)


def timed(step, args, baseline, warmup_context=None):
    start = time.perf_counter()
    with (warmup_context or contextlib.nullcontext)():
        for _ in range(args.warmup):
            step()
    first = time.perf_counter() - start
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    best, median = times[0], times[len(times) // 2]
    return {"images_per_s": args.batch / best, "step_s": best,
            "median_step_s": median, "first_step_s": first,
            "peak_rss_mb": rss_mb(), "model_rss_mb": rss_mb() - baseline}


def worker(args):
    impl, mode, size = args.worker
    height, width = (int(v) for v in size.split("x"))
    if impl == "smp":
        result = run_smp(mode, height, width, args)
    else:
        result = run_ours(mode, height, width, args,
                          jit=impl.startswith("ours-xla"),
                          trim=not impl.endswith("-notrim"))
    print("RESULT " + json.dumps(result))


def spawn(impl, mode, size, args):
    command = [sys.executable, os.path.abspath(__file__), "--worker", impl,
               mode, size, "--batch", str(args.batch), "--iters",
               str(args.iters), "--warmup", str(args.warmup), "--threads",
               str(args.threads)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
    return {"error": " | ".join(tail)}


def _mb(value):
    return "-" if value is None else f"{value:.0f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["256x512", "256x1600"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--impls", nargs="*",
                        default=["ours-xla", "ours", "smp"])
    parser.add_argument("--modes", nargs="*", default=["train", "infer"])
    parser.add_argument("--worker", nargs=3, default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    print(f"U-Net ResNet34, {CLASSES} classes, batch {args.batch}, "
          f"{args.threads} threads, {args.iters} timed steps after "
          f"{args.warmup} warm-up")
    print(f"{'size':<10}{'mode':<7}{'impl':<10}{'images/s':>10}"
          f"{'best s':>9}{'median s':>10}{'warm-up s':>11}"
          f"{'peak RSS MB':>13}{'model MB':>10}{'tensor MB':>11}")
    results = {}
    for size in args.sizes:
        for mode in args.modes:
            for impl in args.impls:
                r = spawn(impl, mode, size, args)
                results[size, mode, impl] = r
                if "error" in r:
                    print(f"{size:<10}{mode:<7}{impl:<10} FAILED: "
                          f"{r['error']}")
                    continue
                print(f"{size:<10}{mode:<7}{impl:<10}"
                      f"{r['images_per_s']:>10.2f}{r['step_s']:>9.2f}"
                      f"{r['median_step_s']:>10.2f}"
                      f"{r['first_step_s']:>11.1f}{r['peak_rss_mb']:>13.0f}"
                      f"{r['model_rss_mb']:>10.0f}"
                      f"{_mb(r.get('tensor_peak_mb')):>11}", flush=True)
    print("\nratios vs smp (speed: >1 is faster; memory: <1 is smaller)")
    for (size, mode, impl), r in results.items():
        ref = results.get((size, mode, "smp"))
        if impl == "smp" or not ref or "error" in r or "error" in ref:
            continue
        print(f"{size:<10}{mode:<7}{impl:<10}"
              f"speed x{r['images_per_s'] / ref['images_per_s']:.2f}  "
              f"peak RSS x{r['peak_rss_mb'] / ref['peak_rss_mb']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
