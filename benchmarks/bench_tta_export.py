"""D4 TTA inference: our exported SavedModel vs smp + ttach, and the cost of
the Severstal recipe.

    python benchmarks/bench_tta_export.py [--sizes 256x512 256x1600]
        [--iters 2] [--warmup 1] [--batch 1] [--threads N]
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

Each measurement runs in its own subprocess (no thread pools shared
between TensorFlow and PyTorch) with the same thread count: TensorFlow's
intra-op threads = `torch.set_num_threads`. Images per second come from the
best timed call (the machine may be shared; the median is printed too);
warm-up calls (tracing) are excluded.
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


def _timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[0], times[len(times) // 2]


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
    from kaggle_tf.export import saved_model

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
    path = saved_model.export(cfg, os.path.join(root, "export"))
    return path, time.perf_counter() - start


def worker_ours(args, height, width):
    tf = _tensorflow(args.threads)
    import numpy as np

    with tempfile.TemporaryDirectory() as root:
        path, export_s = _export(height, width, "d4", 1, root)
        served = tf.saved_model.load(path)
        fn = served.signatures["predict_images"]
        x = tf.constant(np.random.RandomState(0).rand(
            args.batch, height, width, 3).astype("float32"))
        best, median = _timed(lambda: fn(images=x)["masks"].numpy(),
                              args.warmup, args.iters)
    return {"best_s": best, "median_s": median, "export_s": export_s}


def worker_peer(args, height, width):
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
    with torch.inference_mode():
        best, median = _timed(lambda: wrapped(x).numpy(), args.warmup,
                              args.iters)
    return {"best_s": best, "median_s": median,
            "threads": torch.get_num_threads()}


def worker_recipe(args, height, width):
    tf = _tensorflow(args.threads)
    import numpy as np

    rng = np.random.RandomState(0)
    images = (rng.rand(args.batch, height, width, 3) * 255).astype("uint8")
    blobs = tf.constant([tf.io.encode_jpeg(i).numpy() for i in images])
    with tempfile.TemporaryDirectory() as root:
        path, export_s = _export(height, width, "hflip", args.recipe_folds,
                                 root)
        served = tf.saved_model.load(path)
        fn = served.signatures["serving_default"]
        best, median = _timed(lambda: fn(image_bytes=blobs)["masks"].numpy(),
                              args.warmup, args.iters)
    return {"best_s": best, "median_s": median, "export_s": export_s}


WORKERS = {"ours": worker_ours, "peer": worker_peer,
           "recipe": worker_recipe}


def _size(text):
    h, w = text.lower().split("x")
    return int(h), int(w)


def _spawn(kind, size, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind,
           "--worker-size", f"{size[0]}x{size[1]}",
           "--iters", str(args.iters), "--warmup", str(args.warmup),
           "--batch", str(args.batch), "--threads", str(args.threads),
           "--recipe-folds", str(args.recipe_folds)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH",
                                                            "")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{kind} {size}: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["256x512", "256x1600"])
    p.add_argument("--iters", type=int, default=2)
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
        print(json.dumps(WORKERS[args.worker](args, h, w)))
        return 0

    print(f"U-Net ResNet34, {CLASSES} classes, D4 TTA (8 passes), batch "
          f"{args.batch}, {args.threads} threads, {args.warmup} warm-up + "
          f"{args.iters} timed calls", flush=True)
    print(f"{'size':>10} {'impl':<28} {'img/s':>8} {'best s':>8} "
          f"{'median s':>9}", flush=True)
    ratios = []
    for text in args.sizes:
        size = _size(text)
        rows = {}
        for kind, name in (("ours", "ours SavedModel d4"),
                           ("peer", "smp + ttach d4")):
            r = _spawn(kind, size, args)
            rows[kind] = r
            extra = (f"  (export {r['export_s']:.0f} s)"
                     if "export_s" in r else "")
            print(f"{text:>10} {name:<28} {args.batch / r['best_s']:8.3f} "
                  f"{r['best_s']:8.2f} {r['median_s']:9.2f}{extra}",
                  flush=True)
        ratio = rows["peer"]["best_s"] / rows["ours"]["best_s"]
        ratios.append((text, ratio))
    for text, ratio in ratios:
        print(f"ours / peer images/s at {text}: {ratio:.2f}x "
              f"(goal >= 1.3x)")
    if args.skip_recipe:
        return 0
    size = _size(args.recipe_size)
    r = _spawn("recipe", size, args)
    per_member = r["best_s"] / args.batch / args.recipe_folds
    per_image = per_member * RECIPE_MEMBERS
    total_h = per_image * SEVERSTAL_TEST_IMAGES / 3600
    print(f"Severstal recipe (2 models x 5 folds x hflip = 20 passes) at "
          f"{args.recipe_size}, JPEG bytes -> masks via serving_default: "
          f"measured {args.recipe_folds} members: "
          f"{r['best_s'] / args.batch:.2f} s/image (median "
          f"{r['median_s'] / args.batch:.2f}); 10 members: "
          f"{per_image:.2f} s/image")
    print(f"  5,506 test images: {total_h:.2f} h on this CPU "
          f"({args.threads} threads); a 1-hour kernel fits "
          f"{KERNEL_SECONDS / per_image:.0f} images "
          f"({'fits' if total_h <= 1 else 'does not fit'}; a GPU kernel "
          "is what the recipe assumes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
