"""The shape of the code: no import cycles between our modules, small modules, light layers."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cli", "client", "proto", "runner", "scheduler", "simpletvm")
GENERATED = ("_pb2.py", "_pb2_grpc.py")
MAX_LINES = 500


def _sources() -> dict[str, Path]:
    """Module name -> file of every project module (generated code excluded)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name.endswith(GENERATED):
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Modules imported when `module` is imported: statements at module level (also inside
    top-level if/try blocks, except `if TYPE_CHECKING:`), not those inside functions."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")
                    parent = parent[:len(parent) - (node.level - 1)]
                    base = ".".join([*parent, base] if base else parent)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports at import time. Importing `a.b.c` also runs
    `a` and `a.b`; a module's own parent packages are always running already, so they are no
    edge (a package's __init__ re-exporting its submodules is not a cycle)."""
    sources = _sources()
    graph: dict[str, set[str]] = {}
    for module, path in sources.items():
        imported = _top_level_imports(ast.parse(path.read_text()), module,
                                      path.name == "__init__.py")
        edges = set()
        for name in imported:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                own_parent = module.startswith(prefix + ".")
                if prefix in sources and prefix != module and not own_parent:
                    edges.add(prefix)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles_between_project_modules() -> None:
    graph = import_graph()
    assert len(graph) > 80 and graph["scheduler.service.daemon"], "the graph was not built"
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("from . import x\nif TYPE_CHECKING:\n    import y\ndef f():\n    import z\n")
    assert _top_level_imports(tree, "p.m", False) == {"p", "p.x"}


def test_no_module_is_over_500_lines() -> None:
    long = {m: n for m, path in _sources().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def _loaded_after(statement: str) -> set[str]:
    code = f"{statement}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return {name.split(".")[0] for name in json.loads(out.stdout)}


@pytest.mark.parametrize("module", ["simpletvm.spec", "scheduler.core",
                                    "scheduler.service.daemon", "proto.jobspec"])
def test_the_spec_and_the_daemon_import_no_numpy_onnx_or_tvm(module: str) -> None:
    """The daemon validates submissions without TVM or building zoo models: the spec, the
    core and the daemon load none of the heavy libraries (onnx only for an uploaded model)."""
    assert not _loaded_after(f"import {module}") & {"numpy", "onnx", "tvm", "tvm_ffi"}
