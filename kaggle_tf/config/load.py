"""JSON config + `extends` + `--set` overrides -> a validated `Config`.

Example:

>>> cfg = load("configs/steel.json", overrides=["train.epochs=1"])
>>> cfg.train.epochs
1
"""

import copy
import dataclasses
import json
import os
import sys
import typing
from typing import Any

from kaggle_tf.config.schema import Config


class ConfigError(ValueError):
    """A bad config key or value; the message names the key and the file."""


def _read_json(path, chain=()):
    if path in chain:
        raise ConfigError(
            f"`extends` makes a cycle: {' -> '.join(chain + (path,))}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg} "
            f"({path})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a JSON object ({path})")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"`extends` must be a path. Received: {parent!r} "
                          f"({path})")
    parent_path = os.path.normpath(
        os.path.join(os.path.dirname(path), parent))
    base = _read_json(parent_path, chain + (path,))
    return merge(base, data)


def merge(base, update):
    """Deep-merges `update` into a copy of `base` (dicts merge, rest replaces).
    """
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text):
    """`"a.b=[1,2]"` -> (["a", "b"], [1, 2]); values are JSON, else strings.
    """
    if "=" not in text:
        raise ConfigError(f"--set needs key=value. Received: {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set has an empty key. Received: {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(data, overrides):
    data = copy.deepcopy(data)
    for text in overrides or ():
        parts, value = parse_override(text)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"`{'.'.join(parts)}`: `{part}` is not a section "
                    f"(--set {text})")
            node = child
        node[parts[-1]] = value
    return data


def load(path, overrides=None):
    """Loads, merges `extends`, applies `--set` overrides and validates.

    Args:
        path: the JSON config file.
        overrides: `"dotted.key=value"` strings; values parse as JSON.

    Returns:
        A `Config`; `cfg.source` holds `path`.

    Raises:
        ConfigError: naming the key and the file.
    """
    data = _read_json(os.path.normpath(path))
    data = apply_overrides(data, overrides)
    try:
        cfg = from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{e} ({os.path.basename(path)})") from None
    cfg.source = path
    return cfg


def from_dict(data):
    """Validates a plain dict against the schema; returns a `Config`."""
    data = dict(data)
    data.pop("source", None)
    cfg = _build(Config, data, "")
    _check_series_channels(cfg)
    _check_cpu_fallback(cfg)
    return cfg


def _check_cpu_fallback(cfg):
    """The albumentations fallback runs on the host CPU only."""
    if not cfg.augment.allow_cpu_fallback:
        return
    if cfg.augment.placement == "model":
        raise ConfigError(
            "`augment.allow_cpu_fallback` runs albumentations on the host "
            "CPU; it needs `augment.placement` \"dataset\". Received: "
            "\"model\"")
    if cfg.train.strategy == "tpu":
        raise ConfigError(
            "`augment.allow_cpu_fallback` cannot run on a TPU (a Python "
            "op in tf.data); use TF transforms or `train.strategy` other "
            "than \"tpu\"")


def _check_series_channels(cfg):
    """A `series_classifier`'s series must add up to `data.channels`."""
    if cfg.model.arch != "series_classifier":
        return
    key, channels = "`model.series_channels`", cfg.model.series_channels
    if channels is None:
        if cfg.task != "rsna_lumbar":
            raise ConfigError(
                f"{key} must be set for model.arch 'series_classifier' "
                "(null takes data.stack_slices, for rsna_lumbar). "
                f"Received: null (task {cfg.task!r})")
        stacks = cfg.data.stack_slices
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1
               for v in stacks.values()):
            raise ConfigError(
                "`data.stack_slices` must map series types to positive "
                f"slice counts. Received: {stacks!r}")
        key = f"{key} (null: `data.stack_slices`)"
        channels = list(stacks.values())
    if sum(channels) != cfg.data.channels:
        raise ConfigError(
            f"{key} must sum to data.channels ({cfg.data.channels}). "
            f"Received: {channels!r}")
    if cfg.model.shared_encoder and len(set(channels)) > 1:
        raise ConfigError(
            f"`model.shared_encoder` needs equal channels in {key}. "
            f"Received: {channels!r}")


def _build(cls, data, prefix):
    if not isinstance(data, dict):
        raise ConfigError(
            f"`{prefix.rstrip('.')}` must be an object. Received: {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        choices = ", ".join(sorted(n for n in fields if n != "source"))
        raise ConfigError(
            f"unknown key `{prefix}{unknown[0]}` (known here: {choices})")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        kwargs[name] = _check(value, hints[name], dict(f.metadata),
                              prefix + name)
    return cls(**kwargs)


def _type_name(tp):
    return getattr(tp, "__name__", str(tp))


def _check(value, tp, meta, key):
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        tp = args[0]
        origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if tp is Any:
        if "choices" in meta and not any(
                value is c or (type(value) is type(c) and value == c)
                for c in meta["choices"]):
            choices = ", ".join(json.dumps(c) for c in meta["choices"])
            raise ConfigError(
                f"`{key}` must be one of {choices}. Received: {value!r}")
        return value
    if value is None:
        raise ConfigError(f"`{key}` must not be null")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"`{key}` must be true or false. "
                              f"Received: {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"`{key}` must be an integer. "
                              f"Received: {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"`{key}` must be a number. "
                              f"Received: {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"`{key}` must be a string. "
                              f"Received: {value!r}")
    elif tp is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"`{key}` must be a list. Received: {value!r}")
        if "length" in meta and len(value) != meta["length"]:
            raise ConfigError(
                f"`{key}` needs {meta['length']} values. Received: {value!r}")
        item = meta.get("item")
        if item is not None:
            item_meta = {k: v for k, v in meta.items()
                         if k in ("min", "max", "choices")}
            value = [_check(v, item, item_meta, f"{key}[{i}]")
                     for i, v in enumerate(value)]
        return value
    elif tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"`{key}` must be an object. "
                              f"Received: {value!r}")
        return value
    else:  # pragma: no cover - schema error
        raise TypeError(f"unsupported schema type {_type_name(tp)} for {key}")
    if "choices" in meta and value not in meta["choices"]:
        choices = ", ".join(repr(c) for c in meta["choices"])
        raise ConfigError(
            f"`{key}` must be one of {choices}. Received: {value!r}")
    if "min" in meta and isinstance(value, (int, float)) \
            and value < meta["min"]:
        raise ConfigError(f"`{key}` must be >= {meta['min']}. "
                          f"Received: {value!r}")
    if "max" in meta and isinstance(value, (int, float)) \
            and value > meta["max"]:
        raise ConfigError(f"`{key}` must be <= {meta['max']}. "
                          f"Received: {value!r}")
    return value


def parse_folds(text):
    """A `--folds` value: "0,2" -> [0, 2]; None or "" -> None.

    Raises:
        ConfigError: not comma-separated integers.
    """
    if not text:
        return None
    try:
        return [int(k) for k in text.split(",")]
    except ValueError:
        raise ConfigError(f"--folds takes integers like 0,1,2. Received: "
                          f"{text!r}") from None


def report(error, config_path=None):
    """Prints a command's error in one line; returns its exit code.

    A `ConfigError` is "config error: ..." (naming the config file when
    given) and exits 2; anything else is "error: ..." and exits 1. Under
    `--debug` (see `kaggle_tf.cli`) the error is re-raised instead.
    """
    from kaggle_tf import cli

    if cli.debugging():
        raise error
    if isinstance(error, ConfigError):
        where = f" ({os.path.basename(config_path)})" if config_path else ""
        print(f"config error: {error}{where}", file=sys.stderr)
        return 2
    print(f"error: {error}", file=sys.stderr)
    return 1


def save(cfg, path):
    """Writes the resolved config as JSON (atomically)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(cfg.to_dict(), f, indent=2)
    os.replace(tmp, path)


def load_or_exit(path, overrides=None):
    """For CLIs: a config error prints one line and exits with code 2."""
    try:
        return load(path, overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
