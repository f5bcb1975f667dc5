"""What to upload for an offline Kaggle kernel: wheel, model, notebook.

`build(cfg, out_dir, ...)` writes

    out_dir/wheel/   kaggle_tf-<version>-py3-none-any.whl + dataset-metadata.json
    out_dir/model/   saved_model/, config.json, manifest.json + dataset-metadata.json
    out_dir/kernel/  inference.ipynb + kernel-metadata.json

into a temporary folder renamed when complete. The notebook installs the
wheel with `pip install --no-deps --no-index`, then runs
`kaggle_tf.export.stream.run` on `$KAGGLE_INPUT/<competition slug>`
(`KAGGLE_INPUT` defaults to `/kaggle/input`, where Kaggle mounts the
competition and the two datasets) and writes `submission.csv` in its
working directory. Image models, series models (RSNA ICH's CNN + LSTM)
and ensemble configs (the blend is one graph; the shipped config drops
the members) alike.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import tensorflow as tf

from kaggle_tf.export import run as export_run
from kaggle_tf.export import stream
from tfrecords_tools import competitions

ACCELERATORS = ("gpu", "cpu", "tpu")
METADATA_DATASET = "dataset-metadata.json"
METADATA_KERNEL = "kernel-metadata.json"
NOTEBOOK = "inference.ipynb"
# What the wheel is built from (the project root's files and packages).
SOURCES = ("setup.py", "setup.cfg", "README.md", "kaggle_tf",
           "tfrecords_tools")


class KernelError(ValueError):
    """A bundle that cannot be built (named in one line)."""


def slugs(task, user):
    """`{"competition", "wheel", "model", "kernel"}`: the Kaggle slugs
    (datasets and kernel as `user/slug`)."""
    return {"competition": competitions.get(task).KAGGLE_SLUG,
            "wheel": f"{user}/kaggle-tf-wheel",
            "model": f"{user}/kaggle-tf-{task.replace('_', '-')}-model",
            "kernel": f"{user}/kaggle-tf-{task.replace('_', '-')}-inference"}


def project_root():
    """The folder holding setup.py and the packages (a source checkout)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, "setup.py")):
        raise KernelError(f"{root}: no setup.py; the kernel command builds "
                          "the wheel from a source checkout")
    return root


def build_wheel(out_dir):
    """`pip wheel --no-deps` of a clean copy of the sources (no build
    folders left in the checkout); returns the wheel's path."""
    root = project_root()
    with tempfile.TemporaryDirectory(prefix="kaggle_tf-wheel-") as tmp:
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc",
                                        "*.egg-info")
        for name in SOURCES:
            path = os.path.join(root, name)
            if os.path.isdir(path):
                shutil.copytree(path, os.path.join(src, name), ignore=ignore)
            elif os.path.exists(path):
                shutil.copy2(path, src)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps",
             "--no-build-isolation", "--no-index", "-q",
             "--disable-pip-version-check", "-w", out_dir, src],
            capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise KernelError(f"pip wheel failed: {last}")
    wheels = [n for n in os.listdir(out_dir) if n.endswith(".whl")]
    return os.path.join(out_dir, wheels[0])


def dataset_metadata(slug, title):
    """Kaggle API's `dataset-metadata.json` of `user/slug`."""
    return {"title": title, "id": slug, "licenses": [{"name": "CC0-1.0"}]}


def kernel_metadata(names, title, accelerator):
    """Kaggle API's `kernel-metadata.json`: internet off, both datasets
    and the competition attached."""
    return {"id": names["kernel"], "title": title, "code_file": NOTEBOOK,
            "language": "python", "kernel_type": "notebook",
            "is_private": True, "enable_gpu": accelerator == "gpu",
            "enable_tpu": accelerator == "tpu", "enable_internet": False,
            "dataset_sources": [names["wheel"], names["model"]],
            "competition_sources": [names["competition"]],
            "kernel_sources": [], "model_sources": []}


def _code(text):
    lines = text.strip("\n").splitlines(keepends=True)
    return {"cell_type": "code", "execution_count": None, "metadata": {},
            "outputs": [], "source": lines}


def _markdown(text):
    return {"cell_type": "markdown", "metadata": {},
            "source": text.strip("\n").splitlines(keepends=True)}


def notebook(names):
    """The notebook (nbformat 4) reading `$KAGGLE_INPUT`."""
    wheel_dir = names["wheel"].split("/", 1)[1]
    model_dir = names["model"].split("/", 1)[1]
    setup = f'''
import glob, os, subprocess, sys, time
START = time.perf_counter()
INPUT = os.environ.get("KAGGLE_INPUT", "/kaggle/input")
COMPETITION = os.path.join(INPUT, {names["competition"]!r})
MODEL = os.path.join(INPUT, {model_dir!r})
WHEELS = glob.glob(os.path.join(INPUT, {wheel_dir!r}, "*.whl"))
assert WHEELS, f"no kaggle_tf wheel under {{INPUT}}/{wheel_dir}"
subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                "--no-index", "--force-reinstall", "-q", WHEELS[0]],
               check=True)
'''
    predict = '''
import kaggle_tf
from kaggle_tf.export import stream
print("kaggle_tf", kaggle_tf.__version__, "from", kaggle_tf.__file__)
result = stream.run(MODEL, COMPETITION, "submission.csv")
print(f"elapsed {time.perf_counter() - START:.1f} s")
'''
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3",
                                      "display_name": "Python 3",
                                      "language": "python"},
                       "language_info": {"name": "python"}},
          "cells": [_markdown(
              "# kaggle_tf inference (offline)\n\n"
              "Installs the kaggle_tf wheel (no dependencies), loads the "
              "SavedModel with TensorFlow and writes `submission.csv`. "
              "`KAGGLE_INPUT` overrides the input root."),
              _code(setup), _code(predict)]}
    # nbformat 4.5 gives every cell an id.
    for index, cell in enumerate(nb["cells"]):
        cell["id"] = f"cell-{index}"
    return nb


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def export_model(cfg, model_dir, tta=None, folds=None):
    """The SavedModel, the config and the raw image size into
    `model_dir`."""
    base = os.path.join(model_dir, ".export")
    path = export_run.export(cfg, base, tta=tta, folds=folds, version=1)
    os.rename(path, os.path.join(model_dir, stream.SAVED_MODEL))
    shutil.rmtree(base)
    data = cfg.to_dict()
    data.pop("source", None)
    # The classifier gate and an ensemble's members are inside the
    # SavedModel: the kernel has no member configs to load.
    data["inference"]["classifier_config"] = None
    data.pop("ensemble", None)
    write_json(os.path.join(model_dir, stream.CONFIG), data)
    manifest = os.path.join(cfg.data.records_dir, "manifest.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            size = json.load(f).get("image_size")
        if size:
            write_json(os.path.join(model_dir, stream.MANIFEST),
                       {"image_size": size})


def build(cfg, out_dir, user, tta=None, folds=None, accelerator="gpu"):
    """Writes the three upload folders; returns the slugs (`slugs`).

    Raises:
        FileExistsError: `out_dir` exists.
        KernelError: a bad accelerator, or the wheel does not build.
    """
    if accelerator not in ACCELERATORS:
        raise KernelError(f"--accelerator must be one of "
                          f"{', '.join(ACCELERATORS)}. Received: "
                          f"{accelerator!r}")
    if os.path.exists(out_dir):
        raise FileExistsError(f"{out_dir} exists; choose a new --out")
    names = slugs(cfg.task, user)
    tmp = f"{out_dir.rstrip(os.sep)}.tmp-{os.getpid()}"
    try:
        for sub in ("wheel", "model", "kernel"):
            os.makedirs(os.path.join(tmp, sub))
        build_wheel(os.path.join(tmp, "wheel"))
        write_json(os.path.join(tmp, "wheel", METADATA_DATASET),
                   dataset_metadata(names["wheel"], "kaggle_tf wheel"))
        export_model(cfg, os.path.join(tmp, "model"), tta, folds)
        write_json(os.path.join(tmp, "model", METADATA_DATASET),
                   dataset_metadata(names["model"],
                                    f"kaggle_tf {cfg.task} model"))
        write_json(os.path.join(tmp, "kernel", NOTEBOOK), notebook(names))
        write_json(os.path.join(tmp, "kernel", METADATA_KERNEL),
                   kernel_metadata(names, f"kaggle_tf {cfg.task} inference",
                                   accelerator))
        os.rename(tmp, out_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return names


def budget(cfg, out_dir, n=16):
    """`{"seconds_per_item", "measured_items", "unit", "test_items",
    "limit_hours", "estimate_hours", "device"}`: the exported model timed
    on the first `n` local test items (`cfg.data.raw_dir`: images, series
    or studies), per example as the competition counts its test
    (`TEST_UNIT`: an image, an RSNA ICH slice, a lumbar study), scaled to
    its test count (None where unknown)."""
    module = competitions.get(cfg.task)
    per, measured = stream.time_per_item(os.path.join(out_dir, "model"),
                                         cfg.data.raw_dir, n)
    count = getattr(module, "TEST_ITEMS", None)
    limit = getattr(module, "KERNEL_LIMIT_HOURS", None)
    device = "GPU" if tf.config.list_physical_devices("GPU") else (
        f"CPU, {os.cpu_count()} cores")
    return {"seconds_per_item": per, "measured_items": measured,
            "unit": getattr(module, "TEST_UNIT", "image"),
            "test_items": count, "limit_hours": limit,
            "estimate_hours": per * count / 3600 if count else None,
            "device": device}


def _plural(unit):
    return unit[:-1] + "ies" if unit.endswith("y") else unit + "s"


def budget_line(b, task):
    """One line: the measured cost, the test count, estimate vs limit."""
    unit = b.get("unit", "image")
    text = (f"budget: {b['seconds_per_item'] * 1000:.1f} ms per test {unit} "
            f"on this machine ({b['device']}; {b['measured_items']} sample "
            f"{_plural(unit)} timed)")
    if b["test_items"] is None:
        return text + f"; the {task} test count is not recorded"
    text += (f" x {b['test_items']:,} test {_plural(unit)} = "
             f"{b['estimate_hours'] * 60:.1f} min")
    if b["limit_hours"] is not None:
        verdict = ("within" if b["estimate_hours"] <= b["limit_hours"]
                   else "OVER")
        text += f", {verdict} the kernel's {b['limit_hours']:g} h limit"
    if b["device"] != "GPU":
        text += "; GPU: no measured figure (run on a GPU machine for one)"
    return text


def upload_commands(out_dir):
    """The Kaggle CLI commands that upload the bundle, in order."""
    return [f"kaggle datasets create -p {os.path.join(out_dir, 'wheel')}",
            f"kaggle datasets create -p {os.path.join(out_dir, 'model')}",
            f"kaggle kernels push -p {os.path.join(out_dir, 'kernel')}"]

