import json
import os
import subprocess
import sys

import pytest

from kaggle_tf import config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
STEEL = os.path.join(ROOT, "configs", "steel.json")


def write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def test_steel_recipe_loads_with_its_real_settings():
    cfg = config.load(STEEL)
    assert cfg.task == "steel"
    assert cfg.data.image_size == [256, 1600]
    assert cfg.model.encoder == "resnet34"
    assert cfg.model.classes == 4
    assert cfg.data.folds == 5
    assert len(cfg.inference.thresholds) == 4
    assert len(cfg.inference.min_area) == 4


def test_overrides_are_json_typed():
    cfg = config.load(STEEL, ["loss.weights=[3,1,4]", "train.epochs=1",
                              "train.steps_per_epoch=null",
                              "model.encoder=resnet18",
                              "data.image_size=[64,400]",
                              "train.jit_compile=false"])
    assert cfg.loss.weights == [3.0, 1.0, 4.0]
    assert cfg.train.epochs == 1
    assert cfg.train.steps_per_epoch is None
    assert cfg.model.encoder == "resnet18"
    assert cfg.data.image_size == [64, 400]
    assert cfg.train.jit_compile is False


def test_extends_merges_sections(tmp_path):
    base = write(tmp_path / "base.json",
                 {"task": "siim", "data": {"folds": 3, "channels": 1}})
    child = write(tmp_path / "child.json",
                  {"extends": "base.json", "data": {"channels": 3}})
    cfg = config.load(child)
    assert cfg.task == "siim"
    assert cfg.data.folds == 3  # from the parent
    assert cfg.data.channels == 3  # the child wins


def test_extends_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.json", {"extends": "b.json"})
    write(tmp_path / "b.json", {"extends": "a.json"})
    with pytest.raises(config.ConfigError, match="cycle"):
        config.load(str(tmp_path / "a.json"))


@pytest.mark.parametrize("override, key", [
    ("data.bogus=1", "data.bogus"),
    ("train.epochs=two", "train.epochs"),
    ("train.epochs=0", "train.epochs"),
    ("data.image_size=[1,2,3]", "data.image_size"),
    ("model.arch=unet3d", "model.arch"),
    ("loss.weights=[1,-1,0]", "loss.weights[1]"),
    ("train.jit_compile=1", "train.jit_compile"),
    ("train.jit_compile=sometimes", "train.jit_compile"),
    ("schedule.stages=[{\"epochs\":1,\"lr\":\"fast\"}]",
     "schedule.stages[0].lr"),
])
def test_bad_values_name_the_key_and_the_file(override, key):
    with pytest.raises(config.ConfigError) as e:
        config.load(STEEL, [override])
    message = str(e.value)
    assert f"`{key}`" in message
    assert "steel.json" in message
    assert "\n" not in message


def test_stages_are_typed():
    cfg = config.load(STEEL, [
        'schedule.stages=[{"epochs": 2, "lr": 1e-4, "sample_rate": 0.8},'
        ' {"epochs": 3, "lr": 1e-5, "scheduler": "cosine"}]'])
    assert [s.epochs for s in cfg.schedule.stages] == [2, 3]
    assert cfg.schedule.stages[1].scheduler == "cosine"
    assert cfg.schedule.stages[0].sample_rate == 0.8


def test_invalid_json_names_the_line(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"task": "steel",\n "seed": }')
    with pytest.raises(config.ConfigError, match="line 2"):
        config.load(str(p))


@pytest.mark.parametrize("module", ["kaggle_tf.fit", "kaggle_tf.predict"])
def test_cli_bad_key_exits_2_and_writes_nothing(tmp_path, module):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", module, "--config", STEEL,
         "--set", f"output_dir={out}", "--set", "train.epoch=3"],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "`train.epoch`" in lines[0] and "steel.json" in lines[0]
    assert not out.exists()


def test_every_recipe_in_configs_validates():
    folder = os.path.join(ROOT, "configs")
    names = [n for n in os.listdir(folder) if n.endswith(".json")]
    assert "steel.json" in names
    for name in names:
        config.load(os.path.join(folder, name))


@pytest.mark.parametrize("override,message", [
    ("augment.placement=model", "needs `augment.placement`"),
    ("train.strategy=tpu", "cannot run on a TPU"),
])
def test_the_cpu_fallback_is_refused_where_it_cannot_run(override, message):
    """`augment.allow_cpu_fallback` (a Python op in tf.data) is an explicit,
    CPU-only option: off by default, refused in the model and on a TPU."""
    path = STEEL
    assert config.load(path).augment.allow_cpu_fallback is False
    assert config.load(path, ["augment.allow_cpu_fallback=true"]) \
        .augment.allow_cpu_fallback is True
    with pytest.raises(config.ConfigError, match=message) as raised:
        config.load(path, ["augment.allow_cpu_fallback=true", override])
    assert "augment.allow_cpu_fallback" in str(raised.value)
