"""`rlhf-workbench --selftest` from source: the path the frozen app runs, kept working by make test.

The frozen app's own run is in test_packaging.py (marked `packaging`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_workbench.core import selftest


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, RLHF_WORKBENCH_HOME=str(tmp_path / "home"), QT_QPA_PLATFORM="offscreen")
    env.pop("DISPLAY", None)  # headless means headless
    return env


@pytest.mark.slow
def test_selftest_command_passes_and_prints_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "rlhf_workbench.app.main", "--selftest", "--selftest-steps", "4"],
        capture_output=True, text=True, env=_env(tmp_path), timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith("selftest ok: rlhf-workbench ")
    for part in ("demo project", "imported", "trained the demo reward model 4 steps in a child process",
                 "scored a text", "window drawn"):
        assert part in lines[0]
    # The person's data folder is never touched: everything happened in a temporary one.
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())


def test_a_failing_step_exits_non_zero_naming_the_step(tmp_path, monkeypatch, capsys):
    def broken_import(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr("rlhf_workbench.core.importing.import_file", broken_import)
    parser = __import__("argparse").ArgumentParser()
    selftest.add_arguments(parser)
    args = parser.parse_args([])
    assert selftest.run_and_report(args) == 1
    err = capsys.readouterr().err
    assert "selftest FAILED at import: OSError: disk on fire" in err


def test_selftest_leaves_the_environment_as_it_found_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_HOME", str(tmp_path / "mine"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("rlhf_workbench.core.selftest._steps", lambda *a: None)
    work = tmp_path / "work"
    selftest.run_selftest(workdir=work)
    assert os.environ["RLHF_WORKBENCH_HOME"] == str(tmp_path / "mine")
    assert "HF_HUB_OFFLINE" not in os.environ
    assert not work.exists()
