"""The layers hold: the pure core imports nothing that touches the machine, and one edge reads the environment."""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

import pytest

import gpunuma

SRC = Path(gpunuma.__file__).parent
#: Modules whose import means I/O, the environment, the interpreter's state or foreign code.
MACHINE_MODULES = {"os", "sys", "ctypes", "subprocess", "pathlib", "shutil", "socket", "io", "glob", "tempfile"}
#: Where ``os.environ`` may be read: the settings edge (and the launch code that hands env to children).
ENVIRONMENT_EDGE = {"settings.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_core_logs_nothing():
    # It returns its reasons (a truncated CUDA_VISIBLE_DEVICES, a mixed device order); the entry points log them.
    loggers = sorted(
        str(path.relative_to(SRC)) for path in (SRC / "core").rglob("*.py")
        if "logging" in _run_time_imports(path)
    )
    assert loggers == []


def test_the_core_imports_nothing_that_touches_the_machine():
    offenders = {
        str(path.relative_to(SRC)): sorted(_imports(path) & MACHINE_MODULES) for path in (SRC / "core").rglob("*.py")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_core_imports_no_adapter_and_no_entry_point():
    outward = ("gpunuma.adapters", "gpunuma.api", "gpunuma.tools", "gpunuma.compose", "gpunuma.settings",
               "gpunuma.launch", "gpunuma.integrations", "gpunuma_fakes")
    offenders = []
    for path in (SRC / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(outward):
                offenders.append(f"{path.relative_to(SRC)}: {node.module}")
    assert offenders == []


def _reads_environment(path: Path) -> bool:
    """``os.environ``/``os.getenv``/``os.environb`` in code (docstrings may mention them)."""
    return any(
        isinstance(node, ast.Attribute) and node.attr in {"environ", "environb", "getenv"}
        and isinstance(node.value, ast.Name) and node.value.id == "os"
        for node in ast.walk(ast.parse(path.read_text()))
    )


def test_only_the_settings_edge_reads_the_environment():
    readers = {str(path.relative_to(SRC)) for path in SRC.rglob("*.py") if _reads_environment(path)}
    assert readers <= ENVIRONMENT_EDGE, sorted(readers)


def test_production_code_never_imports_the_fakes():
    importers = sorted(str(path.relative_to(SRC)) for path in SRC.rglob("*.py") if "gpunuma_fakes" in _imports(path))
    assert importers == []  # --simulate reaches them through gpunuma.registry, by name


ENTRY_POINTS = (
    "api.py", "launch.py", "integrations/ray.py",
    "tools/cli.py", "tools/check.py", "tools/launch.py", "tools/verify.py", "tools/fleet.py",
)


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_entry_points_reach_adapters_only_through_the_composition_root(module):
    tree = ast.parse((SRC / module).read_text())
    reached = sorted(
        node.module for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gpunuma.adapters")
    )
    assert reached == []


def test_only_the_tools_import_the_tools():
    # ``python -m gpunuma`` is the command itself; the package's imports for type checkers run for them alone.
    importers = sorted(
        str(path.relative_to(SRC)) for path in SRC.rglob("*.py")
        if path.parent.name != "tools" and path.name != "__main__.py"
        and any(name.startswith("gpunuma.tools") for name in _run_time_imports(path))
    )
    assert importers == []


def _run_time_imports(path: Path) -> set[str]:
    """Every module ``path`` imports when it runs, by full name; imports for type checkers only are left out."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update({node.module, *(f"{node.module}.{alias.name}" for alias in node.names)})
    return names


FAKES = Path(__file__).resolve().parents[1] / "fakes" / "gpunuma_fakes"


def _module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``root``."""
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imports_among(path: Path, known: Collection[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports when it runs, at its top or inside a function (a lazy import
    closes a circle as surely when it runs); imports for type checkers only (``if TYPE_CHECKING:``) are left out."""
    found: set[str] = set()
    for name in _run_time_imports(path):
        module, _, attribute = name.rpartition(".")
        if name in known:
            found.add(name)
        elif attribute and module in known:  # ``from package import name``, name not a module
            found.add(module)
    return found


def import_cycles(*roots: Path) -> list[list[str]]:
    """Every circle of imports among the packages at ``roots``, each as its modules in order."""
    modules: dict[str, Path] = {}
    for root in roots:
        modules.update(_module_names(root))
    graph = {name: sorted(_imports_among(path, modules) - {name}) for name, path in modules.items()}
    cycles: list[list[str]] = []
    done: set[str] = set()

    def walk(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = trail[trail.index(name):]
            start = cycle.index(min(cycle))
            cycle = cycle[start:] + cycle[:start]
            if cycle not in cycles:
                cycles.append(cycle)
            return
        if name in done:
            return
        for target in graph[name]:
            walk(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        walk(name, [])
    return cycles


def test_no_module_imports_itself_through_others():
    assert import_cycles(SRC, FAKES) == []


def test_the_circle_check_finds_a_circle(tmp_path):
    package = tmp_path / "loop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from loop.b import B\n\ndef f():\n    from loop.c import C\n")
    (package / "b.py").write_text("import loop.a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from loop.a import f\n")
    (package / "d.py").write_text("def g():\n    from loop.e import E\n")  # a lazy import closes a circle too
    (package / "e.py").write_text("from loop import d\n")
    assert import_cycles(package) == [["loop.a", "loop.b"], ["loop.d", "loop.e"]]
