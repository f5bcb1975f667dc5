"""`python -m kaggle_tf.kernel`: the bundle, its metadata, and the notebook
run offline in a fresh virtual environment (TensorFlow, pandas, numpy,
Pillow, pydicom, ipykernel from PyPI; kaggle_tf only from the wheel) on
samples in Kaggle's layout, against `kaggle_tf.predict`."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import tiny_runs

from kaggle_tf import kernel as kernel_cli
from kaggle_tf import predict as predict_cli
from tfrecords_tools import competitions

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
    spec = root / "jupyter" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f",
                 "{connection_file}"],
        "display_name": "fresh venv", "language": "python"}))
    return root / "jupyter", python


def trained_run(root, task):
    """A sample of `task` at `$KAGGLE_INPUT/<slug>`, a tiny trained run on
    it, and its config file."""
    module = competitions.get(task)
    raw = root / "input" / module.KAGGLE_SLUG
    if task == "steel":
        module.make_sample(str(raw), n=20, size=(64, 400), seed=0)
        cfg = tiny_runs.make_config(root / "run", raw_dir=raw,
                                    records_dir=root / "records",
                                    size=(64, 128), thresholds=[0.45],
                                    min_area=[20], tta="hflip")
    else:  # SIIM: DICOMs, grayscale tiled to 3 channels
        module.make_sample(str(raw), n=12, size=(64, 64), seed=0)
        cfg = tiny_runs.make_config(root / "run", task="siim", classes=1,
                                    size=(64, 64), raw_dir=raw,
                                    records_dir=root / "records",
                                    thresholds=[0.5])
    tiny_runs.save_folds(cfg, (0,), scale=30.0)
    path = root / f"{task}.json"
    data = cfg.to_dict()
    data.pop("source")
    path.write_text(json.dumps(data))
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


@pytest.mark.parametrize("task", ["steel", "siim"])
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
    assert len(budget) == 1 and "ms per test item" in budget[0]
    if task == "steel":
        assert "x 5,506 test items" in budget[0]
        assert "1 h limit" in budget[0]

    # Kaggle mounts each dataset at /kaggle/input/<dataset slug>.
    wheel_meta = json.loads((bundle / "wheel" /
                             "dataset-metadata.json").read_text())
    model_meta = json.loads((bundle / "model" /
                             "dataset-metadata.json").read_text())
    for meta, sub in ((wheel_meta, "wheel"), (model_meta, "model")):
        shutil.copytree(bundle / sub,
                        tmp_path / "input" / meta["id"].split("/")[1])
    shutil.rmtree(cfg.output_dir)  # the notebook sees no run folder
    work = tmp_path / "working"
    work.mkdir()
    text = run_notebook(bundle / "kernel" / "inference.ipynb", work,
                        jupyter_path, tmp_path / "input", monkeypatch)
    site = str(python.parent.parent)
    assert f"from {site}" in text, text
    assert "elapsed" in text
    got = pd.read_csv(work / "submission.csv", dtype=str,
                      keep_default_na=False)
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want) and len(got) > 0
    pd.testing.assert_frame_equal(got, want)
    if task == "steel":  # a real comparison: some masks are not empty
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
