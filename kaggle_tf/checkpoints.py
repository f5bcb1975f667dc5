"""Loading `.keras` checkpoints with errors that name the file.

Keras reports a truncated or damaged `.keras` archive as "File not found"
and a missing one with a long traceback; `load_model` checks the file
first and raises one `kaggle_tf.cli.InputError` naming it and saying what
to do. Loading always uses `safe_mode=True`: a Lambda layer's pickled
bytecode in a downloaded file is refused, not run.

Example:

>>> model = load_model("runs/steel/fold0/best.keras", compile=False)
...                                                     # doctest: +SKIP
"""

import os
import zipfile

import keras

import kaggle_tf.models  # noqa: F401  (registers the custom layers)

from kaggle_tf.files import InputError

HINT = ("delete it and retrain that fold (python -m kaggle_tf.fit ... "
        "--fold K)")


def check(path, hint=HINT):
    """Raises InputError unless `path` is a readable, intact `.keras` zip.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "checkpoint not found", hint)
    if os.path.isdir(path):
        raise InputError(path, "is a folder, a .keras file was expected",
                         hint)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            bad = z.testzip()
    except zipfile.BadZipFile:
        raise InputError(path, "damaged or truncated checkpoint (not a "
                               "complete .keras archive)", hint) from None
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})",
                         hint) from None
    if bad is not None:
        raise InputError(path, f"damaged checkpoint (bad CRC in {bad})",
                         hint)
    if "config.json" not in names:
        raise InputError(path, "not a .keras checkpoint (no config.json "
                               "inside)", hint)


def _float32_policies(config):
    """`config` with every mixed dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(
                config.get("config", {}).get("name", "")).startswith(
                    "mixed_"):
            return {**config, "config": {**config["config"],
                                         "name": "float32"}}
        return {k: _float32_policies(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_policies(v) for v in config]
    if isinstance(config, str) and config.startswith("mixed_"):
        return "float32"
    return config


def to_float32(model):
    """A float32 copy of a mixed-precision model (variables are float32
    under mixed precision, so the weights carry over exactly); `model`
    itself when every layer already computes in float32."""
    if all(getattr(layer, "compute_dtype", "float32") == "float32"
           for layer in model._flatten_layers(include_self=True)):
        return model
    config = _float32_policies(model.get_config())
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def load_model(path, compile=False, custom_objects=None, hint=HINT,
               float32=False):
    """`keras.saving.load_model(path, safe_mode=True)` after `check(path)`;
    `float32`: a mixed-precision model comes back computing in float32
    (`to_float32`).

    Raises:
        InputError: missing, damaged, unsafe (e.g. a Lambda layer) or
            unloadable checkpoint, naming `path`.
    """
    check(path, hint)
    try:
        model = keras.saving.load_model(path, custom_objects=custom_objects,
                                        compile=compile, safe_mode=True)
        return to_float32(model) if float32 else model
    except ValueError as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if "safe_mode" in str(e) or "unsafe" in str(e).lower():
            raise InputError(path, "refused: the checkpoint holds code "
                                   "(e.g. a Lambda layer) that safe_mode "
                                   "does not load", hint) from None
        raise InputError(path, f"cannot load checkpoint ({text})",
                         hint) from None
    except (zipfile.BadZipFile, OSError, KeyError, EOFError) as e:
        raise InputError(path, f"damaged checkpoint ({e})", hint) from None
