"""The import direction of docs/ARCHITECTURE.md, read from the source: every ``import`` (at the
top of a module or inside a function) goes down the layers or stays on its own floor, between
packages and inside them; no library module imports a command module; no module imports
another module's private (``_name``) names; and no modules import one another in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS_OF_PACKAGES = (("common",), ("edge_runtime",), ("deploy", "train"), ("export",),
                      ("benchmarks",), ("tune",))
"""Bottom first: a package may import its own modules and those of the packages on the floors
below it; ``deploy`` sits beside ``train`` (it needs only the runtime), so neither imports the
other."""
LAYERS = tuple(package for floor in FLOORS_OF_PACKAGES for package in floor)
LEVEL = {package: level for level, floor in enumerate(FLOORS_OF_PACKAGES) for package in floor}

FLOORS = {
    "edge_runtime": (("", "tflite_metadata_schema"), ("sources",), ("capture",), ("live",),
                     ("stream",), ("commands",)),
}
"""Inside a package, bottom first: the floors of its subpackages ("": its top-level modules,
the model itself). A module may import its own floor and those below; every subpackage is on
one floor (a new folder has to be placed here)."""


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


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name → file, for every module of the layered packages."""
    return {module_name(path, root): path for package in LAYERS
            for path in sorted((root / package).rglob("*.py"))}


def command_modules(root: Path = ROOT) -> set[str]:
    """The modules that are commands: every ``cli.py`` and ``*_cli.py``, and each module of a
    ``commands`` folder that has a ``main`` (its other modules are pieces the commands share)."""
    found = set()
    for name, path in source_modules(root).items():
        last = name.rsplit(".", 1)[-1]
        if last == "cli" or last.endswith("_cli"):
            found.add(name)
        elif ".commands." in f".{name}" and any(
                isinstance(node, ast.FunctionDef) and node.name == "main"
                for node in ast.parse(path.read_text(encoding="utf-8")).body):
            found.add(name)
    return found


def _floor(package: str, path: Path, root: Path) -> int | None:
    """The floor of a module of ``package`` (None: the package has no floors)."""
    floors = FLOORS.get(package)
    if floors is None:
        return None
    parts = path.relative_to(root).parts
    sub = parts[1] if len(parts) > 2 else ""  # package/module.py: a top-level module
    for level, members in enumerate(floors):
        if sub in members:
            return level
    raise AssertionError(f"{path}: {package}/{sub}/ is on no floor of FLOORS[{package!r}]")


def private_names(path: Path, modules: set[str]) -> list[tuple[int, str]]:
    """``(line, module._name)`` for each private name of another module used in a file:
    ``from module import _name``, or ``alias._name`` on an imported module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bound: dict[str, str] = {}  # local name → the project module it stands for
    found = []

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    bound[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif node.module in modules and private(alias.name):
                    found.append((node.lineno, f"{node.module}.{alias.name}"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in bound):
            found.append((node.lineno, f"{bound[node.value.id]}.{node.attr}"))
    return sorted(found)


def violations(package: str, root: Path = ROOT) -> list[str]:
    level = LEVEL[package]
    modules = source_modules(root)
    commands = command_modules(root)
    found = []
    for name, path in modules.items():
        if name.split(".")[0] != package:
            continue
        floor = _floor(package, path, root)
        imports = imported_modules(path)
        for line, target in imports:
            top = target.split(".")[0]
            where = f"{path.relative_to(root)}:{line} imports {target}"
            upward = f"{path.relative_to(root)}:{line} imports {top}."
            if top in LEVEL and top != package and LEVEL[top] >= level and not any(
                    f.startswith(upward) for f in found):
                found.append(f"{where} (a higher layer)" if LEVEL[top] > level
                             else f"{where} (a package beside it)")
            if target not in modules or target == name or any(
                    other.startswith(f"{target}.") and other in modules
                    for at, other in imports if at == line):
                continue  # `from package import module`: the module is the one to judge
            if top == package and floor is not None and _floor(
                    package, modules[target], root) > floor:
                found.append(f"{where} (a higher floor of {package})")
            if target in commands:
                found.append(f"{where} (a command-line module)")
        for line, private in private_names(path, set(modules) - {name}):
            found.append(f"{path.relative_to(root)}:{line} uses {private} (another module's "
                         "private name)")
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
    (tmp_path / "edge_runtime").mkdir()
    (tmp_path / "edge_runtime" / "cli.py").write_text("def main():\n    pass\n")
    assert violations("common", tmp_path) == [
        "common/plumbing.py:4 imports train.splits (a higher layer)"]
    assert violations("export", tmp_path) == [
        "export/table.py:1 imports edge_runtime.cli (a command-line module)"]
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "push.py").write_text("from deploy.store import activate\n")
    assert violations("train", tmp_path) == [
        "train/push.py:1 imports deploy.store (a package beside it)"]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_check_sees_an_import_up_the_floors_inside_a_package(tmp_path):
    _tree(tmp_path, {
        "edge_runtime/__init__.py": "",
        "edge_runtime/classifier.py": "def f():\n    from edge_runtime.stream.loop import g\n",
        "edge_runtime/sources/__init__.py": "",
        "edge_runtime/sources/camera.py": "from edge_runtime.stream import loop\n",
        "edge_runtime/stream/__init__.py": "",
        "edge_runtime/stream/loop.py": "from edge_runtime.sources import camera\n"
                                       "from edge_runtime import classifier\n",
    })
    assert violations("edge_runtime", tmp_path) == [
        "edge_runtime/classifier.py:2 imports edge_runtime.stream.loop (a higher floor of "
        "edge_runtime)",
        "edge_runtime/sources/camera.py:1 imports edge_runtime.stream.loop (a higher floor of "
        "edge_runtime)"]
    (tmp_path / "edge_runtime" / "newfolder").mkdir()
    (tmp_path / "edge_runtime" / "newfolder" / "x.py").write_text("")
    with pytest.raises(AssertionError, match="newfolder/ is on no floor"):
        violations("edge_runtime", tmp_path)


def test_the_check_sees_a_library_importing_a_command_module(tmp_path):
    _tree(tmp_path, {
        "edge_runtime/commands/x.py": "def main():\n    pass\n",
        "edge_runtime/commands/y.py": "def main():\n    pass\n",
        "edge_runtime/commands/flags.py": "def size():\n    pass\n",
        "edge_runtime/stream/run.py": "from edge_runtime.commands.x import main\n",
        "edge_runtime/commands/z.py": "from edge_runtime.commands import flags, y\n"
                                      "def main():\n    pass\n",
        "deploy/model_cli.py": "def main():\n    pass\n",
        "deploy/store.py": "import deploy.model_cli\n",
    })
    assert command_modules(tmp_path) == {"edge_runtime.commands.x", "edge_runtime.commands.y",
                                         "edge_runtime.commands.z", "deploy.model_cli"}
    assert violations("edge_runtime", tmp_path) == [
        "edge_runtime/commands/z.py:1 imports edge_runtime.commands.y (a command-line module)",
        "edge_runtime/stream/run.py:1 imports edge_runtime.commands.x (a higher floor of "
        "edge_runtime)",
        "edge_runtime/stream/run.py:1 imports edge_runtime.commands.x (a command-line module)"]
    assert violations("deploy", tmp_path) == [
        "deploy/store.py:1 imports deploy.model_cli (a command-line module)"]


def test_the_check_sees_another_module_s_private_names(tmp_path):
    _tree(tmp_path, {
        "edge_runtime/commands/flags.py": "def _size():\n    pass\n",
        "edge_runtime/commands/capture.py": "from edge_runtime.commands import flags\n"
                                            "x = flags._size\n",
        "edge_runtime/commands/other.py": "from edge_runtime.commands.flags import _size\n"
                                          "import edge_runtime.commands.flags as f\n"
                                          "y = f._size, f.__name__\n",
        "edge_runtime/commands/mine.py": "def _own():\n    pass\n\nz = _own\n",
    })
    assert violations("edge_runtime", tmp_path) == [
        "edge_runtime/commands/capture.py:2 uses edge_runtime.commands.flags._size (another "
        "module's private name)",
        "edge_runtime/commands/other.py:1 uses edge_runtime.commands.flags._size (another "
        "module's private name)",
        "edge_runtime/commands/other.py:3 uses edge_runtime.commands.flags._size (another "
        "module's private name)"]


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """Groups of modules that import one another, directly or round about (imports inside
    functions too): each a cycle to break, e.g. by importing from where a name is defined."""
    modules = source_modules(root)
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


def test_every_console_script_is_a_command_module():
    """What nothing may import is at least what pyproject.toml installs as a command."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    commands = command_modules()
    assert {target.split(":")[0] for target in scripts.values()} <= commands
    assert "edge_runtime.commands.camera_flags" not in commands  # a piece both commands use


def test_test_modules_collected_without_tensorflow_import_without_it():
    """Where TensorFlow is missing (a Pi: pi-check runs ``pytest -m edge`` there) every test
    module outside conftest's ``KERAS_AT_IMPORT`` is still collected, so none may import
    TensorFlow or Keras at its top, directly or through what it imports."""
    import subprocess
    import sys

    from tests.conftest import KERAS_AT_IMPORT

    names = sorted(p.stem for p in (ROOT / "tests").glob("test_*.py")
                   if p.name not in KERAS_AT_IMPORT)
    script = (
        "import importlib, sys\n"
        "sys.modules.update(tensorflow=None, keras=None)\n"  # importing either raises
        "bad = []\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        importlib.import_module('tests.' + name)\n"
        "    except ImportError as exc:\n"
        "        bad.append(f'{name}: {exc}')\n"
        "print('\\n'.join(bad))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", "add to KERAS_AT_IMPORT or import lazily:\n" + done.stdout
