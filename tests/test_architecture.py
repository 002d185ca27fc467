"""The layering of docs/architecture.md: imports point one way, no cycles, short functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_selfdeblur"

#: Layer of each top-level module or subpackage: a module may import only its own layer and below.
LAYERS = {
    "errors": 0,
    "config": 0,
    "provenance": 0,
    "fileio": 0,
    "plan": 0,
    "imaging": 1,
    "engine": 2,
    "nonblind": 3,
    "api": 4,
    "evaluation": 5,
    "batch": 5,
    "_napari": 6,
    "cli": 6,
    "__init__": 6,
}
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name or "__init__"] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Package-internal modules that ``name`` imports, at module level or inside functions."""
    is_pkg = path.name == "__init__.py"
    package = name.split(".") if is_pkg else name.split(".")[:-1]
    if name == "__init__":
        package = []
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.startswith("napari_selfdeblur"):
                mod = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:  # "from . import x" may name a submodule
                found.add(".".join([*mod, alias.name]))
            found.add(".".join(mod))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("napari_selfdeblur."):
                    found.add(alias.name.split(".", 1)[1])
    modules = _modules()
    return {m for m in found if m in modules and m != name} | (
        {"__init__"} if "" in found and name != "__init__" else set()
    )


def _graph() -> dict[str, set[str]]:
    return {name: _imports(name, path) for name, path in _modules().items()}


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def test_every_module_has_a_layer():
    assert all(m.split(".")[0] in LAYERS for m in _modules())


def test_imports_point_down_the_layers():
    wrong = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, deps in _graph().items()
        for b in deps
        if _layer(b) > _layer(a)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = _graph()
    # The package __init__ is only ever imported for its lazy names; subpackage __init__ files
    # that list their submodules are part of their subpackage. Edges into "__init__" are ignored.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node] - {"__init__"}):
            # A submodule importing its own package's __init__ (the registry) is not a cycle
            # unless the __init__ imports it back, which the walk finds.
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_imports_private_names_of_another():
    bad = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (
                node.level or "napari_selfdeblur" in (node.module or "")
            ):
                bad += [f"{name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not bad, bad


def test_functions_are_short():
    """No function is longer than MAX_FUNCTION_LINES, not counting its docstring."""
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                body = node.body
                if (
                    body
                    and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                ):
                    n -= body[0].end_lineno - body[0].lineno + 1  # the docstring does not count
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, long


@pytest.mark.parametrize("subpackage", ["engine", "nonblind", "imaging"])
def test_core_layers_load_no_gui(subpackage):
    pkg = f"napari_selfdeblur.{subpackage}"
    mods = [f"{pkg}." + p.stem for p in (SRC / subpackage).glob("*.py") if p.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "gui = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'magicgui', "
        "'PyQt5', 'PySide2', 'PyQt6', 'PySide6'))\n"
        "assert not gui, gui\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docs_module_map_lists_every_module():
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    missing = [
        name
        for name, path in _modules().items()
        if path.stem != "__init__" or "." in name
        if f"`{name.replace('.', '/')}" not in doc
        and f"`{path.stem}`" not in doc
        and f", `{path.stem}`" not in doc
    ]
    assert not missing, f"docs/architecture.md does not describe {missing}"
