"""Peak memory of an ensemble's predict: members one at a time vs all held.

    python benchmarks/bench_ensemble_memory.py [--members 3] [--size 256]
                                               [--encoder resnet34]

Writes `--members` runs (one fold each, a U-Net of `--encoder`, random
weights) and an ensemble config, then in a fresh process per mode runs
the members' prediction of a batch of images and reports how far the
peak RSS (`VmHWM`, Linux) rose above the RSS after imports:

- `one_at_a_time`: what `kaggle_tf.predict` does for an ensemble config
  (`inference.ensemble.test_probs`): each member's `Predictor` built,
  run, released before the next;
- `all_held`: every member's `Predictor` built first, then run.

The ratio to the largest single member is printed: one-at-a-time stays
near one member, all-held grows with the member count.

Measured (2 CPU cores, TF-cpu 2.21, 3 x U-Net resnet34 at 128 x 128):
one member 305 MiB; 3 members one at a time 383 MiB (1.25 x); 3 members
held 723 MiB (2.37 x).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def child(folder, mode, count, size):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import gc

    import keras
    import numpy as np

    from kaggle_tf import config
    from kaggle_tf.inference import predict

    cfgs = [config.load(os.path.join(folder, f"m{i}.json"))
            for i in range(count)]
    x = np.random.default_rng(0).uniform(
        0, 1, (2, size, size, 3)).astype(np.float32)
    open("/proc/self/clear_refs", "w").write("5")
    base = rss_kib("VmRSS")
    if mode == "one_at_a_time":
        for cfg in cfgs:
            p = predict.Predictor(cfg)
            p.probs(x)
            del p
            keras.backend.clear_session()
            gc.collect()
    else:
        held = [predict.Predictor(cfg) for cfg in cfgs]
        for p in held:
            p.probs(x)
    print(json.dumps({"mode": mode, "count": count,
                      "peak_mib": (rss_kib("VmHWM") - base) / 1024}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--encoder", default="resnet34")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        folder, mode, count = args.child
        return child(folder, mode, int(count), args.size)
    import keras

    from kaggle_tf import config
    from kaggle_tf import models

    folder = tempfile.mkdtemp(prefix="bench_ensemble_")
    for i in range(args.members):
        data = {"task": "steel", "output_dir": os.path.join(folder, f"r{i}"),
                "data": {"image_size": [args.size, args.size]},
                "model": {"arch": "unet", "encoder": args.encoder}}
        cfg = config.from_dict(data)
        keras.utils.set_random_seed(i)
        model = models.build(cfg.model, (args.size, args.size, 3))
        os.makedirs(os.path.join(folder, f"r{i}", "fold0"))
        model.save(os.path.join(folder, f"r{i}", "fold0", "best.keras"))
        with open(os.path.join(folder, f"m{i}.json"), "w") as f:
            json.dump(data, f)
        keras.backend.clear_session()
    results = {}
    for mode, count in (("one_at_a_time", 1), ("one_at_a_time",
                                                 args.members),
                        ("all_held", args.members)):
        out = subprocess.run(
            [sys.executable, __file__, "--size", str(args.size), "--child",
             folder, mode, str(count)], capture_output=True, text=True,
            check=True).stdout.strip().splitlines()[-1]
        results[(mode, count)] = json.loads(out)["peak_mib"]
    one = results[("one_at_a_time", 1)]
    print(f"{args.members} x U-Net {args.encoder} at {args.size}^2, "
          "peak RSS rise (MiB):")
    for (mode, count), mib in results.items():
        print(f"  {mode:14s} {count} member(s): {mib:8.1f}  "
              f"({mib / one:.2f} x one member)")


if __name__ == "__main__":
    main()
