"""Background work that never freezes the window.

    task = run_task(parent, fn, on_done=show, progress_title="Importing pairs.jsonl")

`fn(state)` runs in a worker thread; `state.progress(done, total, message)` reports how far it
got and `state.cancelled()` says whether the person pressed Cancel (pass it to the core as its
`cancel` callback: the core then raises `Cancelled` and rolls back). What `fn` returns or raises
comes back on the GUI thread, through queued signals, to exactly one of `on_done(result)`,
`on_error(message)` or `on_cancelled(message)`. A progress dialog appears only if the task is
still running after `show_after_ms`, so quick work never flashes one; it is not modal, so the
rest of the window keeps working.

The rules this module keeps (after Anki's QueryOp/CollectionOp and Orange's TaskState):
- `fn` never touches a widget: it runs off the GUI thread, where Qt widgets must not be used.
- `fn` opens its own database connection (`run_store_task` does that for it): an SQLite
  connection is used by one thread at a time, and the GUI's own stays with the GUI.
- Errors the core raises on purpose (`WorkbenchError`) reach the person as their message; any
  other exception is a bug: a short "ExceptionType: message" for the person, and the traceback
  in the log.
- A task whose parent widget has been deleted delivers nothing (its callbacks would touch it).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QApplication, QProgressDialog, QWidget

from rlhf_workbench.core.errors import Cancelled, WorkbenchError
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.store import Store

from .dialogs import error_box

log = logging.getLogger(__name__)

# Below this, a task is over before a person would notice a dialog; showing one would only flash.
SHOW_AFTER_MS = 300
# Progress reports closer together than this are dropped (the last one always gets through):
# a worker may report per row, and each report is a queued event for the GUI thread.
PROGRESS_INTERVAL_S = 0.05


class TaskState:
    """What the worker sees: a way to report progress and to ask whether to stop. Thread-safe."""

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._relay: _Relay | None = None
        self._last_report = 0.0

    def progress(self, done: int, total: int, message: str | None = None) -> None:
        """`done` of `total` (any unit; total 0 means "unknown, just busy")."""
        now = time.monotonic()
        if now - self._last_report < PROGRESS_INTERVAL_S and (total <= 0 or done < total):
            return
        self._last_report = now
        if self._relay is not None:
            self._relay.progressed.emit(done, total, message)

    def cancelled(self) -> bool:
        """True once Cancel was pressed; the core's `cancel` callbacks take this method as is."""
        return self._cancel.is_set()

    def raise_if_cancelled(self, message: str = "cancelled") -> None:
        if self._cancel.is_set():
            raise Cancelled(message)

    def cancel(self) -> None:
        self._cancel.set()


class _Relay(QObject):
    """Emitted from the worker thread. Its receivers (a `Task`) live on the GUI thread, so Qt
    queues every emission there: this is how results cross threads."""

    progressed = Signal(object, object, object)  # done, total, message (objects: sizes pass 2**31)
    finished = Signal(str, object)  # outcome ("done", "failed", "cancelled"), result or message


class Task(QObject):
    """A unit of background work, as seen from the GUI thread."""

    progressed = Signal(object, object, object)  # done, total, message or None
    succeeded = Signal(object)  # the result
    failed = Signal(str)  # the message shown to the person
    was_cancelled = Signal(str)  # the core's message ("... nothing was imported")
    finished = Signal()  # after any of the three above

    def __init__(self, fn: Callable[[TaskState], Any], parent_widget: QWidget | None, title: str | None):
        super().__init__()  # no Qt parent: the task may outlive the widget that started it
        self.fn = fn
        self.title = title
        self.state = TaskState()
        self.outcome: str | None = None  # "done", "failed" or "cancelled" once finished
        self.result: Any = None
        self.message: str | None = None
        self._parent_widget = parent_widget
        self._ended = threading.Event()  # set by the worker, so that `wait` needs no event loop
        self.progress_window: _ProgressWindow | None = None
        self._relay = _Relay()
        self.state._relay = self._relay
        self._relay.progressed.connect(self._on_progress, Qt.ConnectionType.QueuedConnection)
        self._relay.finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)

    def cancel(self) -> None:
        self.state.cancel()

    def is_running(self) -> bool:
        return self.outcome is None

    def wait(self, timeout_s: float = 10.0) -> bool:
        """Until finished and delivered (processing events meanwhile); for tests and for closing."""
        deadline = time.monotonic() + timeout_s
        while self.outcome is None and time.monotonic() < deadline:
            QApplication.processEvents()
            self._ended.wait(0.005)
        QApplication.processEvents()
        return self.outcome is not None

    def parent_alive(self) -> bool:
        return self._parent_widget is None or shiboken6.isValid(self._parent_widget)

    # -- worker side ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            result = self.fn(self.state)
        except Cancelled as exc:
            self._relay.finished.emit("cancelled", str(exc))
        except WorkbenchError as exc:
            self._relay.finished.emit("failed", str(exc))
        except BaseException as exc:
            log.exception("background task %r failed", self.title or getattr(self.fn, "__name__", self.fn))
            self._relay.finished.emit("failed", f"{type(exc).__name__}: {exc}")
        else:
            self._relay.finished.emit("done", result)
        finally:
            self._ended.set()

    # -- GUI side -------------------------------------------------------------------------------

    @Slot(object, object, object)
    def _on_progress(self, done: Any, total: Any, message: Any) -> None:
        if self.outcome is None:
            self.progressed.emit(done, total, message)

    @Slot(str, object)
    def _on_finished(self, outcome: str, payload: Any) -> None:
        self.outcome = outcome
        if outcome == "done":
            self.result = payload
        else:
            self.message = payload
        _RUNNING.discard(self)
        if self.parent_alive():
            {"done": self.succeeded, "failed": self.failed, "cancelled": self.was_cancelled}[outcome].emit(payload)
        self.finished.emit()


class _ProgressWindow:
    """A non-modal progress dialog for one task, made only once the task has run a while."""

    def __init__(self, task: Task, parent: QWidget | None, cancellable: bool, show_after_ms: int):
        self.task = task
        self.parent = parent
        self.cancellable = cancellable
        self.dialog: QProgressDialog | None = None
        self.last: tuple[Any, Any, Any] = (0, 0, None)
        task.progressed.connect(self._update)
        task.finished.connect(self._close)
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
        self._update(*self.last)
        dialog.show()

    def _update(self, done: Any, total: Any, message: Any) -> None:
        self.last = (done, total, message)
        dialog = self.dialog
        if dialog is None or not shiboken6.isValid(dialog) or self.task.state.cancelled():
            return
        if total and total > 0:
            dialog.setRange(0, 1000)  # permille: byte counts of large files overflow an int
            dialog.setValue(min(1000, int(done * 1000 // total)))
        else:
            dialog.setRange(0, 0)  # unknown length: a busy indicator
        if message:
            dialog.setLabelText(str(message))

    def _cancel(self) -> None:
        self.task.cancel()
        if self.dialog is not None and shiboken6.isValid(self.dialog):
            self.dialog.setLabelText("Cancelling…")
            self.dialog.show()  # QProgressDialog hides itself on Cancel; stay until the task stops

    def _close(self) -> None:
        if self.dialog is not None and shiboken6.isValid(self.dialog):
            self.dialog.close()
            self.dialog.deleteLater()
        self.dialog = None


_RUNNING: set[Task] = set()  # strong references: a running task must not be collected
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Plain Python threads, not QThreadPool: a Python QRunnable is destroyed by Qt in the pool
    thread after it runs, which needs the GIL there, and the suite hung (intermittently) with a
    worker waiting for a GIL nobody visible held. Results still reach the GUI thread through
    queued signals."""
    global _POOL
    if _POOL is None:
        # More threads than cores: the work is mostly SQLite and file reading, which let go of
        # the GIL, and a long import must not hold up a quick count behind it.
        _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="workbench-task")
    return _POOL


def run_task(
    parent: QWidget | None,
    fn: Callable[[TaskState], Any],
    *,
    on_done: Callable[[Any], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_cancelled: Callable[[str], None] | None = None,
    progress_title: str | None = None,
    cancellable: bool = True,
    show_after_ms: int = SHOW_AFTER_MS,
) -> Task:
    """Run `fn(state)` in a worker thread; returns the `Task` (started).

    on_done(result), on_error(message), on_cancelled(message) are called on the GUI thread.
    Without `on_error`, an error dialog over `parent` shows the message. `progress_title`: the
    progress dialog's text, or None for no dialog (quick queries that report in the view).
    """
    task = Task(fn, parent, progress_title)
    if on_done is not None:
        task.succeeded.connect(on_done)
    if on_error is not None:
        task.failed.connect(on_error)
    else:
        title = f"{progress_title} failed" if progress_title else "Something went wrong"
        task.failed.connect(lambda message: error_box(parent, message, title))
    if on_cancelled is not None:
        task.was_cancelled.connect(on_cancelled)
    if progress_title is not None:
        task.progress_window = _ProgressWindow(task, parent, cancellable, show_after_ms)
    _RUNNING.add(task)
    _pool().submit(task._run)
    return task


def run_store_task(
    parent: QWidget | None,
    project: Project,
    fn: Callable[[Store, TaskState], Any],
    **kwargs: Any,
) -> Task:
    """`run_task` for work on the project's database: `fn(store, state)` gets a connection of its
    own, opened and closed in the worker (SQLite connections are not shared between threads)."""
    # Read here: the worker must not touch the Project, whose store belongs to the GUI thread.
    db_path = project.db_path

    def work(state: TaskState) -> Any:
        store = Store.open(db_path)
        try:
            return fn(store, state)
        finally:
            store.close()

    work.__name__ = getattr(fn, "__name__", "store task")
    return run_task(parent, work, **kwargs)


def running_tasks() -> list[Task]:
    return list(_RUNNING)


def cancel_all() -> None:
    for task in list(_RUNNING):
        task.cancel()


def wait_for_all(timeout_s: float = 10.0) -> bool:
    """Wait until every task has finished and delivered; True if none is left running."""
    deadline = time.monotonic() + timeout_s
    while _RUNNING and time.monotonic() < deadline:
        next(iter(_RUNNING)).wait(max(0.0, deadline - time.monotonic()))
    return not _RUNNING
