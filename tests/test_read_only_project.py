"""A project that cannot be written (a read-only mount, a shared folder): it opens for reading,
`stats`, `export` and `runs` work, and every change is refused in one line naming the project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_workbench.core.errors import ReadOnlyProject
from rlhf_workbench.core.labeling import LabelSession
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.runs.records import start_run

CLI = Path(sys.executable).with_name("rlhf-workbench")


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_reading_commands_work_on_a_read_only_project(read_only_project, tmp_path):
    stats = cli("stats", read_only_project, "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["counts"]["pairs"] == 4
    out = tmp_path / "out.jsonl"
    export = cli("export", read_only_project, out, "--format", "pairs")
    assert export.returncode == 0, export.stderr
    assert len(out.read_text().splitlines()) == 4
    runs = cli("runs", read_only_project)
    assert runs.returncode == 0, runs.stderr


def test_changes_to_a_read_only_project_are_refused_in_one_line(read_only_project, tmp_path):
    data = tmp_path / "more.jsonl"
    data.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    for command in (["import", read_only_project, data, "-q"], ["train-rm", read_only_project, "--set", "max_steps=1"]):
        done = cli(*command)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert f"{read_only_project}: the project is read-only" in done.stderr

    with Project.open(read_only_project) as project:
        assert project.read_only
        session = LabelSession(project.store, "ada")
        session.next()
        with pytest.raises(ReadOnlyProject):
            session.judge("left")
        with pytest.raises(ReadOnlyProject):
            start_run(project, kind="reward", name="x", config=None)
        assert project.store.counts()["judgments"] == 2
