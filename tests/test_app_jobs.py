"""JobController: a real child process, its events as Qt signals, the GUI thread never waiting."""

from __future__ import annotations

import os
import signal
import sys
import time
import types

import pytest
from job_fixtures import CountConfig
from PySide6.QtCore import QTimer

from rlhf_workbench.app.jobs import JobController
from rlhf_workbench.core.errors import JobFailed
from rlhf_workbench.core.events import Failed, Finished
from rlhf_workbench.core.runs.records import start_run


@pytest.fixture
def controller(qtbot):
    controller = JobController()
    yield controller
    controller.shutdown(timeout=1.0)


def _record(controller) -> dict[str, list]:
    seen: dict[str, list] = {name: [] for name in ("metrics", "sample", "progress", "log", "checkpoint", "running")}
    controller.metrics.connect(seen["metrics"].append)
    controller.sample.connect(seen["sample"].append)
    controller.progress.connect(seen["progress"].append)
    controller.log.connect(seen["log"].append)
    controller.checkpoint.connect(seen["checkpoint"].append)
    controller.running_changed.connect(seen["running"].append)
    return seen


def test_events_arrive_as_coalesced_signals_while_the_gui_keeps_ticking(qtbot, project, controller):
    config = CountConfig(steps=60, sleep_s=0.005, checkpoint_every=20)
    ctx = start_run(project, kind="reward", name="live", config=config)
    seen = _record(controller)
    ticks = []
    ticker = QTimer()
    ticker.setInterval(10)
    ticker.timeout.connect(lambda: ticks.append(time.monotonic()))
    ticker.start()
    with qtbot.waitSignal(controller.finished, timeout=20_000) as finished:
        controller.start("job_fixtures:count", config, ctx)
        assert controller.is_running and controller.run_id == ctx.run_id
    ticker.stop()
    result = finished.args[0]
    assert isinstance(result, Finished) and result.summary["steps"] == 60 and not result.stopped
    assert seen["running"] == [True, False] and not controller.is_running

    steps = [m.step for batch in seen["metrics"] for m in batch]
    assert steps == list(range(60))  # every metric, in order
    assert len(seen["metrics"]) < 60  # ...in fewer signals than events
    assert [s.step for s in seen["sample"]] == list(range(0, 60, 2))
    assert [c.step for c in seen["checkpoint"]] == [19, 39, 59]
    assert seen["log"][0].message == "counting from 0 to 60"
    assert seen["progress"][-1].step == 60 and len(seen["progress"]) < 60
    # The event loop ran all along: no gap between ticks near as long as the run.
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 10 and max(gaps) < 0.5
    assert project.store.run(ctx.run_id)["status"] == "finished"  # recorded before `finished`


def test_stop_asks_politely_and_the_run_is_cancelled(qtbot, project, controller):
    config = CountConfig(steps=100_000, sleep_s=0.01)
    ctx = start_run(project, kind="reward", name="stop me", config=config)
    with qtbot.waitSignal(controller.metrics, timeout=20_000):
        controller.start("job_fixtures:count", config, ctx)
    with pytest.raises(JobFailed, match="still going"):
        controller.start("job_fixtures:count", config, ctx)
    with qtbot.waitSignal(controller.finished, timeout=10_000) as finished:
        began = time.monotonic()
        controller.stop()
        assert time.monotonic() - began < 0.1  # stop() does not wait for the child
    assert finished.args[0].stopped
    assert project.store.run(ctx.run_id)["status"] == "cancelled"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_killed_child_gives_failed_with_a_message(qtbot, project, controller):
    config = CountConfig(steps=100_000, sleep_s=0.01)
    ctx = start_run(project, kind="reward", name="oom", config=config)
    with qtbot.waitSignal(controller.metrics, timeout=20_000):
        controller.start("job_fixtures:count", config, ctx)
    with qtbot.waitSignal(controller.failed, timeout=10_000) as signal_failed:
        os.kill(controller.pid, signal.SIGKILL)  # as the out-of-memory killer would
    failed = signal_failed.args[0]
    assert isinstance(failed, Failed)
    assert failed.message == "The training process ended unexpectedly (signal SIGKILL)" and "memory" in failed.hint
    assert project.store.run(ctx.run_id)["status"] == "failed"
    assert not controller.is_running


@pytest.mark.skipif(sys.platform == "win32", reason="the job starts `sleep`")
def test_shutdown_ends_a_job_that_ignores_stop(qtbot, project, controller):
    ctx = start_run(project, kind="reward", name="deaf", config=CountConfig())
    with qtbot.waitSignal(controller.metrics, timeout=20_000):
        controller.start("job_fixtures:deaf", CountConfig(), ctx)
    pid = controller.pid
    with qtbot.waitSignal(controller.failed, timeout=5_000):
        assert controller.shutdown(timeout=0.3) is False
    assert not controller.is_running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie
    assert project.store.run(ctx.run_id)["status"] == "cancelled"


def test_the_child_never_loads_qt_even_when_the_apps_main_module_does(qtbot, project, controller, tmp_path, monkeypatch):
    # As when started from the rlhf-workbench-gui script: spawn would import its main module,
    # and with it Qt, in the child.
    gui_main = tmp_path / "gui_main.py"
    gui_main.write_text("import PySide6.QtCore\n\nif __name__ == '__main__':\n    raise SystemExit('not here')\n")
    stand_in = types.ModuleType("__main__")
    stand_in.__file__ = str(gui_main)
    monkeypatch.setitem(sys.modules, "__main__", stand_in)
    ctx = start_run(project, kind="reward", name="no qt", config=CountConfig())
    with qtbot.waitSignal(controller.finished, timeout=20_000) as finished:
        controller.start("job_fixtures:qt_loaded", CountConfig(), ctx)
    assert finished.args[0].summary == {"qt": False}
    assert sys.modules["__main__"] is stand_in  # put back after the start


@pytest.mark.timeout(180)
@pytest.mark.slow
def test_two_processes_run_under_torchrun_and_their_events_arrive_as_signals(qtbot, tmp_path, workbench_home, controller):
    """The GPUs setting's path, on two CPU ranks: the same signals, the run recorded once."""
    from rlhf_workbench.core.demo import create_demo_project
    from rlhf_workbench.core.models import ensure_demo_model
    from rlhf_workbench.core.project import Project
    from rlhf_workbench.core.reward.config import RewardConfig
    from rlhf_workbench.core.reward.method import REWARD_MODEL
    from rlhf_workbench.core.runs.torchrun import LOG_NAME, TorchrunRunner

    ensure_demo_model()
    create_demo_project(tmp_path / "demo").close()
    config = RewardConfig(max_steps=6, batch_size=8, torch_threads=1, log_every=1, save_every=6, eval_every=1000)
    with Project.open(tmp_path / "demo") as project:
        ctx = start_run(project, kind="reward", name="two", config=config)
    seen = _record(controller)
    with qtbot.waitSignal(controller.finished, timeout=150_000) as finished:
        controller.start(REWARD_MODEL.job, config, ctx, processes=2, command=REWARD_MODEL.command)
        assert isinstance(controller._task.runner, TorchrunRunner)
    assert not finished.args[0].stopped
    assert [m.step for batch in seen["metrics"] for m in batch if "train/loss" in m.values] == list(range(1, 7))
    assert [c.step for c in seen["checkpoint"]] == [6] and seen["running"] == [True, False]
    with Project.open(tmp_path / "demo") as project:
        assert project.store.run(ctx.run_id)["status"] == "finished"
        assert len(project.store.metric_series(ctx.run_id, "train/loss")) == 6  # rank 0 alone wrote them
    # What the launch printed besides the events stays in the run's folder.
    log = (ctx.run_dir / LOG_NAME).read_text()
    assert "global batch = per-rank 4 x 2 ranks" in log and "@event" not in log


def test_the_gpus_box_shows_only_where_there_is_a_choice(qtbot):
    from PySide6.QtWidgets import QWidget

    from rlhf_workbench.app.widgets import run_buttons, run_processes
    from rlhf_workbench.core.runs.torchrun import visible_gpu_count

    def view():
        widget = QWidget()
        qtbot.addWidget(widget)
        widget.start = widget.stop = widget.resume = lambda: None
        return widget

    for count in (0, 1):
        single = view()
        run_buttons(single, start_tip="t", resume_tip="r", gpu_count=count)
        assert single.gpus_box is None and run_processes(single) == 1
    several = view()
    run_buttons(several, start_tip="t", resume_tip="r", gpu_count=4)
    assert (several.gpus_box.minimum(), several.gpus_box.maximum(), run_processes(several)) == (1, 4, 1)
    several.gpus_box.setValue(4)
    assert run_processes(several) == 4
    # This machine, as it is: the box appears exactly when it has two GPUs or more.
    here = view()
    run_buttons(here, start_tip="t", resume_tip="r")
    assert (here.gpus_box is not None) == (visible_gpu_count() >= 2)
