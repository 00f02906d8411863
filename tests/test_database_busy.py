"""Another process holding the project's database (a long import) for longer than the busy timeout:
a training run keeps its figures until it can write them, a verdict waits, and what cannot wait is
refused with one line. The holder is a real second process; the busy timeout is shortened here so
that "longer than the busy timeout" takes a second, not ten."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from job_fixtures import CountConfig

from rlhf_workbench.core.errors import DatabaseBusy
from rlhf_workbench.core.events import Checkpoint, Finished, Log, Metric
from rlhf_workbench.core.labeling import LabelSession
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.runs import records
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.runs.thread import ThreadRunner
from rlhf_workbench.core.runs.work import Work
from rlhf_workbench.core.store import connection

_HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO project(key, value) VALUES ('held by another process', '1')")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def hold_write_lock(db_path, seconds: float) -> subprocess.Popen:
    """A second process that holds the write lock (as an import's transaction does) for `seconds`."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(db_path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture
def short_busy_timeout(monkeypatch):
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_MS", 300)
    monkeypatch.setattr(records, "BUSY_LOG_S", 0.5)


@pytest.fixture
def labelled_project(make_project):
    # Eight judged by their dataset (something to train on), four for a person to label.
    pairs = [(f"prompt {i}", f"yes {i}", f"no {i}", "tests", "ab"[i % 2] if i < 8 else None, "dataset:tests" if i < 8 else None) for i in range(12)]
    with Project.open(make_project("busy", pairs)) as project:
        yield project


def test_a_run_and_a_verdict_outlast_another_process_holding_the_database(short_busy_timeout, labelled_project):
    project = labelled_project
    config = CountConfig(steps=20, sleep_s=0.1, checkpoint_every=5)
    ctx = start_run(project, kind="reward", name="busy", config=config)
    events = []
    runner = ThreadRunner(Work.job("job_fixtures:count", config, ctx), on_event=events.append)
    while not any(isinstance(e, Metric) for e in events):  # the run is under way when the import starts
        time.sleep(0.01)
    holder = hold_write_lock(project.db_path, 2.5)

    session = LabelSession(project.store, "ada")
    shown = session.next()
    started = time.monotonic()
    judgment_id = session.judge("left")  # waits for the holder, far past the busy timeout
    assert time.monotonic() - started > 1.0
    assert holder.wait(10) == 0

    assert runner.join(30)
    assert isinstance(runner.result, Finished), runner.result
    run = project.store.run(ctx.run_id)
    assert run["status"] == "finished"
    # Every figure and checkpoint record the job reported while the database was held is there.
    assert len(project.store.metric_series(ctx.run_id, "train/loss")) == config.steps
    assert [c["step"] for c in project.store.checkpoints(ctx.run_id)] == [4, 9, 14, 19]
    assert any(isinstance(e, Log) and "database is busy" in e.message for e in events)
    assert "database is busy" in (ctx.run_dir / records.LOG_NAME).read_text()

    verdicts = project.store.conn.execute("SELECT id, pair_id FROM judgments WHERE annotator = 'ada'").fetchall()
    assert verdicts == [(judgment_id, shown.pair_id)]
    assert project.store.project_info()["held by another process"] == "1"


def test_what_cannot_wait_is_refused_in_one_line_having_changed_nothing(short_busy_timeout, labelled_project):
    project = labelled_project
    session = LabelSession(project.store, "ada")
    shown = session.next()
    holder = hold_write_lock(project.db_path, 1.5)
    try:
        with pytest.raises(DatabaseBusy, match="database is busy") as refused:
            session.judge("left", wait_s=0.2)
        assert str(project.path) in str(refused.value) and "\n" not in str(refused.value)
        assert session.current == shown  # the same pair: the app tries again
        with pytest.raises(DatabaseBusy):
            start_run(project, kind="reward", name="meanwhile", config=CountConfig())
        assert list(project.runs_dir.iterdir()) == []
    finally:
        holder.wait(10)
    session.judge("left", wait_s=0.2)
    assert project.store.conn.execute("SELECT count(*) FROM judgments WHERE annotator = 'ada'").fetchone() == (1,)
    assert project.store.runs() == []


def test_the_cli_refuses_to_start_a_run_in_one_line_while_the_database_is_held(
    short_busy_timeout, labelled_project, capsys
):
    from rlhf_workbench.core.cli import main

    holder = hold_write_lock(labelled_project.db_path, 60)  # until the command has answered
    try:
        code = main(["train-rm", str(labelled_project.path), "--set", "max_steps=1"])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    assert err.startswith("error: ") and "database is busy" in err and len(err.strip().splitlines()) == 1


def test_records_wait_in_order_while_busy_and_are_written_once_free(short_busy_timeout, labelled_project):
    # The recorder on its own: a checkpoint reported while busy is queued behind its figures.
    project = labelled_project
    ctx = start_run(project, kind="reward", name="r", config=CountConfig())
    forwarded = []
    recorder = records.Recorder(project.open_store(), ctx.run_id, forwarded.append, ctx.run_dir / "log.txt")
    holder = hold_write_lock(project.db_path, 1.5)
    try:
        recorder(Metric(0, {"loss": 1.0}))
        recorder(Checkpoint(0, str(ctx.run_dir / "checkpoints" / "step-0")))
        recorder(Metric(1, {"loss": 0.5}))
        assert recorder.error is None
        assert project.store.checkpoints(ctx.run_id) == []
    finally:
        threading.Thread(target=holder.wait, daemon=True).start()
    recorder.close()
    assert recorder.error is None
    assert project.store.metric_series(ctx.run_id, "loss") == [(0, 1.0), (1, 0.5)]
    assert [c["step"] for c in project.store.checkpoints(ctx.run_id)] == [0]


def _locked(db_path) -> bool:
    """Whether another connection holds the write lock now (a write would have to wait)."""
    import sqlite3

    conn = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def test_a_real_import_holding_the_lock_past_the_busy_timeout_loses_no_figure_and_no_verdict(
    short_busy_timeout, labelled_project, tmp_path
):
    import json

    project = labelled_project
    # A file big enough that its one all-or-nothing transaction holds the lock for seconds here.
    data = tmp_path / "big.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for i in range(60_000):
            f.write(json.dumps({"prompt": f"question {i}", "chosen": f"a good answer {i}", "rejected": f"a bad one {i}"}) + "\n")
    config = CountConfig(steps=30, sleep_s=0.1, checkpoint_every=5)
    ctx = start_run(project, kind="reward", name="during an import", config=config)
    events = []
    runner = ThreadRunner(Work.job("job_fixtures:count", config, ctx), on_event=events.append)
    importer = subprocess.Popen([sys.executable, "-m", "rlhf_workbench.core.cli", "import", str(project.path), str(data)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    # The import is writing its pairs: the lock held now and a moment later (not a short bookkeeping write).
    while not (_locked(project.db_path) and time.sleep(0.1) is None and _locked(project.db_path)):
        assert importer.poll() is None, importer.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    session = LabelSession(project.store, "ada")
    shown = session.next()
    started = time.monotonic()
    judgment_id = session.judge("left")  # waits for the import's transaction
    waited = time.monotonic() - started
    out, err = importer.communicate(timeout=120)
    assert importer.returncode == 0, err
    assert runner.join(60)
    assert isinstance(runner.result, Finished), runner.result
    assert waited > 0.3  # longer than the busy timeout: the import held the lock that long
    assert len(project.store.metric_series(ctx.run_id, "train/loss")) == config.steps
    assert project.store.conn.execute("SELECT pair_id FROM judgments WHERE id = ?", (judgment_id,)).fetchone() == (shown.pair_id,)
    assert project.store.counts()["pairs"] == 12 + 60_000
