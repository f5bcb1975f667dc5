"""Conversion and streaming cost per item at a competition's real size.

    python benchmarks/bench_scale.py --task steel --n 64 [--workers 1]
        [--config configs/steel.json] [--size HxW] [--keep DIR]

Writes `--n` training items (and the generator's test items) with the
task's sample generator at the real image size (JPEG / PNG / DICOM as
Kaggle ships them), converts them (`tfrecords_tools.convert`, `--workers`
processes), then streams one epoch of the training pipeline of the recipe
(`kaggle_tf.data.pipeline.make_dataset` with the recipe's augmentation on
the host, `--batch` examples a batch; a first iterator, which traces the
pipeline, takes one batch and is not counted; the counted epoch is a fresh
iterator, its first batch included). Each phase runs in a process of its own, so its
peak RSS is its own. Prints, for the conversion and for the streaming:
items/s, CPU ms per item (the process and its workers), peak RSS (MiB),
bytes on disk per item (raw input and records), and the projection to the
full competition (its train counts). An item is a training image (an HPA
sample of 4 PNGs, an ICH or SIIM DICOM) or a lumbar study. Run it at two
sizes 4x apart to see whether cost per item stays flat
(benchmarks/README.md).
The last line is the JSON of the figures.
"""

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Training items of the full competitions (and what an item is).
FULL = {"steel": (12568, "images"), "siim": (10675, "DICOMs"),
        "protein": (31072, "samples of 4 PNGs"),
        "rsna_ich": (752803, "DICOM slices"),
        "rsna_lumbar": (1975, "studies")}
CONFIGS = {"steel": "configs/steel.json", "siim": "configs/siim.json",
           "protein": "configs/protein.json",
           "rsna_ich": "configs/rsna_ich.json",
           "rsna_lumbar": "configs/rsna_lumbar.json"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, choices=sorted(FULL))
    p.add_argument("--n", type=int, required=True, help="training items")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--config", default=None, help="recipe (default: "
                   "configs/<task>.json)")
    p.add_argument("--size", default=None, help="HxW (default: real size)")
    p.add_argument("--batch", type=int, default=2,
                   help="streaming batch size (at most the recipe's; small "
                        "so that a small N streams many batches)")
    p.add_argument("--keep", default=None, help="work folder to keep")
    p.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    p.add_argument("--root", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _usage():
    """(CPU seconds of this process and its children, peak RSS MiB of this
    process, of its largest child)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return cpu, me.ru_maxrss / 1024, kids.ru_maxrss / 1024


def _cfg(args, root):
    from kaggle_tf import config

    return config.load(os.path.join(ROOT, args.config or CONFIGS[args.task]),
                       overrides=[f"data.raw_dir={json.dumps(root + '/raw')}",
                                  f"data.records_dir="
                                  f"{json.dumps(root + '/records')}",
                                  "data.folds=2"])


def _items(task, raw):
    """Items written by the sample generator (train + test)."""
    if task == "protein":
        return len(glob.glob(f"{raw}/*/*_green.png"))
    if task == "rsna_lumbar":
        return len(glob.glob(f"{raw}/*_images/*"))
    if task == "steel":
        return len(glob.glob(f"{raw}/*_images/*.jpg"))
    return len(glob.glob(f"{raw}/**/*.dcm", recursive=True))


def _disk(folder):
    total = 0
    for base, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        total += sum(os.path.getsize(os.path.join(base, f)) for f in files)
    return total


def phase_convert(args):
    from tfrecords_tools import convert

    cfg = _cfg(args, args.root)
    import tensorflow  # noqa: F401  (loaded before the clock starts)

    cpu0 = _usage()[0]
    t = time.perf_counter()
    manifest = convert.convert(cfg, workers=args.workers, progress=False)
    seconds = time.perf_counter() - t
    cpu, rss, kid_rss = _usage()
    return {"seconds": seconds, "cpu": cpu - cpu0, "rss_mib": rss,
            "worker_rss_mib": kid_rss,
            "records": sum(s["records"] for s in manifest["splits"].values()),
            "examples": sum(manifest["splits"]["train"][
                "examples_per_fold"].values())}


def phase_stream(args):
    from kaggle_tf.data import pipeline
    from kaggle_tf.training import image

    cfg = _cfg(args, args.root)
    augmenter = image.augmenter_of(cfg)
    batch = min(cfg.train.batch_size, args.batch)
    ds = pipeline.make_dataset(cfg, list(range(cfg.data.folds)),
                               training=True, augmenter=augmenter,
                               repeat=False, batch_size=batch)
    # Tracing the pipeline is a fixed cost, not a per-item one: a first
    # iterator takes one batch and is dropped. The timed epoch is a fresh
    # iterator, its first batch included (with a shuffle buffer as large as
    # N, that batch reads every record: leaving it out would leave out the
    # reading).
    warm = iter(ds)
    next(warm)
    del warm
    cpu0 = _usage()[0]
    t = time.perf_counter()
    examples = 0
    for element in iter(ds):
        first = element[0] if isinstance(element, tuple) else element
        leaf = next(iter(first.values())) if isinstance(first, dict) \
            else first
        examples += int(leaf.shape[0])
    seconds = time.perf_counter() - t
    cpu, rss, _ = _usage()
    return {"seconds": seconds, "cpu": cpu - cpu0, "rss_mib": rss,
            "examples": examples,
            "transforms": len(cfg.augment.transforms or ()),
            "batch": batch}


def _child(args, phase, root):
    cmd = [sys.executable, os.path.abspath(__file__), "--task", args.task,
           "--n", str(args.n), "--workers", str(args.workers),
           "--batch", str(args.batch), "--phase", phase, "--root", root]
    if args.config:
        cmd += ["--config", args.config]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                         cwd=ROOT)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = parse_args(argv)
    if args.phase:
        fn = phase_convert if args.phase == "convert" else phase_stream
        print(json.dumps(fn(args)))
        return 0
    from tfrecords_tools import competitions
    from tfrecords_tools import sample

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or tmp
        size = sample.parse_size(args.size) if args.size else None
        t = time.perf_counter()
        competitions.get(args.task).make_sample(f"{root}/raw", n=args.n,
                                                size=size, seed=0)
        items = _items(args.task, f"{root}/raw")
        made = time.perf_counter() - t
        raw_bytes = _disk(f"{root}/raw")
        conv = _child(args, "convert", root)
        rec_bytes = _disk(f"{root}/records")
        stream = _child(args, "stream", root) if "error" not in conv else {
            "error": "no records"}
    full, what = FULL[args.task]
    load = os.getloadavg()[0]
    print(f"{args.task}: {args.n} train items ({items} with test), "
          f"{what}, generated in {made:.1f} s; workers={args.workers}; "
          f"{os.cpu_count()} CPUs, load {load:.1f}")
    result = {"bench": "scale", "task": args.task, "n": args.n,
              "items": items, "workers": args.workers, "load": round(load, 1),
              "raw_bytes_per_item": raw_bytes // max(items, 1)}
    for name, r, count, disk in (("convert", conv, items, rec_bytes),
                                 ("stream", stream, None, None)):
        if "error" in r:
            print(f"  {name}: failed: {r['error']}")
            result[name] = r
            continue
        count = count or r["examples"]
        if not count:
            print(f"  {name}: no items (raise --n)")
            continue
        ms = 1000 * r["cpu"] / count
        line = (f"  {name:8s} {count / r['seconds']:8.1f} items/s "
                f"{ms:8.1f} CPU ms/item  peak RSS {r['rss_mib']:.0f} MiB")
        if args.workers > 1 and r.get("worker_rss_mib"):
            line += f" (worker {r['worker_rss_mib']:.0f} MiB)"
        if disk is not None:
            line += (f"  {disk / count / 1024:.0f} KiB/item on disk "
                     f"(raw {raw_bytes / count / 1024:.0f} KiB)")
        if "transforms" in r:
            line += (f"  ({r['transforms']} augmentation transforms, "
                     f"batch {r['batch']})")
        print(line)
        proj = full * ms / 1000 / max(args.workers if name == "convert"
                                      else 1, 1)
        proj_disk = (f", {full * disk / count / 2**30:.1f} GiB of records"
                     if disk is not None else "")
        print(f"           full competition ({full} {what}): ~{proj / 60:.0f}"
              f" min at this CPU cost{proj_disk}")
        result[name] = {"items_per_s": round(count / r["seconds"], 2),
                        "cpu_ms_per_item": round(ms, 2),
                        "peak_rss_mib": round(r["rss_mib"]),
                        "items": count,
                        "full_minutes": round(proj / 60, 1)}
        if disk is not None:
            result[name]["bytes_per_item"] = disk // count
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
