"""The loss registry: config names -> builders, `names()` and `build()`.

Each loss module registers a builder that takes only its own keyword
arguments (named as the `loss` config keys: `weights`, `class_weights`,
`from_logits`, `gamma`, `alpha`, `smooth`, `per_image`,
`any_severe_weight`) and returns a `keras.losses.Loss`. `build` accepts a
name with keyword arguments, a dict, or any object with those attributes
(such as the config's `loss` section); this package never imports the
config.
"""

import inspect
from typing import Callable
from typing import Dict

import keras

LOSSES: Dict[str, Callable[..., keras.losses.Loss]] = {}


def register_loss(name):
    """Registers `build_fn(**kwargs) -> Loss` under the config name `name`.

    The builder's argument names are the config keys it reads; each needs
    a default (the config's).

    Example:

    >>> @register_loss("my_bce")
    ... def _build(from_logits=True):
    ...     return keras.losses.BinaryCrossentropy(from_logits)
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


def arguments(name):
    """The keyword arguments (config keys) the loss `name` takes."""
    return tuple(inspect.signature(LOSSES[name]).parameters)


def _all_arguments():
    return {arg for name in LOSSES for arg in arguments(name)}


def _split(loss_cfg):
    """`loss_cfg` -> (name, the values it gives, as a dict)."""
    if isinstance(loss_cfg, str):
        return loss_cfg, {}
    if isinstance(loss_cfg, dict):
        known = _all_arguments() | {"name"}
        unknown = sorted(set(loss_cfg) - known)
        if unknown:
            raise ValueError(
                f"Unknown loss config keys {unknown}; the keys are "
                f"{sorted(known)}. Received: {loss_cfg}")
        return loss_cfg.get("name"), {
            k: v for k, v in loss_cfg.items() if k != "name"}
    if hasattr(loss_cfg, "name"):
        name = loss_cfg.name
        args = arguments(name) if name in LOSSES else ()
        return name, {k: getattr(loss_cfg, k) for k in args
                      if hasattr(loss_cfg, k)}
    raise ValueError("`loss_cfg` must be a loss name, a dict or an object "
                     "with a `name` attribute (e.g. the config's `loss`). "
                     f"Received: loss_cfg={loss_cfg!r}")


def build(loss_cfg, **kwargs):
    """Builds the training loss named by `loss_cfg`.

    `combo` reads `weights` as (bce, dice, focal); `weighted_log_loss` reads
    `class_weights` as per-label weights (RSNA ICH's 1,1,1,1,1,2 when
    None); `categorical_crossentropy` is Keras' with `from_logits`;
    `lumbar_log_loss` reads `class_weights` as the severity weights
    (1, 2, 4 when None).

    Args:
        loss_cfg: a loss name, a dict with `name` and keyword arguments, or
            an object with a `name` and the arguments as attributes (the
            config's `loss` section); from an object or a dict, what the
            chosen loss does not take is left out.
        **kwargs: arguments of the loss (they win over `loss_cfg`'s).

    Returns:
        A `keras.losses.Loss`.

    Raises:
        ValueError: for an unknown name (the error lists the choices) or
            values the loss does not accept.

    Example:

    >>> build("combo", weights=[3.0, 1.0, 4.0]).get_config()["focal"]
    4.0
    """
    name, given = _split(loss_cfg)
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; the choices are "
                         f"{', '.join(names())}. Received: name={name!r}")
    args = arguments(name)
    unknown = sorted(set(kwargs) - set(args))
    if unknown:
        raise ValueError(
            f"loss {name!r} takes {', '.join(args) or 'no arguments'}. "
            f"Received: {', '.join(unknown)}")
    given = {k: v for k, v in given.items() if k in args}
    return LOSSES[name](**{**given, **kwargs})


def per_image_or(per_image, default):
    """`per_image`, or the loss's own default when it is None."""
    return default if per_image is None else bool(per_image)
