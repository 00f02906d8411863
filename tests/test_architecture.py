"""The core is headless: checked statically (import-linter) and at run time."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


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
