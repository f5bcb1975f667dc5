"""Readers for the files the commands write and read back, with errors
that name the file and say what to do (`kaggle_tf.cli.InputError`).

Arrays never unpickle (`allow_pickle=False`): an `.npz` from elsewhere
cannot run code.

Example:

>>> ids, probs = load_npz("runs/steel/test_probs.npz", ("ids", "probs"),
...                       hint="rerun python -m kaggle_tf.predict "
...                            "--save-probs")        # doctest: +SKIP
"""

import json
import os
import zipfile

import numpy as np


class InputError(ValueError):
    """An expected failure on an input file; the message names the file
    (and key/row/record where known) and says what to do."""

    def __init__(self, path, reason, hint=None):
        text = f"{path}: {reason}"
        if hint:
            text += f"; {hint}"
        super().__init__(text)
        self.path, self.reason, self.hint = str(path), reason, hint

    def __reduce__(self):
        return (InputError, (self.path, self.reason, self.hint))


def _check_file(path, hint):
    if not os.path.exists(path):
        raise InputError(path, "not found", hint)
    if os.path.isdir(path):
        raise InputError(path, "is a folder, a file was expected", hint)


def load_npz(path, keys=None, hint=None):
    """The arrays of an `.npz` file (all, or `keys` in that order).

    Raises:
        InputError: missing, damaged or truncated, holding pickled objects,
            or lacking one of `keys`; names the file (and key).
    """
    hint = hint or "delete it and rerun the command that wrote it"
    _check_file(path, hint)
    try:
        # An open handle of our own: np.load leaks its file on a damaged zip.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            names = list(f.files)
            wanted = names if keys is None else list(keys)
            missing = [k for k in wanted if k not in names]
            if missing:
                raise InputError(path, f"missing key '{missing[0]}' (has: "
                                       f"{', '.join(names) or 'nothing'})",
                                 hint)
            out = {}
            for key in wanted:
                try:
                    out[key] = f[key]
                except ValueError as e:
                    if "allow_pickle" in str(e):
                        raise InputError(
                            path, f"key '{key}' holds pickled Python "
                                  "objects, which are refused (not a file "
                                  "this project wrote)", hint) from None
                    raise InputError(path, f"key '{key}': {e}",
                                     hint) from None
                except (zipfile.BadZipFile, OSError, EOFError) as e:
                    raise InputError(path, f"key '{key}' is damaged ({e})",
                                     hint) from None
    except InputError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise InputError(path, f"damaged or not an .npz file ({e})",
                         hint) from None
    if not isinstance(out, dict):  # pragma: no cover - np.load of .npy
        raise InputError(path, "not an .npz archive", hint)
    return out if keys is None else tuple(out[k] for k in wanted)


def read_json(path, hint=None, expect=dict):
    """The JSON value at `path` (a dict by default).

    Raises:
        InputError: missing, unreadable, invalid JSON (with line and
            column) or not of type `expect`.
    """
    hint = hint or "fix or delete it, then rerun"
    _check_file(path, hint)
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON at line {e.lineno} column "
                               f"{e.colno}: {e.msg}", hint) from None
    except UnicodeDecodeError:
        raise InputError(path, "not a UTF-8 text file", hint) from None
    except OSError as e:
        raise InputError(path, e.strerror or str(e), hint) from None
    if expect is not None and not isinstance(value, expect):
        raise InputError(path, f"a JSON {expect.__name__} was expected, "
                               f"got {type(value).__name__}", hint)
    return value
