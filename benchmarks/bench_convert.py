"""TFRecord conversion throughput: images per second, 1 vs N workers.

    python benchmarks/bench_convert.py [--n 300] [--size 256x1600]
        [--workers 1 2] [--repeats 2]

Writes a Severstal sample (`--n` train images + n/4 test images, real
size by default) once, then converts it from scratch with each worker
count (`tfrecords_tools.convert.convert`, fresh records folder each time)
and prints images/second (train + test images over the wall time of the
whole conversion, process start-up of the workers included), and the
ratio of each to the 1-worker speed. The worker counts alternate within
each of the `--repeats` rounds, and the best run of each counts
(the machine may be shared: the load average is printed with the result).
CPU ms per image (this process and its workers, spawn start-up included)
measures the work independently of other load on the machine.

Workers are spawned: each imports the main module again, so a script that
calls `convert` with workers should keep `import tensorflow` out of its top
level (as here: TensorFlow is imported inside `main`).
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from kaggle_tf import config  # noqa: E402
from tfrecords_tools import convert  # noqa: E402
from tfrecords_tools import sample  # noqa: E402
from tfrecords_tools.competitions import steel  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="train images")
    p.add_argument("--size", type=sample.parse_size, default=(256, 1600))
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--shard-size", type=int, default=64)
    return p.parse_args(argv)


def run(raw, out, workers, shard_size):
    cfg = config.from_dict({
        "task": "steel",
        "data": {"raw_dir": raw, "records_dir": out, "folds": 5,
                 "shard_size": shard_size}})
    shutil.rmtree(out, ignore_errors=True)
    cpu0 = _cpu_seconds()
    start = time.perf_counter()
    manifest = convert.convert(cfg, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu0
    images = sum(s["records"] for s in manifest["splits"].values())
    return images, seconds, cpu


def _cpu_seconds():
    """CPU time of this process and its finished workers (user + sys)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401  (imported before timing)

    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw")
        t = time.perf_counter()
        steel.make_sample(raw, n=args.n, size=args.size, seed=0)
        print(f"sample: {args.n} + {args.n // 4} images "
              f"{args.size[0]}x{args.size[1]} in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        results, cpu_ms = {}, {}
        for r in range(args.repeats):  # alternating: same load for each
            for workers in args.workers:
                images, seconds, cpu = run(raw, os.path.join(tmp, "rec"),
                                           workers, args.shard_size)
                rate = images / seconds
                results[workers] = max(results.get(workers, 0.0), rate)
                cpu_ms[workers] = 1000 * cpu / images
                print(f"  workers={workers} run {r + 1}: {images} images "
                      f"in {seconds:.2f} s ({rate:.1f} images/s, "
                      f"{cpu_ms[workers]:.1f} CPU ms/image, load "
                      f"{os.getloadavg()[0]:.1f})", flush=True)
    base = results.get(1) or next(iter(results.values()))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{os.cpu_count()} CPUs, 1-minute load average {load:.1f} "
          "(a load above the CPU count means other work shares them)")
    print(f"\n{'workers':>8} {'images/s':>10} {'vs 1':>6} {'CPU ms/img':>11}")
    for workers, rate in results.items():
        print(f"{workers:>8} {rate:>10.1f} {rate / base:>6.2f} "
              f"{cpu_ms[workers]:>11.1f}")
    print(json.dumps({"bench": "convert", "n": args.n,
                      "size": list(args.size), "cpus": os.cpu_count(),
                      "load": round(load, 1),
                      "images_per_s": {str(k): round(v, 1)
                                       for k, v in results.items()},
                      "cpu_ms_per_image": {str(k): round(v, 2)
                                           for k, v in cpu_ms.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
