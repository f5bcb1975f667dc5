"""losses/ and metrics/ stay backend-neutral: no tensorflow import."""

import ast
import pathlib

import kaggle_tf

PACKAGE = pathlib.Path(kaggle_tf.__file__).parent


def imported_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_losses_and_metrics_do_not_import_tensorflow():
    files = sorted((PACKAGE / "losses").glob("*.py")) + sorted(
        (PACKAGE / "metrics").glob("*.py"))
    assert len(files) >= 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "py_function" not in text, path.name
        for module in imported_modules(path):
            assert module.split(".")[0] != "tensorflow", (path.name, module)
