"""Every kind of short model work the window hands to a child process (score a text, most-wrong
pairs, generate, score pairs, compare with reference), its child killed with SIGKILL mid-work: the
person is told within a few seconds, in the place that kind of work reports to.

The controls are the window's own, started as their buttons start them; the child is killed once
it is at work (after its first progress report, or a moment after it started for work that
reports none), which is where an out-of-memory kill lands.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest
from PySide6.QtWidgets import QMessageBox, QWidget

from rlhf_workbench.app import tasks
from rlhf_workbench.core.demo import create_demo_project
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.runs.records import start_run

pytestmark = [
    pytest.mark.usefixtures("workbench_home"),
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL"),
    pytest.mark.timeout(120),
]
KILLED = "ended unexpectedly (signal SIGKILL)"
REPORTED_WITHIN_S = 5.0


def _finished_run(project: Project, kind: str, config, checkpoint_parts: tuple[str, ...] = ()) -> tuple[str, str]:
    """A run record with a complete-looking checkpoint: a model folder as far as a look at its
    files goes (the child is killed while it imports what would load the weights)."""
    ctx = start_run(project, kind=kind, name=f"a {kind} run", config=config)
    folder = ctx.run_dir / "checkpoints" / "step-000003"
    model = folder.joinpath(*checkpoint_parts)
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    (model / "model.safetensors").write_bytes(b"")
    (folder / "trainer_state.json").write_text(json.dumps({"step": 3}), encoding="utf-8")
    project.store.save_run_records(ctx.run_id, checkpoint=(3, folder.relative_to(project.path).as_posix(), True))
    project.store.set_run_status(ctx.run_id, "running")
    project.store.set_run_status(ctx.run_id, "finished", summary={"steps": 3})
    return ctx.run_id, str(folder)


@pytest.fixture
def demo(tmp_path):
    project = create_demo_project(tmp_path / "demo")
    reward_run, reward_checkpoint = _finished_run(project, "reward", RewardConfig())
    ppo_run, _ = _finished_run(project, "ppo", RLConfig(), ("policy",))
    yield project, reward_run, reward_checkpoint, ppo_run
    tasks.stop_all()
    tasks.wait_for_all(30)
    project.close()


@pytest.fixture
def parent(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    widget.show()
    return widget


def _kill_when_working(qtbot, task) -> float:
    """Waits until the child is at work, kills it with SIGKILL; returns when."""
    reports = []
    task.progress.connect(reports.append)
    qtbot.waitUntil(lambda: bool(reports) or not task.is_running(), timeout=60_000)
    assert task.is_running(), task.result
    os.kill(task.runner.pid, signal.SIGKILL)
    return time.monotonic()


def _kill_soon(qtbot, task) -> float:
    """For work that reports no progress: a moment after it started (it is importing torch)."""
    qtbot.wait(500)
    assert task.is_running(), task.result
    os.kill(task.runner.pid, signal.SIGKILL)
    return time.monotonic()


def _told(qtbot, killed_at: float, text) -> None:
    qtbot.waitUntil(lambda: KILLED in text(), timeout=int(REPORTED_WITHIN_S * 1000))
    assert time.monotonic() - killed_at < REPORTED_WITHIN_S


def test_score_a_text(qtbot, demo, parent):
    from rlhf_workbench.app.views.reward_panels import ScorePanel

    project, _, checkpoint, _ = demo
    panel = ScorePanel(parent)
    panel.set_project(project)
    panel.model.addItem("a checkpoint", checkpoint)
    panel.text.setPlainText("User: hello\n\nAssistant: hi")
    panel.score()
    _told(qtbot, _kill_soon(qtbot, panel.task), panel.result.text)
    assert panel.button.isEnabled()  # ready for another try


def test_most_wrong_validation_pairs(qtbot, demo, parent):
    from rlhf_workbench.app.views.reward_panels import MostWrongPanel

    project, _, checkpoint, _ = demo
    panel = MostWrongPanel(parent)
    panel.set_project(project)
    panel.model.addItem("a checkpoint", checkpoint)
    panel.find()
    _told(qtbot, _kill_soon(qtbot, panel.task), panel.status.text)
    assert panel.button.isEnabled()


def test_generate(qtbot, demo, parent):
    from rlhf_workbench.app.views.generate_dialog import GenerateControl
    from rlhf_workbench.core.generate import GenerateConfig

    project, *_ = demo
    control = GenerateControl(parent)
    control.set_project(project)
    errors = []
    control.error_shown.connect(errors.append)
    task = control.start(project, GenerateConfig(n_prompts=2, max_new_tokens=8))
    _told(qtbot, _kill_when_working(qtbot, task), lambda: " ".join(errors))
    boxes = [b for b in parent.findChildren(QMessageBox) if b.isVisible()]
    assert boxes and KILLED in boxes[-1].text()
    qtbot.waitUntil(control.button.isEnabled, timeout=5_000)


@pytest.mark.slow
def test_score_unlabelled_pairs(qtbot, demo, parent):
    from rlhf_workbench.app.views.label_queues import ScorePairsControl

    project, *_ = demo
    control = ScorePairsControl(parent)
    control.set_project(project)
    control.start()
    _told(qtbot, _kill_when_working(qtbot, control.task), control.status.text)
    assert control.task is None and control.button.isEnabled()


@pytest.mark.slow
def test_compare_with_reference(qtbot, demo, parent):
    from rlhf_workbench.app.views.policy_compare import CompareControl

    project, _, _, ppo_run = demo
    control = CompareControl(parent)
    control.set_run(project, ppo_run)
    control.start()
    _told(qtbot, _kill_when_working(qtbot, control.task), control.status.text)
    assert control.running_for is None and control.button.isEnabled()
