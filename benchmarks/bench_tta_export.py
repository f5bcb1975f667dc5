"""D4 TTA inference: our exported SavedModel vs smp + ttach, and the cost of
the Severstal recipe.

    python benchmarks/bench_tta_export.py [--sizes 256x512 256x1600]
        [--iters 3] [--warmup 1] [--batch 1] [--threads N]
        [--recipe-size 256x1600] [--recipe-folds 2]

U-Net ResNet34 (4 classes, random weights, float32):

* ours: `python -m kaggle_tf.export` of one checkpoint with `tta="d4"` (8
  passes, un-transformed and averaged in the graph, then thresholds), the
  SavedModel reloaded with `tf.saved_model.load` and called through its
  `predict_images` signature (float input, as the peer's);
* peer: `smp.Unet("resnet34", encoder_weights=None, classes=4)` in eval
  mode wrapped in `ttach.SegmentationTTAWrapper(model,
  tta.aliases.d4_transform(), merge_mode="mean")`, under
  `torch.inference_mode` (logits averaged; no thresholds).

The Severstal recipe is 2 models x 5 folds x hflip = 20 passes at
256 x 1600. It is measured on an exported ensemble of `--recipe-folds`
U-Net ResNet34 checkpoints with hflip, called with JPEG bytes through
`serving_default` (decoding, sigmoid, thresholds and min areas included),
and scaled to 10 members (the second architecture counted as a U-Net
ResNet34). The projection for Severstal's 5,506 test images is for the CPU
this runs on.

Ours and the peer run in two subprocesses (no thread pools shared between
TensorFlow and PyTorch) with the same thread count (TensorFlow's intra-op
threads = `torch.set_num_threads`), set up and warmed up first (tracing
excluded), then timed call by call in alternation, so that both see the
same load when the machine is shared. Images per second come from the best
call; the median is printed too.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = 4
SEVERSTAL_TEST_IMAGES = 5506
KERNEL_SECONDS = 3600
RECIPE_MEMBERS = 10  # 2 models x 5 folds


def _tensorflow(threads):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    return tf


def _export(height, width, tta, folds, root):
    """A run folder with `folds` random U-Net ResNet34 checkpoints,
    exported; returns the version folder and the export seconds."""
    import keras

    sys.path.insert(0, ROOT)
    from kaggle_tf import config
    from kaggle_tf import models
    from kaggle_tf.export import run as export_run

    records = os.path.join(root, "records")
    os.makedirs(records, exist_ok=True)
    with open(os.path.join(records, "manifest.json"), "w") as f:
        json.dump({"image_size": [height, width]}, f)
    cfg = config.from_dict({
        "task": "steel", "output_dir": os.path.join(root, "run"),
        "data": {"image_size": [height, width], "records_dir": records},
        "model": {"arch": "unet", "encoder": "resnet34",
                  "classes": CLASSES},
        "inference": {"tta": tta, "thresholds": [0.5],
                      "min_area": [0]}})
    for k in range(folds):
        keras.utils.set_random_seed(k)
        model = models.build(cfg.model, (height, width, 3))
        folder = os.path.join(cfg.output_dir, f"fold{k}")
        os.makedirs(folder)
        model.save(os.path.join(folder, "best.keras"))
        keras.backend.clear_session()
    start = time.perf_counter()
    path = export_run.export(cfg, os.path.join(root, "export"))
    return path, time.perf_counter() - start


def worker_ours(args, height, width, root):
    tf = _tensorflow(args.threads)
    import numpy as np

    path, export_s = _export(height, width, "d4", 1, root)
    fn = tf.saved_model.load(path).signatures["predict_images"]
    x = tf.constant(np.random.RandomState(0).rand(
        args.batch, height, width, 3).astype("float32"))
    return lambda: fn(images=x)["masks"].numpy(), {"export_s": export_s}


def worker_peer(args, height, width, root):
    sys.modules.setdefault("triton", None)  # not needed; slow to probe
    import torch
    import segmentation_models_pytorch as smp
    import ttach

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = smp.Unet("resnet34", encoder_weights=None, classes=CLASSES)
    model.eval()
    wrapped = ttach.SegmentationTTAWrapper(
        model, ttach.aliases.d4_transform(), merge_mode="mean")
    x = torch.rand(args.batch, 3, height, width)

    def call():
        with torch.inference_mode():
            return wrapped(x).numpy()

    return call, {"threads": torch.get_num_threads()}


def worker_recipe(args, height, width, root):
    tf = _tensorflow(args.threads)
    import numpy as np

    rng = np.random.RandomState(0)
    images = (rng.rand(args.batch, height, width, 3) * 255).astype("uint8")
    blobs = tf.constant([tf.io.encode_jpeg(i).numpy() for i in images])
    path, export_s = _export(height, width, "hflip", args.recipe_folds,
                             root)
    fn = tf.saved_model.load(path).signatures["serving_default"]
    return (lambda: fn(image_bytes=blobs)["masks"].numpy(),
            {"export_s": export_s})


def serve(kind, args, height, width):
    """Worker loop: set up, warm up, then one timed call per "run" line."""
    with tempfile.TemporaryDirectory() as root:
        call, info = WORKERS[kind](args, height, width, root)
        for _ in range(args.warmup):
            call()
        print(json.dumps({"ready": True, **info}), flush=True)
        for line in sys.stdin:
            if line.strip() != "run":
                break
            start = time.perf_counter()
            call()
            print(json.dumps({"s": time.perf_counter() - start}),
                  flush=True)


WORKERS = {"ours": worker_ours, "peer": worker_peer,
           "recipe": worker_recipe}


def _size(text):
    h, w = text.lower().split("x")
    return int(h), int(w)


class Worker:
    """A benchmark subprocess driven line by line."""

    def __init__(self, kind, size, args):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind,
               "--worker-size", f"{size[0]}x{size[1]}",
               "--warmup", str(args.warmup), "--batch", str(args.batch),
               "--threads", str(args.threads),
               "--recipe-folds", str(args.recipe_folds)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": ROOT + os.pathsep + os.environ.get(
                   "PYTHONPATH", "")}
        self.kind = kind
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env=env)
        self.info = self._read()
        self.times = []

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        self.proc.wait()
        self.log.seek(0)
        raise RuntimeError(f"{self.kind} worker failed:\n"
                           f"{self.log.read()[-3000:]}")

    def run(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        self.times.append(self._read()["s"])

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait()
        self.log.close()

    @property
    def best(self):
        return min(self.times)

    @property
    def median(self):
        return sorted(self.times)[len(self.times) // 2]


def _interleaved(workers, iters):
    """Timed calls alternating between the workers (same conditions)."""
    for i in range(iters):
        order = workers if i % 2 == 0 else workers[::-1]
        for worker in order:
            time.sleep(0.5)  # let the other process's threads go idle
            worker.run()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["256x512", "256x1600"])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int,
                   default=len(os.sched_getaffinity(0)))
    p.add_argument("--recipe-size", default="256x1600")
    p.add_argument("--recipe-folds", type=int, default=2,
                   help="members actually exported for the recipe "
                        "(scaled to 10)")
    p.add_argument("--skip-recipe", action="store_true")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--worker-size", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        h, w = _size(args.worker_size)
        serve(args.worker, args, h, w)
        return 0

    print(f"U-Net ResNet34, {CLASSES} classes, D4 TTA (8 passes), batch "
          f"{args.batch}, {args.threads} threads, {args.warmup} warm-up + "
          f"{args.iters} timed calls each, interleaved", flush=True)
    print(f"{'size':>10} {'impl':<24} {'img/s':>8} {'best s':>8} "
          f"{'median s':>9}", flush=True)
    ratios = []
    for text in args.sizes:
        size = _size(text)
        ours = Worker("ours", size, args)
        peer = Worker("peer", size, args)
        _interleaved([ours, peer], args.iters)
        ours.close()
        peer.close()
        for worker, name in ((ours, "ours SavedModel d4"),
                             (peer, "smp + ttach d4")):
            extra = (f"  (export {worker.info['export_s']:.0f} s)"
                     if "export_s" in worker.info else "")
            print(f"{text:>10} {name:<24} {args.batch / worker.best:8.3f} "
                  f"{worker.best:8.2f} {worker.median:9.2f}{extra}",
                  flush=True)
        ratios.append((text, peer.best / ours.best,
                       peer.median / ours.median))
    for text, best, median in ratios:
        print(f"ours / peer images/s at {text}: {best:.2f}x best, "
              f"{median:.2f}x median (goal >= 1.3x)")
    if args.skip_recipe:
        return 0
    recipe = Worker("recipe", _size(args.recipe_size), args)
    _interleaved([recipe], args.iters)
    recipe.close()
    measured = recipe.best / args.batch
    per_image = measured / args.recipe_folds * RECIPE_MEMBERS
    total_h = per_image * SEVERSTAL_TEST_IMAGES / 3600
    print(f"Severstal recipe (2 models x 5 folds x hflip = 20 passes) at "
          f"{args.recipe_size}, JPEG bytes -> masks via serving_default: "
          f"{args.recipe_folds} members measured: {measured:.2f} s/image "
          f"(median {recipe.median / args.batch:.2f}); 10 members: "
          f"{per_image:.2f} s/image")
    print(f"  5,506 test images: {total_h:.2f} h on this CPU "
          f"({args.threads} threads); a 1-hour kernel fits "
          f"{KERNEL_SECONDS / per_image:.0f} images "
          f"({'fits' if total_h <= 1 else 'does not fit'}; the recipe "
          "assumes a GPU kernel)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
