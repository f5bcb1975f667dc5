"""Look at what a recipe's augmentation does to real samples.

`python -m kaggle_tf.inspect augment --config C --out aug.png [--n 4]
[--set k=v]` reads `n` examples of the training records (converting the raw
files first when there are no records yet), augments them with the
config's `augment` section and draws each one before and after, masks
overlaid, in a PNG.
"""

import argparse
import os
import sys

import numpy as np

from kaggle_tf import cli
from kaggle_tf import config as config_lib

# One colour per mask class (RGB in [0, 1]); more classes cycle.
COLOURS = np.array([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.2, 0.4, 1.0],
                    [1.0, 0.9, 0.1], [1.0, 0.3, 1.0], [0.1, 1.0, 1.0]])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m kaggle_tf.inspect",
                                description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("augment", help="before/after pictures of the "
                       "config's augmentation on real samples")
    a.add_argument("--config", required=True, help="recipe JSON")
    a.add_argument("--out", required=True, help="PNG to write")
    a.add_argument("--n", type=int, default=4,
                   help="number of samples (default: 4)")
    cli.add_set(a, help="override config keys, e.g. --set augment.seed=1 "
                        "data.folds=2 (repeatable)")
    cli.add_common(a)
    return p.parse_args(argv)


def to_rgb(image):
    """(H, W, C) in [0, 1] -> (H, W, 3) for display (first 3 channels;
    one channel as grey)."""
    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    if image.shape[-1] >= 3:
        return image[..., :3]
    return np.repeat(image[..., :1], 3, axis=-1)


def overlay(image, masks, alpha=0.45):
    """Blends each mask class in its colour over an RGB image."""
    out = image.copy()
    if masks is None:
        return out
    for k in range(masks.shape[-1]):
        on = masks[..., k] > 0.5
        colour = COLOURS[k % len(COLOURS)]
        out[on] = (1 - alpha) * out[on] + alpha * colour
    return out


def draw(before, after, out, title="", ids=None):
    """Writes a PNG with one row per sample: before | after.

    Args:
        before, after: dict batches with "images" and maybe
            "segmentation_masks" and "labels" (numpy).
        out: PNG path.
        title: figure title.
        ids: sample ids for the row labels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(before["images"])
    h, w = before["images"].shape[1:3]
    width = 12.0
    row = max(width / 2 * h / w, 1.2) + 0.4
    fig, axes = plt.subplots(n, 2, figsize=(width, row * n + 0.6),
                             squeeze=False)
    for i in range(n):
        for j, (name, batch) in enumerate((("before", before),
                                           ("after", after))):
            masks = batch.get("segmentation_masks")
            image = overlay(to_rgb(batch["images"][i]),
                            None if masks is None else masks[i])
            ax = axes[i, j]
            ax.imshow(image, interpolation="nearest")
            label = name
            if ids is not None and j == 0:
                label = f"{ids[i]}  {name}"
            if "labels" in batch and j == 0:
                present = np.flatnonzero(batch["labels"][i] > 0.5)
                label += f"  labels {present.tolist()}"
            ax.set_title(label, fontsize=8, loc="left")
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _numpy(batch):
    return {k: v.numpy() for k, v in batch.items()}


def augment_command(args):
    cfg = config_lib.load_or_exit(args.config, args.overrides)
    name = os.path.basename(args.config)
    if args.n < 1:
        print(f"config error: --n must be >= 1. Received: {args.n}",
              file=sys.stderr)
        return 2
    if not cfg.augment.transforms:
        print(f"config error: `augment.transforms` is empty in {name}: "
              "nothing to show", file=sys.stderr)
        return 2
    from kaggle_tf.augment import Augmenter
    from kaggle_tf.augment import build
    from kaggle_tf.data import pipeline
    from kaggle_tf.fit import ensure_records

    base_dir = os.path.dirname(os.path.abspath(args.config))
    try:
        # Validate the spec before reading any data.
        built = build(cfg.augment, base_dir=base_dir)
    except ValueError as e:
        print(f"config error: augment.transforms: {e} ({name})",
              file=sys.stderr)
        return 2
    # Eager and per sample: no XLA compile for a few pictures.
    seed = cfg.augment.seed if cfg.augment.seed is not None else cfg.seed
    augmenter = Augmenter(built.transforms, seed=seed,
                          allow_cpu_fallback=cfg.augment.allow_cpu_fallback,
                          jit_compile=False,
                          compose_geometric=cfg.augment.compose_geometric)
    ensure_records(cfg)
    ds = pipeline.make_dataset(cfg, folds=None, training=False,
                               batch_size=args.n, with_meta=True)
    batch = next(iter(ds))
    meta = {k: batch.pop(k) for k in ("id", "fold") if k in batch}
    after = augmenter(dict(batch), training=True)
    ids = None
    if "id" in meta:
        from kaggle_tf.data import records

        ids = records.id_strings(meta["id"])
    draw(_numpy(batch), _numpy(after), args.out,
         title=f"{name}: augment ({cfg.augment.placement})", ids=ids)
    print(f"wrote {args.out} ({len(batch['images'])} samples)")
    return 0


@cli.command
def main(argv=None):
    args = parse_args(argv)
    if args.command == "augment":
        return augment_command(args)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
