"""Work that never freezes the window: the one Qt adapter between the core's runners and widgets.

    task = run_task(parent, fn, on_done=show, progress_title="Importing pairs.jsonl")    # a thread
    task = run_in_child(parent, "rlhf_workbench.core.reward.remote:score_texts", path, texts,
                        what="scoring", on_done=show)                                      # a child process
    task = Task(lambda on_event: ChildRunner(Work.job(...), on_event, import_main=False))  # training (jobs.py)

A `Task` starts a runner (core/runs: a thread, a spawned child, a torchrun launch) and hears its
events on the GUI thread as Qt signals: `metrics` (every Metric since the last delivery, as one
list), `sample`, `progress` (the latest only), `log`, `checkpoint`, then `finished` (Finished) or
`failed` (Failed), then `ended`. The runner's thread only appends to an inbox and, when the inbox
was empty, wakes the GUI thread with a queued signal; the GUI thread drains the inbox at most
~15 times a second. So the event loop never waits on the work, widgets are touched only from the
GUI thread (as Anki's QueryOp insists), quick work is heard at once, and a burst of a thousand
metrics becomes one `metrics` signal, which is what keeps the curves cheap.

`run_task`'s `fn(sink, stop)` runs in a worker thread: it reports Progress events into `sink`
and checks `stop()` (the core's functions take both as they are); what it returns, or raises,
comes back to exactly one of `on_done(result)`, `on_error(message)` or `on_stopped(message)`. A
progress dialog appears only if the work is still running after `show_after_ms`, so quick work
never flashes one; it is not modal, and its Cancel button stops the work.

The rules this module keeps (after Anki's QueryOp/CollectionOp and Orange's TaskState):
- `fn` never touches a widget: it runs off the GUI thread, where Qt widgets must not be used.
- `fn` opens its own database connection (`run_store_task` does that for it): an SQLite
  connection is used by one thread at a time, and the GUI's own stays with the GUI.
- Work that loads a model (torch) runs in a child (`run_in_child`), never in the GUI process:
  importing torch on a worker thread of a Qt process was seen to deadlock, and the model's
  memory goes when the child ends.
- Errors the core raises on purpose (`WorkbenchError`) reach the person as their message; any
  other exception is a bug: a short "ExceptionType: message" for the person, the traceback in the log.
- A task whose parent widget has been deleted delivers nothing (its callbacks would touch it).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QApplication, QProgressDialog, QWidget

from rlhf_workbench.core.events import Checkpoint, Event, Failed, Finished, Log, Metric, Progress, Sample, Sink
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.runs.child import ChildRunner
from rlhf_workbench.core.runs.thread import ThreadRunner
from rlhf_workbench.core.runs.work import Work
from rlhf_workbench.core.store import Store

from .dialogs import error_box

# ~15 Hz: curves look live, and each delivery costs the event loop a bounded amount of work.
DELIVERY_INTERVAL_MS = 66
# Below this, a task is over before a person would notice a dialog; showing one would only flash.
SHOW_AFTER_MS = 300


class Task(QObject):
    """A runner's work, heard on the GUI thread. `start(on_event)` starts the runner (here, on
    the GUI thread: spawn's start-up must not race another) and returns it."""

    metrics = Signal(list)  # list[Metric]: everything since the last delivery, in order
    sample = Signal(object)  # Sample
    progress = Signal(object)  # Progress: the latest only
    log = Signal(object)  # Log
    checkpoint = Signal(object)  # Checkpoint
    finished = Signal(object)  # Finished (stopped=True when it ended because it was asked to)
    failed = Signal(object)  # Failed: message for people, hint, step
    ended = Signal()  # after finished or failed
    _wake = Signal()

    def __init__(self, start: Callable[[Sink], Any], *, title: str | None = None,
                 parent_widget: QWidget | None = None, interval_ms: int = DELIVERY_INTERVAL_MS):
        super().__init__()  # no Qt parent: the task may outlive the widget that started it
        self.title = title
        self.result: Finished | Failed | None = None  # the last event, once delivered
        self._parent_widget = parent_widget
        self._interval_s = interval_ms / 1000
        self._lock = threading.Lock()
        self._inbox: deque[Event] = deque()
        self._scheduled = False
        self._final_waiting = False
        self._last_delivery = 0.0
        self._ended = threading.Event()  # the final event is in the inbox: `wait` needs no event loop
        self._wake.connect(self._woken, Qt.ConnectionType.QueuedConnection)
        self.progress_window: _ProgressWindow | None = None
        _RUNNING.add(self)
        try:
            self.runner = start(self._receive)
        except BaseException:
            _RUNNING.discard(self)
            raise

    # -- what callers use ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the work to stop (training checkpoints first); returns at once."""
        self.runner.stop()

    def kill(self) -> None:
        self.runner.kill()

    def is_running(self) -> bool:
        return self.result is None

    @property
    def stopping(self) -> bool:
        return bool(getattr(self.runner, "stopping", False))

    def wait(self, timeout_s: float = 10.0) -> bool:
        """Until the last event is delivered (processing events meanwhile); for tests and closing."""
        deadline = time.monotonic() + timeout_s
        while self.result is None and time.monotonic() < deadline:
            QApplication.processEvents()
            if self._ended.wait(0.005):
                self._deliver()
        QApplication.processEvents()
        return self.result is not None

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """For quitting: stop politely, wait up to `timeout_s`, then kill. Blocks (the window is
        closing), delivers what is left, and returns True if the work stopped by itself."""
        polite = self.runner.shutdown(timeout_s)
        self._deliver()
        return polite

    def parent_alive(self) -> bool:
        return self._parent_widget is None or shiboken6.isValid(self._parent_widget)

    # -- the runner's side (any thread) ---------------------------------------------------------------

    def _receive(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, Progress) and self._inbox and isinstance(self._inbox[-1], Progress):
                self._inbox[-1] = event  # only the latest progress is ever shown
            else:
                self._inbox.append(event)
            if isinstance(event, (Finished, Failed)):
                self._final_waiting = True
                self._ended.set()
            if self._scheduled:
                return
            self._scheduled = True
        self._wake.emit()

    # -- the GUI thread's side -----------------------------------------------------------------------

    @Slot()
    def _woken(self) -> None:
        wait_s = self._interval_s - (time.monotonic() - self._last_delivery)
        if wait_s > 0 and not self._final_waiting:
            QTimer.singleShot(int(wait_s * 1000) + 1, self._deliver)
        else:
            self._deliver()

    def _deliver(self) -> None:
        with self._lock:
            events = list(self._inbox)
            self._inbox.clear()
            self._scheduled = False
        if not events or self.result is not None:
            return
        self._last_delivery = time.monotonic()
        batch: list[Metric] = []
        latest_progress: Progress | None = None
        final: Finished | Failed | None = None
        for event in events:
            if isinstance(event, Metric):
                batch.append(event)
            elif isinstance(event, Progress):
                latest_progress = event
            elif isinstance(event, (Finished, Failed)):
                final = event
                break  # nothing follows the last event
            else:
                # Samples, logs and checkpoints are rare and each matters: in order, after the
                # metrics that came before them.
                if batch:
                    self.metrics.emit(batch)
                    batch = []
                if isinstance(event, Sample):
                    self.sample.emit(event)
                elif isinstance(event, Log):
                    self.log.emit(event)
                elif isinstance(event, Checkpoint):
                    self.checkpoint.emit(event)
        if batch:
            self.metrics.emit(batch)
        if latest_progress is not None:
            self.progress.emit(latest_progress)
        if final is not None:
            # Recorded work has its outcome in the database before its last event arrives, so
            # listeners may read the run's final row and start the next task right away.
            self.result = final
            _RUNNING.discard(self)
            (self.finished if isinstance(final, Finished) else self.failed).emit(final)
            self.ended.emit()


class _ProgressWindow:
    """A non-modal progress dialog for one task, made only once the task has run a while."""

    def __init__(self, task: Task, parent: QWidget | None, cancellable: bool, show_after_ms: int):
        self.task = task
        self.parent = parent
        self.cancellable = cancellable
        self.dialog: QProgressDialog | None = None
        self.last: Progress | None = None
        task.progress.connect(self._update)
        task.ended.connect(self._close)
        QTimer.singleShot(show_after_ms, self._show)

    def _show(self) -> None:
        if not self.task.is_running() or not self.task.parent_alive():
            return
        # Made here, not up front: QProgressDialog starts a timer of its own in its constructor
        # and shows itself when that fires, which would flash a dialog for quick tasks.
        dialog = QProgressDialog(self.parent)
        dialog.setWindowTitle(self.task.title or "Working")
        dialog.setLabelText(self.task.title or "Working…")
        dialog.setWindowModality(Qt.WindowModality.NonModal)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.setMinimumDuration(0)
        dialog.setMinimumWidth(420)
        if self.cancellable:
            dialog.canceled.connect(self._cancel)
        else:
            dialog.setCancelButton(None)
        self.dialog = dialog
        self._update(self.last)
        dialog.show()

    def _update(self, progress: Progress | None) -> None:
        self.last = progress
        dialog = self.dialog
        if dialog is None or progress is None or not shiboken6.isValid(dialog) or self.task.stopping:
            return
        if progress.total and progress.total > 0:
            dialog.setRange(0, 1000)  # permille: byte counts of large files overflow an int
            dialog.setValue(min(1000, int(progress.step * 1000 // progress.total)))
        else:
            dialog.setRange(0, 0)  # unknown length: a busy indicator
        if progress.message:
            dialog.setLabelText(progress.message)

    def _cancel(self) -> None:
        self.task.stop()
        if self.dialog is not None and shiboken6.isValid(self.dialog):
            self.dialog.setLabelText("Cancelling…")
            self.dialog.show()  # QProgressDialog hides itself on Cancel; stay until the task stops

    def _close(self) -> None:
        if self.dialog is not None and shiboken6.isValid(self.dialog):
            self.dialog.close()
            self.dialog.deleteLater()
        self.dialog = None


_RUNNING: set[Task] = set()  # strong references: a running task must not be collected


def start_task(
    start: Callable[[Sink], Any],
    parent: QWidget | None,
    *,
    on_done: Callable[[Any], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_stopped: Callable[[str], None] | None = None,
    progress_title: str | None = None,
    cancellable: bool = True,
    show_after_ms: int = SHOW_AFTER_MS,
) -> Task:
    """A Task for short work, its end routed to one callback (on the GUI thread, and only while
    `parent` lives): on_done(result), on_error(message), on_stopped(message). Without `on_error`,
    an error dialog over `parent` shows the message. `progress_title`: the progress dialog's text,
    or None for no dialog (quick queries that report in the view)."""
    task = Task(start, title=progress_title, parent_widget=parent)
    if on_error is None:
        title = f"{progress_title} failed" if progress_title else "Something went wrong"

        def on_error(message: str) -> None:
            error_box(parent, message, title)

    def finished(final: Finished) -> None:
        if not task.parent_alive():
            return
        if final.stopped:
            if on_stopped is not None:
                on_stopped(str(final.summary.get("message", "stopped")))
        elif on_done is not None:
            on_done(final.value)

    def failed(final: Failed) -> None:
        if task.parent_alive():
            on_error(final.message)

    task.finished.connect(finished)
    task.failed.connect(failed)
    if progress_title is not None:
        task.progress_window = _ProgressWindow(task, parent, cancellable, show_after_ms)
    return task


def run_task(parent: QWidget | None, fn: Callable[..., Any], **kwargs: Any) -> Task:
    """`fn(sink, stop)` in a worker thread; returns the Task (started). See start_task for kwargs."""
    work = Work.task(fn, what=getattr(fn, "__name__", "task"))
    return start_task(lambda on_event: ThreadRunner(work, on_event), parent, **kwargs)


def run_store_task(parent: QWidget | None, project: Project, fn: Callable[..., Any], **kwargs: Any) -> Task:
    """`run_task` for work on the project's database: `fn(store, sink, stop)` gets a connection of
    its own, opened and closed in the worker (SQLite connections are not shared between threads)."""
    # Read here: the worker must not touch the Project, whose store belongs to the GUI thread.
    db_path = project.db_path

    def work(sink: Sink, stop: Callable[[], bool]) -> Any:
        store = Store.open(db_path)
        try:
            return fn(store, sink, stop)
        finally:
            store.close()

    work.__name__ = getattr(fn, "__name__", "store task")
    return run_task(parent, work, **kwargs)


def run_in_child(parent: QWidget | None, target: str, *args: Any, what: str, **kwargs: Any) -> Task:
    """`target(*args, sink=, stop=)` (named "package.module:function") in a spawned child process;
    `what` names it in messages ("the scoring process ended unexpectedly"). Keyword arguments of
    start_task are taken from kwargs; the rest go to `target`."""
    options = {k: kwargs.pop(k) for k in _TASK_OPTIONS if k in kwargs}
    work = Work.task(target, *args, what=what, **kwargs)
    # The child never imports the app's main module (import_main=False): it loads Qt.
    return start_task(lambda on_event: ChildRunner(work, on_event, import_main=False), parent, **options)


_TASK_OPTIONS = ("on_done", "on_error", "on_stopped", "progress_title", "cancellable", "show_after_ms")


def running_tasks() -> list[Task]:
    return list(_RUNNING)


def stop_all() -> None:
    for task in list(_RUNNING):
        task.stop()


def wait_for_all(timeout_s: float = 10.0) -> bool:
    """Wait until every task has finished and delivered; True if none is left running."""
    deadline = time.monotonic() + timeout_s
    while _RUNNING and time.monotonic() < deadline:
        next(iter(_RUNNING)).wait(max(0.0, deadline - time.monotonic()))
    return not _RUNNING
