"""The import graph of `kaggle_tf` and `tfrecords_tools`, read with `ast`.

Nothing here imports the packages: every `.py` file below `kaggle_tf/` and
`tfrecords_tools/` is parsed, and every `import` / `from ... import`
statement becomes an edge, including statements inside functions (a cycle
hidden behind a function-level import is still a cycle, it only fails later
and at run time).

How a statement becomes an edge:

* `import a.b.c` -> `a.b.c` (the longest known module prefix, if `a.b.c` is
  not a file of its own);
* `from a.b import c` -> `a.b.c` when `a/b/c.py` or `a/b/c/__init__.py`
  exists, else `a.b`;
* relative imports are resolved against the importing module's package
  first (`from .x import y` in `a/b/m.py` is `from a.b.x import y`).

Importing `a.b.c` also executes `a/__init__.py` and `a/b/__init__.py`.
Those implicit parent edges are NOT added: only explicit statements count,
so that a package `__init__` that re-exports its submodules does not make
every submodule look as if it imported its siblings.

The tests:

* `test_no_import_cycles`: no cycle among modules;
* `test_every_module_has_a_stage` / `test_stage_order`: the packages form a
  pipeline (`STAGES`); no module imports a module of a later stage, and the
  stage-2 leaves import one another only along `ALLOWED_LEAF_EDGES`;
* `test_core_packages_never_reach_training_or_inference`: data, augment,
  models, losses and metrics do not import, even transitively, training or
  inference;
* `test_function_level_imports`: imports inside functions are for optional
  heavy dependencies only (`OPTIONAL_HEAVY`, `OPTIONAL_TF_PACKAGES`,
  `FUNCTION_LEVEL_ALLOWED`).
"""

import ast
import pathlib
from collections import defaultdict

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("kaggle_tf", "tfrecords_tools")

CLI = 9
LEAF = 1

# Module-name prefix -> stage, earlier stages first (the layers of
# docs/ARCHITECTURE.md). The longest matching prefix (whole dotted
# components) decides a module's stage. A module may import its own stage
# and earlier ones, never a later one.
STAGES = {
    "tfrecords_tools": 0,
    # Imported by the root package before anything imports TensorFlow.
    "kaggle_tf.lean_imports": 0,
    # Stage 1, the leaves: task-agnostic building blocks. Each may import
    # stage 0 and itself; one leaf imports another only along
    # ALLOWED_LEAF_EDGES.
    "kaggle_tf.rle": LEAF,
    "kaggle_tf.files": LEAF,
    "kaggle_tf.layout": LEAF,
    "kaggle_tf.augment": LEAF,
    "kaggle_tf.models": LEAF,
    "kaggle_tf.losses": LEAF,
    "kaggle_tf.metrics": LEAF,
    "kaggle_tf.postprocess": LEAF,
    # The config validates choices against the leaves' registries; the
    # checkpoint loader needs the models' layers registered.
    "kaggle_tf.config": 2,
    "kaggle_tf.checkpoints": 2,
    # The competition plugins, built from the leaves.
    "kaggle_tf.tasks": 3,
    "kaggle_tf.submission": 4,
    "kaggle_tf.data": 5,
    "kaggle_tf.training": 6,
    "kaggle_tf.inference": 7,
    # The old import path of kaggle_tf.inference.tta, a re-export shim.
    "kaggle_tf.tta": 7,
    "kaggle_tf.export": 8,
    # Entry points: they may import everything.
    "kaggle_tf.fit": CLI,
    "kaggle_tf.tune": CLI,
    "kaggle_tf.predict": CLI,
    "kaggle_tf.inspect": CLI,
    "kaggle_tf.cli": CLI,
    "kaggle_tf.weights": CLI,
    "kaggle_tf.stack": CLI,
    "kaggle_tf.pseudo": CLI,
    "kaggle_tf.kernel": CLI,
    # A CLI entry of its own: it reads kaggle_tf.config files.
    "tfrecords_tools.convert": CLI,
    "tfrecords_tools.sample": CLI,
    "tfrecords_tools.inspect": CLI,
}
# Matched by exact name only (not as a prefix): the root package, which
# holds the version and the package docstring.
EXACT_STAGES = {"kaggle_tf": 0}
# Any `__main__` module (`python -m ...`) is an entry point.
MAIN_STAGE = CLI

# (importer leaf, imported leaf): the sideways edges among stage-2 leaves.
ALLOWED_LEAF_EDGES = {
    # Mask post-processing works on decoded masks and encodes the kept
    # components: RLE is the format it produces.
    ("kaggle_tf.postprocess", "kaggle_tf.rle"),
    # The run layout reads its JSON files through the checked readers.
    ("kaggle_tf.layout", "kaggle_tf.files"),
    # A damaged weight file is an input error naming the file.
    ("kaggle_tf.models", "kaggle_tf.files"),
    # The only sideways edge today (losses.lumbar -> metrics.kaggle): the
    # lumbar loss trains for the competition metric and takes its row
    # groups and severity weights from there, so that the two cannot drift.
    # Never the reverse: a metric does not depend on a training loss.
    ("kaggle_tf.losses", "kaggle_tf.metrics"),
}

# These packages must never reach training or inference, even transitively.
CORE = ("kaggle_tf.data", "kaggle_tf.augment", "kaggle_tf.models",
        "kaggle_tf.losses", "kaggle_tf.metrics")
NEVER_FROM_CORE = ("kaggle_tf.training", "kaggle_tf.inference")

# Top-level external packages that may be imported inside a function: each
# is optional (an extra, or only some commands need it) and heavy to import.
OPTIONAL_HEAVY = {
    "torch", "torchvision", "timm", "segmentation_models_pytorch", "ttach",
    "safetensors", "albumentations", "matplotlib", "pandas", "apache_beam",
    "onnx", "tf2onnx", "onnxruntime", "lightgbm",
    # Connected components (post-processing): OpenCV when installed, else
    # scipy; neither is a requirement of the package.
    "cv2", "scipy",
    # Read its HF_* settings when first imported: imported when weights
    # are fetched, so that settings made after `import kaggle_tf` count.
    "huggingface_hub",
    # The JAX backend's custom gradients (models.ordered_conv,
    # models.upsample_conv): imported only when Keras runs on JAX.
    "jax",
}
# TensorFlow may be imported inside a function only where it must stay
# optional (Keras 3 code that also runs on another backend).
OPTIONAL_TF = {"tensorflow"}
OPTIONAL_TF_PACKAGES = ("kaggle_tf.models", "kaggle_tf.losses",
                        "kaggle_tf.metrics")
# Internal modules that may be imported inside a function (each one wraps
# an optional heavy dependency and must not load with its importer).
# Importers that may import inside functions, with why. Entry points parse
# their arguments and validate the config before TensorFlow loads (a bad
# key is one line, at once); tfrecords_tools keeps its worker processes
# light (TensorFlow only where records are written); the config resolves
# its choices from the registries only when it validates, so importing the
# config loads neither Keras nor TensorFlow.
FUNCTION_LEVEL_IMPORTERS = ("tfrecords_tools", "kaggle_tf.config.schema")
FUNCTION_LEVEL_ALLOWED = {
    # The albumentations CPU fallback: imported only when a config asks for
    # it, so that albumentations stays optional.
    "kaggle_tf.augment.cpu_fallback",
}


def _matches(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


def _module_files():
    """{module name: path} of every .py file of PACKAGES."""
    modules = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


class _Imports(ast.NodeVisitor):
    """Collects (lineno, node, inside a function) of every import."""

    def __init__(self):
        self.found = []
        self._depth = 0

    def _function(self, node):
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node):
        self.found.append((node, self._depth > 0))

    def visit_ImportFrom(self, node):
        self.found.append((node, self._depth > 0))


class Graph:
    """Modules, edges (with where they stand) and external imports."""

    def __init__(self, files=None, sources=None):
        """`files`: {module: path} (default: the packages' files);
        `sources`: {module: text} in place of reading some files."""
        self.files = _module_files() if files is None else files
        self.modules = set(self.files)
        # (src, dst) -> [(path:line, inside a function)]
        self.edges = defaultdict(list)
        # [(src, top-level external name, path:line, inside a function)]
        self.external = []
        for name, path in sorted(self.files.items()):
            text = (sources or {}).get(name)
            self._read(name, path, path.read_text() if text is None else text)
        self.adjacency = defaultdict(set)
        for src, dst in self.edges:
            if src != dst:
                self.adjacency[src].add(dst)

    def _known(self, dotted):
        """The longest prefix of `dotted` that is a module, or None."""
        parts = dotted.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in self.modules:
                return candidate
            parts.pop()
        return None

    def _package_of(self, name):
        if self.files[name].name == "__init__.py":
            return name
        return name.rpartition(".")[0]

    def _read(self, name, path, text):
        visitor = _Imports()
        visitor.visit(ast.parse(text, filename=str(path)))
        where_base = (path.relative_to(ROOT).as_posix()
                      if path.is_absolute() else path.as_posix())
        for node, in_function in visitor.found:
            where = f"{where_base}:{node.lineno}"
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
                for target in targets:
                    self._add(name, target, target, where, in_function)
                continue
            if node.level:
                package = self._package_of(name).split(".")
                up = node.level - 1
                base_parts = package[:len(package) - up] if up else package
                base = ".".join(base_parts + (
                    node.module.split(".") if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in self.modules:
                    self._add(name, full, full, where, in_function)
                else:
                    self._add(name, base, base, where, in_function)

    def _add(self, src, target, dotted, where, in_function):
        top = dotted.split(".")[0]
        if top not in PACKAGES:
            self.external.append((src, top, where, in_function))
            return
        dst = self._known(target)
        if dst is None:
            raise AssertionError(f"{where}: {target} is not a module of "
                                 f"{'/'.join(PACKAGES)}")
        self.edges[(src, dst)].append((where, in_function))

    def where(self, src, dst):
        return ", ".join(w for w, _ in self.edges[(src, dst)])


@pytest.fixture(scope="module")
def graph():
    return Graph()


def _strongly_connected(adjacency, nodes):
    """Tarjan's SCCs, iterative: a list of sets of nodes."""
    index = {}
    low = {}
    on_stack = set()
    stack = []
    components = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(adjacency.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(adjacency.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _path(adjacency, start, goals, within=None):
    """A shortest path start -> ... -> one of `goals` (BFS), or None."""
    previous = {start: None}
    queue = [start]
    for node in queue:
        for child in sorted(adjacency.get(node, ())):
            if within is not None and child not in within:
                continue
            if child in goals:
                path = [child, node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return path[::-1]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return None


def _describe(graph, path):
    lines = [" -> ".join(path)]
    for src, dst in zip(path, path[1:]):
        lines.append(f"    {src} -> {dst}  ({graph.where(src, dst)})")
    return "\n".join(lines)


def stage_of(name):
    """The stage of module `name` (an int), or None when none matches."""
    if name in EXACT_STAGES:
        return EXACT_STAGES[name]
    if name.split(".")[-1] == "__main__":
        return MAIN_STAGE
    prefix = _stage_prefix(name)
    return None if prefix is None else STAGES[prefix]


def _stage_prefix(name):
    matching = [p for p in STAGES if _matches(name, p)]
    return max(matching, key=len) if matching else None


def import_cycles(graph):
    """One message per cycle: its modules, a cycle path and the lines."""
    cycles = []
    for component in _strongly_connected(graph.adjacency, graph.modules):
        if len(component) < 2:
            continue
        start = min(component)
        path = _path(graph.adjacency, start, {start}, within=component)
        cycles.append(f"cycle among {sorted(component)}:\n"
                      + _describe(graph, path))
    return cycles


def stage_violations(graph):
    """One message per edge against STAGES / ALLOWED_LEAF_EDGES."""
    violations = []
    for (src, dst) in sorted(graph.edges):
        s, d = stage_of(src), stage_of(dst)
        if s is None or d is None or src == dst:
            continue
        if d > s:
            violations.append(
                f"{src} (stage {s}) imports {dst} (stage {d}, later)  "
                f"({graph.where(src, dst)})")
        elif s == d == LEAF:
            a, b = _stage_prefix(src), _stage_prefix(dst)
            if a != b and (a, b) not in ALLOWED_LEAF_EDGES:
                violations.append(
                    f"leaf {a} imports leaf {b} ({src} -> {dst}), not in "
                    f"ALLOWED_LEAF_EDGES  ({graph.where(src, dst)})")
    return violations


def core_reaching_late_stages(graph):
    """One import path per CORE module that reaches NEVER_FROM_CORE."""
    goals = {m for m in graph.modules
             if any(_matches(m, p) for p in NEVER_FROM_CORE)}
    reached = []
    for src in sorted(graph.modules):
        if any(_matches(src, p) for p in CORE):
            path = _path(graph.adjacency, src, goals)
            if path:
                reached.append(_describe(graph, path))
    return reached


def function_level_violations(graph):
    """One message per import inside a function that is not allowed."""
    flagged = []

    def exempt(src):
        return stage_of(src) == CLI or any(
            _matches(src, p) for p in FUNCTION_LEVEL_IMPORTERS)

    for (src, dst), where in sorted(graph.edges.items()):
        if exempt(src):
            continue
        for place, in_function in where:
            if in_function and dst not in FUNCTION_LEVEL_ALLOWED:
                flagged.append(f"{place}: {src} imports {dst} inside a "
                               "function (not in FUNCTION_LEVEL_ALLOWED)")
    for src, top, place, in_function in sorted(graph.external,
                                               key=lambda e: e[2]):
        if not in_function or top in OPTIONAL_HEAVY or exempt(src):
            continue
        if top in OPTIONAL_TF and any(_matches(src, p)
                                      for p in OPTIONAL_TF_PACKAGES):
            continue
        flagged.append(f"{place}: {src} imports {top} inside a function "
                       "(not an optional heavy dependency: OPTIONAL_HEAVY)")
    return flagged


def _made_up(sources):
    """A Graph over made-up modules {name: source}; "pkg/" names end "/"."""
    files = {}
    for name in sources:
        if name.endswith("/"):
            files[name[:-1]] = pathlib.Path(name[:-1].replace(".", "/"),
                                            "__init__.py")
        else:
            files[name] = pathlib.Path(name.replace(".", "/") + ".py")
    return Graph(files, {name.rstrip("/"): text
                         for name, text in sources.items()})


def test_graph_sees_the_packages(graph):
    """A sanity check that the parser found modules and edges."""
    assert "kaggle_tf.config" in graph.modules
    assert "tfrecords_tools.convert" in graph.modules
    assert len(graph.edges) > 50


def test_resolution_rules():
    """The edge rules of the module docstring, on made-up modules."""
    g = _made_up({
        "kaggle_tf/": "", "kaggle_tf.config/": "", "kaggle_tf.data/": "",
        "kaggle_tf.config.load": "",
        "kaggle_tf.data.records": "from .tasks import steel\n",
        "kaggle_tf.data.tasks.steel": "",
        "kaggle_tf.data.tasks/": (
            "import kaggle_tf.config.load\n"
            "from kaggle_tf.config import from_dict\n"
            "from kaggle_tf import data\n"
            "from . import steel\n"
            "from ..records import read\n"
            "import numpy as np\n"
            "class A:\n"
            "    def f(self):\n"
            "        from ...config import load\n"),
    })
    src = "kaggle_tf.data.tasks"
    assert {dst for s, dst in g.edges if s == src} == {
        "kaggle_tf.config.load", "kaggle_tf.config", "kaggle_tf.data",
        "kaggle_tf.data.tasks.steel", "kaggle_tf.data.records"}
    # Only explicit statements: no implicit edge to the parent packages.
    assert g.adjacency["kaggle_tf.data.records"] == {
        "kaggle_tf.data.tasks.steel"}
    places = g.edges[(src, "kaggle_tf.config.load")]
    assert [inside for _, inside in places] == [False, True]
    assert [(top, inside) for _, top, _, inside in g.external] == [
        ("numpy", False)]


def test_stage_rules():
    assert stage_of("kaggle_tf.export.__main__") == CLI
    assert stage_of("tfrecords_tools.convert") == CLI
    assert stage_of("tfrecords_tools.readers.csv_table") == 0
    assert stage_of("kaggle_tf.tta") == stage_of("kaggle_tf.inference.tta")
    assert stage_of("kaggle_tf.data.rle") == stage_of("kaggle_tf.data")
    assert stage_of("kaggle_tf") == 0
    assert stage_of("kaggle_tf.unknown") is None


def test_checks_find_made_up_violations():
    """Each check reports a violation planted in made-up modules."""
    g = _made_up({
        "kaggle_tf.data.a": "def f():\n    from kaggle_tf.training import b\n",
        "kaggle_tf.training.b": "from kaggle_tf.data import a\n",
        "kaggle_tf.rle": "",
        "kaggle_tf.metrics.m": "from kaggle_tf import losses\n",
        "kaggle_tf.losses/": "import kaggle_tf.metrics.m\nimport json\n"
                             "def g():\n    import tensorflow\n"
                             "    import torch\n    import json\n",
        "kaggle_tf.postprocess.p": "from kaggle_tf import rle\n",
    })
    cycles = import_cycles(g)
    assert len(cycles) == 2
    assert any("kaggle_tf.data.a -> kaggle_tf.training.b -> "
               "kaggle_tf.data.a" in c for c in cycles)
    stages = stage_violations(g)
    assert len(stages) == 2
    assert "kaggle_tf.data.a (stage 5) imports kaggle_tf.training.b" \
        in stages[0]
    assert "leaf kaggle_tf.metrics imports leaf kaggle_tf.losses" in stages[1]
    assert core_reaching_late_stages(g) == [
        _describe(g, ["kaggle_tf.data.a", "kaggle_tf.training.b"])]
    flagged = function_level_violations(g)
    assert len(flagged) == 2
    assert "kaggle_tf.data.a imports kaggle_tf.training.b inside" in flagged[0]
    assert "kaggle_tf.losses imports json inside" in flagged[1]


def test_no_import_cycles(graph):
    cycles = import_cycles(graph)
    assert not cycles, (
        f"{len(cycles)} import cycle(s) (function-level imports count):\n"
        + "\n".join(cycles))


def test_every_module_has_a_stage(graph):
    missing = sorted(m for m in graph.modules if stage_of(m) is None)
    assert not missing, (
        "modules without a stage: add their package to STAGES in "
        f"tests/test_architecture.py: {missing}")


def test_stage_order(graph):
    violations = stage_violations(graph)
    assert not violations, (
        f"{len(violations)} import(s) against the stage order "
        "(STAGES in tests/test_architecture.py):\n" + "\n".join(violations))


def test_core_packages_never_reach_training_or_inference(graph):
    reached = core_reaching_late_stages(graph)
    assert not reached, (
        f"{', '.join(CORE)} must never import {', '.join(NEVER_FROM_CORE)}"
        f", even transitively; {len(reached)} module(s) do:\n"
        + "\n".join(reached))


def test_function_level_imports(graph):
    flagged = function_level_violations(graph)
    assert not flagged, (
        f"{len(flagged)} function-level import(s); import at module level, "
        "or list an optional heavy dependency in tests/test_architecture.py:"
        "\n" + "\n".join(flagged))
