"""JSON config + `extends` + `--set` overrides -> a validated `Config`.

Example:

>>> cfg = load("configs/steel.json", overrides=["train.epochs=1"])
>>> cfg.train.epochs
1
"""

import copy
import dataclasses
import importlib
import json
import os
import sys
import typing
import warnings
from typing import Any

from kaggle_tf import layout
from kaggle_tf.config.schema import RENAMED
from kaggle_tf.config.schema import Config
from kaggle_tf.config.schema import ModelConfig
from tfrecords_tools import competitions


class ConfigError(ValueError):
    """A bad config key or value; the message names the key and the file."""


class ConfigKeyDeprecationWarning(DeprecationWarning):
    """An old config key name was read (see `schema.RENAMED`)."""


def _read_chain(path, chain=()):
    """`[(path, data), ...]` of a config and its `extends` parents, the
    root first; old key names already renamed."""
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
    data = rename_deprecated(data, os.path.basename(path))
    if parent is None:
        return [(path, data)]
    if not isinstance(parent, str):
        raise ConfigError(f"`extends` must be a path. Received: {parent!r} "
                          f"({path})")
    parent_path = os.path.normpath(
        os.path.join(os.path.dirname(path), parent))
    return _read_chain(parent_path, chain + (path,)) + [(path, data)]


def _read_json(path):
    """A config file with its `extends` parents merged in."""
    data = {}
    for _, layer in _read_chain(path):
        data = merge(data, layer)
    return data


def _deprecated(old, new, where):
    warnings.warn(
        f"config key `{old}` is deprecated; use `{new}` ({where})",
        ConfigKeyDeprecationWarning, stacklevel=4)


def rename_deprecated(data, where="config"):
    """A copy of `data` with old key names (`schema.RENAMED`) renamed,
    each with a `DeprecationWarning` naming both keys and `where`.

    Raises:
        ConfigError: the old and the new name are both set.
    """
    out = dict(data)
    for old, new in RENAMED.items():
        section, old_key = old.split(".")
        new_key = new.split(".")[1]
        node = out.get(section)
        if not isinstance(node, dict) or old_key not in node:
            continue
        if new_key in node:
            raise ConfigError(
                f"`{old}` is the old name of `{new}`; set only `{new}` "
                f"({where})")
        _deprecated(old, new, where)
        node = dict(node)
        node[new_key] = node.pop(old_key)
        out[section] = node
    return out


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


def apply_overrides(data, overrides, warn=True):
    """`data` with `--set` overrides applied (old key names renamed)."""
    data = copy.deepcopy(data)
    for text in overrides or ():
        parts, value = parse_override(text)
        new = RENAMED.get(".".join(parts))
        if new is not None:
            if warn:
                _deprecated(".".join(parts), new, f"--set {text}")
            parts = new.split(".")
        if len(parts) == 1 and isinstance(value, dict):
            value = rename_deprecated({parts[0]: value},
                                      f"--set {text}")[parts[0]]
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

    Old key names (`schema.RENAMED`) are read as the new ones, with a
    `DeprecationWarning` naming both and the file. A `model` key that
    `model.arch` does not take is an error when the recipe, a parent of
    the same arch, or `--set` sets it (defaults never count).

    Returns:
        A `Config`; `cfg.source` holds `path`.

    Raises:
        ConfigError: naming the key and the file.
    """
    layers = _read_chain(os.path.normpath(path))
    data = {}
    for _, layer in layers:
        data = merge(data, layer)
    data = apply_overrides(data, overrides)
    try:
        cfg = from_dict(data, check_model_keys=False,
                        base_dir=os.path.dirname(path))
    except ConfigError as e:
        raise ConfigError(f"{e} ({os.path.basename(path)})") from None
    layers = [(os.path.basename(p), layer) for p, layer in layers]
    layers.append((f"{os.path.basename(path)}, --set",
                   apply_overrides({}, overrides, warn=False)))
    _check_model_keys(cfg, layers)
    cfg.source = path
    return cfg


def from_dict(data, check_model_keys=True, base_dir=""):
    """Validates a plain dict against the schema; returns a `Config`.

    Old key names are read with a `DeprecationWarning`; with
    `check_model_keys`, every `model` key in `data` must apply to its
    `model.arch`. An ensemble's member configs are loaded (paths relative
    to `base_dir`) and its sections other than `output_dir`, `inference`
    and `ensemble` default to the first member's.
    """
    data = rename_deprecated(dict(data))
    data.pop("source", None)
    data = _resolve_ensemble(data, base_dir)
    cfg = _build(Config, data, "")
    if check_model_keys:
        _check_model_keys(cfg, [("config", data)])
    _check_series_channels(cfg)
    _check_cpu_fallback(cfg)
    _check_tta(cfg.inference.tta, "inference.tta")
    return cfg


def member_path(base_dir, path):
    """A member config's path: relative to the ensemble config's folder,
    else (when only that exists) to the working directory."""
    near = os.path.normpath(os.path.join(base_dir, path))
    if not os.path.exists(near) and os.path.exists(path):
        return os.path.normpath(path)
    return near


def _resolve_ensemble(data, base_dir):
    """`data` with its members' paths resolved and the first member's
    sections as defaults; a bad member is an error naming it."""
    ens = data.get("ensemble")
    if ens is None:
        return data
    if not isinstance(ens, dict):
        raise ConfigError(f"`ensemble` must be an object. Received: {ens!r}")
    members = ens.get("members")
    if not isinstance(members, list) or not members:
        raise ConfigError(
            "`ensemble.members` must list at least one {\"config\": PATH, "
            f"\"weight\": W}}. Received: {members!r}")
    resolved, configs = [], []
    for i, m in enumerate(members):
        key = f"ensemble.members[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("config"), str) \
                or not m["config"]:
            raise ConfigError(f"`{key}.config` must be a config path. "
                              f"Received: {m!r}")
        path = member_path(base_dir, m["config"])
        try:
            if _read_json(path).get("ensemble") is not None:
                raise ConfigError("it is an ensemble itself; a member is "
                                  "one experiment")
            member = load(path)
        except ConfigError as e:
            raise ConfigError(f"`{key}.config` ({m['config']}): {e}") \
                from None
        task = data.get("task", member.task)
        if member.task != task:
            raise ConfigError(
                f"`{key}.config` ({m['config']}) is task {member.task!r}; "
                f"the ensemble's is {task!r}")
        resolved.append({**m, "config": path})
        configs.append(member)
    base = configs[0].to_dict()
    for key in ("output_dir", "inference", "ensemble", "source"):
        base.pop(key, None)
    out = merge(base, {k: v for k, v in data.items() if k != "ensemble"})
    out["ensemble"] = {**ens, "members": resolved}
    return out


def members(cfg):
    """An ensemble's `[(member config, weight), ...]` (loaded, validated).

    Raises:
        ConfigError: not an ensemble config, or a bad member (named).
    """
    if cfg.ensemble is None:
        raise ConfigError("`ensemble` is not set: not an ensemble config")
    out = []
    for i, m in enumerate(cfg.ensemble.members):
        try:
            out.append((load(m.config), float(m.weight)))
        except ConfigError as e:
            raise ConfigError(
                f"`ensemble.members[{i}].config` ({m.config}): {e}") from None
    if not sum(w for _, w in out) > 0:
        raise ConfigError("`ensemble.members` weights must not all be 0")
    return out


TTA_MODES = ("none", "hflip", "vflip", "d4")
TTA_FLAGS = ("hflip", "vflip", "d4")


def _check_tta(spec, key):
    """`inference.tta`: a mode or a composition of flips, scales, crops."""
    if isinstance(spec, str):
        if spec not in TTA_MODES:
            raise ConfigError(
                f"`{key}` must be one of {', '.join(TTA_MODES)} or an "
                "object such as {\"d4\": true, \"scales\": [0.875, 1.0, "
                f"1.125]}}. Received: {spec!r}")
        return
    if not isinstance(spec, dict):
        raise ConfigError(f"`{key}` must be a mode or an object. "
                          f"Received: {spec!r}")
    for name, value in spec.items():
        where = f"`{key}.{name}`"
        if name in TTA_FLAGS:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false. "
                                  f"Received: {value!r}")
        elif name == "scales":
            if not isinstance(value, list) or not value or any(
                    isinstance(v, bool) or not isinstance(v, (int, float))
                    or v <= 0 for v in value):
                raise ConfigError(f"{where} must be a list of positive "
                                  f"numbers. Received: {value!r}")
        elif name == "crops":
            if value is not None and (
                    not isinstance(value, list) or len(value) != 2 or any(
                        isinstance(v, bool) or not isinstance(v, int)
                        or v < 8 for v in value)):
                raise ConfigError(f"{where} must be [height, width] in "
                                  f"pixels (>= 8) or null. Received: "
                                  f"{value!r}")
        else:
            raise ConfigError(
                f"unknown key {where} (known here: crops, d4, hflip, "
                "scales, vflip)")


def _check_model_keys(cfg, layers):
    """A `model` key set for an arch that does not take it is an error.

    `layers` are `(where, data)` in merge order (the `extends` root first,
    `--set` last). A layer's keys are checked when the arch in force after
    it is the final `model.arch`: a child recipe that switches the arch
    does not inherit its parent's arch-specific keys as errors.
    """
    if not any(isinstance(layer.get("model"), dict) for _, layer in layers):
        return  # only defaults: nothing to check
    build_lib = importlib.import_module("kaggle_tf.models.build")
    arch = cfg.model.arch
    allowed = build_lib.config_keys(arch)
    current = ModelConfig.arch  # the default
    for where, layer in layers:
        model = layer.get("model")
        if not isinstance(model, dict):
            continue
        current = model.get("arch", current)
        if current != arch:
            continue
        for key in model:
            if key not in allowed:
                raise ConfigError(
                    f"`model.{key}` does not apply to model.arch {arch!r} "
                    f"(it takes: {', '.join(allowed)}) ({where})")


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
        if "stack_slices" not in competitions.get(cfg.task).CONFIG_KEYS:
            raise ConfigError(
                f"{key} must be set for model.arch 'series_classifier' "
                "(null takes data.stack_slices, for tasks whose records "
                "stack series: rsna_lumbar). "
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
    if callable(meta.get("choices")):
        # Registries own these choices; asked only now (they import Keras).
        meta = {**meta, "choices": tuple(meta["choices"]())}
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


def save(cfg, path):
    """Writes the resolved config as JSON (atomically)."""
    layout.write_json(path, cfg.to_dict())


def load_or_exit(path, overrides=None):
    """For CLIs: a config error prints one line and exits with code 2.

    Validation asks the encoder and loss registries, which import
    TensorFlow: the commands' quiet start-up (`kaggle_tf.cli.quiet`) keeps
    its log lines out, so the error stays one line. An old key name prints
    one "config warning:" line (the commands' users would not see a
    `DeprecationWarning`).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigKeyDeprecationWarning)
        try:
            cfg, error = load(path, overrides), None
        except ConfigError as e:
            cfg, error = None, e
    for w in caught:
        if issubclass(w.category, ConfigKeyDeprecationWarning):
            if error is None:  # an error stays the one line
                print(f"config warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename,
                                   w.lineno, source=w.source)
    if error is not None:
        print(f"config error: {error}", file=sys.stderr)
        raise SystemExit(2)
    return cfg
