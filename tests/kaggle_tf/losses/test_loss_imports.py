"""The loss package stands alone: the config depends on it, not back."""

import ast
import glob
import os

import kaggle_tf.losses as losses


def _imported_modules(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"


def test_losses_import_no_config():
    folder = os.path.dirname(losses.__file__)
    files = glob.glob(os.path.join(folder, "*.py"))
    assert files
    for path in files:
        for name in _imported_modules(path):
            assert not (name == "kaggle_tf.config"
                        or name.startswith("kaggle_tf.config.")), (
                f"{os.path.basename(path)} imports {name}")


def test_build_takes_a_name_with_arguments_or_any_object():
    combo = losses.build("combo", weights=[3.0, 1.0, 4.0], smooth=0.0)
    assert combo.get_config()["focal"] == 4.0
    assert combo.get_config()["smooth"] == 0.0

    class Section:
        name = "focal"
        gamma = 3.0
        alpha = 0.25
        weights = [1.0, 1.0, 1.0]   # not focal's: left out

    focal = losses.build(Section())
    assert (focal.get_config()["gamma"], focal.get_config()["alpha"]) == (
        3.0, 0.25)
    try:
        losses.build("bce", gamma=2.0)
    except ValueError as e:
        assert "gamma" in str(e)
    else:
        raise AssertionError("bce took gamma")
