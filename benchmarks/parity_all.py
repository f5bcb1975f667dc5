"""Every registered encoder with a `timm_name` vs timm's features_only model.

    python benchmarks/parity_all.py [--names resnet34 ...] [--sizes 64x64 64x96]

Both sides get the same random weights: the full timm model's random init
with random BatchNorm statistics (its `state_dict()`, the format Kaggle
users keep) is loaded into ours with
`kaggle_tf.models.weights.load_torch_state_dict` and into timm's
`features_only` wrapper (whose flattened module names, e.g. `stages_0`, are
mapped back). Prints the max absolute
difference of P1..P5 (strides 2..32) per encoder and input size, in float32
inference mode ("-" where timm has no feature at that stride); exits 1
when any exceeds `--atol` or an encoder fails.
"""

import argparse
import os
import sys
import time

# torch / timm before TensorFlow: loading triton's LLVM after TensorFlow's
# crashes the process.
import numpy as np
import timm
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from kaggle_tf.models import encoders  # noqa: E402
from kaggle_tf.models import weights  # noqa: E402


def randomize_batch_norm(module, generator):
    for sub in module.modules():
        if isinstance(sub, torch.nn.BatchNorm2d):
            n = sub.num_features
            sub.weight.data = torch.rand(n, generator=generator) * 0.4 + 0.2
            sub.bias.data = torch.rand(n, generator=generator) * 0.4 - 0.2
            sub.running_mean.copy_(
                torch.rand(n, generator=generator) * 0.4 - 0.2)
            sub.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def features_state(features, full_state):
    """The full model's tensors under the features_only wrapper's keys."""
    state = {}
    for key in features.state_dict():
        if key in full_state:
            state[key] = full_state[key]
            continue
        head, _, rest = key.partition(".")
        state[key] = full_state[f"{head.replace('_', '.')}.{rest}"]
    return state


def compare(name, sizes, seed=0):
    spec = encoders.spec(name)
    torch.manual_seed(seed)
    full = timm.create_model(spec.timm_name, pretrained=False)
    randomize_batch_norm(full, torch.Generator().manual_seed(seed))
    full_state = full.state_dict()
    reference = timm.create_model(spec.timm_name, pretrained=False,
                                  features_only=True)
    reference.load_state_dict(features_state(reference, full_state))
    reference.eval()
    ours = encoders.build(name, input_shape=(None, None, 3))
    weights.load_torch_state_dict(ours, full_state)
    rows = []
    for height, width in sizes:
        x = np.random.RandomState(seed).randn(2, height, width, 3).astype(
            "float32")
        with torch.no_grad():
            want = reference(torch.from_numpy(x.transpose(0, 3, 1, 2)))
        got = ours(x, training=False)
        # Match by stride: some timm models have no stride-2 feature.
        by_stride = dict(zip(reference.feature_info.reduction(), want))
        diffs = []
        for level, stride in enumerate(spec.strides, start=1):
            if stride not in by_stride:
                diffs.append(None)
                continue
            ref = by_stride[stride].numpy().transpose(0, 2, 3, 1)
            out = np.asarray(got[f"P{level}"])
            if out.shape != ref.shape:
                diffs.append(float("inf"))
            else:
                diffs.append(float(np.abs(out - ref).max()))
        rows.append(((height, width), diffs))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="*", default=None,
                        help="encoders (default: all with a timm_name)")
    parser.add_argument("--sizes", nargs="*", default=["64x64", "64x96"])
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    names = args.names or [n for n in encoders.names()
                           if encoders.spec(n).timm_name]
    header = "P1 (s2)   P2 (s4)   P3 (s8)   P4 (s16)  P5 (s32)"
    print(f"{'encoder':<22}{'input':<10}{header}   seconds")
    failed = False
    for name in names:
        start = time.time()
        try:
            rows = compare(name, sizes)
        except Exception as error:  # report and go on with the others
            failed = True
            lines = str(error).splitlines()
            more = f" (+{len(lines) - 4} lines)" if len(lines) > 4 else ""
            print(f"{name:<22}FAILED: {type(error).__name__}: "
                  + "\n    ".join(lines[:4]) + more)
            continue
        seconds = time.time() - start
        for (height, width), diffs in rows:
            cells = "".join("-         " if d is None else f"{d:<10.2e}"
                            for d in diffs)
            bad = any(d is not None and not d <= args.atol for d in diffs)
            failed |= bad
            mark = "  > atol" if bad else ""
            print(f"{name:<22}{f'{height}x{width}':<10}{cells}"
                  f"{seconds:6.1f}{mark}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
