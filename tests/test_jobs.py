"""The job runners: the run's row, persisted figures, events, stopping, failures, child processes.

Real SQLite, real spawned children (about half a second each to start, so one child per case)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from job_fixtures import CountConfig

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.events import (
    Checkpoint,
    Failed,
    Finished,
    Log,
    Metric,
    Progress,
)
from rlhf_workbench.core.runs import records
from rlhf_workbench.core.runs.child import ChildRunner
from rlhf_workbench.core.runs.records import resume_run, start_run
from rlhf_workbench.core.runs.thread import ThreadRunner
from rlhf_workbench.core.runs.work import Work, execute

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="process groups and `sleep` are POSIX")


def _names(events) -> list[str]:
    return [type(e).__name__ for e in events]


def _gone(pid: int, within_s: float = 3.0) -> bool:
    """Whether a process has ended (a zombie nobody reaped counts as ended)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        except OSError:
            state = "?"
        if state == "Z":
            return True
        if not Path("/proc").is_dir():  # no /proc: ask the kernel
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
        time.sleep(0.02)
    return False


def _helper_pid(events) -> int:
    return next(int(e.message.split()[1]) for e in events if isinstance(e, Log) and e.message.startswith("helper"))


# -- setting up --------------------------------------------------------------------------------


def test_start_run_makes_a_folder_a_config_and_a_created_row(project):
    ctx = start_run(project, kind="reward", name="first try", config=CountConfig(steps=3, note=None))
    assert re.fullmatch(r"rm-\d{8}-\d{6}-[0-9a-f]{4}", ctx.run_id)
    assert ctx.run_dir == project.runs_dir / ctx.run_id and ctx.run_dir.is_dir()
    assert not ctx.resume
    toml = tomllib.loads((ctx.run_dir / "config.toml").read_text())
    assert toml == {"steps": 3, "sleep_s": 0.01, "checkpoint_every": 0, "tags": ["tiny"]}  # None dropped
    run = project.store.run(ctx.run_id)
    assert (run["kind"], run["name"], run["status"], run["config"]) == ("reward", "first try", "created", toml)
    assert run["started_at"] is None and run["finished_at"] is None and run["summary"] is None
    other = start_run(project, kind="ppo", name="", config=CountConfig())
    assert other.run_id != ctx.run_id and other.run_id.startswith("ppo-")
    assert project.store.run(other.run_id)["name"] == other.run_id


def test_resume_refuses_unknown_and_running_runs(project):
    with pytest.raises(WorkbenchError, match="no run 'nope'"):
        resume_run(project, "nope")
    ctx = start_run(project, kind="reward", name="r", config=CountConfig(steps=1000, sleep_s=0.01))
    job = ThreadRunner(Work.job("job_fixtures:count", CountConfig(steps=1000, sleep_s=0.01), ctx))
    try:
        deadline = time.monotonic() + 5
        while project.store.run(ctx.run_id)["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(WorkbenchError, match="is running; stop it"):
            resume_run(project, ctx.run_id)
    finally:
        job.stop()
        assert job.join(5)


# -- in a thread -------------------------------------------------------------------------------


def test_thread_run_records_the_run_and_emits_events_in_order(project):
    config = CountConfig(steps=5, checkpoint_every=2)
    ctx = start_run(project, kind="reward", name="t", config=config)
    events = []
    job = ThreadRunner(Work.job("job_fixtures:count", config, ctx), events.append)
    assert job.join(10)
    assert isinstance(job.result, Finished) and job.result is events[-1]
    assert job.result.summary == {"steps": 5, "final_loss": 0.2, "started_at_step": 0} and not job.result.stopped
    assert _names(events)[:5] == ["Log", "Metric", "Sample", "Progress", "Metric"]
    assert [e.step for e in events if isinstance(e, Metric)] == [0, 1, 2, 3, 4]
    assert [e.step for e in events if isinstance(e, Checkpoint)] == [1, 3]
    assert sum(isinstance(e, (Finished, Failed)) for e in events) == 1

    store = project.store
    run = store.run(ctx.run_id)
    assert run["status"] == "finished" and run["error"] is None and run["summary"] == job.result.summary
    assert run["created_at"] <= run["started_at"] <= run["finished_at"]
    assert store.metric_series(ctx.run_id, "train/loss") == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert store.metric_names(ctx.run_id) == ["train/accuracy", "train/loss"]
    assert [s["step"] for s in store.samples(ctx.run_id)] == [4, 2, 0]
    assert store.samples(ctx.run_id)[0]["response"] == "response <b>4</b>"
    assert [(c["step"], c["path"]) for c in store.checkpoints(ctx.run_id)] == [
        (1, f"runs/{ctx.run_id}/checkpoints/step-1"), (3, f"runs/{ctx.run_id}/checkpoints/step-3")
    ]
    assert "counting from 0 to 5" in (ctx.run_dir / "log.txt").read_text()


def test_understood_failure_records_message_and_hint(project):
    ctx = start_run(project, kind="reward", name="nan", config=CountConfig())
    events = []
    result = execute(Work.job("job_fixtures:understood_failure", CountConfig(), ctx), events.append, lambda: False)
    assert result == Failed("The loss became NaN at step 0", hint="Lower the learning rate", step=0)
    assert events[-1] is result and isinstance(events[0], Metric) and math.isnan(events[0].values["train/loss"])
    run = project.store.run(ctx.run_id)
    assert run["status"] == "failed" and run["finished_at"] and run["summary"] is None
    assert run["error"] == "The loss became NaN at step 0\nLower the learning rate"
    assert project.store.metric_series(ctx.run_id, "train/loss") == []  # NaN is not storable, and skipped


def test_a_bug_fails_with_its_type_and_message_and_a_traceback_on_disk(project):
    ctx = start_run(project, kind="reward", name="bug", config=CountConfig())
    result = execute(Work.job("job_fixtures:bug", CountConfig(), ctx), lambda e: None, lambda: False)
    assert isinstance(result, Failed) and result.message == "ValueError: boom"
    assert "Traceback" not in result.message and "error.log" in result.hint
    assert 'raise ValueError("boom")' in (ctx.run_dir / "error.log").read_text()
    run = project.store.run(ctx.run_id)
    assert run["status"] == "failed" and run["error"].startswith("ValueError: boom\n")
    assert project.store.metric_series(ctx.run_id, "train/loss") == [(0, 1.0)]  # flushed on failure


def test_an_unknown_job_fails_clearly(project):
    ctx = start_run(project, kind="reward", name="x", config=CountConfig())
    result = execute(Work.job("job_fixtures:no_such_job", CountConfig(), ctx), lambda e: None, lambda: False)
    assert isinstance(result, Failed) and result.message.startswith("Cannot find the job 'job_fixtures:no_such_job'")
    assert project.store.run(ctx.run_id)["status"] == "failed"


def test_polite_stop_in_a_thread_checkpoints_and_cancels(project):
    config = CountConfig(steps=10_000, sleep_s=0.005)
    ctx = start_run(project, kind="reward", name="s", config=config)
    events = []
    job = ThreadRunner(Work.job("job_fixtures:count", config, ctx), events.append)
    while not any(isinstance(e, Progress) for e in events):
        time.sleep(0.005)
    job.stop()
    assert job.join(5)
    assert job.result.stopped and job.result.summary["stopped"] is True
    assert isinstance(events[-2], Checkpoint)
    run = project.store.run(ctx.run_id)
    assert run["status"] == "cancelled" and run["summary"]["stopped"] is True
    assert project.store.last_checkpoint(ctx.run_id)["step"] == events[-2].step


def test_figures_reach_the_database_within_the_flush_period_and_before_each_checkpoint(project, monkeypatch):
    monkeypatch.setattr(records, "FLUSH_S", 0.2)
    config = CountConfig(steps=10_000, sleep_s=0.01, checkpoint_every=60)
    ctx = start_run(project, kind="reward", name="f", config=config)
    reader = project.open_store()
    seen_at_checkpoint = []

    def on_event(event):
        if isinstance(event, Checkpoint) and not seen_at_checkpoint:
            # Another connection already sees every metric up to the checkpoint, and the record.
            other = project.open_store()  # this thread's own: connections are not shared across threads
            seen_at_checkpoint.append((other.metric_series(ctx.run_id, "train/loss")[-1][0], other.last_checkpoint(ctx.run_id)))
            other.close()

    job = ThreadRunner(Work.job("job_fixtures:count", config, ctx), on_event)
    try:
        deadline = time.monotonic() + 1.0
        while not reader.metric_series(ctx.run_id, "train/accuracy"):
            assert time.monotonic() < deadline, "no metrics written within the flush period"
            time.sleep(0.02)
        assert reader.last_checkpoint(ctx.run_id) is None  # written by the timer, not by a checkpoint
        while not seen_at_checkpoint:
            assert time.monotonic() < deadline + 2
            time.sleep(0.02)
    finally:
        job.stop()
        assert job.join(5)
        reader.close()
    (step, checkpoint), = seen_at_checkpoint
    assert step == 59 and checkpoint["step"] == 59


def test_resume_drops_figures_after_the_last_checkpoint_and_continues_from_it(project):
    ctx = start_run(project, kind="reward", name="r", config=CountConfig())
    failing = CountConfig(steps=8, checkpoint_every=3, fail_at=5, sleep_s=0)
    assert isinstance(execute(Work.job("job_fixtures:count", failing, ctx), lambda e: None, lambda: False), Failed)
    assert [s for s, _ in project.store.metric_series(ctx.run_id, "train/loss")] == [0, 1, 2, 3, 4]

    resumed = resume_run(project, ctx.run_id)
    assert resumed.resume and resumed.resume_step == 2 and resumed.run_id == ctx.run_id
    assert resumed.resume_checkpoint == ctx.run_dir / "checkpoints" / "step-2" and resumed.resume_checkpoint.is_dir()
    assert [s for s, _ in project.store.metric_series(ctx.run_id, "train/loss")] == [0, 1, 2]

    result = execute(Work.job("job_fixtures:count", CountConfig(steps=8, sleep_s=0), resumed), lambda e: None, lambda: False)
    assert isinstance(result, Finished) and result.summary["started_at_step"] == 3
    assert [s for s, _ in project.store.metric_series(ctx.run_id, "train/loss")] == list(range(8))
    run = project.store.run(ctx.run_id)
    assert run["status"] == "finished" and run["error"] is None


# -- in a child process ------------------------------------------------------------------------


def test_child_run_finishes_and_its_own_process_records_it(project):
    config = CountConfig(steps=4, checkpoint_every=2)
    ctx = start_run(project, kind="reward", name="c", config=config)
    job = ChildRunner(Work.job("job_fixtures:count", config, ctx))
    events = list(job.events(timeout=20))
    assert job.join(5) and isinstance(job.result, Finished) and events[-1] == job.result
    assert _names(events)[:4] == ["Log", "Metric", "Sample", "Progress"]
    assert [e.step for e in events if isinstance(e, Metric)] == [0, 1, 2, 3]
    run = project.store.run(ctx.run_id)
    assert run["status"] == "finished" and run["summary"]["steps"] == 4
    assert len(project.store.metric_series(ctx.run_id, "train/accuracy")) == 4
    assert not (ctx.run_dir / "crash.log").exists()


def _wait_for(kind, events: list, timeout_s: float = 20) -> None:
    """Until a child has sent an event of `kind` (it is at work), within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not any(isinstance(e, kind) for e in events):
        assert time.monotonic() < deadline, f"no {kind.__name__} event within {timeout_s} s"
        time.sleep(0.01)


def test_child_polite_stop_gives_cancelled_with_a_stopped_summary(project):
    config = CountConfig(steps=100_000, sleep_s=0.01)
    ctx = start_run(project, kind="reward", name="c", config=config)
    events = []
    job = ChildRunner(Work.job("job_fixtures:count", config, ctx), events.append)
    _wait_for(Metric, events)
    job.stop(grace_s=10)
    assert job.join(10)
    assert isinstance(job.result, Finished) and job.result.stopped
    assert isinstance(events[-2], Checkpoint)
    run = project.store.run(ctx.run_id)
    assert run["status"] == "cancelled" and run["summary"]["stopped"] is True and run["error"] is None


@posix_only
@pytest.mark.slow
def test_child_ignoring_stop_is_ended_after_the_grace_period_with_its_helpers(project):
    ctx = start_run(project, kind="reward", name="deaf", config=CountConfig())
    events = []
    job = ChildRunner(Work.job("job_fixtures:deaf", CountConfig(), ctx), events.append)
    _wait_for(Metric, events)
    asked = time.monotonic()
    job.stop(grace_s=0.5)
    assert job.join(6)
    assert 0.5 <= time.monotonic() - asked < 4
    assert isinstance(job.result, Failed)
    assert job.result.message == "The run did not stop within 0.5 s of being asked, so it was ended (signal SIGTERM)"
    run = project.store.run(ctx.run_id)
    assert run["status"] == "cancelled" and run["error"].startswith("The run did not stop within 0.5 s")
    assert _gone(job.pid) and _gone(_helper_pid(events))


@posix_only
def test_a_task_ended_after_the_grace_period_reads_as_cancelled():
    """Cancel pressed while the child cannot answer (still loading, say): the person asked for it, and is
    told so in the words a child that answers uses (it read "stopped before it finished" before)."""
    events = []
    job = ChildRunner(Work.task("job_fixtures:deaf_nap", 60.0, what="comparison"), events.append)
    _wait_for(Progress, events)
    job.stop(grace_s=0.3)
    assert job.join(6)
    assert isinstance(job.result, Finished) and job.result.stopped
    assert job.result.summary["message"] == "The comparison was cancelled: it was ended before it finished (signal SIGTERM)"


@posix_only
@pytest.mark.parametrize(("exit_code", "how"), [(None, "signal SIGKILL"), (3, "exit code 3")])
def test_child_dying_without_a_word_is_reported_and_recorded_as_failed(project, exit_code, how):
    config = CountConfig(steps=100, fail_at=exit_code)
    ctx = start_run(project, kind="reward", name="dies", config=config)
    job = ChildRunner(Work.job("job_fixtures:dies", config, ctx))
    events = list(job.events(timeout=20))
    assert job.join(5)
    assert isinstance(job.result, Failed) and job.result is events[-1]
    assert job.result.message == f"The training process ended unexpectedly ({how})"
    assert job.result.step == 2 and job.result.hint
    if exit_code is None:
        assert "memory" in job.result.hint
    run = project.store.run(ctx.run_id)
    assert run["status"] == "failed" and run["error"].startswith(job.result.message) and run["finished_at"]
    assert _gone(_helper_pid(events))  # no helper of the dead child stays behind
    assert _gone(job.pid)


def test_child_kill_ends_it_at_once_and_a_resumed_run_may_follow(project):
    config = CountConfig(steps=100_000, sleep_s=0.01)
    ctx = start_run(project, kind="reward", name="k", config=config)
    events = []
    job = ChildRunner(Work.job("job_fixtures:count", config, ctx), events.append)
    _wait_for(Metric, events)
    job.kill()
    assert job.join(5)
    assert isinstance(job.result, Failed) and job.result.message.startswith("The run was ended before it finished")
    assert project.store.run(ctx.run_id)["status"] == "cancelled"
    resumed = resume_run(project, ctx.run_id)  # its lock went with its process
    assert resumed.resume_step is None and project.store.metric_series(ctx.run_id, "train/loss") == []


def test_child_stops_politely_when_its_parent_dies(project):
    ctx = start_run(project, kind="reward", name="orphan", config=CountConfig())
    # A parent that starts the child, hears it work, and vanishes without cleaning up.
    script = (
        "import os, sys, threading\n"
        "from pathlib import Path\n"
        "from rlhf_workbench.core.runs.child import ChildRunner\n"
        "from rlhf_workbench.core.runs.records import RunContext\n"
        "from rlhf_workbench.core.runs.work import Work\n"
        "from job_fixtures import CountConfig\n"
        "heard = threading.Event()\n"
        f"ctx = RunContext(Path({str(ctx.project_path)!r}), {ctx.run_id!r}, Path({str(ctx.run_dir)!r}))\n"
        "job = ChildRunner(Work.job('job_fixtures:count', CountConfig(steps=100_000), ctx), lambda e: heard.set())\n"
        "heard.wait(20)\n"
        "os._exit(0)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    # stderr dropped: the vanished parent's resource tracker complains about its semaphores.
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=30, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while project.store.run(ctx.run_id)["status"] in ("created", "running"):
        assert time.monotonic() < deadline, "the orphaned child did not stop"
        time.sleep(0.05)
    run = project.store.run(ctx.run_id)
    assert run["status"] == "cancelled" and run["summary"]["stopped"] is True
    assert project.store.last_checkpoint(ctx.run_id) is not None


def test_figures_that_cannot_be_saved_fail_the_run_with_a_reason(project, monkeypatch):
    from rlhf_workbench.core.store import Store

    def full_disk(self, *args, **kwargs):
        raise WorkbenchError("database or disk is full")

    monkeypatch.setattr(Store, "save_run_records", full_disk)
    ctx = start_run(project, kind="reward", name="full", config=CountConfig())
    result = execute(Work.job("job_fixtures:count", CountConfig(steps=3, sleep_s=0), ctx), lambda e: None, lambda: False)
    assert isinstance(result, Failed)
    assert result.message == "Could not save the run's figures: database or disk is full" and "disk" in result.hint
    assert project.store.run(ctx.run_id)["status"] == "failed"


def test_runs_lists_a_killed_run_as_interrupted_with_the_command_that_resumes_it(project, capsys):
    from job_fixtures import killed_process

    from rlhf_workbench.core.runs_console import runs_command

    config = CountConfig(steps=6, sleep_s=0, checkpoint_every=1)
    ctx = start_run(project, kind="reward", name="killed", config=config)
    killed_process(project.path, config, ctx)
    assert project.store.run(ctx.run_id)["status"] == "running"  # nobody was left to say otherwise
    runs_command(project.path, delete=None, yes=False, as_json=False)
    out = capsys.readouterr().out
    assert "interrupted" in out and "running" not in out
    assert f"rlhf-workbench train-rm {project.path} --resume {ctx.run_id}" in out
    runs_command(project.path, delete=None, yes=False, as_json=True)
    assert json.loads(capsys.readouterr().out)[0]["status"] == "interrupted"
    resumed = resume_run(project, ctx.run_id)
    assert resumed.resume_step == 1
    assert isinstance(execute(Work.job("job_fixtures:count", config, resumed), lambda e: None, lambda: False), Finished)
    assert project.store.run(ctx.run_id)["status"] == "finished"
