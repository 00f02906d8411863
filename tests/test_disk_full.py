"""A disk that fills: every command says "the disk is full (N free on DISK)" in one line, leaves no
half-made file behind, and loses nothing it had acknowledged. On a real small disk (a 4 MB tmpfs,
which needs root and mount rights: skipped without them), and through a file-size limit
(RLIMIT_FSIZE, EFBIG) in a child process, which needs neither."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from job_fixtures import BigCheckpointConfig

from rlhf_workbench.core.errors import DiskFull
from rlhf_workbench.core.events import Failed
from rlhf_workbench.core.labeling import LabelSession
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.runs.work import Work, execute

CLI = Path(sys.executable).with_name("rlhf-workbench")


def _mount_small_disk(where: Path, size: str) -> str | None:
    """Mounts a tmpfs of `size` at `where`; the reason it cannot, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a small disk needs root"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
    return None if done.returncode == 0 else f"cannot mount a tmpfs here: {done.stderr.strip()}"


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    reason = _mount_small_disk(disk, "4m")
    if reason:
        pytest.skip(reason)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk with one file, then give back `leave` bytes of it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    written = filler.stat().st_size
    try:
        while True:
            written += os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    os.ftruncate(fd, max(written - leave, 0))
    os.close(fd)
    return filler


def cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=120, **kwargs)


def assert_one_line_disk_full(done: subprocess.CompletedProcess, disk: Path) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "cannot rollback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "the disk is full (" in done.stderr and f"free on {disk})" in done.stderr


@pytest.fixture
def project_on_small_disk(small_disk, make_project):
    pairs = [(f"prompt {i}", f"yes {i}", f"no {i}", "tests", None, None) for i in range(6)]
    path = small_disk / "p"
    shutil.copytree(make_project("p", pairs), path)
    with Project.open(path) as project:
        session = LabelSession(project.store, "ada")
        session.next()
        session.judge("left")  # acknowledged: must survive whatever follows
    return path


def ada_verdicts(path: Path) -> int:
    with Project.open(path) as project:
        return project.store.conn.execute("SELECT count(*) FROM judgments WHERE annotator = 'ada'").fetchone()[0]


def test_init_and_demo_on_a_full_disk_say_so_in_one_line_and_leave_nothing(small_disk):
    fill(small_disk)
    for command in (["init", small_disk / "new"], ["demo", small_disk / "demo"]):
        assert_one_line_disk_full(cli(*command), small_disk)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no .project.db.creating*


def test_a_project_on_a_full_disk_can_be_read_and_refuses_changes_in_one_line(project_on_small_disk, small_disk):
    filler = fill(small_disk)
    stats = cli("stats", project_on_small_disk, "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["counts"]["pairs"] == 6
    assert_one_line_disk_full(cli("train-rm", project_on_small_disk, "--set", "max_steps=1"), small_disk)
    assert_one_line_disk_full(cli("export", project_on_small_disk, small_disk / "out.jsonl", "--format", "pairs"), small_disk)
    with Project.open(project_on_small_disk) as project:
        session = LabelSession(project.store, "ada")
        session.next()
        with pytest.raises(DiskFull, match=r"the disk is full \("):
            session.judge("left")
    assert not (small_disk / "out.jsonl").exists() or (small_disk / "out.jsonl").stat().st_size == 0
    filler.unlink()
    assert ada_verdicts(project_on_small_disk) == 1  # what was acknowledged is there
    with Project.open(project_on_small_disk) as project:  # and with room again, all is as before
        session = LabelSession(project.store, "ada")
        session.next()
        session.judge("right")
    assert ada_verdicts(project_on_small_disk) == 2


def test_an_import_that_fills_the_disk_says_so_and_keeps_nothing(project_on_small_disk, small_disk, tmp_path):
    data = tmp_path / "many.jsonl"
    with open(data, "w") as f:
        for i in range(5000):
            f.write(json.dumps({"prompt": f"q {i} " + "x" * 200, "chosen": f"good {i} " + "y" * 300,
                                "rejected": f"bad {i} " + "z" * 300}) + "\n")
    fill(small_disk, leave=600_000)
    assert_one_line_disk_full(cli("import", project_on_small_disk, data, "-q"), small_disk)
    stats = cli("stats", project_on_small_disk, "--json")
    assert stats.returncode == 0 and json.loads(stats.stdout)["counts"]["pairs"] == 6
    assert ada_verdicts(project_on_small_disk) == 1


def test_a_checkpoint_that_fills_the_disk_is_removed_and_the_run_fails_saying_so(project_on_small_disk, small_disk):
    with Project.open(project_on_small_disk) as project:
        ctx = start_run(project, kind="reward", name="big", config=BigCheckpointConfig())
        result = execute(Work.job("job_fixtures:big_checkpoints", BigCheckpointConfig(), ctx), lambda e: None, lambda: False)
        assert isinstance(result, Failed)
        assert "the disk is full (" in result.message and "bug" not in (result.hint or "")
        assert "resumed" in result.hint
        checkpoints = ctx.run_dir / "checkpoints"
        assert sorted(p.name for p in checkpoints.iterdir()) == ["last", "step-000001"]  # no .tmp-step-*
        assert [c["step"] for c in project.store.checkpoints(ctx.run_id)] == [1]
        assert project.store.run(ctx.run_id)["status"] == "failed"


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_file_size_limit_in_a_checkpoint_is_said_so_and_leaves_no_partial_folder(tmp_path):
    # No mount needed: a child process whose files may not pass 1 MB writes a 50 MB checkpoint.
    with Project.create(tmp_path / "p") as project:
        ctx = start_run(project, kind="reward", name="limited", config=BigCheckpointConfig())
    script = (
        "import sys\n"
        "from job_fixtures import BigCheckpointConfig\n"
        "from rlhf_workbench.core.project import Project\n"
        "from rlhf_workbench.core.runs.records import created_run_context\n"
        "from rlhf_workbench.core.runs.work import Work, execute\n"
        "with Project.open(sys.argv[1]) as project:\n"
        "    ctx = created_run_context(project, sys.argv[2])\n"
        "result = execute(Work.job('job_fixtures:big_checkpoints', BigCheckpointConfig(), ctx), lambda e: None, lambda: False)\n"
        "print(result.message)\nprint(result.hint)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "p"), ctx.run_id], env=env, capture_output=True,
                          text=True, timeout=120, preexec_fn=_file_size_limit(1 << 20))
    assert done.returncode == 0, done.stderr
    message, hint = done.stdout.splitlines()[:2]
    assert "largest size this system lets the workbench write" in message and "ulimit -f" in hint
    assert "bug" not in hint
    assert sorted(p.name for p in (ctx.run_dir / "checkpoints").iterdir()) == ["last", "step-000001"]
    with Project.open(tmp_path / "p") as project:
        assert project.store.run(ctx.run_id)["status"] == "failed"
