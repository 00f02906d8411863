"""`check` finds a damaged page, run folders that do not match the runs table, and leftovers, and
repairs only what is safe; `backup` copies one consistent snapshot even while another process writes."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from job_fixtures import CountConfig

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.maintenance import backup_project, check_project
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.runs.records import RunLock, start_run

CLI = Path(sys.executable).with_name("rlhf-workbench")
PAGE = 16_384


@pytest.fixture
def project_path(make_project):
    pairs = [(f"prompt {i} " + "words " * 30, f"yes {i} " + "a" * 200, f"no {i} " + "b" * 200, "tests",
              "ab"[i % 2], "dataset:tests") for i in range(200)]
    return make_project("p", pairs)


def damage_a_page(db: Path, table: str) -> None:
    """Overwrite the start of `table`'s root page (its b-tree header and cell pointers) with
    random bytes, as a bad sector or a torn write would."""
    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    conn.close()
    assert root > 1
    with open(db, "r+b") as f:
        f.seek((root - 1) * PAGE)
        f.write(random.Random(0).randbytes(512))


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_check_finds_nothing_wrong_in_a_sound_project(project_path):
    report = check_project(project_path)
    assert report.ok and report.findings == []
    done = cli("check", project_path)
    assert done.returncode == 0 and "no problems found" in done.stdout


def test_check_finds_a_damaged_page_that_every_other_command_misses(project_path, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(project_path, damaged)
    damage_a_page(damaged / "project.db", "pairs")
    assert cli("stats", damaged).returncode == 0  # what went unnoticed before

    report = check_project(damaged)
    assert not report.ok
    [finding] = report.findings
    assert "is damaged" in finding.what and finding.repair is None and "backup" in finding.advice
    done = cli("check", damaged)
    assert done.returncode == 1 and "is damaged" in done.stdout and "Traceback" not in done.stderr
    with pytest.raises(WorkbenchError, match="is damaged"):
        backup_project(damaged, tmp_path / "copy.db")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".copy")] == []


def test_check_compares_run_folders_with_the_runs_table_and_repairs_only_leftovers(project_path):
    with Project.open(project_path) as project:
        kept = start_run(project, kind="reward", name="kept", config=CountConfig())
        gone = start_run(project, kind="reward", name="gone", config=CountConfig())
    shutil.rmtree(gone.run_dir)
    partial = kept.run_dir / "checkpoints" / ".tmp-step-000002"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"\0" * 1000)
    (kept.run_dir / "checkpoints" / "step-000001").mkdir()
    orphan = project_path / "runs" / "rm-20200101-000000-abcd"
    orphan.mkdir()
    (orphan / "log.txt").write_text("someone's work")
    creating = project_path / ".project.db.creating"
    creating.write_bytes(b"half")

    # While its run executes, a temporary checkpoint folder is work in progress, not a leftover.
    lock = RunLock(kept.run_dir)
    assert lock.acquire()
    try:
        assert not any(".tmp-step" in f.what for f in check_project(project_path).findings)
    finally:
        lock.release()

    report = check_project(project_path)
    whats = sorted(f.what for f in report.findings)
    assert len(whats) == 4, whats
    assert any(f"run {gone.run_id}: its folder" in w and "missing" in w for w in whats)
    assert any(str(orphan) in w and "no run for" in w for w in whats)
    assert all(p.exists() for p in (partial, creating, orphan))  # looking changes nothing

    done = cli("check", project_path, "--repair")
    assert done.returncode == 1  # a missing folder and an orphan are a person's to decide
    assert done.stdout.count("repaired: ") == 2
    assert not partial.exists() and not creating.exists()
    assert orphan.is_dir() and (kept.run_dir / "checkpoints" / "step-000001").is_dir()
    assert len(check_project(project_path).findings) == 2


_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA busy_timeout = 10000")
print("writing", flush=True)
end = time.monotonic() + float(sys.argv[2])
i = 0
while time.monotonic() < end:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO project(key, value) VALUES (?, ?)", (f"k{i}", "x" * 2000))
    conn.execute("INSERT INTO project(key, value) VALUES (?, ?)", (f"m{i}", "y" * 2000))
    conn.execute("COMMIT")
    i += 1
print(i)
"""


def test_a_backup_taken_while_another_process_writes_is_a_consistent_project(project_path, tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(project_path / "project.db"), "2"],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    target = backup_project(project_path, tmp_path)  # a folder: a dated file in it
    assert writer.wait(10) == 0
    assert target.parent == tmp_path and target.name.startswith("p-") and target.suffix == ".db"
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())

    restored = tmp_path / "restored"
    restored.mkdir()
    os.replace(target, restored / "project.db")
    with Project.open(restored) as project:
        assert project.store.counts()["pairs"] == 200
        conn = project.store.conn
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # One snapshot: each of the writer's transactions is in it whole or not at all.
        keys = {k for (k,) in conn.execute("SELECT key FROM project WHERE key GLOB 'k*' OR key GLOB 'm*'")}
        ks = {k[1:] for k in keys if k.startswith("k")}
        assert ks and ks == {k[1:] for k in keys if k.startswith("m")}
    assert check_project(restored).ok

    with pytest.raises(WorkbenchError, match="already exists"):
        backup_project(project_path, restored / "project.db")
    done = cli("backup", project_path, tmp_path / "named.db")
    assert done.returncode == 0 and (tmp_path / "named.db").is_file() and "not included" in done.stdout
