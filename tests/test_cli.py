"""The shared command-line layer: `--set` forms, quiet start-up, and the
source-level guards against unsafe loading."""

import importlib
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("kaggle_tf", "tfrecords_tools")

# (module, argv before --set) of every command with --set.
WITH_SET = [
    ("kaggle_tf.fit", ["--config", "c.json"]),
    ("kaggle_tf.tune", ["--config", "c.json"]),
    ("kaggle_tf.predict", ["--config", "c.json"]),
    ("kaggle_tf.export.__main__", ["--config", "c.json", "--out", "x"]),
    ("kaggle_tf.inspect", ["augment", "--config", "c.json", "--out", "a.png"]),
    ("tfrecords_tools.convert", ["--config", "c.json"]),
    ("kaggle_tf.pseudo", ["--config", "c.json"]),
    ("kaggle_tf.stack", ["--config", "c.json"]),
]


@pytest.mark.parametrize("module,argv", WITH_SET,
                         ids=[m for m, _ in WITH_SET])
def test_set_takes_several_values_and_repeats(module, argv):
    parse = importlib.import_module(module).parse_args
    several = parse(argv + ["--set", "train.epochs=1", "data.folds=2"])
    repeated = parse(argv + ["--set", "train.epochs=1", "--set",
                             "data.folds=2"])
    mixed = parse(["--set", "train.epochs=1", "data.folds=2"] + argv
                  + ["--set", "seed=3"]) if module != "kaggle_tf.inspect" \
        else parse(argv + ["--set", "train.epochs=1", "data.folds=2",
                           "--set", "seed=3"])
    assert several.overrides == ["train.epochs=1", "data.folds=2"]
    assert repeated.overrides == several.overrides
    assert mixed.overrides == ["train.epochs=1", "data.folds=2", "seed=3"]
    assert parse(argv).overrides == []


def test_several_overrides_reach_the_config(tmp_path):
    from kaggle_tf import config
    from kaggle_tf import fit

    args = fit.parse_args(["--config", "configs/steel.json", "--set",
                           "train.epochs=1", "data.folds=2"])
    cfg = config.load(os.path.join(ROOT, "configs", "steel.json"),
                      args.overrides)
    assert (cfg.train.epochs, cfg.data.folds) == (1, 2)


# --- quiet start-up ---------------------------------------------------------

NOISE = re.compile(r"absl::InitializeLog|oneDNN custom operations|"
                   r"cpu_feature_guard|port\.cc:\d+\]")


def _run(module, *args, cwd=ROOT):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "KAGGLE_TF_QUIET",
                        "TF_ENABLE_ONEDNN_OPTS")}
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd,
                          env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("module", [
    "kaggle_tf.fit", "kaggle_tf.tune", "kaggle_tf.predict",
    "kaggle_tf.export", "tfrecords_tools.sample", "tfrecords_tools.convert",
    "tfrecords_tools.inspect", "kaggle_tf.pseudo", "kaggle_tf.stack"])
def test_help_is_quiet_and_lists_the_flags(module):
    proc = _run(module, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "--debug" in proc.stdout and "--verbose" in proc.stdout


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A converted 4-image steel sample (in-process, once)."""
    from tfrecords_tools import convert
    from tfrecords_tools import sample

    base = tmp_path_factory.mktemp("quiet")
    assert sample.main(["--task", "steel", "--out", str(base / "raw"),
                        "--n", "4", "--size", "64x384"]) == 0
    cfg = base / "steel.json"
    cfg.write_text(json.dumps({
        "extends": os.path.join(ROOT, "configs", "steel.json"),
        "output_dir": str(base / "run"),
        "data": {"raw_dir": str(base / "raw"),
                 "records_dir": str(base / "records"),
                 "image_size": [64, 384], "folds": 2}}))
    assert convert.main(["--config", str(cfg), "--quiet"]) == 0
    return base / "records"


def test_tensorflow_start_up_lines_hidden_unless_verbose(records, tmp_path):
    quiet = _run("tfrecords_tools.inspect", str(records), "--out",
                 str(tmp_path / "grid.png"), "--n", "2")
    assert quiet.returncode == 0, quiet.stderr
    assert os.path.exists(tmp_path / "grid.png")
    assert not NOISE.search(quiet.stderr), quiet.stderr
    assert "Traceback" not in quiet.stderr
    verbose = _run("tfrecords_tools.inspect", str(records), "--out",
                   str(tmp_path / "grid2.png"), "--n", "2", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    # --verbose leaves TensorFlow's logging alone: its start-up lines show.
    assert NOISE.search(verbose.stderr), verbose.stderr


def test_quiet_leaves_user_settings_and_verbose_forces_nothing(monkeypatch):
    from kaggle_tf import cli

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    cli.quiet(verbose=True)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    cli.quiet(verbose=False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    cli.remove_quiet_hook()


# --- untrusted files: no unsafe loading in the package source ----------------

def _sources():
    for package in PACKAGES:
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as f:
                        yield os.path.relpath(path, ROOT), f.read()


def _calls(text, name):
    """The argument text of each `name(` call (balanced parentheses)."""
    for found in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 1, found.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        yield text[found.end():i - 1]


def test_no_unsafe_loading_in_the_source():
    bad = []
    for path, text in _sources():
        code = re.sub(r'"""[\s\S]*?"""', "", text)  # not docstrings
        for pattern in ("allow_pickle=True", "safe_mode=False"):
            if pattern in code:
                bad.append(f"{path}: {pattern}")
        for args in _calls(code, "np.load"):
            if "allow_pickle=False" not in args:
                bad.append(f"{path}: np.load({args}) without "
                           "allow_pickle=False")
        for args in _calls(code, "torch.load"):
            if "weights_only=True" not in args:
                bad.append(f"{path}: torch.load({args}) without "
                           "weights_only=True")
    assert not bad, "\n".join(bad)


def test_a_lambda_layer_checkpoint_is_refused(tmp_path):
    """A .keras file holding a Lambda (Python code) is not loaded: one
    clear error naming the file."""
    import keras

    from kaggle_tf import checkpoints

    inputs = keras.Input((2,))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    path = str(tmp_path / "crafted.keras")
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(checkpoints.InputError) as info:
        checkpoints.load_model(path)
    assert path in str(info.value)
    assert "Lambda" in str(info.value) or "safe_mode" in str(info.value)


def test_tta_flag_takes_names_and_json_compositions(capsys):
    import pytest

    from kaggle_tf import predict
    from kaggle_tf.export import __main__ as export_main

    for parse in (predict.parse_args,
                  lambda argv: export_main.parse_args(argv + ["--out", "x"])):
        assert parse(["--config", "c.json", "--tta", "d4"]).tta == "d4"
        args = parse(["--config", "c.json", "--tta",
                      '{"d4": true, "scales": [0.875, 1.0]}'])
        assert args.tta == {"d4": True, "scales": [0.875, 1.0]}
        for bad, says in (("d5", "unknown TTA mode 'd5'"),
                          ('{"d4": true, "zoom": 2}', "unknown TTA key "
                                                      "'zoom'"),
                          ('{"d4": tru', "not valid JSON")):
            with pytest.raises(SystemExit) as info:
                parse(["--config", "c.json", "--tta", bad])
            assert info.value.code == 2
            err = capsys.readouterr().err
            assert "--tta" in err and says in err, err


@pytest.mark.parametrize("user", [None, "false"])
def test_commands_pool_tensorflows_host_memory_unless_told(user):
    """A command sets `TF_CPU_ALLOCATOR_USE_BFC=true` before TensorFlow
    loads (the allocator is chosen then), and keeps a user's value."""
    code = (
        "import os, sys\n"
        "from kaggle_tf import cli\n"
        "@cli.command\n"
        "def main(argv=None):\n"
        "    import tensorflow as tf\n"
        "    print(os.environ.get('TF_CPU_ALLOCATOR_USE_BFC'))\n"
        "    x = tf.ones([1024, 1024]) + 1.0\n"
        "    return 0 if float(tf.reduce_sum(x)) == 2.0 * 2 ** 20 else 1\n"
        "sys.exit(main([]))\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CPU_ALLOCATOR_USE_BFC", None)
    if user is not None:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = user
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == (user or "true")
