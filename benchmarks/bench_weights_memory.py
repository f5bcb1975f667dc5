"""Peak memory while loading pretrained encoder weights from a local file.

    python benchmarks/bench_weights_memory.py [--encoders A B ...]
                                              [--json out.json]

For each encoder a random-tensor state dict in timm's names and layout is
written once to a temporary folder (`model.safetensors`, and the same
tensors as a `.pth`), then each way of loading it runs in a fresh process:
the encoder is built (224 x 224 x 3), the peak RSS is reset
(`/proc/self/clear_refs`), the weights are loaded, and the process reports
how far its peak RSS rose above the RSS before loading:

- `streaming`: what `encoder_weights=<file>` does
  (`models.pretrained.load`): tensors read one by one (safetensors
  `safe_open`, or a memory-mapped `torch.load`), converted and assigned
  one at a time;
- `eager`: `weights.load_torch_state_dict(encoder, path)`: the whole
  state dict read into numpy first, converted one tensor at a time;
- `two_copies`: the whole state dict read, every tensor converted, then
  assigned (the loader before the conversion was deferred).

One full copy of the weights is the file size. Freed buffers are not
always returned to the system, so even `streaming` may rise by about one
copy; `eager` and `two_copies` add at least one more. torch is imported
before the reset for `.pth` files (its libraries are not the weights).
Linux only (reads `/proc/self/status`).

"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODES = ("streaming", "eager", "two_copies")
DEFAULT_ENCODERS = ("seresnext50_32x4d", "efficientnet_b7")


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(encoder, path, mode):
    """Runs in a fresh process; prints one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import gc

    import numpy as np

    from kaggle_tf.models import encoders
    from kaggle_tf.models import pretrained
    from kaggle_tf.models import weights

    model = encoders.build(encoder, input_shape=(224, 224, 3))
    if not path.endswith(".safetensors"):
        import torch  # noqa: F401  (its libraries are not the weights)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _status_kb("VmRSS")
    if mode == "streaming":
        source = pretrained.resolve(encoder, path)
        pretrained.load(model, source)
    elif mode == "eager":
        weights.load_torch_state_dict(model, path)
    else:
        _, spec = weights.find_encoder(model)
        state = {weights.strip_key(k): v
                 for k, v in weights.read_state_dict(path).items()}
        state = {k: v for k, v in state.items()
                 if not weights._is_ignored(k, spec)}
        match = weights._match(spec.torch_mapping(model), state,
                               spec.first_conv)
        converted = [(var, fn()) for _, var, fn in match.assign]
        for var, value in converted:
            var.assign(np.asarray(value).astype(var.dtype))
    peak = _status_kb("VmHWM")
    print(json.dumps({"before_mb": before / 1024,
                      "peak_rise_mb": (peak - before) / 1024}))


def prepare(encoder, folder):
    """Writes the random state dict once; returns {suffix: path}."""
    from kaggle_tf.models import pretrained

    cache = os.path.join(folder, "hub")
    snapshot = pretrained.write_hub_cache(encoder, cache,
                                          repo_id=f"bench/{encoder}")
    paths = {"safetensors": os.path.join(snapshot, "model.safetensors")}
    try:
        import torch
        from safetensors.torch import load_file

        pth = os.path.join(folder, f"{encoder}.pth")
        torch.save(load_file(paths["safetensors"]), pth)
        paths["pth"] = pth
    except ImportError:
        pass
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoders", nargs="+", default=list(DEFAULT_ENCODERS))
    p.add_argument("--json", default=None, help="also write results here")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    results = []
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'encoder':<20} {'file':<12} {'size MB':>8} "
              + " ".join(f"{m + ' MB':>14}" for m in MODES))
        for encoder in args.encoders:
            paths = prepare(encoder, folder)
            for kind, path in paths.items():
                size = os.path.getsize(path) / 2**20
                row = {"encoder": encoder, "file": kind, "size_mb": size}
                for mode in MODES:
                    out = subprocess.run(
                        [sys.executable, os.path.abspath(__file__),
                         "--child", encoder, path, mode], env=env,
                        capture_output=True, text=True, check=True)
                    row[mode] = json.loads(out.stdout.strip().splitlines()
                                           [-1])["peak_rise_mb"]
                results.append(row)
                print(f"{encoder:<20} {kind:<12} {size:>8.0f} "
                      + " ".join(f"{row[m]:>14.0f}" for m in MODES),
                      flush=True)
    print("peak RSS rise while loading, above the RSS of the built "
          "encoder; one full copy = the file size")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
