"""The modules of `kaggle_tf.models` import each other without a cycle.

Read with `ast`, not by importing: every import statement counts as an
edge, also one inside a function (a cycle hidden there is still a cycle),
and so does `importlib.import_module("kaggle_tf.models....")`. `from P
import x` is an edge to the module `P.x` when `x` is a submodule of `P`,
else to `P`. The implicit import of a module's parent packages is not an
edge.
"""

import ast
import os

PACKAGE = "kaggle_tf.models"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
FOLDER = os.path.join(ROOT, *PACKAGE.split("."))
# The only imports allowed inside functions: optional heavy dependencies.
# huggingface_hub reads HF_HUB_OFFLINE / HF_HUB_CACHE when imported: only
# on a download, so that setting them after `import kaggle_tf` still works.
# jax: the JAX backend's custom gradients, only when Keras runs on JAX.
OPTIONAL = ("torch", "safetensors", "albumentations", "matplotlib",
            "huggingface_hub", "jax")


def modules():
    """`{module name: (path, is_package)}` for every file of the package."""
    found = {}
    for folder, _, files in os.walk(FOLDER):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found[".".join(parts)] = (path, is_package)
    return found


def _absolute(module, is_package, node):
    """The absolute module name of an `ImportFrom` (relative ones too)."""
    if not node.level:
        return node.module
    base = module.split(".")
    base = base[:len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module, path, is_package, known):
    """`[(imported module, lineno, inside a function)]` of one file."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append((alias.name, child.lineno, nested))
            elif isinstance(child, ast.ImportFrom):
                source = _absolute(module, is_package, child)
                for alias in child.names:
                    target = f"{source}.{alias.name}"
                    found.append((target if target in known else source,
                                  child.lineno, nested))
            elif (isinstance(child, ast.Call)
                  and isinstance(child.func, ast.Attribute)
                  and child.func.attr == "import_module"
                  and child.args and isinstance(child.args[0], ast.Constant)
                  and isinstance(child.args[0].value, str)):
                found.append((child.args[0].value, child.lineno, True))
            visit(child, nested)

    visit(tree, False)
    return found


def graph():
    known = modules()
    edges = {}
    for module, (path, is_package) in known.items():
        edges[module] = sorted({
            target for target, _, _ in imports(module, path, is_package,
                                               known)
            if target in known and target != module})
    return edges


def find_cycle(edges):
    """One cycle `[a, b, ..., a]` of the directed graph, or None."""
    state = {}
    stack = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in edges.get(node, ()):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == [
        "a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


def test_submodule_imports_resolve_to_the_submodule():
    edges = graph()
    registry = f"{PACKAGE}.encoders.registry"
    assert registry in edges[f"{PACKAGE}.encoders.resnet"]
    assert f"{PACKAGE}.encoders" not in edges[f"{PACKAGE}.encoders.resnet"]
    assert f"{PACKAGE}.torch_layout" in edges[f"{PACKAGE}.weights"]


def test_no_import_cycle_among_model_modules():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_function_level_imports_are_optional_dependencies_only():
    known = modules()
    bad = []
    for module, (path, is_package) in sorted(known.items()):
        for target, lineno, nested in imports(module, path, is_package,
                                              known):
            if nested and target.split(".")[0] not in OPTIONAL:
                bad.append(f"{os.path.relpath(path, ROOT)}:{lineno} "
                           f"imports {target}")
    assert not bad, "\n".join(bad)


def test_torch_layout_needs_only_numpy_and_keras():
    known = modules()
    path, is_package = known[f"{PACKAGE}.torch_layout"]
    roots = {target.split(".")[0]
             for target, _, _ in imports(f"{PACKAGE}.torch_layout", path,
                                         is_package, known)}
    assert roots <= {"math", "numpy", "keras"}, roots
