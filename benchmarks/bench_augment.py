"""Input-pipeline throughput with the SIIM 1st-place augmentation.

    python benchmarks/bench_augment.py [--images 64] [--batches 12]
                                       [--rounds 3] [--sequential]
                                       [--per-example] [--float-images]
                                       [--one-hot] [--every-channel]
                                       [--json out.json]

The same 256 x 1600 JPEGs (a Severstal sample from `tfrecords_tools`) and
class-id PNG masks (4 classes) feed these pipelines, batch 8:

- ours: `tf.data` (parallel decode, batch) + `kaggle_tf.augment` with
  `configs/transforms/siim_1st.json` in the "dataset" placement (per
  sample, XLA-compiled), fed the images as decoded (uint8) and the masks
  packed a bit per class, as `kaggle_tf.data.pipeline` keeps them from
  the records to the augmenter, which returns float32 images in [0, 1]
  and one-hot float32 masks;
- ours, float images (`--float-images`): the images converted to float32
  before batching;
- ours, one-hot (`--one-hot`): float32 images and one-hot float masks (the
  pipeline's form before; the augmenter packs and unpacks the masks);
- ours, sequential (`--sequential`): the same with
  `compose_geometric=False`, every geometric op sampling the images and
  masks itself (the form before consecutive warps were composed); both
  are also timed alone on one in-memory batch, in process CPU ms per
  image;
- ours, every channel (`--every-channel`): the same with
  `gray_once=False`. The sample's JPEGs are grayscale stored as RGB (all
  channels equal, as Severstal's), which ours transforms on one channel
  and repeats; this form transforms the three channels, as it does for
  colour images; both are also timed alone on one in-memory batch;
- ours, per example (`--per-example`): the same augmenter mapped on each
  example (a batch of one) before batching: its inputs, outputs and XLA
  temporaries are one image each, which the allocator reuses, where a
  batch's are fresh pages each time (see benchmarks/README.md);
- the ceiling: the same `tf.data` pipeline without augmentation, giving
  one-hot float masks as ours does;
- the peer: a PyTorch `DataLoader` (num_workers=2) whose dataset decodes
  the same files with OpenCV and runs albumentations with the same JSON
  (on uint8, as Kaggle kernels do, then float tensors in [0, 1]).

Each round runs them one after the other, each alone: a fresh
iterator (or DataLoader), warm-up batches (XLA compiles once per process,
workers start), then the prefetch buffers are drained untimed and a
window of batches is timed; the iterator is closed before the next one
starts, so no pipeline works in the background of another; the order
rotates from round to round. The figure of
a pipeline is its best window, in images per second (other processes on
the machine can only slow a window down); the median is printed too, and
the median of this process' CPU ms per image over the windows (steadier
than the rates: windows of one pipeline spread by 20-30% on a 2-core
machine; not for the peer, whose work is in its worker processes).
"""

import argparse
import gc
import glob
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from kaggle_tf import cli  # noqa: E402

# As the commands do: TensorFlow's CPU tensors from a pool that keeps freed
# memory. Run with TF_CPU_ALLOCATOR_USE_BFC=false to time the system
# allocator.
cli.pooled_host_memory()
SPEC = os.path.join(ROOT, "configs", "transforms", "siim_1st.json")
HEIGHT, WIDTH, CLASSES, BATCH = 256, 1600, 4, 8


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=64,
                   help="distinct JPEGs written (default: 64)")
    p.add_argument("--batches", type=int, default=10,
                   help="timed batches per window (default: 10)")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed batches first (default: 3)")
    p.add_argument("--drain", type=int, default=6,
                   help="untimed batches taken from the prefetch buffers "
                        "before timing (default: 6)")
    p.add_argument("--rounds", type=int, default=5,
                   help="windows per pipeline (default: 5)")
    p.add_argument("--spec", default=SPEC,
                   help="albumentations JSON (default: the SIIM list)")
    p.add_argument("--data", default=None,
                   help="folder for the sample (default: a temp folder)")
    p.add_argument("--sequential", action="store_true",
                   help="also time ours with compose_geometric=False")
    p.add_argument("--per-example", action="store_true",
                   help="also time ours with the augmenter mapped on each "
                        "example before batching (a batch of one)")
    p.add_argument("--float-images", action="store_true",
                   help="also time ours fed float32 images (converted "
                        "before batching)")
    p.add_argument("--one-hot", action="store_true",
                   help="also time ours fed one-hot float masks (the "
                        "pipeline's form before it kept them packed)")
    p.add_argument("--every-channel", action="store_true",
                   help="also time ours with gray_once=False (the three "
                        "channels transformed, as for colour images)")
    p.add_argument("--json", default=None, help="also write the figures")
    return p.parse_args(argv)


# --- data --------------------------------------------------------------------
def make_files(folder, n):
    """JPEGs and class-id PNG masks; returns (jpegs, masks) paths."""
    import cv2

    from kaggle_tf import rle
    from tfrecords_tools.competitions import steel

    images = os.path.join(folder, "train_images")
    if not os.path.isdir(images) or len(os.listdir(images)) < n:
        steel.make_sample(folder, n=n, size=(HEIGHT, WIDTH), seed=0)
    masks_dir = os.path.join(folder, "masks")
    os.makedirs(masks_dir, exist_ok=True)
    import csv

    runs = {}
    with open(os.path.join(folder, "train.csv")) as f:
        for row in csv.DictReader(f):
            runs.setdefault(row["ImageId"], []).append(
                (int(row["ClassId"]), row["EncodedPixels"]))
    jpegs = sorted(glob.glob(os.path.join(images, "*.jpg")))[:n]
    pngs = []
    for path in jpegs:
        name = os.path.basename(path)
        out = os.path.join(masks_dir, name.replace(".jpg", ".png"))
        if not os.path.exists(out):
            ids = np.zeros((HEIGHT, WIDTH), np.uint8)
            for class_id, encoded in runs.get(name, []):
                ids[rle.decode(encoded, (HEIGHT, WIDTH)) > 0] = class_id
            cv2.imwrite(out, ids)
        pngs.append(out)
    return jpegs, pngs


# --- ours ---------------------------------------------------------------------
def tf_pipeline(jpegs, pngs, augmenter, per_example=False, packed=False,
                integer=False):
    import tensorflow as tf

    def load(jpeg, png):
        image = tf.io.decode_jpeg(tf.io.read_file(jpeg), channels=3)
        ids = tf.io.decode_png(tf.io.read_file(png), channels=1)
        if not integer:
            image = tf.image.convert_image_dtype(image, tf.float32)
        image.set_shape([HEIGHT, WIDTH, 3])
        if packed:
            # A bit per class, as the records store masks.
            bits = tf.bitwise.left_shift(tf.ones_like(ids),
                                         tf.maximum(ids, 1) - 1)
            masks = tf.where(ids > 0, bits, tf.zeros_like(ids))
            masks.set_shape([HEIGHT, WIDTH, 1])
            return {"images": image, "packed_masks": masks}
        masks = tf.one_hot(tf.cast(ids[..., 0], tf.int32) - 1, CLASSES)
        masks.set_shape([HEIGHT, WIDTH, CLASSES])
        return {"images": image, "segmentation_masks": masks}

    ds = tf.data.Dataset.from_tensor_slices((jpegs, pngs))
    ds = ds.shuffle(len(jpegs), seed=0).repeat()
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if augmenter is not None and per_example:
        def one(example):
            batch = {k: v[None] for k, v in example.items()}
            out = augmenter(batch, training=True,
                            mask_classes=CLASSES if packed else None)
            return {k: v[0] for k, v in out.items()}

        ds = ds.map(one, num_parallel_calls=tf.data.AUTOTUNE)
        augmenter = None
    ds = ds.batch(BATCH, drop_remainder=True)
    if augmenter is not None:
        classes = CLASSES if packed else None
        ds = ds.map(lambda b: augmenter(b, training=True,
                                        mask_classes=classes),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def time_iterator(iterator, batches, warmup, touch):
    """Images per second over the window, and this process' CPU ms per
    image (steadier than the rate on a shared machine; the peer's work is
    in its worker processes, so its figure means nothing)."""
    for _ in range(warmup):
        touch(next(iterator))
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        touch(next(iterator))
    images = batches * BATCH
    return (images / (time.perf_counter() - start),
            (time.process_time() - cpu) * 1000.0 / images)


def cpu_ms_per_image(augmenter, batch, reps=4, rounds=5, mask_classes=None):
    """Process CPU time of the augmenter alone on one in-memory batch, ms
    per image (best of `rounds`): steadier than a rate on a shared
    machine. Every round passes the same `reps` seeds, so augmenters
    compared draw the same transforms."""
    import tensorflow as tf

    def once(rep):
        augmenter(batch, training=True, seed=tf.constant([rep, 7], tf.int32),
                  mask_classes=mask_classes)["images"].numpy()

    for rep in range(reps):
        once(rep)
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for rep in range(reps):
            once(rep)
        best = min(best, (time.process_time() - start) * 1000.0
                   / (reps * BATCH))
    return best


def pairs(spec_path, batch):
    """Each distortion of the SIIM list followed by its ShiftScaleRotate,
    both always applied: CPU ms per image composed and sequential."""
    from kaggle_tf.augment import from_albumentations
    from kaggle_tf.augment import load_spec

    steps = load_spec(spec_path)["transform"]["transforms"]
    distortions = [t for t in steps if t["__class_fullname__"] == "OneOf"
                   and any("Distortion" in c["__class_fullname__"]
                           for c in t["transforms"])]
    rotate = [t for t in steps
              if t["__class_fullname__"] == "ShiftScaleRotate"]
    if not distortions or not rotate:
        return {}
    out = {}
    print("  a distortion then ShiftScaleRotate (p=1), CPU ms per image:")
    for distortion in distortions[0]["transforms"]:
        chain = [dict(distortion, p=1.0), dict(rotate[0], p=1.0)]
        figures = {}
        for compose in (True, False):
            aug = from_albumentations(chain, seed=0,
                                      compose_geometric=compose)
            figures["composed" if compose else "sequential"] = \
                cpu_ms_per_image(aug, batch, reps=2, rounds=3)
        name = distortion["__class_fullname__"]
        out[name] = figures
        print(f"    {name:20s} composed {figures['composed']:5.1f}, "
              f"sequential {figures['sequential']:5.1f}")
    return out


# --- the peer -----------------------------------------------------------------
def torch_loader(jpegs, pngs, spec):
    import albumentations as A
    import cv2
    import torch

    from kaggle_tf.augment import load_spec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transform = A.from_dict(load_spec(spec))

    class Steel(torch.utils.data.Dataset):
        def __len__(self):
            return len(jpegs)

        def __getitem__(self, i):
            image = cv2.cvtColor(cv2.imread(jpegs[i]), cv2.COLOR_BGR2RGB)
            ids = cv2.imread(pngs[i], cv2.IMREAD_GRAYSCALE)
            masks = (ids[..., None] == np.arange(1, CLASSES + 1)).astype(
                np.uint8)
            out = transform(image=image, mask=masks)
            image = torch.from_numpy(out["image"]).permute(2, 0, 1)
            masks = torch.from_numpy(out["mask"]).permute(2, 0, 1)
            return image.float() / 255.0, masks.float()

    return torch.utils.data.DataLoader(
        Steel(), batch_size=BATCH, shuffle=True, num_workers=2,
        drop_last=True)


def endless(loader):
    while True:
        yield from loader


# --- main ---------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    folder = args.data or tempfile.mkdtemp(prefix="bench_augment_")
    jpegs, pngs = make_files(folder, args.images)
    import tensorflow as tf

    from kaggle_tf.augment import from_albumentations

    augmenter = from_albumentations(args.spec, seed=0)

    def touch_tf(batch):
        return float(tf.reduce_sum(batch["images"][:, 0, 0]))

    def maker(aug, **forms):
        return lambda: (iter(tf_pipeline(jpegs, pngs, aug, **forms)),
                        touch_tf)

    # The pipeline's own form: packed masks, uint8 images.
    stored = {"packed": True, "integer": True}
    makers = {"ours": maker(augmenter, **stored)}
    if args.sequential:
        one_by_one = from_albumentations(args.spec, seed=0,
                                         compose_geometric=False)
        makers["sequential"] = maker(one_by_one, **stored)
    if args.float_images:
        makers["float_images"] = maker(augmenter, packed=True)
    if args.one_hot:
        makers["one_hot"] = maker(augmenter)
    if args.every_channel:
        every_channel = from_albumentations(args.spec, seed=0,
                                            gray_once=False)
        makers["every_channel"] = maker(every_channel, **stored)
    if args.per_example:
        makers["per_example"] = maker(augmenter, per_example=True, **stored)
    makers["ceiling"] = maker(None)
    try:
        import torch

        def touch_torch(batch):
            return float(torch.sum(batch[0][:, :, 0, 0]))

        makers["peer"] = lambda: (
            endless(torch_loader(jpegs, pngs, args.spec)), touch_torch)
    except ImportError:
        print("peer skipped: PyTorch or albumentations is not installed")

    figures = {k: [] for k in makers}
    keys = list(makers)
    for r in range(args.rounds):
        # The order rotates, so that no pipeline always follows the same
        # one (the peer's workers exiting, say).
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            iterator, touch = makers[key]()
            figures[key].append(time_iterator(
                iterator, args.batches, args.warmup + args.drain, touch))
            if hasattr(iterator, "close"):
                iterator.close()
            del iterator
            gc.collect()
        print(f"round {r + 1}: " + ", ".join(
            f"{k} {v[-1][0]:.1f}" for k, v in figures.items()), flush=True)
    cpu = {k: statistics.median(c for _, c in v)
           for k, v in figures.items() if v and k != "peer"}
    figures = {k: [rate for rate, _ in v] for k, v in figures.items()}
    result = {k: max(v) for k, v in figures.items() if v}
    medians = {k: statistics.median(v) for k, v in figures.items() if v}
    result["median"] = medians
    result["cpu_ms_per_image"] = cpu
    result["cpu_count"] = os.cpu_count()
    print(f"\ninput pipeline, batch {BATCH}, {HEIGHT}x{WIDTH}, "
          f"{os.path.basename(args.spec)}, images/s (best of {args.rounds} "
          "windows; median); process CPU ms per image (median):")
    rows = [("ours", "ours (tf.data + kaggle_tf.augment)"),
            ("sequential", "ours, compose_geometric=False"),
            ("float_images", "ours, fed float32 images"),
            ("one_hot", "ours, fed one-hot float masks"),
            ("every_channel", "ours, every channel (gray_once=False)"),
            ("per_example", "ours, augmenter before batching"),
            ("ceiling", "ceiling (tf.data, no augmentation)"),
            ("peer", "peer (torch DataLoader x2 + albumentations)")]
    for key, label in rows:
        if key in result:
            line = f"  {label:44s} {result[key]:7.1f}  ({medians[key]:.1f})"
            if key in cpu:
                line += f"  {cpu[key]:5.1f} CPU ms"
            print(line)
    if "peer" in result:
        result["ours_over_peer"] = result["ours"] / result["peer"]
        print(f"  ours / peer    = {result['ours_over_peer']:.2f}"
              "  (goal >= 2)")
    result["ours_over_ceiling"] = result["ours"] / result["ceiling"]
    print(f"  ours / ceiling = {result['ours_over_ceiling']:.2f}"
          "  (goal >= 0.4)")
    if "sequential" in result:
        result["ours_over_sequential"] = result["ours"] / result["sequential"]
        print(f"  ours / sequential = {result['ours_over_sequential']:.2f}")
        first = next(iter(tf_pipeline(jpegs, pngs, None)))
        cpu = {name: cpu_ms_per_image(aug, first) for name, aug in
               (("composed", augmenter), ("sequential", one_by_one))}
        result["augment_cpu_ms_per_image"] = cpu
        print("  augmenter alone, CPU ms per image (best of 5): "
              f"composed {cpu['composed']:.1f}, sequential "
              f"{cpu['sequential']:.1f}")
        result["pairs_cpu_ms_per_image"] = pairs(args.spec, first)
    if "every_channel" in result:
        result["ours_over_every_channel"] = (result["ours"]
                                             / result["every_channel"])
        print("  ours / every channel = "
              f"{result['ours_over_every_channel']:.2f}")
        first = next(iter(tf_pipeline(jpegs, pngs, None, packed=True,
                                      integer=True)))
        cpu = {name: cpu_ms_per_image(aug, first, mask_classes=CLASSES)
               for name, aug in (("gray_once", augmenter),
                                 ("every_channel", every_channel))}
        result["gray_cpu_ms_per_image"] = cpu
        print("  augmenter alone, CPU ms per image (best of 5): "
              f"gray once {cpu['gray_once']:.1f}, every channel "
              f"{cpu['every_channel']:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
