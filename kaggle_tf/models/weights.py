"""timm / smp state dicts -> the Keras models: finding and loading.

Kaggle users keep pretrained weights as offline datasets: a timm `.pth` or
`.safetensors` file. Every registered encoder knows how timm's keys map onto
its variables (`EncoderSpec.torch_mapping`); this module reads the file,
normalises the keys, finds the encoder, checks every shape and assigns each
tensor converted to Keras' layout (`kaggle_tf.models.torch_layout`). smp
checkpoints also fill the decoder and heads, whose layer names are smp's
module paths (`smp_mapping`).

A full model (`Unet`, `FPN`, `Classifier`, ...) holds its encoder as a nested
`encoders.Encoder` layer named `"encoder"` whose `encoder_name` names the
registry entry; passing the full model loads into that layer.

Example:

>>> from kaggle_tf.models import encoders, weights
>>> enc = encoders.build("resnet34", input_shape=(64, 64, 3))
>>> weights.load_torch_state_dict(enc, "resnet34.a1_in1k.safetensors")
"""

import collections
import functools
import json
import os

import numpy as np

from kaggle_tf.models.encoders import registry
from kaggle_tf.models.encoders import smp as smp_encoders
from kaggle_tf.models.heads import TIMM_HEAD_LAYERS
from kaggle_tf.models.torch_layout import adapt_input_conv
from kaggle_tf.models.torch_layout import bn_entries
from kaggle_tf.models.torch_layout import conv_entries
from kaggle_tf.models.torch_layout import mapping_by_layer_names
from kaggle_tf.models.torch_layout import to_keras_like
from kaggle_tf.models.torch_layout import torch_shape

# Keys of timm models that never belong to a feature pyramid.
CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.fc.")
# Wrappers added by DataParallel, smp, Lightning, timm's feature wrappers.
WRAPPER_PREFIXES = ("module.", "encoder.", "model.", "backbone.")
# Keys under which training scripts nest the state dict in a checkpoint.
CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "net")

LoadResult = collections.namedtuple(
    "LoadResult", ["loaded", "missing", "unexpected", "mismatched",
                   "skipped"], defaults=((),))
LoadResult.__doc__ = """What `load_torch_state_dict` did.

Attributes:
    loaded: timm keys assigned.
    missing: timm keys the encoder needs that the state dict lacks.
    unexpected: state dict keys the encoder has no place for.
    mismatched: `(key, state_dict_shape, expected_shape)` tuples, both
        shapes in PyTorch layout.
    skipped: `(key, reason)` tuples for tensors deliberately left out,
        e.g. a timm classifier head that does not fit `Classifier`'s head.
"""

# Files written by Keras (ours): loaded with `model.load_weights`.
KERAS_SUFFIXES = (".keras", ".weights.h5")
# The weight file inside an smp `save_pretrained` / smp-hub directory.
SMP_DIR_FILES = ("model.safetensors", "pytorch_model.bin")


class WeightLoadError(ValueError):
    """A state dict does not fit the encoder (lists every problem)."""


def read_state_dict(state_dict_or_path):
    """Reads a state dict into `{key: numpy array}`.

    Args:
        state_dict_or_path: a `.pth` / `.pt` / `.bin` file (read with
            `torch.load(weights_only=True)`), a `.safetensors` file, or a
            dict of numpy arrays or torch tensors. A checkpoint that nests
            the weights under `"state_dict"` or `"model"` is unwrapped.

    Returns:
        A dict of numpy arrays.

    Example:

    >>> sd = read_state_dict({"conv1.weight": np.zeros((64, 3, 7, 7))})
    """
    obj = state_dict_or_path
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"no weight file at state_dict_or_path. Received: {path!r}")
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file

            try:
                obj = load_file(path)
            except TypeError:
                # bfloat16 tensors have no numpy dtype: go through torch.
                from safetensors.torch import load_file as load_torch

                obj = load_torch(path)
        else:
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise TypeError(
            "state_dict_or_path must be a file path or a dict of arrays. "
            f"Received: {type(obj).__name__}")
    for key in CHECKPOINT_KEYS:
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    return {str(k): _to_numpy(v) for k, v in obj.items()}


def _to_numpy(value):
    # Lazy tensors (`models.pretrained.LazyTensor`) are read when assigned.
    if isinstance(value, np.ndarray) or getattr(value, "is_lazy", False):
        return value
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if not value.dtype.is_floating_point or value.dtype.itemsize >= 4:
            return value.numpy()
        return value.float().numpy()
    return np.asarray(value)


def strip_key(key):
    """Removes wrapper prefixes (`module.`, `encoder.`, ...) from a key."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                stripped = True
    return key


def find_encoder(model):
    """The encoder inside `model` and its registry spec.

    The encoder is `model` itself when it is an `encoders.Encoder` (or a
    plain model built by a registered `build_fn`, found by its name);
    otherwise the first nested `Encoder` layer (depth first).

    Args:
        model: a `keras.Model`.

    Returns:
        `(encoder_model, EncoderSpec)`.

    Example:

    >>> enc, spec = find_encoder(Unet("resnet34"))
    >>> spec.name
    'resnet34'
    """
    found = _search_encoder(model)
    if found is None:
        raise ValueError(
            "no registered encoder inside model_or_encoder; build it with "
            "`kaggle_tf.models.encoders.build`. Received: "
            f"{type(model).__name__} named {getattr(model, 'name', None)!r}")
    return found


def _search_encoder(model):
    name = getattr(model, "encoder_name", None)
    if name is not None:
        return model, registry.spec(name)
    if getattr(model, "name", None) in registry.ENCODERS:
        return model, registry.spec(model.name)
    for layer in getattr(model, "layers", ()):
        if hasattr(layer, "layers"):
            found = _search_encoder(layer)
            if found is not None:
                return found
    return None


def _is_ignored(key, spec):
    if key.endswith("num_batches_tracked"):
        return True
    prefixes = CLASSIFIER_PREFIXES + tuple(spec.ignore_prefixes)
    return any(key.startswith(p) for p in prefixes)


def load_torch_state_dict(model_or_encoder, state_dict_or_path, strict=True,
                          smp_encoder=None):
    """Loads PyTorch weights into an encoder or a whole model.

    What is filled depends on the weights and the model:

    * an encoder, or any model holding one, from a timm state dict: the
      encoder (keys are timm's, `layer1.0.conv1.weight`; wrapper prefixes
      `module.`, `encoder.`, `model.`, `backbone.` are stripped; timm's
      classifier and BatchNorm's `num_batches_tracked` are ignored);
    * a `Unet` / `FPN` from a segmentation_models_pytorch checkpoint
      (keys `encoder.*`, `decoder.*`, `segmentation_head.*`): encoder,
      decoder and heads (`load_smp_state_dict`). Build the model with the
      encoder `encoders.smp.smp_encoder_name(<smp encoder_name>)` and smp's
      decoder arguments;
    * a `Classifier` from a timm classifier state dict: the encoder, and
      the head's dense layer from timm's `fc` / `classifier` / `head.fc`
      when `Classifier` computes what timm's head sees (`head="avg"`, no
      timm pre-head such as EfficientNet's `conv_head` or ConvNeXt's
      `head.norm`) and the shapes agree; otherwise the head is listed in
      `LoadResult.skipped` with the reason;
    * any model from a Keras file of ours (`.keras` / `.weights.h5`, by
      suffix): every variable, with `model.load_weights`.

    When the stem conv has another input channel count than the model, it
    is adapted as timm's `adapt_input_conv` does (summed for 1 channel,
    tiled and rescaled otherwise).

    Args:
        model_or_encoder: a model from `encoders.build`, or a full model
            (`Unet`, `FPN`, `Classifier`, ...) with a nested encoder.
        state_dict_or_path: a `.pth` / `.pt` / `.safetensors` file, an
            smp `save_pretrained` directory (`config.json` +
            `model.safetensors`), a `.keras` / `.weights.h5` file, or a
            dict of numpy arrays / torch tensors.
        strict: when True (default), any missing, unexpected or mis-shaped
            tensor raises one `WeightLoadError` listing them all and nothing
            is assigned. When False, the tensors that fit are loaded and the
            rest reported in the result.
        smp_encoder: smp's `encoder_name` of an smp checkpoint (read from
            an smp directory's `config.json` otherwise). When given, it
            must map to the model's encoder (`encoders.smp.SMP_ENCODERS`).

    Returns:
        A `LoadResult(loaded, missing, unexpected, mismatched, skipped)`.

    Example:

    >>> model = Unet("resnet34", classes=4, input_shape=(256, 1600, 3))
    >>> load_torch_state_dict(model, "resnet34.pth")
    """
    source = state_dict_or_path
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.endswith(KERAS_SUFFIXES):
            return load_keras_weights(model_or_encoder, path)
        if os.path.isdir(path):
            source, config_encoder = _smp_directory(path)
            smp_encoder = smp_encoder or config_encoder
    state = read_state_dict(source)
    if not _is_encoder(model_or_encoder):
        if smp_encoder is not None or is_smp_state_dict(state):
            return load_smp_state_dict(model_or_encoder, state, strict=strict,
                                       smp_encoder=smp_encoder)
        if _classifier_dense(model_or_encoder) is not None:
            return _load_classifier(model_or_encoder, state, strict)
    return _load_encoder(model_or_encoder, state, strict)


def _load_encoder(model_or_encoder, state_dict_or_path, strict):
    encoder, spec = find_encoder(model_or_encoder)
    state = {}
    for key, value in read_state_dict(state_dict_or_path).items():
        key = strip_key(key)
        if not _is_ignored(key, spec):
            state[key] = value
    match = _match(_encoder_mapping(encoder, spec), state, spec.first_conv)
    return _apply(match, spec.name, strict)


def load_keras_weights(model, path):
    """Loads a `.keras` / `.weights.h5` file of ours into `model`.

    Args:
        model: a Keras model built as the one saved (same architecture).
        path: the file.

    Returns:
        A `LoadResult` whose `loaded` lists every variable's path.

    Example:

    >>> load_keras_weights(Unet("resnet34"), "fold0/best.keras")
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no weight file at state_dict_or_path. Received: {path!r}")
    model.load_weights(path)
    return LoadResult([v.path for v in model.variables], [], [], [])


def _smp_directory(path):
    """`(weight file, smp encoder_name or None)` of an smp directory."""
    encoder_name = None
    config = os.path.join(path, "config.json")
    if os.path.isfile(config):
        with open(config) as f:
            encoder_name = json.load(f).get("encoder_name")
    for name in SMP_DIR_FILES:
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate, encoder_name
    raise FileNotFoundError(
        f"no {' or '.join(SMP_DIR_FILES)} in the directory "
        f"state_dict_or_path. Received: {path!r}")


def _is_encoder(model):
    return isinstance(model, registry.Encoder) or getattr(
        model, "name", None) in registry.ENCODERS


def is_smp_state_dict(state):
    """True for an smp model's state dict (`decoder.*` /
    `segmentation_head.*` keys beside `encoder.*`).

    Example:

    >>> is_smp_state_dict({"encoder.conv1.weight": 0,
    ...                    "segmentation_head.0.weight": 0})
    True
    """
    keys = [k[len("module."):] if k.startswith("module.") else k
            for k in state]
    return any(k.startswith("encoder.") for k in keys) and any(
        k.startswith(("decoder.", "segmentation_head.")) for k in keys)


# --- timm classifier -> Classifier ---

CLASSIFIER_DENSE = "head_fc"  # `heads.pooled_head`'s dense layer
CLASSIFIER_BN = "head_bn"  # present for head="concat_pool"


def _classifier_dense(model):
    try:
        layer = model.get_layer(CLASSIFIER_DENSE)
    except ValueError:
        return None
    return layer if hasattr(layer, "kernel") else None


def _timm_head_mapping(model):
    """timm keys -> variables of `Classifier(head="timm")`'s pre-head
    layers (`heads.TIMM_HEAD_LAYERS`) that `model` has."""
    mapping = {}
    for layer_name, module in TIMM_HEAD_LAYERS.items():
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            continue
        if hasattr(layer, "kernel"):
            mapping.update(conv_entries(model, layer_name, module, "conv"))
        else:
            mapping.update(bn_entries(model, layer_name, module))
    return mapping


def _load_classifier(model, state_dict_or_path, strict):
    """Encoder as `_load_encoder`, plus timm's head (its pre-head layers
    with `head="timm"`, and the dense layer) when it fits."""
    state = {strip_key(k): v for k, v in
             read_state_dict(state_dict_or_path).items()}
    _, spec = find_encoder(model)
    result = _load_encoder(model, state, strict)
    prefix = next((p for p in CLASSIFIER_PREFIXES
                   if f"{p}weight" in state), None)
    if prefix is None:
        return result
    pre_head = _timm_head_mapping(model)
    head_keys = [k for k in state if k.startswith(prefix)]
    reason = _head_mismatch(model, spec, state, prefix, set(pre_head))
    if reason is not None:
        return result._replace(skipped=tuple(
            (k, reason) for k in sorted(head_keys)))
    dense = _classifier_dense(model)
    mapping = {f"{prefix}weight": (dense.kernel, "dense"),
               f"{prefix}bias": (dense.bias, "plain"), **pre_head}
    head_keys += [k for k in pre_head if k in state]
    head = _apply(_match(mapping, {k: state[k] for k in head_keys}, None),
                  model.name, strict)
    return LoadResult(*(a + b for a, b in zip(result[:4], head[:4])))


def _head_mismatch(model, spec, state, prefix, covered=()):
    """Why timm's head cannot load into `model`'s head (None if it can);
    `covered`: the timm keys the model's `head="timm"` layers take."""
    try:
        model.get_layer(CLASSIFIER_BN)
        return ("head='concat_pool' pools max + average and adds BatchNorm;"
                " timm's head is an average pool: build the Classifier with"
                " head='avg' to load it")
    except ValueError:
        pass
    pre_head = sorted({k.split(".")[0] if not k.startswith("head.") else
                       ".".join(k.split(".")[:2]) for k in state
                       if not k.startswith(prefix) and k not in covered
                       and not k.endswith("num_batches_tracked")
                       and any(k.startswith(p) for p in spec.ignore_prefixes)})
    if pre_head:
        return (f"timm's head runs on {', '.join(pre_head)}, which "
                f"Classifier({spec.name!r}, head={_head_kind(model)!r}) "
                "does not compute: build it with head='timm' to load it")
    dense = _classifier_dense(model)
    want = torch_shape(dense.kernel.shape, "dense")
    got = tuple(state[f"{prefix}weight"].shape)
    if got != want:
        return (f"shape {got} does not fit the head's dense layer "
                f"{want} (PyTorch layout)")
    return None


def _head_kind(model):
    try:
        model.get_layer(CLASSIFIER_BN)
        return "concat_pool"
    except ValueError:
        return "timm" if _timm_head_mapping(model) else "avg"


def load_smp_state_dict(model, state_dict_or_path, strict=True,
                        smp_encoder=None):
    """Loads a whole segmentation_models_pytorch checkpoint into a model.

    For `Unet` / `FPN` built with the same encoder and arguments as the smp
    model. `encoder.*` keys go to the encoder as in `load_torch_state_dict`
    (smp's `resnet*` encoders share timm's names; `tu-` encoders nest them
    under `encoder.model.`); `decoder.*`, `segmentation_head.*` and
    `classification_head.*` keys go to the layers named after them.

    Args:
        model: a `Unet` or `FPN`.
        state_dict_or_path: smp's `state_dict()`, or a file holding it.
        strict: as in `load_torch_state_dict`.
        smp_encoder: smp's `encoder_name`, checked against the model's
            encoder when given. Defaults to `None`.

    Returns:
        A `LoadResult` over both parts (decoder keys keep smp's names,
        encoder keys are reported as `encoder.<timm key>`).

    Example:

    >>> model = Unet("resnet34", classes=1)
    >>> load_smp_state_dict(model, "smp_unet_resnet34.pth")
    """
    encoder, spec = find_encoder(model)
    if smp_encoder is not None:
        _check_smp_encoder(smp_encoder, spec.name)
    encoder_state, head_state = {}, {}
    for key, value in read_state_dict(state_dict_or_path).items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("encoder."):
            key = strip_key(key)
            if not _is_ignored(key, spec):
                encoder_state[key] = value
        elif not key.endswith("num_batches_tracked") and not (
                is_unused_smp_key(key)):
            head_state[key] = value
    enc = _match(_encoder_mapping(encoder, spec), encoder_state,
                 spec.first_conv)
    head = _match(smp_mapping(model), head_state, None)
    prefixed = _Match(
        [(f"encoder.{k}", v, a) for k, v, a in enc.assign],
        [(f"encoder.{k}", s) for k, s in enc.missing],
        [(f"encoder.{k}", s) for k, s in enc.unexpected],
        [(f"encoder.{k}", *rest) for k, *rest in enc.mismatched])
    both = _Match(*(a + b for a, b in zip(prefixed, head)))
    try:
        return _apply(both, model.name, strict)
    except WeightLoadError as error:
        raise WeightLoadError(f"{error}\n{_smp_hint(spec.name)}") from None


def _check_smp_encoder(smp_encoder, encoder_name):
    # Unknown smp names raise a ValueError listing the supported ones.
    want = smp_encoders.smp_encoder_name(smp_encoder)
    if want != encoder_name:
        raise ValueError(
            f"smp encoder {smp_encoder!r} loads into encoder {want!r}; "
            f"build the model with encoder={want!r}. Received: a model "
            f"with encoder {encoder_name!r}")


def _smp_hint(encoder_name):
    pairs = ", ".join(f"{k} -> {v}" for k, v in sorted(
        smp_encoders.SMP_ENCODERS.items()))
    return (f"The model's encoder is {encoder_name!r}. smp encoders load "
            f"into (smp -> kaggle_tf): {pairs}, tu-<timm name> -> <timm "
            "name>; other smp encoders are not supported.")


# smp module names that contain an underscore themselves.
_SMP_WORDS = ("seg_blocks", "skip_conv", "segmentation_head",
              "classification_head")


def smp_key(layer_name):
    """The smp module path of a decoder layer (`decoder_p4_skip_conv` ->
    `decoder.p4.skip_conv`).

    Example:

    >>> smp_key("decoder_seg_blocks_0_block_0_block_0")
    'decoder.seg_blocks.0.block.0.block.0'
    """
    path = layer_name.replace("_", ".")
    for word in _SMP_WORDS:
        path = path.replace(word.replace("_", "."), word)
    return path


def smp_mapping(model):
    """smp keys -> variables for the layers of `model` outside its encoder.

    Example:

    >>> sorted(smp_mapping(Unet("test_resnet")))[0]
    'decoder.blocks.0.conv1.0.weight'
    """
    owned = [layer for layer in model.layers
             if layer.weights and not isinstance(layer, registry.Encoder)]
    view = _LayerView(model, owned)
    return mapping_by_layer_names(view, rename=smp_key)


def is_unused_smp_key(key):
    """True for smp tensors that its forward pass never uses.

    smp's last `UnetDecoderBlock` has no skip, yet builds `attention1`
    (scSE over the missing concatenation); this model does not create it.
    """
    return key.startswith("decoder.blocks.4.attention1.")


class _LayerView:
    """`model` restricted to some of its layers (for mapping helpers)."""

    def __init__(self, model, owned):
        self.layers = owned
        self.name = model.name
        self._model = model

    def get_layer(self, name):
        return self._model.get_layer(name)


_Match = collections.namedtuple(
    "_Match", ["assign", "missing", "unexpected", "mismatched"])


def _encoder_mapping(encoder, spec):
    if spec.torch_mapping is None:
        raise ValueError(
            f"encoder {spec.name!r} has no timm weight mapping. Received: "
            f"model_or_encoder with encoder {spec.name!r}")
    return spec.torch_mapping(encoder)


def _match(mapping, state, first_conv):
    """Pairs state dict tensors with variables; lists what does not fit."""
    missing, mismatched, assign = [], [], []
    for key, (variable, kind) in mapping.items():
        want = torch_shape(variable.shape, kind)
        if key not in state:
            missing.append((key, want))
            continue
        value = state[key]
        if (key == first_conv and value.ndim == 4
                and value.shape[1] != want[1]
                and value.shape[:1] + value.shape[2:] == want[:1] + want[2:]):
            value = adapt_input_conv(want[1], value)
        if tuple(value.shape) != want:
            mismatched.append((key, tuple(value.shape), want))
            continue
        # Converted when assigned, one tensor at a time (memory).
        assign.append((key, variable, functools.partial(
            to_keras_like, value, kind, tuple(variable.shape))))
    unexpected = [(k, tuple(state[k].shape))
                  for k in sorted(set(state) - set(mapping))]
    return _Match(assign, missing, unexpected, mismatched)


def _apply(match, name, strict):
    if strict and (match.missing or match.unexpected or match.mismatched):
        raise WeightLoadError(_report(name, match.missing, match.unexpected,
                                      match.mismatched))
    loaded = [k for k, _, _ in match.assign]
    while match.assign:
        _, variable, value = match.assign.pop()
        value = value() if callable(value) else value
        variable.assign(np.asarray(value).astype(variable.dtype))
        del value
    return LoadResult(loaded,
                      [k for k, _ in match.missing],
                      [k for k, _ in match.unexpected], match.mismatched)


def _report(name, missing, unexpected, mismatched):
    lines = [f"the state dict does not fit {name!r} "
             f"({len(missing)} missing, {len(unexpected)} unexpected, "
             f"{len(mismatched)} mis-shaped; shapes in PyTorch layout):"]
    for key, want in missing:
        lines.append(f"  missing: {key}: encoder needs {want}")
    for key, got in unexpected:
        lines.append(f"  unexpected: {key}: state dict {got}")
    for key, got, want in mismatched:
        lines.append(
            f"  mis-shaped: {key}: state dict {got}, encoder needs {want}")
    return "\n".join(lines)


__all__ = [
    "KERAS_SUFFIXES",
    "LoadResult",
    "WeightLoadError",
    "find_encoder",
    "is_smp_state_dict",
    "is_unused_smp_key",
    "load_keras_weights",
    "load_smp_state_dict",
    "load_torch_state_dict",
    "read_state_dict",
    "smp_key",
    "smp_mapping",
    "strip_key",
]
