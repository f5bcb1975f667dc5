"""The loss registry: config names -> builders, `names()` and `build()`.

Each loss module registers a builder that takes a `LossConfig`
(`kaggle_tf.config.schema`) and returns a `keras.losses.Loss`.
"""

import dataclasses
from typing import Callable
from typing import Dict

import keras

from kaggle_tf.config.schema import LossConfig

LOSSES: Dict[str, Callable[[LossConfig], keras.losses.Loss]] = {}


def register_loss(name):
    """Registers `build_fn(loss_cfg) -> Loss` under the config name `name`.

    Example:

    >>> @register_loss("my_bce")
    ... def _build(cfg):
    ...     return keras.losses.BinaryCrossentropy(cfg.from_logits)
    """
    def wrap(build_fn):
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered")
        LOSSES[name] = build_fn
        return build_fn
    return wrap


def names():
    """Every loss name accepted by `build` and by `loss.name` in configs."""
    return sorted(LOSSES)


def _as_config(loss_cfg):
    if isinstance(loss_cfg, LossConfig):
        return loss_cfg
    if isinstance(loss_cfg, str):
        return LossConfig(name=loss_cfg)
    if isinstance(loss_cfg, dict):
        known = {f.name for f in dataclasses.fields(LossConfig)}
        unknown = sorted(set(loss_cfg) - known)
        if unknown:
            raise ValueError(
                f"Unknown loss config keys {unknown}; the keys are "
                f"{sorted(known)}. Received: {loss_cfg}")
        return LossConfig(**loss_cfg)
    raise ValueError("`loss_cfg` must be a LossConfig, a dict or a loss "
                     f"name. Received: loss_cfg={loss_cfg!r}")


def build(loss_cfg):
    """Builds the training loss named by a `LossConfig`.

    `combo` reads `weights` as (bce, dice, focal); `weighted_log_loss` reads
    `class_weights` as per-label weights (RSNA ICH's 1,1,1,1,1,2 when
    None); `categorical_crossentropy` is Keras' with `from_logits`;
    `lumbar_log_loss` reads `class_weights` as the severity weights
    (1, 2, 4 when None).

    Args:
        loss_cfg: a `LossConfig`, a dict of its fields, or a loss name.

    Returns:
        A `keras.losses.Loss`.

    Raises:
        ValueError: for an unknown name (the error lists the choices) or
            values the loss does not accept.

    Example:

    >>> cfg = LossConfig(name="combo", weights=[3.0, 1.0, 4.0])
    >>> build(cfg).get_config()["focal"]
    4.0
    """
    cfg = _as_config(loss_cfg)
    if cfg.name not in LOSSES:
        raise ValueError(f"Unknown loss {cfg.name!r}; the choices are "
                         f"{', '.join(names())}. Received: name={cfg.name!r}")
    return LOSSES[cfg.name](cfg)


def per_image_or(cfg, default):
    """`cfg.per_image`, or the loss's own default when it is None."""
    return default if cfg.per_image is None else bool(cfg.per_image)
