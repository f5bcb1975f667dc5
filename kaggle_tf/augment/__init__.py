"""On-device augmentation in pure TensorFlow, written as albumentations specs.

    AugmentConfig (transforms: list / JSON path / null, placement, seed)
      -> build(cfg.augment)              an Augmenter, or None
      -> albumentations.to_tree(spec)    spec names -> registered ops
      -> ops.run(tree, batch, seed)      draw parameters once, apply them
                                         to images and masks, in TF only

Images and masks move together (masks with nearest sampling, so they stay
binary); photometric ops leave masks alone; every op has a probability `p`
drawn per sample, and a fixed seed repeats the same batch. Nothing calls
Python per batch except the opt-in CPU fallback (`allow_cpu_fallback`).

Example:

>>> from kaggle_tf import augment
>>> aug = augment.from_albumentations("configs/transforms/siim_1st.json",
...                                   seed=42)
>>> ds = ds.map(lambda b: aug(b, training=True))
"""

import os

from kaggle_tf.augment.albumentations import UnsupportedError
from kaggle_tf.augment.albumentations import load_spec
from kaggle_tf.augment.albumentations import names
from kaggle_tf.augment.layers import Augmenter

__all__ = ["Augmenter", "UnsupportedError", "build", "from_albumentations",
           "load_spec", "names"]


def from_albumentations(spec, *, seed=None, placement="dataset",
                        allow_cpu_fallback=False, compose_geometric=True,
                        gray_once=True):
    """An augmenter from an albumentations spec.

    Args:
        spec: `A.to_dict` output, a transform dict, a list of transform
            dicts, or a path to a JSON file with one of those.
        seed: integer seed, or None for a random one.
        placement: `"dataset"` (tf.data, per sample, XLA-compiled) or
            `"model"` (inside the model, vectorized).
        allow_cpu_fallback: run transforms without a TF op in
            albumentations on the CPU (warns; never on a TPU) instead of
            raising.
        compose_geometric: sample consecutive geometric ops once (see
            `Augmenter`).
        gray_once: transform grayscale stored as RGB on one channel (see
            `Augmenter`).

    Returns:
        An `Augmenter` (a Keras layer): `aug(batch, training=True)`.

    Raises:
        ValueError: for an unsupported transform or argument, naming it.

    Example:

    >>> aug = from_albumentations(
    ...     {"__class_fullname__": "HorizontalFlip", "p": 0.5}, seed=0)
    >>> out = aug({"images": images, "segmentation_masks": masks},
    ...           training=True)
    """
    return Augmenter(spec, seed=seed, placement=placement,
                     allow_cpu_fallback=allow_cpu_fallback,
                     compose_geometric=compose_geometric,
                     gray_once=gray_once)


def _resolve(transforms, base_dir):
    if not isinstance(transforms, (str, os.PathLike)):
        return transforms
    path = os.fspath(transforms)
    if os.path.isabs(path) or os.path.exists(path) or base_dir is None:
        return path
    candidate = os.path.join(base_dir, path)
    return candidate if os.path.exists(candidate) else path


def build(augment_cfg, base_dir=None):
    """The augmenter a config asks for, or None when it asks for none.

    Args:
        augment_cfg: an `AugmentConfig` (`transforms`, `placement`,
            `allow_cpu_fallback`, `compose_geometric`, `seed`) or a dict
            with those keys.
        base_dir: where a relative `transforms` path is also looked up
            (the config file's folder). Defaults to the working directory
            only.

    Returns:
        An `Augmenter`, or None when `transforms` is null or empty.

    Example:

    >>> cfg = kaggle_tf.config.load("configs/siim.json")
    >>> aug = build(cfg.augment, base_dir=os.path.dirname(cfg.source))
    """
    get = augment_cfg.get if isinstance(augment_cfg, dict) else \
        lambda key, default=None: getattr(augment_cfg, key, default)
    transforms = get("transforms")
    if transforms is None or (isinstance(transforms, (list, dict))
                              and not transforms):
        return None
    return Augmenter(_resolve(transforms, base_dir), seed=get("seed"),
                     placement=get("placement", "dataset"),
                     allow_cpu_fallback=get("allow_cpu_fallback", False),
                     compose_geometric=get("compose_geometric", True))
