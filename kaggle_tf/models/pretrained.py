"""Pretrained encoder weights: what `encoder_weights` accepts, resolved.

`encoder_weights` (config key `model.encoder_weights`, and the builders'
argument) is one of:

* `None`: random init, no input normalization (as before);
* `"imagenet"`: the encoder's default source,
  `encoders.pretrained_source(name)` (`encoders/sources.py`);
* `"hf://<repo_id>"` (optionally `"hf://<repo_id>@<revision>"`): a Hugging
  Face hub repo in timm's format (`config.json` with a `pretrained_cfg`,
  plus `model.safetensors` or `pytorch_model.bin`) or smp-hub's
  (`config.json` with top-level `mean` / `std`);
* a local `.pth` / `.pt` / `.bin` / `.safetensors` file (a timm state
  dict) or a Keras `.weights.h5` of the encoder written by us;
* a local directory holding one of those, e.g. a folder written by
  `python -m kaggle_tf.weights fetch` and attached as a Kaggle dataset.

Downloads go through `huggingface_hub.hf_hub_download`, so `HF_HOME`,
`HF_HUB_CACHE` and `HF_HUB_OFFLINE=1` behave as usual. The converted
Keras weights are cached beside the download
(`<HF_HUB_CACHE>/models--<org>--<name>/kaggle_tf/<commit>/`), one file per
encoder and input channel count, so a second build does not reconvert.
Offline with nothing cached, `PretrainedWeightsError` says in one line
which encoder and hub id were wanted and how to give a local file or
directory instead; nothing is written.

The mean / std the weights were trained with become the model's first
layer (`normalization.ImageNormalization`, channel rule in
`normalization.channel_stats`): those of the source's `config.json`
(timm's `pretrained_cfg`, or smp-hub's top-level `mean` / `std`); for a
file without one, those of the encoder's default source
(`encoders/sources.py`), else ImageNet's.

Example:

>>> from kaggle_tf.models import pretrained
>>> source = pretrained.resolve("resnet18", "imagenet")   # doctest: +SKIP
>>> source.repo_id, source.mean                           # doctest: +SKIP
('timm/resnet18.a1_in1k', (0.485, 0.456, 0.406))
"""

import collections
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from typing import Optional

import keras
import numpy as np

from kaggle_tf import files
from kaggle_tf.models import normalization
from kaggle_tf.models import weights
from kaggle_tf.models.encoders import registry
from kaggle_tf.models.encoders import sources

log = logging.getLogger(__name__)

HUB_PREFIX = sources.HUB_PREFIX
# Weight files looked for in a hub repo, in order.
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TORCH_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
KERAS_SUFFIX = ".weights.h5"
CONFIG_FILE = "config.json"
# Bumped when the Keras layout of converted weights changes.
CACHE_VERSION = 1
CACHE_FOLDER = "kaggle_tf"
# Conversions from PyTorch tensors, per origin (tests read it).
CONVERSIONS = collections.Counter()


class PretrainedWeightsError(RuntimeError):
    """Weights that cannot be had (offline, unknown repo): one line.

    The command line tools print it as one line and exit with status 1.
    """


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """Where an encoder's pretrained weights come from, resolved locally.

    Attributes:
        encoder: the encoder name.
        origin: what was asked for (`"imagenet"`, `"hf://..."`, a path).
        torch_file: a timm / smp state dict file, or None.
        keras_file: a `.weights.h5` of this encoder, or None.
        keras_channels: the input channels `keras_file` was written for.
        mean: per-channel means of the weights (usually RGB).
        std: per-channel stds.
        repo_id: the hub repo (hub sources), else None.
        cache_dir: where converted weights are cached (hub), else None.
        config_file: the source's `config.json`, or None.
        state_dict: an in-memory state dict (dict sources), else None.
    """

    encoder: str
    origin: str
    torch_file: Optional[str] = None
    keras_file: Optional[str] = None
    keras_channels: Optional[int] = None
    mean: tuple = sources.IMAGENET_MEAN
    std: tuple = sources.IMAGENET_STD
    repo_id: Optional[str] = None
    cache_dir: Optional[str] = None
    config_file: Optional[str] = None
    state_dict: Optional[dict] = dataclasses.field(
        default=None, compare=False, repr=False)

    def stats(self, channels):
        """Per-channel `(mean, std)` for `channels` inputs."""
        return normalization.channel_stats(self.mean, self.std, channels)


# --- resolving ---


def resolve(encoder, encoder_weights, download=True):
    """Resolves `encoder_weights` for `encoder` to local files.

    Args:
        encoder: a registered encoder name.
        encoder_weights: None, `"imagenet"`, `"hf://<repo_id>"`, a file or
            directory path, a dict of arrays (a state dict), or a
            `WeightSource` (returned as is).
        download: fetch hub files that are not cached (when not offline).
            Defaults to `True`.

    Returns:
        A `WeightSource`, or None for `encoder_weights=None`.

    Raises:
        PretrainedWeightsError: hub weights that cannot be had.
        ValueError: an unknown form, or `"imagenet"` for an encoder without
            a default source.
    """
    if encoder_weights is None or isinstance(encoder_weights, WeightSource):
        return encoder_weights
    if isinstance(encoder_weights, dict):
        stats = sources.default_stats(encoder) or (sources.IMAGENET_MEAN,
                                                   sources.IMAGENET_STD)
        return WeightSource(encoder, "state_dict", mean=stats[0],
                            std=stats[1], state_dict=encoder_weights)
    if not isinstance(encoder_weights, (str, os.PathLike)):
        raise ValueError(_form_error(encoder_weights))
    value = os.fspath(encoder_weights)
    if value == "imagenet":
        return _resolve_hub(encoder, sources.pretrained_source(encoder),
                            "imagenet", download)
    if value.startswith(HUB_PREFIX):
        return _resolve_hub(encoder, value, value, download)
    if os.path.isdir(value):
        return _resolve_dir(encoder, value)
    if os.path.isfile(value):
        return _resolve_file(encoder, value, value)
    raise ValueError(_form_error(value))


def _form_error(value):
    return ("encoder_weights must be null, 'imagenet', 'hf://<repo_id>', or "
            "an existing .pth / .pt / .safetensors / .weights.h5 file or a "
            f"directory holding one. Received: encoder_weights={value!r}")


def parse_hub(uri):
    """`"hf://org/name@rev"` -> `("org/name", "rev" or None)`."""
    repo = uri[len(HUB_PREFIX):] if uri.startswith(HUB_PREFIX) else uri
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(
            "a hub source is 'hf://<org>/<name>[@<revision>]'. Received: "
            f"encoder_weights={uri!r}")
    return repo, revision


def _offline_message(encoder, repo_id, detail):
    return (f"cannot get pretrained weights for encoder {encoder!r} from the "
            f"Hugging Face hub ({repo_id}): {detail}. Download them once with "
            f"`python -m kaggle_tf.weights fetch {encoder} --out DIR` (or "
            "fill HF_HUB_CACHE) and give model.encoder_weights=DIR, or a "
            ".pth / .safetensors file")


def _hub_download(repo_id, filename, revision, encoder, download):
    """One file of a hub repo (from the cache when there), else None when
    the repo does not have it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors

    try:
        return hf_hub_download(repo_id, filename, revision=revision,
                               local_files_only=not download)
    except errors.LocalEntryNotFoundError:
        raise
    except (errors.EntryNotFoundError, errors.RevisionNotFoundError):
        return None
    except (errors.RepositoryNotFoundError, errors.HFValidationError) as e:
        raise PretrainedWeightsError(_offline_message(
            encoder, repo_id, f"no such repo ({type(e).__name__})")) from None
    except (errors.HfHubHTTPError, OSError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise PretrainedWeightsError(_offline_message(
            encoder, repo_id, f"{type(e).__name__} {detail}".strip())
        ) from None


def _resolve_hub(encoder, uri, origin, download):
    from huggingface_hub import errors

    repo_id, revision = parse_hub(uri)
    try:
        config_path = _hub_download(repo_id, CONFIG_FILE, revision, encoder,
                                    download)
    except errors.LocalEntryNotFoundError:
        config_path = None
    weight_path = None
    for filename in HUB_WEIGHT_FILES:
        try:
            weight_path = _hub_download(repo_id, filename, revision, encoder,
                                        download)
        except errors.LocalEntryNotFoundError:
            continue
        if weight_path is not None:
            break
    if weight_path is None:
        if _offline() or not download:
            detail = f"offline and not in the cache {_hub_cache()}"
        elif config_path is None:
            detail = "the hub cannot be reached and nothing is cached"
        else:
            detail = f"the repo has none of {', '.join(HUB_WEIGHT_FILES)}"
        raise PretrainedWeightsError(_offline_message(encoder, repo_id,
                                                      detail))
    mean, std = _config_stats(config_path, encoder)
    snapshot = os.path.dirname(weight_path)
    commit = os.path.basename(snapshot)
    repo_dir = os.path.dirname(os.path.dirname(snapshot))
    cache_dir = os.path.join(repo_dir, CACHE_FOLDER, commit)
    return WeightSource(encoder, origin, torch_file=weight_path, mean=mean,
                        std=std, repo_id=repo_id, cache_dir=cache_dir,
                        config_file=config_path)


def _offline():
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_cache():
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _config_stats(config_path, encoder):
    """mean / std from a timm or smp `config.json` (else the table's)."""
    default = sources.default_stats(encoder) or (sources.IMAGENET_MEAN,
                                                 sources.IMAGENET_STD)
    if config_path is None or not os.path.isfile(config_path):
        return default
    with open(config_path) as f:
        config = json.load(f)
    cfg = config.get("pretrained_cfg") or config
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is None or std is None:
        return default
    mean = tuple(float(m) for m in mean)
    std = tuple(float(s) for s in std)
    # smp configs of Caffe-era weights give statistics in 0..255 units.
    input_range = cfg.get("input_range")
    if input_range and float(max(input_range)) > 1.0:
        scale = float(max(input_range))
        mean = tuple(m / scale for m in mean)
        std = tuple(s / scale for s in std)
    return mean, std


def _resolve_file(encoder, path, origin, config_path=None):
    if path.endswith(KERAS_SUFFIX):
        meta = _read_json(config_path) if config_path else {}
        mean, std = _config_stats(config_path, encoder)
        return WeightSource(encoder, origin, keras_file=path,
                            keras_channels=meta.get("kaggle_tf", {}).get(
                                "input_channels"), mean=mean, std=std)
    if not path.endswith(TORCH_SUFFIXES):
        raise ValueError(_form_error(path))
    mean, std = _config_stats(config_path, encoder)
    return WeightSource(encoder, origin, torch_file=path, mean=mean, std=std)


def _read_json(path):
    if not path or not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _resolve_dir(encoder, path):
    """A folder: our `fetch` output, a timm / smp hub snapshot, or a
    folder with one weight file."""
    config_path = os.path.join(path, CONFIG_FILE)
    config_path = config_path if os.path.isfile(config_path) else None
    files = sorted(os.listdir(path))
    keras = [f for f in files if f.endswith(KERAS_SUFFIX)]
    torch_files = [f for f in files if f.endswith(TORCH_SUFFIXES)]
    meta = _read_json(config_path).get("kaggle_tf", {})
    torch_file = None
    for name in HUB_WEIGHT_FILES:
        if name in torch_files:
            torch_file = name
            break
    if torch_file is None and len(torch_files) == 1:
        torch_file = torch_files[0]
    keras_file = meta.get("keras_file") if meta.get(
        "encoder") == encoder else None
    if keras_file not in keras:
        keras_file = keras[0] if len(keras) == 1 and not torch_files else None
    if torch_file is None and keras_file is None:
        raise ValueError(
            "encoder_weights directory must hold one weight file (.pth / "
            ".pt / .safetensors / .weights.h5) or model.safetensors. "
            f"Received: encoder_weights={path!r} holding {files}")
    mean, std = _config_stats(config_path, encoder)
    return WeightSource(
        encoder, path,
        torch_file=os.path.join(path, torch_file) if torch_file else None,
        keras_file=os.path.join(path, keras_file) if keras_file else None,
        keras_channels=meta.get("input_channels") if keras_file else None,
        mean=mean, std=std, config_file=config_path)


# --- loading ---


class LazyTensor:
    """A tensor of a weight file, read only when converted (`__array__`).

    Has `shape` and `ndim`, so a state dict of them can be checked against
    an encoder before any tensor is read.
    """

    is_lazy = True

    def __init__(self, read, shape):
        self._read = read
        self.shape = tuple(int(d) for d in shape)
        self.ndim = len(self.shape)

    def __array__(self, dtype=None, copy=None):
        array = self._read()
        return array if dtype is None else array.astype(dtype)


def open_state_dict(path):
    """`{key: LazyTensor}` of a `.safetensors` / `.pth` file (see
    `_open_state_dict`).

    Raises:
        files.InputError: an unreadable or damaged weight file, naming it.
    """
    try:
        return _open_state_dict(path)
    except (OSError, ValueError, RuntimeError, EOFError) as e:
        raise _unreadable(path, e) from None
    except Exception as e:  # safetensors' and torch's own error types
        if type(e).__module__.split(".")[0] in ("safetensors", "torch",
                                                "pickle", "_pickle"):
            raise _unreadable(path, e) from None
        raise


def _unreadable(path, error):
    reason = str(error).strip().splitlines()[0] if str(error).strip() else (
        type(error).__name__)
    return files.InputError(path, f"unreadable weight file ({reason})",
                            "give a .pth / .pt / .safetensors of the "
                            "encoder, or fetch it again (python -m "
                            "kaggle_tf.weights fetch ...)")


def _open_state_dict(path):
    """`{key: LazyTensor}` of a `.safetensors` / `.pth` file.

    safetensors files are read tensor by tensor (`safe_open`); PyTorch
    files are memory-mapped (`torch.load(mmap=True)`), so neither holds a
    second full copy of the weights while they are converted.
    """
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        handle = safe_open(path, framework="np")
        keys = list(handle.keys())
        try:
            shapes = {k: handle.get_slice(k).get_shape() for k in keys}
        except Exception:  # bfloat16 files: no numpy dtype
            shapes = None
        if shapes is not None:
            return {k: LazyTensor(lambda k=k: handle.get_tensor(k),
                                  shapes[k]) for k in keys}
        handle = safe_open(path, framework="pt")
        return {k: _torch_lazy(lambda k=k: handle.get_tensor(k),
                               handle.get_slice(k).get_shape())
                for k in handle.keys()}
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True,
                         mmap=True)
    except RuntimeError:  # old (non-zip) format cannot be mapped
        obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in weights.CHECKPOINT_KEYS:
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    return {str(k): _torch_lazy(lambda v=v: v, tuple(v.shape))
            for k, v in obj.items() if hasattr(v, "shape")}


def _torch_lazy(get, shape):
    def read():
        value = get()
        if value.dtype.is_floating_point and value.dtype.itemsize < 4:
            value = value.float()
        return value.numpy()

    return LazyTensor(read, shape)


def load(encoder_model, source):
    """Loads a `WeightSource` into an encoder model.

    A hub source is converted once per input channel count; the result is
    cached as a Keras `.weights.h5` beside the download and read from
    there afterwards. A state dict that does not fit raises the
    `weights.WeightLoadError` that lists every missing, unexpected and
    mis-shaped tensor.

    Args:
        encoder_model: an `encoders.Encoder`.
        source: a `WeightSource` for its encoder.
    """
    channels = int(encoder_model.input_shape[-1])
    if source.keras_file and source.keras_channels in (None, channels) and (
            source.torch_file is None or source.keras_channels == channels):
        _load_keras(encoder_model, source.keras_file, source.origin)
        return
    if source.state_dict is not None:
        weights.load_torch_state_dict(encoder_model, source.state_dict)
        return
    if source.torch_file is None:
        raise weights.WeightLoadError(
            f"{source.origin!r} holds Keras weights for "
            f"{source.keras_channels} input channels and no PyTorch file to "
            f"adapt to {channels}. Received: input channels {channels}")
    cached = None
    if source.cache_dir:
        cached = os.path.join(
            source.cache_dir,
            f"{source.encoder}-{channels}ch-v{CACHE_VERSION}{KERAS_SUFFIX}")
        if os.path.isfile(cached):
            try:
                encoder_model.load_weights(cached)
                return
            except Exception as e:  # stale or partial: convert again
                log.warning("reconverting %s: %s", cached, e)
    log.info("converting %s for encoder %s", source.torch_file,
             source.encoder)
    state = open_state_dict(source.torch_file)
    weights.load_torch_state_dict(encoder_model, state)
    del state
    CONVERSIONS[source.origin] += 1
    if cached:
        _save_atomic(encoder_model, cached)


def _load_keras(encoder_model, path, origin):
    try:
        encoder_model.load_weights(path)
    except (ValueError, KeyError) as e:
        raise weights.WeightLoadError(
            f"the Keras weights {origin!r} do not fit encoder "
            f"{getattr(encoder_model, 'encoder_name', encoder_model.name)!r}"
            f" with input {encoder_model.input_shape}: {e}") from None


def _save_atomic(encoder_model, path):
    """Writes `path` via a temporary name (another process may read it)."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=KERAS_SUFFIX, dir=folder)
        os.close(fd)
        encoder_model.save_weights(tmp, overwrite=True)
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache: converting each time is fine
        log.warning("cannot cache converted weights in %s: %s", folder, e)


def load_encoder_weights(encoder_model, encoder_weights):
    """Resolves `encoder_weights` and loads them into `encoder_model`.

    Returns:
        The `WeightSource` (None for `encoder_weights=None`); the model
        builders take its `stats(channels)` as the input normalization.
    """
    source = resolve(encoder_model.encoder_name, encoder_weights)
    if source is not None:
        load(encoder_model, source)
    return source


def input_stats(source, channels):
    """`source.stats(channels)`, or None for random init (no source)."""
    return None if source is None else source.stats(channels)


def check_config(model_cfg):
    """Resolves a config's `model.encoder_weights` before a run writes
    anything (downloading when online), so that weights that cannot be had
    stop the command at once.

    Raises:
        PretrainedWeightsError: offline with nothing cached, unknown repo.
        ValueError: a form `encoder_weights` does not take.
    """
    value = getattr(model_cfg, "encoder_weights", None)
    if value is None or (getattr(model_cfg, "arch", None) == "sequence"
                         and getattr(model_cfg, "embedding_model", None)):
        return None
    return resolve(model_cfg.encoder, value)


# --- the command line's work: fetch, list ---


def fetch(target, out, channels=3, encoder=None):
    """Downloads and converts weights into a folder usable offline.

    `out` then holds `config.json` (the source's, with a `kaggle_tf`
    section naming encoder, source and channels), the original weight
    file (`model.safetensors` or `pytorch_model.bin`, so other channel
    counts can still be adapted) and the converted
    `<encoder>.weights.h5`. Upload it as a Kaggle dataset and give it as
    `encoder_weights=DIR`.

    Args:
        target: an encoder name (its default source) or `"hf://<repo>"`
            (then `encoder` names the encoder, or is read from the repo's
            `config.json` architecture).
        out: the output folder (created; written only once all is had).
        channels: input channels of the converted Keras weights.
            Defaults to `3`.
        encoder: the encoder name for an `hf://` target.

    Returns:
        The path of the `.weights.h5` written.
    """
    if target.startswith(HUB_PREFIX):
        origin = target
        if encoder is None:
            encoder = _encoder_of_repo(target)
    else:
        encoder, origin = target, "imagenet"
        registry.spec(encoder)
    source = resolve(encoder, origin)
    model = registry.Encoder(encoder, input_shape=(None, None, channels))
    load(model, source)
    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".fetch-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 is for secrets
    try:
        keras_name = f"{encoder}{KERAS_SUFFIX}"
        model.save_weights(os.path.join(staging, keras_name))
        weight_name = os.path.basename(source.torch_file)
        shutil.copyfile(source.torch_file, os.path.join(staging, weight_name))
        config = _read_json(source.config_file)
        if "pretrained_cfg" in config or "mean" not in config:
            cfg = config.setdefault("pretrained_cfg", {})
        else:  # smp-hub's layout: statistics at the top level
            cfg = config
        cfg.setdefault("mean", list(source.mean))
        cfg.setdefault("std", list(source.std))
        config["kaggle_tf"] = {
            "encoder": encoder, "source": (HUB_PREFIX + source.repo_id
                                           if source.repo_id else origin),
            "input_channels": channels, "keras_file": keras_name,
            "weight_file": weight_name, "cache_version": CACHE_VERSION}
        with open(os.path.join(staging, CONFIG_FILE), "w") as f:
            json.dump(config, f, indent=2)
        if os.path.isdir(out):
            for name in os.listdir(staging):
                os.replace(os.path.join(staging, name),
                           os.path.join(out, name))
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(out, keras_name)


def _encoder_of_repo(uri):
    """The encoder of a timm hub repo: its `config.json` architecture."""
    repo_id, revision = parse_hub(uri)
    path = _hub_download(repo_id, CONFIG_FILE, revision, uri, True)
    arch = _read_json(path).get("architecture") if path else None
    if arch is None:
        arch = repo_id.split("/")[1].split(".")[0]
    for name, spec in registry.ENCODERS.items():
        if arch in (name, spec.timm_name):
            return name
    raise ValueError(
        f"cannot tell which encoder {uri} is for (architecture {arch!r}); "
        f"pass --encoder. Choices: {', '.join(registry.names())}")


def cached(name):
    """Whether `name`'s default source is in the hub cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    uri = sources.pretrained_source(name)
    repo_id, revision = parse_hub(uri)
    return any(isinstance(try_to_load_from_cache(repo_id, f,
                                                 revision=revision), str)
               for f in HUB_WEIGHT_FILES)


def listing():
    """`[(encoder, "hf://<repo>" or None, cached)]` for every encoder."""
    rows = []
    for name in registry.names():
        if name in sources.SOURCES:
            rows.append((name, sources.pretrained_source(name),
                         cached(name)))
        else:
            rows.append((name, None, False))
    return rows


# --- test support: a hub cache of random tensors, in timm's layout ---


def write_hub_cache(encoder, cache_dir, repo_id=None, seed=0,
                    commit="0" * 40):
    """Writes a hub repo for `encoder` into a Hugging Face cache folder.

    The layout is the one `hf_hub_download` leaves
    (`models--<org>--<name>/refs/main`, `snapshots/<commit>/config.json`
    and `model.safetensors`), the tensors are the Keras initializers'
    draw in timm's names and layouts, so a build with
    `HF_HUB_CACHE=cache_dir HF_HUB_OFFLINE=1` goes through the same code as
    a real download, without network.

    Args:
        encoder: a registered encoder name.
        cache_dir: the `HF_HUB_CACHE` folder.
        repo_id: the repo to write. Defaults to the encoder's default
            source.
        seed: Keras seed of the random tensors. Defaults to `0`.
        commit: the snapshot's commit hash. Defaults to forty zeros.

    Returns:
        The snapshot folder.
    """
    from safetensors.numpy import save_file

    if repo_id is None:
        repo_id = parse_hub(sources.pretrained_source(encoder))[0]
    spec = registry.spec(encoder)
    keras.utils.set_random_seed(seed)
    model = registry.Encoder(encoder, input_shape=(64, 64, 3))
    rng = np.random.default_rng(seed)
    state = {}
    for key, (variable, kind) in spec.torch_mapping(model).items():
        value = np.asarray(variable.numpy(), "float32")
        if "moving_variance" in variable.path or "running_var" in key:
            value = rng.uniform(0.5, 1.5, value.shape).astype("float32")
        elif "moving_mean" in variable.path or "running_mean" in key:
            value = rng.normal(0.0, 0.1, value.shape).astype("float32")
        state[key] = np.ascontiguousarray(_to_torch(value, kind))
    mean, std = sources.default_stats(encoder) or (sources.IMAGENET_MEAN,
                                                   sources.IMAGENET_STD)
    repo_dir = os.path.join(cache_dir,
                            "models--" + repo_id.replace("/", "--"))
    snapshot = os.path.join(repo_dir, "snapshots", commit)
    os.makedirs(snapshot, exist_ok=True)
    os.makedirs(os.path.join(repo_dir, "refs"), exist_ok=True)
    with open(os.path.join(repo_dir, "refs", "main"), "w") as f:
        f.write(commit)
    config = {"architecture": spec.timm_name or encoder,
              "num_classes": 0,
              "pretrained_cfg": {"tag": repo_id.split(".", 1)[-1],
                                 "mean": list(mean), "std": list(std)}}
    with open(os.path.join(snapshot, CONFIG_FILE), "w") as f:
        json.dump(config, f)
    save_file(state, os.path.join(snapshot, "model.safetensors"))
    return snapshot


def _to_torch(value, kind):
    """Keras layout -> PyTorch layout (the inverse of `to_keras_like`)."""
    if kind == "conv":
        return np.transpose(value, (3, 2, 0, 1))
    if kind == "depthwise":
        kh, kw, ch, mult = value.shape
        return np.transpose(value, (2, 3, 0, 1)).reshape(ch * mult, 1, kh,
                                                         kw)
    if kind == "dense":
        return np.transpose(value, (1, 0))
    return value


__all__ = ["CONVERSIONS", "LazyTensor", "PretrainedWeightsError",
           "WeightSource", "cached", "check_config", "fetch", "input_stats",
           "listing", "load", "load_encoder_weights", "open_state_dict",
           "parse_hub", "resolve", "write_hub_cache"]
