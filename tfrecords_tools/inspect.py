"""What a records folder holds: counts, schema, a picture of samples.

    python -m tfrecords_tools.inspect DIR [--out grid.png] [--n 8]
        [--split train|test]

Prints the manifest's schema and the records per fold and class, then
draws `--n` records (every class represented when possible) into a PNG,
masks overlaid in the class colors, using the task plugin's `draw` hook
(`tfrecords_tools.competitions`) when it has one.

Example:

>>> main(["data/records/steel", "--out", "grid.png"])   # doctest: +SKIP
0
"""

import argparse
import os
import sys

import numpy as np

from kaggle_tf import cli
from tfrecords_tools import competitions
from tfrecords_tools import draw as draw_lib
from tfrecords_tools import schema


def describe(manifest: dict) -> str:
    """The manifest as text: schema, shards, counts per fold and class."""
    lines = [
        f"task {manifest['task']} ({manifest['kind']}), schema version "
        f"{manifest['schema_version']}",
        f"classes ({manifest['num_classes']}): "
        f"{', '.join(manifest['classes'])}",
        f"stored image size {manifest['image_size']}, "
        f"{manifest['channels']} channels",
        f"folds {manifest['folds']} ({manifest['fold_strategy']}, seed "
        f"{manifest['seed']}); skipped inputs: {manifest['skipped']}",
    ]
    for split, features in manifest["features"].items():
        keys = ", ".join(f"{k}:{t}" for k, t in features.items())
        lines.append(f"{split} features: {keys}")
    classes = manifest["classes"]
    width = max(6, max(len(c) for c in classes) + 1)
    for split, info in manifest["splits"].items():
        lines.append(f"{split}: {info['records']} records in "
                     f"{len(info['shards'])} shards, {info['skipped']} "
                     "skipped")
        if not info["records"]:
            continue
        header = "  fold  records" + "".join(f"{c:>{width}}"
                                              for c in classes)
        lines.append(header + "   no-label")
        per_fold_class = info["records_per_fold_class"]
        for fold, count in info["records_per_fold"].items():
            row = per_fold_class.get(fold, {})
            cells = "".join(f"{row.get(c, 0):>{width}}" for c in classes)
            lines.append(f"  {fold:>4}  {count:>7}{cells}")
        total = "".join(f"{info['records_per_class'][c]:>{width}}"
                        for c in classes)
        lines.append(f"  {'all':>4}  {info['records']:>7}{total}"
                     f"   {info['records_without_labels']:>8}")
    return "\n".join(lines)


def pick(examples: list, n: int) -> list:
    """Up to `n` examples: one per class first, then one without labels,
    then the rest in order."""
    chosen, seen = [], set()
    labels = [ex.get(schema.LABELS) or [] for ex in examples]
    classes = max((len(v) for v in labels), default=0)
    for k in range(classes):
        for i, v in enumerate(labels):
            if i not in seen and k < len(v) and v[k] > 0:
                chosen.append(i)
                seen.add(i)
                break
    for i, v in enumerate(labels):
        if v and not any(x > 0 for x in v) and i not in seen:
            chosen.append(i)
            seen.add(i)
            break
    chosen += [i for i in range(len(examples)) if i not in seen]
    return [examples[i] for i in sorted(chosen[:n])]


def read_examples(records_dir: str, manifest: dict, split: str,
                  limit: int = 256) -> list:
    """The first `limit` records of `split` as {key: list of values}."""
    import tensorflow as tf

    from tfrecords_tools import encode

    files = [os.path.join(records_dir, s["file"])
             for s in manifest["splits"][split]["shards"]]
    if not files:
        return []
    from tfrecords_tools import shard_check

    shard_check.remember(files)
    ds = tf.data.TFRecordDataset(files).take(limit)
    return [encode.from_example(r) for r in ds.as_numpy_iterator()]


def draw_grid(examples: list, manifest: dict, out: str) -> str:
    """Writes a PNG grid of the examples (atomic); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    module = competitions.get(manifest["task"])
    classes = manifest["classes"]
    hook = getattr(module, "draw", None)
    pictures = []
    for ex in examples:
        if hook is not None:
            pictures.append(hook(ex))
        else:
            pictures.append(draw_lib.default_draw(ex, len(classes)))
    h, w = pictures[0].shape[:2] if pictures else (1, 1)
    cols = 1 if w > 2 * h else min(4, max(len(pictures), 1))
    rows = max(1, -(-len(pictures) // cols))
    cell_w = 10.0 / cols
    cell_h = cell_w * h / w + 0.35
    fig, axes = plt.subplots(rows, cols, figsize=(10, rows * cell_h + 0.6),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, ex, pic in zip(axes.ravel(), examples, pictures):
        ax.imshow(pic, interpolation="nearest")
        ident = ex[schema.ID][0]
        ident = ident.decode() if isinstance(ident, bytes) else str(ident)
        present = [c for c, v in zip(classes, ex.get(schema.LABELS, []))
                   if v > 0]
        fold = ex.get(schema.FOLD, [schema.TEST_FOLD])[0]
        label = ("classes " + ",".join(present)) if present else (
            "no label" if ex.get(schema.LABELS) else "unlabelled")
        ax.set_title(f"{ident}  fold {fold}  {label}", fontsize=8)
    if manifest["kind"] == "segmentation":
        handles = [Patch(color=draw_lib.COLORS[k % len(draw_lib.COLORS)]
                         / 255.0, label=f"class {c}")
                   for k, c in enumerate(classes)]
        fig.legend(handles=handles, loc="lower center", ncol=len(classes),
                   fontsize=8, frameon=False)
    fig.suptitle(f"{manifest['task']}: {len(examples)} records", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(out)}.tmp-{os.getpid()}"
                               ".png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m tfrecords_tools.inspect",
        description="Counts per fold and class, the schema, and a PNG of "
                    "samples of a records folder.")
    p.add_argument("records_dir", help="folder with manifest.json")
    p.add_argument("--out", default=None,
                   help="PNG to write (default: <records_dir>/grid.png)")
    p.add_argument("--n", type=int, default=8, help="records to draw")
    p.add_argument("--split", default="train", choices=schema.SPLITS)
    cli.add_common(p)
    return p.parse_args(argv)


@cli.command
def main(argv=None) -> int:
    args = parse_args(argv)
    from tfrecords_tools import writer

    path = os.path.join(args.records_dir, schema.MANIFEST)
    manifest = writer.read_json(path)
    if manifest is None:
        print(f"error: {path} not found or unreadable (convert first)",
              file=sys.stderr)
        return 1
    print(describe(manifest))
    examples = read_examples(args.records_dir, manifest, args.split)
    if not examples or args.n < 1:
        return 0
    examples = pick(examples, args.n)
    out = args.out or os.path.join(args.records_dir, "grid.png")
    draw_grid(examples, manifest, out)
    print(f"wrote {out} ({len(examples)} {args.split} records)")
    return 0


if __name__ == "__main__":
    np.set_printoptions(linewidth=120)
    sys.exit(main())
