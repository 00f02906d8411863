"""The architecture, checked: the layers and the headless core (the import-linter contracts in
pyproject.toml), no import cycles between modules, and what importing the core loads at run time."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def import_cycles(graph, modules) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan's strongly
    connected components), imports inside functions included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_itself_round_a_loop():
    import grimp

    graph = grimp.build_graph("rlhf_workbench.core", "rlhf_workbench.app")
    modules = set(graph.modules)
    assert len(modules) > 100
    assert import_cycles(graph, modules) == []


def test_the_cycle_finder_finds_a_cycle():
    class Graph:
        imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

        def find_modules_directly_imported_by(self, module):
            return set(self.imports[module])

    assert import_cycles(Graph(), {"a", "b", "c", "d"}) == [["a", "b", "c"]]


@pytest.mark.slow
def test_importing_every_core_module_loads_no_qt():
    code = (
        "import importlib, pkgutil, sys\n"
        "import rlhf_workbench.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'rlhf_workbench.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph') or n.startswith('rlhf_workbench.app'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_opening_the_store_does_not_import_pandas_and_pandas_still_imports_after():
    """sqlite-utils would import pandas (0.3 s of every process's start) whenever it is installed."""
    pytest.importorskip("pandas")
    code = (
        "import sys\n"
        "import rlhf_workbench.core.store\n"
        "assert 'pandas' not in sys.modules, 'the store imported pandas'\n"
        "import pandas\n"
        "print(pandas.DataFrame({'a': [1, 2]}).shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 1)"
