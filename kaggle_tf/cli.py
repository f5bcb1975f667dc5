"""What every command line shares: `--set`, `--debug`, `--verbose`, a quiet
TensorFlow start-up and one error path.

Standard library only at import time, so `tfrecords_tools` commands and
`--help` stay fast.

Usage in a command module:

    def parse_args(argv=None):
        p = argparse.ArgumentParser(...)
        cli.add_set(p)              # --set a=1 b=2 and --set a=1 --set b=2
        cli.add_common(p)           # --debug, --verbose
        return p.parse_args(argv)

    @cli.command
    def main(argv=None):
        ...

`command` silences TensorFlow's C++/absl start-up lines (unless
`--verbose`) before anything imports TensorFlow, and turns expected
failures (a missing or damaged input file, a bad config) into one line on
stderr and a non-zero exit code. A traceback is printed only for bugs, or
always with `--debug` / `KAGGLE_TF_DEBUG=1`.
"""

import functools
import importlib.abc
import importlib.util
import json
import os
import re
import sys
import tempfile
import zipfile

from kaggle_tf.files import InputError  # noqa: F401  (the commands' error)

DEBUG_ENV = "KAGGLE_TF_DEBUG"
QUIET_ENV = "KAGGLE_TF_QUIET"
ALLOCATOR_ENV = "TF_CPU_ALLOCATOR_USE_BFC"

# Lines TensorFlow writes to fd 2 while it is imported: glog/absl-format
# lines (oneDNN notice, CPU feature guard, CUDA factory registration) and
# absl's pre-initialisation banner.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|To enable the following instructions:"
    r"|WARNING: Logging before InitGoogleLogging\(\))")

_EXTENSIONS = (".json", ".npz", ".npy", ".csv", ".keras", ".h5", ".tfrec",
               ".tfrecord", ".png", ".jpg", ".jpeg", ".dcm", ".pb",
               ".safetensors", ".pth", ".pt", ".bin")


# --- argument helpers -------------------------------------------------------

def add_set(parser, help=None):
    """`--set KEY=VALUE [KEY=VALUE ...]`, repeatable, into `overrides`."""
    parser.add_argument(
        "--set", dest="overrides", action="extend", nargs="+", default=[],
        metavar="KEY=VALUE",
        help=help or "override config keys, e.g. --set train.epochs=1 "
                     "data.folds=2 (values are JSON; repeatable)")


def tta_mode(text):
    """`--tta`'s value: a mode name or a JSON composition such as
    '{"d4": true, "scales": [0.875, 1.0, 1.125]}'."""
    import argparse

    from kaggle_tf.inference import tta

    mode = text
    if text.lstrip().startswith("{"):
        try:
            mode = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(
                f"not valid JSON ({e.msg} at column {e.colno})") from None
    try:
        tta.plan(mode)
    except (ValueError, TypeError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return mode


def add_tta(parser):
    """`--tta MODE`: overrides `inference.tta` (a name or JSON)."""
    parser.add_argument(
        "--tta", type=tta_mode, default=None, metavar="MODE",
        help="overrides inference.tta: none, hflip, vflip, d4, or a JSON "
             "composition such as '{\"d4\": true, \"scales\": [0.875, 1, "
             "1.125]}'")


def add_common(parser):
    """`--debug` (tracebacks) and `--verbose` (TensorFlow's own logs)."""
    parser.add_argument("--debug", action="store_true",
                        help=f"show tracebacks (also {DEBUG_ENV}=1)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's C++ and absl log lines")


_STATE = {"debug": False}


def debugging() -> bool:
    """True inside a command run with `--debug` / `KAGGLE_TF_DEBUG=1`: its
    own error handlers re-raise (see `report`)."""
    return _STATE["debug"]


def report(error, config_path=None):
    """Prints a command's error in one line; returns its exit code.

    A `ConfigError` is "config error: ..." (naming the config file when
    given) and exits 2; anything else is "error: ..." and exits 1. Under
    `--debug` the error is re-raised instead.
    """
    if debugging():
        raise error
    if type(error).__name__ == "ConfigError":
        where = f" ({os.path.basename(config_path)})" if config_path else ""
        print(f"config error: {error}{where}", file=sys.stderr)
        return 2
    print(f"error: {error}", file=sys.stderr)
    return 1


def debug_enabled(argv=None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return "--debug" in argv or env not in ("", "0", "false", "no")


# --- quiet start-up ---------------------------------------------------------

def _filter_replay(text):
    kept = [line for line in text.splitlines(True) if not _NOISE.match(line)]
    if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()


def _call_with_stderr_filtered(fn):
    """Runs `fn` with fd 2 captured; replays what is not start-up noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        return fn()
    tmp = tempfile.TemporaryFile()
    try:
        os.dup2(tmp.fileno(), 2)
        try:
            return fn()
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            tmp.seek(0)
            _filter_replay(tmp.read().decode("utf-8", errors="replace"))
    finally:
        os.close(saved)
        tmp.close()


class _QuietLoader(importlib.abc.Loader):
    """Delegates to TensorFlow's loader; its import runs with fd 2
    filtered."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        _call_with_stderr_filtered(lambda: self._loader.exec_module(module))
        _quiet_absl()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Wraps the first import of `tensorflow` (also via keras)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        remove_quiet_hook()
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


def remove_quiet_hook():
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not isinstance(f, _QuietFinder)]


def _quiet_absl():
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:
        absl_logging.set_verbosity(absl_logging.ERROR)


def quiet(verbose: bool = False) -> None:
    """Hides TensorFlow's C++/absl start-up lines; call before TF loads.

    Sets `TF_CPP_MIN_LOG_LEVEL=2` (unless the user set it) and filters the
    lines that TensorFlow prints before its log level applies (the oneDNN
    notice, "All log messages before absl::InitializeLog()"). Does nothing
    with `verbose`. Python warnings, Keras progress bars and our own
    output are untouched.
    """
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ[QUIET_ENV] = "1"  # for spawned worker processes
    if "tensorflow" in sys.modules:
        _quiet_absl()
        return
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())


def pooled_host_memory() -> None:
    """TensorFlow's CPU tensors from a pool that keeps freed memory
    (`TF_CPU_ALLOCATOR_USE_BFC=true`, unless the user set the variable);
    call before TF loads.

    Without oneDNN's allocator (CPUs without AVX-512, where TensorFlow
    leaves oneDNN off) every batch-sized buffer of the input pipeline and
    of a CPU training step is a fresh `mmap` that the kernel zeroes on first
    touch: in `benchmarks/bench_augment.py` the SIIM pipeline streams 1.4x
    faster pooled, the no-augmentation ceiling 1.8x, a U-Net training step
    on the CPU 1.4x, for ~12% more peak memory in CPU training (the pool
    keeps its high-water mark). `TF_CPU_ALLOCATOR_USE_BFC=false` opts out.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault(ALLOCATOR_ENV, "true")


def quiet_from_env() -> None:
    """In a worker process: quiet when the parent command was."""
    if os.environ.get(QUIET_ENV) == "1":
        quiet(False)


# --- one error path ---------------------------------------------------------

_OS_HINTS = {
    FileNotFoundError: "check the path (or create it first)",
    IsADirectoryError: "a file was expected here, not a folder",
    NotADirectoryError: "a folder was expected here, not a file",
    PermissionError: "check the file's permissions",
}


def _os_message(e):
    name = e.filename
    if name is None:
        return str(e)
    reason = e.strerror or str(e)
    hint = next((h for t, h in _OS_HINTS.items() if isinstance(e, t)),
                "check the file (delete it if it is damaged, then rerun)")
    where = f"{os.fsdecode(name)}"
    if getattr(e, "filename2", None):
        where += f" -> {os.fsdecode(e.filename2)}"
    return f"{where}: {reason}; {hint}"


def _first_line(text):
    text = str(text).strip()
    return text.splitlines()[0] if text else text


def _tf_message(e):
    """A tf.errors.* raised while reading files, or None for others."""
    kind = type(e).__name__
    message = getattr(e, "message", None) or str(e)
    if kind == "InvalidArgumentError" and not re.search(
            r"(?i)decod|record|jpeg|png|parse|example|feature|corrupt",
            message):
        return None
    if kind not in ("DataLossError", "NotFoundError",
                    "InvalidArgumentError", "PermissionDeniedError"):
        return None
    try:
        from tfrecords_tools import shard_check

        shard = shard_check.find_damaged()
    except Exception:  # noqa: BLE001 - the diagnosis is best effort
        shard = None
    if shard is not None:
        return (f"{shard[0]}: damaged TFRecord shard ({shard[1]}); check "
                "them all with python -m tfrecords_tools.convert --config "
                "C --verify, then remove the records folder's "
                "manifest.json and convert again")
    if kind == "NotFoundError":
        return f"{_first_line(message)}; check the path"
    return (f"{_first_line(message)}; a data file is damaged: check the "
            "records with python -m tfrecords_tools.convert --config C "
            "--verify")


def _names_a_file(text):
    text = str(text)
    head = text.split(": ", 1)[0]
    if (os.sep in head or "/" in head) and " " not in head.strip():
        return True
    lowered = text.lower()
    return any(ext + sep in lowered or lowered.endswith(ext)
               for ext in _EXTENSIONS for sep in (" ", ":", ")", ","))


def describe(error):
    """(one-line message, exit code) for an expected failure, else None."""
    from_module = type(error).__module__ or ""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", 130
    names = {c.__name__ for c in type(error).__mro__}
    if "ConfigError" in names:
        return f"config error: {_first_line(error)}", 2
    if names & {"InputError", "BadInput", "OofError", "DicomError"}:
        return f"error: {_first_line(error)}", 1
    if from_module.startswith("tensorflow"):
        text = _tf_message(error)
        return (f"error: {text}", 1) if text else None
    if isinstance(error, OSError):
        return f"error: {_first_line(_os_message(error))}", 1
    if isinstance(error, zipfile.BadZipFile):
        return (f"error: damaged file ({_first_line(error)}); delete it and "
                "rerun the command that wrote it"), 1
    if isinstance(error, json.JSONDecodeError):
        return (f"error: invalid JSON ({_first_line(error)}); fix or delete "
                "the file"), 1
    if isinstance(error, ValueError) and _names_a_file(error):
        return f"error: {_first_line(error)}", 1
    return None


def command(main):
    """Decorates a command's `main(argv=None) -> int` (see the module doc).
    """

    @functools.wraps(main)
    def wrapper(argv=None):
        args = sys.argv[1:] if argv is None else list(argv)
        debug = debug_enabled(args)
        quiet(verbose="--verbose" in args)
        pooled_host_memory()
        previous, _STATE["debug"] = _STATE["debug"], debug
        try:
            return main(argv)
        except SystemExit:
            raise
        except BaseException as e:  # noqa: BLE001 - sorted below
            found = None if debug else describe(e)
            if found is None:
                raise
            message, code = found
            print(message, file=sys.stderr, flush=True)
            return code
        finally:
            _STATE["debug"] = previous

    return wrapper
