"""Background tasks: results and errors come back on the GUI thread, Cancel (stop) works, the
window keeps responding, the progress dialog appears only for work that takes a while, and work
in a child process that dies is reported within seconds."""

import os
import signal
import threading
import time

import pytest
from PySide6.QtCore import Qt, QThread, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QProgressDialog, QPushButton, QWidget

from rlhf_workbench.app import tasks
from rlhf_workbench.app.tasks import run_in_child, run_store_task, run_task
from rlhf_workbench.core.errors import InputError, Stopped
from rlhf_workbench.core.events import Failed, Finished, Progress

pytestmark = pytest.mark.usefixtures("workbench_home")


@pytest.fixture
def parent(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    tasks.stop_all()
    assert tasks.wait_for_all()


def gui_thread():
    return QApplication.instance().thread()


def progress_dialogs(parent):
    return [d for d in parent.findChildren(QProgressDialog) if d.isVisible()]


def test_the_result_arrives_on_the_gui_thread_and_the_work_ran_elsewhere(parent, qtbot):
    seen = {}

    def work(sink, stop):
        seen["worker"] = QThread.currentThread()
        return 6 * 7

    def done(result):
        seen["result"], seen["done_in"] = result, QThread.currentThread()

    task = run_task(parent, work, on_done=done)
    with qtbot.waitSignal(task.ended, timeout=5000):
        pass
    assert seen["result"] == 42 and isinstance(task.result, Finished) and task.result.value == 42
    assert seen["done_in"] is gui_thread() and seen["worker"] is not gui_thread()
    assert tasks.running_tasks() == []


def test_a_core_error_arrives_as_its_message_and_the_default_is_a_dialog(parent, qtbot):
    def work(sink, stop):
        raise InputError("is not JSON", path="data.jsonl", line=7, field="chosen")

    messages = []
    task = run_task(parent, work, on_error=messages.append)
    assert task.wait()
    assert messages == ["data.jsonl, line 7, field 'chosen': is not JSON"]

    task = run_task(parent, work, progress_title="Importing data.jsonl")
    assert task.wait() and isinstance(task.result, Failed)
    boxes = [b for b in parent.findChildren(QMessageBox) if b.isVisible()]
    assert [b.text() for b in boxes] == ["data.jsonl, line 7, field 'chosen': is not JSON"]
    assert boxes[0].windowTitle() == "Importing data.jsonl failed"


def test_an_unexpected_exception_is_a_short_message_and_a_logged_traceback(parent, caplog):
    def work(sink, stop):
        return {}["missing"]

    messages = []
    task = run_task(parent, work, on_error=messages.append)
    assert task.wait()
    assert messages == ["KeyError: 'missing'"]
    assert "Traceback" in caplog.text and "KeyError" in caplog.text


def test_stop_reaches_the_worker_and_comes_back_as_stopped(parent, qtbot):
    started = threading.Event()

    def work(sink, stop):
        started.set()
        while not stop():
            time.sleep(0.005)
        raise Stopped("stopped; nothing was changed")

    outcomes = []
    task = run_task(parent, work, on_done=outcomes.append, on_stopped=lambda m: outcomes.append(("stopped", m)))
    assert started.wait(5)
    task.stop()
    assert task.wait()
    assert outcomes == [("stopped", "stopped; nothing was changed")] and task.result.stopped


def test_the_window_keeps_responding_and_the_progress_dialog_cancels(parent, qtbot):
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)

    def slow(sink, stop):
        for step in range(300):  # ~3 s unless cancelled
            if stop():
                raise Stopped("slow work cancelled")
            # A busy worker, not a sleeping one: it competes with the GUI thread for the GIL.
            deadline = time.perf_counter() + 0.01
            while time.perf_counter() < deadline:
                pass
            sink(Progress(step + 1, 300, f"step {step + 1}"))

    cancelled = []
    task = run_task(parent, slow, progress_title="Slow work", on_stopped=cancelled.append)
    qtbot.waitUntil(lambda: bool(progress_dialogs(parent)), timeout=3000)
    started = time.perf_counter()
    qtbot.wait(400)
    gaps = [b - a for a, b in zip(ticks, ticks[1:]) if a >= started]
    assert len(gaps) >= 10 and max(gaps) < 0.2  # the event loop ran all along
    dialog = progress_dialogs(parent)[0]
    assert dialog.maximum() == 1000 and 0 < dialog.value() < 1000 and dialog.labelText().startswith("step ")
    qtbot.mouseClick(dialog.findChild(QPushButton), Qt.MouseButton.LeftButton)  # its Cancel button
    assert task.wait() and cancelled == ["slow work cancelled"]
    timer.stop()
    qtbot.waitUntil(lambda: not progress_dialogs(parent), timeout=2000)


def test_quick_work_shows_no_progress_dialog(parent, qtbot):
    task = run_task(parent, lambda sink, stop: "quick", progress_title="Quick")
    assert task.wait()
    qtbot.wait(tasks.SHOW_AFTER_MS + 100)
    assert parent.findChildren(QProgressDialog) == []


def test_store_tasks_use_a_connection_of_their_own(parent, project):
    seen = {}

    def work(store, sink, stop):
        seen["store"] = store
        return store.counts()["pairs"]

    task = run_store_task(parent, project, work)
    assert task.wait() and task.result.value == 0
    assert seen["store"] is not project.store
    with pytest.raises(Exception, match="closed"):
        seen["store"].conn.execute("SELECT 1")  # closed once the task was done


def test_a_deleted_parent_gets_nothing(qtbot):
    widget = QWidget()
    release = threading.Event()
    delivered = []
    task = run_task(widget, lambda sink, stop: release.wait(5), on_done=delivered.append)
    widget.deleteLater()
    qtbot.waitUntil(lambda: not task.parent_alive())
    release.set()
    assert task.wait() and isinstance(task.result, Finished) and delivered == []


def test_a_burst_of_progress_reaches_the_gui_as_a_few_deliveries(parent, qtbot):
    def chatty(sink, stop):
        for step in range(20_000):
            sink(Progress(step + 1, 20_000, ""))
        return "done"

    seen = []
    task = run_task(parent, chatty)
    task.progress.connect(seen.append)
    assert task.wait() and task.result.value == "done"
    assert 1 <= len(seen) < 100 and seen[-1].step == 20_000  # coalesced: the latest is what shows



# -- in a child process --------------------------------------------------------------------------


def test_work_in_a_child_answers_on_the_gui_thread_and_never_loads_qt_there(parent, qtbot):
    answers, progress = [], []
    task = run_in_child(parent, "job_fixtures:nap", 0.2, what="nap", on_done=answers.append)
    task.progress.connect(progress.append)
    assert task.wait(30)
    assert answers == [0.2] and task.runner.pid != os.getpid()
    assert progress and progress[0].message == f"napping in {task.runner.pid}"


def test_a_child_killed_mid_work_is_reported_within_seconds(parent, qtbot):
    errors, progress = [], []
    task = run_in_child(parent, "job_fixtures:nap", 60, what="nap", on_error=errors.append)
    task.progress.connect(progress.append)
    qtbot.waitUntil(lambda: bool(progress), timeout=30_000)  # it is working
    killed = time.monotonic()
    os.kill(task.runner.pid, signal.SIGKILL)
    assert task.wait(5)
    assert time.monotonic() - killed < 3
    assert errors == ["The nap process ended unexpectedly (signal SIGKILL)"]
    assert "memory" in task.result.hint


def test_stopping_a_child_stops_its_work(parent, qtbot):
    stopped, progress = [], []
    task = run_in_child(parent, "job_fixtures:nap", 60, what="nap", on_stopped=stopped.append)
    task.progress.connect(progress.append)
    qtbot.waitUntil(lambda: bool(progress), timeout=30_000)
    task.stop()
    assert task.wait(10)
    assert stopped == ["woken up; nothing was done"]
