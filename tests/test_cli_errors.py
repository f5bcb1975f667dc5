"""Every command x each missing or damaged input it reads: one line on
stderr naming the file, a non-zero exit code, no traceback, and no new
output that looks complete.

Commands run in-process (`main(argv)`); one tiny steel sample is made,
converted and given two untrained fold checkpoints once per module.
"""

import glob
import json
import os
import shutil
import sys

import numpy as np
import pytest

from kaggle_tf import cli

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(TESTS, "kaggle_tf", "inference"))

import tiny_runs  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = (64, 128)


def write_config(path, raw, records, output, folds=2):
    data = {
        "task": "steel", "seed": 0, "output_dir": str(output),
        "data": {"raw_dir": str(raw), "records_dir": str(records),
                 "image_size": list(SIZE), "folds": folds,
                 "shard_size": 4},
        "model": {"arch": "unet", "encoder": tiny_runs.ENCODER,
                  "classes": 4, "decoder_channels": tiny_runs.DECODER},
        "train": {"epochs": 1, "batch_size": 2},
        "inference": {"batch_size": 2, "tta": "none"},
        "augment": {"transforms": [{"__class_fullname__": "HorizontalFlip",
                                    "p": 0.5}]},
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """raw sample, records, two fold checkpoints, an OOF file."""
    from kaggle_tf import config
    from tfrecords_tools import convert
    from tfrecords_tools import sample

    base = tmp_path_factory.mktemp("cli_errors")
    raw, records, run = base / "raw", base / "records", base / "run"
    assert sample.main(["--task", "steel", "--out", str(raw), "--n", "8",
                        "--size", f"{SIZE[0]}x{SIZE[1]}"]) == 0
    cfg_path = write_config(base / "steel.json", raw, records, run)
    assert convert.main(["--config", cfg_path, "--quiet"]) == 0
    cfg = config.load(cfg_path)
    tiny_runs.save_folds(cfg, folds=(0, 1))
    rng = np.random.default_rng(0)
    np.savez(run / "fold0" / "oof.npz", ids=np.array(["a", "b"]),
             probs=rng.uniform(size=(2, *SIZE, 4)).astype(np.float32),
             truth=np.zeros((2, *SIZE, 4), np.uint8))
    return {"base": base, "raw": raw, "records": records, "run": run,
            "config": cfg_path}


def fresh(world, name, copy=("raw", "records", "run")):
    """A case folder with copies of `copy` and its own config."""
    case = world["base"] / name
    if case.exists():
        shutil.rmtree(case)
    case.mkdir()
    for key in copy:
        shutil.copytree(world[key], case / key)
    cfg = write_config(case / "steel.json", case / "raw", case / "records",
                       case / "run")
    return case, cfg


def read(path):
    with open(path, "rb") as f:
        return f.read()


def truncate(path, keep=0.5):
    data = read(path)
    with open(path, "wb") as f:
        f.write(data[:max(1, int(len(data) * keep))])


def garble(path, at=0.5, n=64):
    data = bytearray(read(path))
    start = int(len(data) * at)
    for i in range(start, min(len(data), start + n)):
        data[i] ^= 0x5A
    with open(path, "wb") as f:
        f.write(bytes(data))


def first(folder, suffix, prefix=""):
    names = sorted(n for n in os.listdir(folder)
                   if n.endswith(suffix) and n.startswith(prefix))
    return os.path.join(folder, names[0])


# --- the cases: (id, command module, setup(world) -> (argv, culprit,
#     must_not_exist)) ----------------------------------------------------

def fit_no_data(world):
    case, cfg = fresh(world, "fit_no_data", copy=())
    return (["--config", cfg], str(case / "raw"),
            [case / "records" / "manifest.json", case / "run"],
            ["severstal-steel-defect-detection",
             "kaggle competitions download -c",
             "python -m tfrecords_tools.sample --task steel"])


def convert_bad_jpeg(world):
    case, cfg = fresh(world, "convert_bad_jpeg", copy=("raw",))
    path = first(case / "raw" / "train_images", ".jpg")
    truncate(path, 0.3)
    return (["--config", cfg, "--quiet"], os.path.basename(path),
            [case / "records" / "manifest.json"], [])


def convert_bad_csv(world):
    case, cfg = fresh(world, "convert_bad_csv", copy=("raw",))
    with open(case / "raw" / "train.csv", "a", encoding="utf-8") as f:
        f.write("not-an-image.jpg,7,1 2\n")
    return (["--config", cfg, "--quiet"], "train.csv",
            [case / "records" / "manifest.json"], [])


def convert_raw_is_file(world):
    case, cfg = fresh(world, "convert_raw_is_file", copy=())
    (case / "raw").write_text("not a folder")
    return (["--config", cfg, "--quiet"], str(case / "raw"),
            [case / "records" / "manifest.json"], [])


def sample_out_is_file(world):
    case = world["base"] / "sample_out_is_file"
    case.mkdir(exist_ok=True)
    out = case / "out"
    out.write_text("a file")
    return (["--task", "steel", "--out", str(out), "--n", "4", "--size",
             "64x128"], str(out), [], [])


def inspect_missing_dir(world):
    case = world["base"] / "inspect_missing"
    return ([str(case / "nowhere"), "--out", str(case / "grid.png")],
            str(case / "nowhere"), [case / "grid.png"], [])


def inspect_bad_manifest(world):
    case, _ = fresh(world, "inspect_bad_manifest", copy=("records",))
    truncate(case / "records" / "manifest.json", 0.5)
    return ([str(case / "records"), "--out", str(case / "grid.png")],
            "manifest.json", [case / "grid.png"], [])


def inspect_bad_shard(world):
    case, _ = fresh(world, "inspect_bad_shard", copy=("records",))
    shard = first(case / "records", ".tfrec", prefix="train")
    truncate(shard, 0.5)
    return ([str(case / "records"), "--out", str(case / "grid.png")],
            os.path.basename(shard), [case / "grid.png"], [])


def tune_no_oof(world):
    case, cfg = fresh(world, "tune_no_oof", copy=())
    return (["--config", cfg], str(case / "run"),
            [case / "run" / "postprocess.json"], [])


def tune_bad_oof(world):
    case, cfg = fresh(world, "tune_bad_oof", copy=("run",))
    truncate(case / "run" / "fold0" / "oof.npz", 0.5)
    return (["--config", cfg], "oof.npz",
            [case / "run" / "postprocess.json"], [])


def tune_pickled_oof(world):
    case, cfg = fresh(world, "tune_pickled_oof", copy=("run",))
    path = case / "run" / "fold0" / "oof.npz"
    np.savez(path, ids=np.array([{"evil": 1}, None], dtype=object),
             probs=np.zeros((2, 4), np.float32),
             truth=np.zeros((2, 4), np.float32))
    return (["--config", cfg], "oof.npz",
            [case / "run" / "postprocess.json"], [])


def predict_bad_checkpoint(world):
    case, cfg = fresh(world, "predict_bad_checkpoint")
    truncate(case / "run" / "fold1" / "best.keras", 0.6)
    return (["--config", cfg], "best.keras",
            [case / "run" / "submission.csv"], ["fit"])


def predict_bad_postprocess(world):
    case, cfg = fresh(world, "predict_bad_postprocess")
    (case / "run" / "postprocess.json").write_text('{"thresholds": [0.5,')
    return (["--config", cfg], "postprocess.json",
            [case / "run" / "submission.csv"], [])


def predict_bad_manifest(world):
    case, cfg = fresh(world, "predict_bad_manifest")
    (case / "records" / "manifest.json").write_text("{ nope")
    return (["--config", cfg], "manifest.json",
            [case / "run" / "submission.csv"], [])


def predict_checkpoint_is_dir(world):
    case, cfg = fresh(world, "predict_checkpoint_is_dir")
    os.remove(case / "run" / "fold0" / "best.keras")
    os.mkdir(case / "run" / "fold0" / "best.keras")
    return (["--config", cfg], "best.keras",
            [case / "run" / "submission.csv"], [])


def export_bad_checkpoint(world):
    case, cfg = fresh(world, "export_bad_checkpoint", copy=("records",
                                                              "run"))
    garble(case / "run" / "fold0" / "best.keras", 0.02, 4096)
    return (["--config", cfg, "--out", str(case / "export")], "best.keras",
            [case / "export" / "1"], [])


def inspect_augment_bad_manifest(world):
    case, cfg = fresh(world, "inspect_augment_bad_manifest",
                      copy=("records",))
    truncate(case / "records" / "manifest.json", 0.4)
    return (["augment", "--config", cfg, "--out", str(case / "aug.png")],
            "manifest.json", [case / "aug.png"], [])


def fit_bad_weights(world):
    case, cfg = fresh(world, "fit_bad_weights", copy=("raw", "records"))
    weights = case / "encoder.safetensors"
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    return (["--config", cfg, "--fold", "0", "--set",
             f"model.encoder_weights={weights}"], "encoder.safetensors",
            [case / "run" / "fold0" / "best.keras",
             case / "run" / "fold0" / "metrics.json"], [])


def fit_damaged_shard(world):
    case, cfg = fresh(world, "fit_damaged_shard", copy=("raw", "records"))
    shard = first(case / "records", ".tfrec", "train-")
    garble(shard, 0.5, 256)
    return (["--config", cfg, "--fold", "0", "--set", "train.epochs=1",
             "train.steps_per_epoch=2", "train.verbose=0",
             "train.jit_compile=false"], os.path.basename(shard),
            [case / "run" / "fold0" / "best.keras",
             case / "run" / "fold0" / "metrics.json"], ["--verify"])


def convert_bad_dicom(world):
    from tfrecords_tools.competitions import siim

    case = world["base"] / "convert_bad_dicom"
    if case.exists():
        shutil.rmtree(case)
    raw = case / "raw"
    siim.make_sample(str(raw), n=6, size=32, seed=1)
    dicoms = sorted(os.path.join(root, n)
                    for root, _, names in os.walk(raw / "dicom-images-train")
                    for n in names if n.endswith(".dcm"))
    truncate(dicoms[0], 0.2)
    cfg = case / "siim.json"
    cfg.write_text(json.dumps({
        "task": "siim", "data": {"raw_dir": str(raw),
                                 "records_dir": str(case / "records"),
                                 "image_size": [32, 32], "folds": 2}}))
    return (["--config", str(cfg), "--quiet"], os.path.basename(dicoms[0]),
            [case / "records" / "manifest.json"], ["--skip-bad"])


def predict_no_test_images(world):
    # Not converted yet: predict converts first.
    case, cfg = fresh(world, "predict_no_test_images", copy=("raw", "run"))
    shutil.rmtree(case / "raw" / "test_images")
    return (["--config", cfg], "test_images",
            [case / "run" / "submission.csv"],
            ["kaggle competitions download -c"])


def predict_bad_test_jpeg(world):
    case, cfg = fresh(world, "predict_bad_test_jpeg", copy=("raw", "run"))
    path = first(case / "raw" / "test_images", ".jpg")
    truncate(path, 0.3)
    return (["--config", cfg], os.path.basename(path),
            [case / "run" / "submission.csv"], [])


# Damaged inputs of the other competitions: (task, what to damage, the
# name the message must carry). Samples of 6 items at 32 x 32.
def _truncate_first(pattern):
    def damage(raw):
        path = sorted(glob.glob(os.path.join(raw, pattern),
                                recursive=True))[0]
        truncate(path, 0.3)
        return os.path.basename(path)
    return damage


def _append(name, line):
    def damage(raw):
        with open(os.path.join(raw, name), "a", encoding="utf-8") as f:
            f.write(line + "\n")
        return name
    return damage


def _lumbar_bad_severity(raw):
    path = os.path.join(raw, "train.csv")
    with open(path, encoding="utf-8") as f:
        row = f.read().splitlines()[1]
    with open(path, "a", encoding="utf-8") as f:
        f.write(row.replace("Normal/Mild", "Awful", 1).replace(
            "Moderate", "Awful", 1).replace("Severe", "Awful", 1) + "\n")
    return "train.csv"


OTHER_TASKS = {
    "protein_bad_png": ("protein", _truncate_first("train/*_green.png")),
    "protein_bad_target": ("protein", _append(
        "train.csv", "00000000-0000-0000-0000-000000000000,3 99")),
    "rsna_ich_bad_label": ("rsna_ich", _append(
        "stage_2_train.csv", "ID_000000000_epidural,7")),
    "rsna_ich_short_row": ("rsna_ich", _append("stage_2_train.csv",
                                               "garbage-row")),
    "rsna_ich_bad_dicom": ("rsna_ich",
                           _truncate_first("stage_2_train/*.dcm")),
    "rsna_lumbar_bad_severity": ("rsna_lumbar", _lumbar_bad_severity),
    "rsna_lumbar_bad_series": ("rsna_lumbar", _append(
        "train_series_descriptions.csv", "123,456,Sagittal T9")),
    "rsna_lumbar_bad_dicom": ("rsna_lumbar",
                              _truncate_first("train_images/**/*.dcm")),
    "siim_bad_rle": ("siim", _append("train-rle.csv", "1.2.3, 5 x 7")),
}


def _other_task_case(name):
    task, damage = OTHER_TASKS[name]

    def setup(world):
        import importlib

        case = world["base"] / name
        if case.exists():
            shutil.rmtree(case)
        raw = case / "raw"
        importlib.import_module(
            f"tfrecords_tools.competitions.{task}").make_sample(
                str(raw), n=6, size=32, seed=2)
        culprit = damage(str(raw))
        cfg = case / f"{task}.json"
        cfg.write_text(json.dumps({
            "task": task, "data": {"raw_dir": str(raw),
                                   "records_dir": str(case / "records"),
                                   "image_size": [32, 32], "folds": 2}}))
        return (["--config", str(cfg), "--quiet"], culprit,
                [case / "records" / "manifest.json"], ["--skip-bad"])

    setup.__name__ = f"convert_{name}"
    return setup


def _pseudo_case(name, damage):
    def setup(world):
        case, cfg = fresh(world, name, copy=("records", "run"))
        path = case / "run" / "test_probs.npz"
        damage(path)
        return (["--config", cfg, "--set",
                 f"pseudo.records_dir={case / 'pseudo'}"], "test_probs.npz",
                [case / "pseudo" / "manifest.json"], [])

    setup.__name__ = name
    return setup


def _truncated_probs(path):
    np.savez(path, ids=np.array(["a", "b"]),
             probs=np.zeros((2, *SIZE, 4), np.float16))
    truncate(path, 0.5)


def _pickled_probs(path):
    np.savez(path, ids=np.array([{"evil": 1}, None], dtype=object),
             probs=np.zeros((2, *SIZE, 4), np.float16))


CASES = [
    ("kaggle_tf.pseudo", _pseudo_case("pseudo_missing_test_probs",
                                      lambda path: None)),
    ("kaggle_tf.pseudo", _pseudo_case("pseudo_bad_test_probs",
                                      _truncated_probs)),
    ("kaggle_tf.pseudo", _pseudo_case("pseudo_pickled_test_probs",
                                      _pickled_probs)),
    ("kaggle_tf.predict", predict_no_test_images),
    ("kaggle_tf.predict", predict_bad_test_jpeg),
    *[("tfrecords_tools.convert", _other_task_case(name))
      for name in OTHER_TASKS],
    ("kaggle_tf.fit", fit_bad_weights),
    ("kaggle_tf.fit", fit_damaged_shard),
    ("tfrecords_tools.convert", convert_bad_dicom),
    ("kaggle_tf.fit", fit_no_data),
    ("tfrecords_tools.convert", convert_bad_jpeg),
    ("tfrecords_tools.convert", convert_bad_csv),
    ("tfrecords_tools.convert", convert_raw_is_file),
    ("tfrecords_tools.sample", sample_out_is_file),
    ("tfrecords_tools.inspect", inspect_missing_dir),
    ("tfrecords_tools.inspect", inspect_bad_manifest),
    ("tfrecords_tools.inspect", inspect_bad_shard),
    ("kaggle_tf.tune", tune_no_oof),
    ("kaggle_tf.tune", tune_bad_oof),
    ("kaggle_tf.tune", tune_pickled_oof),
    ("kaggle_tf.predict", predict_bad_checkpoint),
    ("kaggle_tf.predict", predict_bad_postprocess),
    ("kaggle_tf.predict", predict_bad_manifest),
    ("kaggle_tf.predict", predict_checkpoint_is_dir),
    ("kaggle_tf.export.__main__", export_bad_checkpoint),
    ("kaggle_tf.inspect", inspect_augment_bad_manifest),
]


def _case_id(case):
    return (case.values if hasattr(case, "values") else case)[1].__name__


@pytest.mark.parametrize("module,setup", CASES,
                         ids=[_case_id(c) for c in CASES])
def test_command_fails_cleanly(world, module, setup, capsys, monkeypatch):
    import importlib

    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    argv, culprit, must_not_exist, also = setup(world)
    main = importlib.import_module(module).main
    code = main(argv)
    out, err = capsys.readouterr()
    assert code not in (0, None), (out, err)
    assert "Traceback" not in out + err
    # Progress bars (conversion before a fit or predict) may come first.
    lines = [line for line in err.replace("\r", "\n").splitlines()
             if line.strip() and "%|" not in line]
    assert len(lines) == 1, err
    assert culprit in lines[0], lines[0]
    for text in also:
        assert text in lines[0], lines[0]
    for path in must_not_exist:
        assert not os.path.exists(path), path


def test_debug_shows_the_traceback(world, monkeypatch):
    from kaggle_tf import tune
    from kaggle_tf.training.oof import OofError

    argv, _, _, _ = tune_no_oof(world)
    with pytest.raises(OofError):
        tune.main(argv + ["--debug"])
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(OofError):
        tune.main(argv)


def test_a_bug_still_raises(monkeypatch):
    @cli.command
    def main(argv=None):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        main([])


def test_pickled_test_probs_are_refused(tmp_path):
    from kaggle_tf import files

    path = tmp_path / "test_probs.npz"
    np.savez(path, ids=np.array([object()], dtype=object),
             probs=np.zeros((1, 4), np.float16))
    with pytest.raises(cli.InputError) as info:
        files.load_npz(str(path), ("ids", "probs"))
    message = str(info.value)
    assert "test_probs.npz" in message and "pickled" in message
    assert "\n" not in message
    ids, probs = (np.array(["a"]), np.zeros((1, 4)))
    np.savez(path, ids=ids, probs=probs)
    got = files.load_npz(str(path), ("ids", "probs"))
    assert got[0].tolist() == ["a"]
