"""The import direction of docs/ARCHITECTURE.md, read from the source: every ``import`` (at the
top of a module or inside a function) goes down the layers or stays in its own package, and no
library module imports a command-line module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("common", "edge_runtime", "deploy", "train", "export", "benchmarks", "tune")
"""Bottom first: a package may import its own modules and those of the packages before it."""


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every absolute import in a file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
            # `from package import module` names modules too
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(package: str, root: Path = ROOT) -> list[str]:
    level = LAYERS.index(package)
    found = []
    for path in sorted((root / package).rglob("*.py")):
        is_cli = path.name == "cli.py"
        for line, name in imported_modules(path):
            top, _, rest = name.partition(".")
            where = f"{path.relative_to(root)}:{line} imports {name}"
            upward = f"{path.relative_to(root)}:{line} imports {top}."
            if top in LAYERS and LAYERS.index(top) > level and not any(
                    f.startswith(upward) for f in found):
                found.append(f"{where} (a higher layer)")
            if not is_cli and top in LAYERS and (rest == "cli" or rest.startswith("cli.")):
                found.append(f"{where} (a command-line module)")
    return found


@pytest.mark.parametrize("package", [p for p in LAYERS if (ROOT / p).is_dir()])
def test_imports_go_down_the_layers(package):
    assert violations(package) == []


def test_the_check_sees_an_upward_import_inside_a_function_and_a_cli_import(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "plumbing.py").write_text(
        "import os\n\ndef load():\n    from train.splits import Splits\n    return Splits\n")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "table.py").write_text("from edge_runtime import cli\n")
    assert violations("common", tmp_path) == [
        "common/plumbing.py:4 imports train.splits (a higher layer)"]
    assert violations("export", tmp_path) == [
        "export/table.py:1 imports edge_runtime.cli (a command-line module)"]


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """Groups of modules that import one another, directly or round about (imports inside
    functions too): each a cycle to break, e.g. by importing from where a name is defined."""
    modules = {}
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {name: {target for _, target in imported_modules(path)
                    if target in modules and target != name}
             for name, path in modules.items()}
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles():
    assert import_cycles() == []


def test_the_cycle_check_sees_a_cycle_through_a_function_import(tmp_path):
    (tmp_path / "tune").mkdir()
    (tmp_path / "tune" / "report.py").write_text("def f():\n    from tune.search import R\n")
    (tmp_path / "tune" / "search.py").write_text("from tune import report\n")
    (tmp_path / "tune" / "select.py").write_text("import tune.report\n")
    assert import_cycles(tmp_path) == [["tune.report", "tune.search"]]
