"""Per-arch `model` keys, renamed keys, and choices owned by registries."""

import dataclasses
import glob
import inspect
import json
import os
import warnings

import pytest

from kaggle_tf import config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
CONFIGS = os.path.join(ROOT, "configs")
STEEL = os.path.join(CONFIGS, "steel.json")
STEEL_CLS = os.path.join(CONFIGS, "steel_cls.json")
SEQ = os.path.join(CONFIGS, "rsna_ich_seq.json")


def write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def test_every_recipe_loads_without_deprecated_keys():
    for path in sorted(glob.glob(os.path.join(CONFIGS, "*.json"))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            config.load(path)
        old = [str(w.message) for w in caught
               if issubclass(w.category, config.ConfigKeyDeprecationWarning)]
        assert not old, (path, old)


def test_sequence_recipe_uses_the_constructor_names():
    cfg = config.load(SEQ)
    assert (cfg.model.units, cfg.model.num_layers) == (256, 2)
    assert cfg.model.residual is True


def test_old_sequence_keys_load_with_a_deprecation_message(tmp_path):
    with open(SEQ, encoding="utf-8") as f:
        data = json.load(f)
    model = data["model"]
    model["rnn_units"] = model.pop("units")
    model["rnn_layers"] = model.pop("num_layers")
    data["extends"] = os.path.join(CONFIGS, data["extends"])
    old = write(tmp_path / "old_seq.json", data)
    with pytest.warns(DeprecationWarning) as record:
        cfg = config.load(old)
    messages = [str(w.message) for w in record]
    assert any("`model.rnn_units`" in m and "`model.units`" in m
               and "old_seq.json" in m and "\n" not in m for m in messages)
    assert any("`model.rnn_layers`" in m and "`model.num_layers`" in m
               for m in messages)
    assert (cfg.model.units, cfg.model.num_layers) == (256, 2)
    assert cfg.to_dict()["model"] == config.load(SEQ).to_dict()["model"]


def test_old_key_in_set_maps_to_the_new_key():
    with pytest.warns(DeprecationWarning, match=r"model\.rnn_units.*"
                      r"model\.units.*--set"):
        cfg = config.load(SEQ, ["model.rnn_units=16"])
    assert cfg.model.units == 16


def test_old_and_new_name_together_is_an_error(tmp_path):
    path = write(tmp_path / "both.json", {
        "task": "rsna_ich", "model": {"arch": "sequence", "units": 8,
                                      "rnn_units": 16}})
    with pytest.raises(config.ConfigError, match=r"`model.rnn_units`.*"
                       r"`model.units`.*both.json"):
        config.load(path)


def test_a_key_the_arch_does_not_take_is_named():
    with pytest.raises(config.ConfigError) as e:
        config.load(STEEL_CLS, ["model.decoder_channels=[8]"])
    message = str(e.value)
    assert "`model.decoder_channels`" in message
    assert "'classifier'" in message and "steel_cls.json" in message
    assert "\n" not in message


def test_inapplicable_key_in_the_recipe_names_the_file(tmp_path):
    path = write(tmp_path / "cls.json", {
        "task": "steel", "model": {"arch": "classifier", "aux_head": True}})
    with pytest.raises(config.ConfigError,
                       match=r"`model.aux_head`.*'classifier'.*cls.json"):
        config.load(path)
    with pytest.raises(config.ConfigError, match="`model.rnn`"):
        config.from_dict({"model": {"arch": "unet", "rnn": "gru"}})


def test_defaults_and_a_parent_of_another_arch_do_not_count(tmp_path):
    # steel.json (unet) sets decoder_channels; switching the arch in a
    # child or by --set does not inherit it as an error.
    child = write(tmp_path / "child.json",
                  {"extends": STEEL, "model": {"arch": "classifier"}})
    assert config.load(child).model.arch == "classifier"
    assert config.load(STEEL, ["model.arch=fpn"]).model.arch == "fpn"
    # ... but a key set in the child for its own arch still counts.
    bad = write(tmp_path / "bad.json", {
        "extends": STEEL, "model": {"arch": "fpn",
                                    "decoder_channels": [8, 8, 8, 8, 8]}})
    with pytest.raises(config.ConfigError,
                       match=r"`model.decoder_channels`.*'fpn'.*bad.json"):
        config.load(bad)


def test_fit_cli_exits_2_on_an_inapplicable_key(tmp_path, capsys):
    from kaggle_tf import fit

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        fit.main(["--config", STEEL_CLS, "--set", f"output_dir={out}",
                  "--set", "model.decoder_channels=[8]"])
    assert e.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines()
             if ln.strip()]
    assert len(lines) == 1, lines
    assert "`model.decoder_channels`" in lines[0]
    assert "steel_cls.json" in lines[0]
    assert not out.exists()


def test_unknown_encoder_lists_the_registry():
    from kaggle_tf.models import encoders

    with pytest.raises(config.ConfigError) as e:
        config.load(STEEL, ["model.encoder=resnet9000"])
    message = str(e.value)
    assert "`model.encoder`" in message and "steel.json" in message
    for name in encoders.names():
        assert repr(name) in message


def test_unknown_loss_lists_the_registry():
    from kaggle_tf import losses

    with pytest.raises(config.ConfigError) as e:
        config.load(STEEL, ["loss.name=hinge"])
    message = str(e.value)
    assert "`loss.name`" in message and "steel.json" in message
    for name in losses.names():
        assert repr(name) in message


def test_tasks_come_from_the_competition_plugins():
    from tfrecords_tools import competitions

    for task in competitions.names():
        assert config.from_dict({"task": task}).task == task
    with pytest.raises(config.ConfigError, match="`task`.*'steel'"):
        config.from_dict({"task": "titanic"})


def test_the_schema_module_imports_no_registry_at_import():
    import subprocess
    import sys

    code = ("import sys, kaggle_tf.config; "
            "print(any(m.split('.')[0] in ('keras', 'tensorflow') "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, cwd=ROOT, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_model_key_table_matches_the_builders_and_the_schema():
    import importlib

    from kaggle_tf.config.schema import ModelConfig

    build_lib = importlib.import_module("kaggle_tf.models.build")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    for arch, builder in build_lib.ARCHITECTURES.items():
        params = inspect.signature(builder).parameters
        keys = build_lib.config_keys(arch)
        assert set(keys) <= fields, arch
        assert set(build_lib._KEYS[arch]) <= set(params), arch
    # Every schema key belongs to some arch.
    used = {k for arch in build_lib.ARCHITECTURES
            for k in build_lib.config_keys(arch)}
    assert used == fields


def test_loss_builders_take_config_keys_with_the_config_defaults():
    from kaggle_tf import losses
    from kaggle_tf.config.schema import LossConfig

    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING
                         else f.default_factory())
                for f in dataclasses.fields(LossConfig)}
    for name in losses.names():
        params = inspect.signature(losses.LOSSES[name]).parameters
        for arg, p in params.items():
            assert arg in defaults, (name, arg)
            default = p.default
            if isinstance(default, tuple):
                default = list(default)
            assert default == defaults[arg], (name, arg)
