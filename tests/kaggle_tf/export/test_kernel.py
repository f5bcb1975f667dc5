"""`python -m kaggle_tf.kernel`: the bundle, its metadata, and the notebook
run offline in a fresh virtual environment (TensorFlow, pandas, numpy,
Pillow, pydicom, ipykernel from PyPI; kaggle_tf only from the wheel) on
samples in Kaggle's layout, against `kaggle_tf.predict`: Severstal and SIIM
image models, the RSNA ICH series model (CNN + LSTM over each CT series),
the RSNA 2024 lumbar study classifier and a two-member Severstal ensemble.
All share one venv (about 1 min to build); each notebook takes ~25 s."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tiny_runs

from kaggle_tf import config as config_lib
from kaggle_tf import kernel as kernel_cli
from kaggle_tf import layout
from kaggle_tf import predict as predict_cli
from tfrecords_tools import competitions

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "..",
                       "configs")
# Python packages the notebook's imports must not need (not in the venv).
ABSENT = ("sklearn", "scipy", "torch", "timm", "albumentations", "cv2",
          "jax", "apache_beam")

VENV_PACKAGES = ("tensorflow-cpu", "pandas", "numpy", "pillow", "pydicom",
                 "ipykernel")
KERNEL_NAME = "kaggle-tf-fresh"


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory):
    """A kernelspec folder (for JUPYTER_PATH) whose kernel is a new venv's
    python with only `VENV_PACKAGES`."""
    root = tmp_path_factory.mktemp("fresh_venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", *VENV_PACKAGES],
                   check=True)
    # The notebook's imports must need none of the training packages.
    for name in ABSENT:
        assert subprocess.run([str(python), "-c", f"import {name}"],
                              capture_output=True).returncode != 0, name
    spec = root / "jupyter" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f",
                 "{connection_file}"],
        "display_name": "fresh venv", "language": "python"}))
    return root / "jupyter", python


def recipe(name, root, raw, **sets):
    """`configs/<name>.json` shrunk with `--set` style overrides, on the
    sample at `raw`, records and runs under `root`."""
    overrides = [f"data.raw_dir={raw}", f"data.records_dir={root / 'records'}",
                 "data.image_size=[64,64]", "data.folds=2",
                 "model.encoder=test_resnet", "model.encoder_weights=null"]
    overrides += [f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                  for k, v in sets.items()]
    return config_lib.load(os.path.join(CONFIGS, f"{name}.json"), overrides)


def sequence_run(root, raw):
    """A tiny rsna_ich_seq run: a slice classifier fold and an untrained
    BiLSTM fold over its embeddings (series longer than 5 slices are
    chunked, as predict chunks them)."""
    from kaggle_tf.training import sequence as seq_lib

    clf = recipe("rsna_ich", root, raw, output_dir=str(root / "cls"))
    tiny_runs.save_folds(clf, (0,), scale=3.0)
    cfg = recipe("rsna_ich_seq", root, raw, output_dir=str(root / "run"),
                 **{"model.embedding_model": str(root / "cls"),
                    "model.units": 8, "model.num_layers": 1,
                    "data.max_series_length": 5})
    keras = tiny_runs.keras
    keras.utils.set_random_seed(7)
    slices = seq_lib.slice_model(seq_lib.classifier_checkpoint(cfg, 0), cfg)
    width = slices.output["embeddings"].shape[-1]
    model = seq_lib.build_model(cfg, width)
    path = layout.RunLayout.of(cfg).checkpoint(0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.save(path)
    keras.backend.clear_session()
    return cfg


def ensemble_run(root, raw):
    """Two tiny steel members (a U-Net with hflip TTA, an FPN) at the same
    size, blended 2:1 by an ensemble config beside them."""
    for name, arch, tta in (("unet", "unet", "hflip"), ("fpn", "fpn", "none")):
        member = tiny_runs.make_config(root / name, arch=arch, raw_dir=raw,
                                       records_dir=root / "records",
                                       size=(64, 128), tta=tta)
        tiny_runs.save_folds(member, (0,), scale=30.0)
        tiny_runs.write_config(member, root / f"{name}.json")
    path = root / "blend.json"
    path.write_text(json.dumps({
        "task": "steel", "output_dir": str(root / "run"),
        "ensemble": {"members": [{"config": "unet.json", "weight": 2.0},
                                 {"config": "fpn.json", "weight": 1.0}],
                     "merge": "mean"},
        "inference": {"thresholds": [0.45], "min_area": [20],
                      "batch_size": 3}}))
    return config_lib.load(str(path))


def trained_run(root, task):
    """A sample of `task` at `$KAGGLE_INPUT/<slug>`, a tiny trained run on
    it, and its config file. `task` is a task name, "rsna_ich_seq" (the
    series model) or "steel_blend" (an ensemble config)."""
    competition = {"rsna_ich_seq": "rsna_ich",
                   "steel_blend": "steel"}.get(task, task)
    module = competitions.get(competition)
    raw = root / "input" / module.KAGGLE_SLUG
    if competition == "steel":
        module.make_sample(str(raw), n=20, size=(64, 400), seed=0)
    if task == "steel":
        cfg = tiny_runs.make_config(root / "run", raw_dir=raw,
                                    records_dir=root / "records",
                                    size=(64, 128), thresholds=[0.45],
                                    min_area=[20], tta="hflip")
    elif task == "steel_blend":
        cfg = ensemble_run(root, raw)
        return cfg, root / "blend.json", raw
    elif task == "siim":  # DICOMs, grayscale tiled to 3 channels
        module.make_sample(str(raw), n=12, size=(64, 64), seed=0)
        cfg = tiny_runs.make_config(root / "run", task="siim", classes=1,
                                    size=(64, 64), raw_dir=raw,
                                    records_dir=root / "records",
                                    thresholds=[0.5])
    elif task == "rsna_ich_seq":  # DICOM series -> per-slice labels
        module.make_sample(str(raw), n=48, size=64, seed=1)
        cfg = sequence_run(root, raw)
    else:  # rsna_lumbar: each study's three MRI series stacked
        module.make_sample(str(raw), n=8, size=64, seed=0)
        cfg = recipe("rsna_lumbar", root, raw, output_dir=str(root / "run"),
                     **{"data.stack_slices": {"sagittal_t1": 3,
                                              "sagittal_t2_stir": 3,
                                              "axial_t2": 4},
                        "data.channels": 10, "inference.batch_size": 1})
    if task != "rsna_ich_seq":
        tiny_runs.save_folds(cfg, (0,), scale=30.0)
    path = tiny_runs.write_config(cfg, root / f"{task}.json")
    return cfg, path, raw


def run_notebook(nb_path, workdir, jupyter_path, input_root, monkeypatch):
    """Executes the notebook with the fresh venv's kernel, offline (no
    index for pip, an unreachable proxy), from a folder without sources."""
    import nbclient
    import nbformat

    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("KAGGLE_INPUT", str(input_root))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    nb = nbformat.read(str(nb_path), as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL_NAME, timeout=600,
        resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return "".join(o.get("text", "") for c in nb.cells
                   for o in c.get("outputs", []))


UNITS = {"rsna_ich_seq": "slice", "rsna_lumbar": "study"}


@pytest.mark.parametrize("task", ["steel", "siim", "rsna_ich_seq",
                                  "rsna_lumbar", "steel_blend"])
def test_notebook_offline_equals_predict(task, tmp_path, fresh_venv,
                                         monkeypatch, capsys):
    jupyter_path, python = fresh_venv
    cfg, config_path, raw = trained_run(tmp_path, task)
    assert predict_cli.main(["--config", str(config_path)]) == 0
    want = pd.read_csv(os.path.join(cfg.output_dir, "submission.csv"),
                       dtype=str, keep_default_na=False)
    capsys.readouterr()
    bundle = tmp_path / "bundle"
    assert kernel_cli.main(["--config", str(config_path), "--out",
                            str(bundle), "--user", "tester",
                            "--measure", "4"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].strip() == (
        f"kaggle kernels push -p {bundle / 'kernel'}")
    budget = [line for line in printed if line.startswith("budget:")]
    unit = UNITS.get(task, "image")
    assert len(budget) == 1 and f"ms per test {unit} " in budget[0]
    if task.startswith("steel"):
        assert "x 5,506 test images" in budget[0]
        assert "1 h limit" in budget[0]
    else:
        assert "test count is not recorded" in budget[0]

    # Kaggle mounts each dataset at /kaggle/input/<dataset slug>.
    wheel_meta = json.loads((bundle / "wheel" /
                             "dataset-metadata.json").read_text())
    model_meta = json.loads((bundle / "model" /
                             "dataset-metadata.json").read_text())
    for meta, sub in ((wheel_meta, "wheel"), (model_meta, "model")):
        shutil.copytree(bundle / sub,
                        tmp_path / "input" / meta["id"].split("/")[1])
    shutil.rmtree(cfg.output_dir)  # the notebook sees no run folder
    if task == "steel_blend":  # nor the members' configs and runs
        for name in ("unet", "fpn"):
            shutil.rmtree(tmp_path / name)
            os.remove(tmp_path / f"{name}.json")
    work = tmp_path / "working"
    work.mkdir()
    text = run_notebook(bundle / "kernel" / "inference.ipynb", work,
                        jupyter_path, tmp_path / "input", monkeypatch)
    site = str(python.parent.parent)
    assert f"from {site}" in text, text
    assert "elapsed" in text
    if task == "rsna_ich_seq":  # whole series through predict_series
        assert "3 test items" in text and "series of at most 5" in text
    got = pd.read_csv(work / "submission.csv", dtype=str,
                      keep_default_na=False)
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want) and len(got) > 0
    if task in UNITS:  # probabilities: equal to float32 rounding
        pd.testing.assert_frame_equal(got.iloc[:, :1], want.iloc[:, :1])
        got_p = got.iloc[:, 1:].astype(float).to_numpy()
        want_p = want.iloc[:, 1:].astype(float).to_numpy()
        np.testing.assert_allclose(got_p, want_p, atol=1e-5, rtol=0)
        assert want_p.std() > 1e-3  # not a constant prediction
    else:
        pd.testing.assert_frame_equal(got, want)
    if task.startswith("steel"):  # a real comparison: some masks
        assert (got["EncodedPixels"] != "").any()


def test_metadata_names_each_other(tmp_path, capsys):
    cfg, config_path, raw = trained_run(tmp_path, "steel")
    bundle = tmp_path / "bundle"
    assert kernel_cli.main(["--config", str(config_path), "--out",
                            str(bundle), "--user", "tester",
                            "--accelerator", "cpu", "--measure", "0"]) == 0
    wheel = json.loads((bundle / "wheel" / "dataset-metadata.json")
                       .read_text())
    model = json.loads((bundle / "model" / "dataset-metadata.json")
                       .read_text())
    kern = json.loads((bundle / "kernel" / "kernel-metadata.json")
                      .read_text())
    assert [n for n in os.listdir(bundle / "wheel")
            if n.endswith(".whl")] == ["kaggle_tf-0.1.0-py3-none-any.whl"]
    assert kern["dataset_sources"] == [wheel["id"], model["id"]]
    assert kern["competition_sources"] == [
        "severstal-steel-defect-detection"]
    assert kern["enable_internet"] is False
    assert (kern["enable_gpu"], kern["enable_tpu"]) == (False, False)
    assert all(m["id"].startswith("tester/") for m in (wheel, model, kern))
    assert kern["code_file"] == "inference.ipynb"
    nb = json.loads((bundle / "kernel" / kern["code_file"]).read_text())
    source = "".join("".join(c["source"]) for c in nb["cells"])
    for slug in (wheel["id"], model["id"]):
        assert repr(slug.split("/")[1]) in source
    assert repr(kern["competition_sources"][0]) in source
    assert 'os.environ.get("KAGGLE_INPUT", "/kaggle/input")' in source
    assert "--no-deps" in source
    printed = capsys.readouterr().out.strip().splitlines()
    assert [line.strip() for line in printed[-3:]] == [
        f"kaggle datasets create -p {bundle / 'wheel'}",
        f"kaggle datasets create -p {bundle / 'model'}",
        f"kaggle kernels push -p {bundle / 'kernel'}"]
    # A second run does not overwrite the bundle.
    assert kernel_cli.main(["--config", str(config_path), "--out",
                            str(bundle), "--measure", "0"]) == 1
    assert "exists" in capsys.readouterr().err


def test_series_kernel_refuses_tta_in_one_line(tmp_path, capsys):
    cfg, config_path, raw = trained_run(tmp_path, "rsna_ich_seq")
    bundle = tmp_path / "bundle"
    assert kernel_cli.main(["--config", str(config_path), "--out",
                            str(bundle), "--tta", "hflip",
                            "--measure", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tta must be 'none'" in err[0], err
    assert not bundle.exists()
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
