"""RSNA ICH: header listing + conversion with 1 and N workers, and the
cached rerun.

    python benchmarks/bench_ich_listing.py [--n 20000] [--size 64]
        [--workers 1 2] [--repeats 1] [--raw DIR]

Writes `--n` training slices (and n/4 test slices) with the sample
generator (`--size` x `--size` 16-bit DICOMs; 512 is the real size), then,
alternating the worker counts (fresh records folder each time), times the
listing alone (`engine.list_all`, every header read), the whole conversion
(listing again, now answered by the header cache, then encoding) and a
rerun (records up to date: the listing from the cache only). Prints
seconds, slices/s and the ratio to 1 worker, with the load average (the
machine may be shared).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from kaggle_tf import config  # noqa: E402
from tfrecords_tools import competitions  # noqa: E402
from tfrecords_tools import convert  # noqa: E402
from tfrecords_tools import engine  # noqa: E402
from tfrecords_tools.readers import dicom as dicom_reader  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--raw", default=None, help="reuse/keep the sample here")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401  (loaded before timing)

    module = competitions.get("rsna_ich")
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw or os.path.join(tmp, "raw")
        if not os.path.isdir(os.path.join(raw, module.TRAIN_DIR)):
            t = time.perf_counter()
            module.make_sample(raw, n=args.n, size=args.size, seed=0)
            print(f"sample: {args.n} + {max(args.n // 4, 4)} slices "
                  f"{args.size}x{args.size} in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
        slices = sum(len(os.listdir(os.path.join(raw, d)))
                     for d in (module.TRAIN_DIR, module.TEST_DIR))
        rows = {}
        for r in range(args.repeats):
            for workers in args.workers:
                out = os.path.join(tmp, "records")
                shutil.rmtree(out, ignore_errors=True)
                cfg = config.from_dict({"task": "rsna_ich", "data": {
                    "raw_dir": raw, "records_dir": out, "folds": 5,
                    "shard_size": 64}})
                row = {}
                t = time.perf_counter()
                engine.list_all(cfg, module, False, workers)
                row["list"] = time.perf_counter() - t
                shutil.rmtree(out, ignore_errors=True)  # no cache: all read
                t = time.perf_counter()
                engine.list_all(cfg, module, False, workers)
                row["list"] = min(row["list"], time.perf_counter() - t)
                t = time.perf_counter()
                convert.convert(cfg, workers=workers, progress=False)
                row["convert"] = time.perf_counter() - t
                before = dict(dicom_reader.HEADER_STATS)
                t = time.perf_counter()
                convert.convert(cfg, workers=workers, progress=False)
                row["rerun"] = time.perf_counter() - t
                row["rerun_reads"] = (dicom_reader.HEADER_STATS["read"]
                                      - before["read"])
                print(f"  run {r + 1} workers={workers}: list "
                      f"{row['list']:.1f} s, list+convert (cached "
                      f"headers) {row['convert']:.1f} s, rerun "
                      f"{row['rerun']:.1f} s ({row['rerun_reads']} headers "
                      f"read)", flush=True)
                best = rows.setdefault(workers, row)
                for k in ("list", "convert", "rerun"):
                    best[k] = min(best[k], row[k])
    load = os.getloadavg()[0]
    base = rows[args.workers[0]]
    print(f"\n{slices} slices {args.size}x{args.size}; {os.cpu_count()} "
          f"CPUs, 1-minute load {load:.1f}")
    print(f"{'workers':>8} {'list s':>8} {'slices/s':>9} {'vs 1':>5} "
          f"{'list+conv s':>12} {'vs 1':>5} {'rerun s':>8}")
    for workers, row in rows.items():
        total = row["list"] + row["convert"]
        print(f"{workers:>8} {row['list']:>8.1f} "
              f"{slices / row['list']:>9.0f} "
              f"{base['list'] / row['list']:>5.2f} "
              f"{total:>12.1f} "
              f"{(base['list'] + base['convert']) / total:>5.2f} "
              f"{row['rerun']:>8.1f}")
    print(json.dumps({"bench": "ich_listing", "slices": slices,
                      "size": args.size, "load": round(load, 1),
                      "rows": {str(k): {n: round(v, 2) for n, v in r.items()}
                               for k, r in rows.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
