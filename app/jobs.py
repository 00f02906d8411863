"""JobController: the one training run at a time (one GPU, one training), shared by every training
tab: it starts the run in a child process (under torchrun on several GPUs) as a Task (tasks.py,
the one Qt adapter) and relays the Task's signals as its own, so that a tab, the Runs tab and the
window connect once and hear whichever run is going.

    controller = JobController(parent)
    controller.metrics.connect(curves.append)
    controller.finished.connect(...); controller.failed.connect(...)
    controller.start(method.job, config, start_run(project, ...), command=method.command)
    controller.stop()            # polite, insists after grace_s; returns at once
    controller.shutdown(5.0)     # on quitting: stop, wait, kill
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from rlhf_workbench.core.errors import JobFailed
from rlhf_workbench.core.events import Failed, Finished, Sink
from rlhf_workbench.core.runs.child import STOP_GRACE_S, ChildRunner
from rlhf_workbench.core.runs.records import RunContext
from rlhf_workbench.core.runs.torchrun import TorchrunRunner
from rlhf_workbench.core.runs.work import Work

from .tasks import DELIVERY_INTERVAL_MS, Task


class JobController(QObject):
    """One job at a time: start it, hear it, stop it."""

    metrics = Signal(list)  # list[Metric]: everything since the last delivery, in order
    sample = Signal(object)  # Sample
    progress = Signal(object)  # Progress: the latest only
    log = Signal(object)  # Log
    checkpoint = Signal(object)  # Checkpoint
    finished = Signal(object)  # Finished (stopped=True when it ended because it was asked to)
    failed = Signal(object)  # Failed: message for people, hint, step
    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None, *, interval_ms: int = DELIVERY_INTERVAL_MS):
        super().__init__(parent)
        self._task: Task | None = None
        self._ctx: RunContext | None = None
        self._interval_ms = interval_ms

    @property
    def is_running(self) -> bool:
        return self._task is not None

    @property
    def run_id(self) -> str | None:
        """The run being executed, or the last one (until the next start)."""
        return self._ctx.run_id if self._ctx is not None else None

    @property
    def pid(self) -> int | None:
        return self._task.runner.pid if self._task is not None else None

    def start(self, job: str, config: Any, ctx: RunContext, *, processes: int = 1, command: str | None = None) -> None:
        """Start the job ("package.module:function") in a child process; with more than one
        process, the CLI's training `command` under torchrun instead, one rank per GPU. Raises
        JobFailed if one is running or it cannot start."""
        if self._task is not None:
            raise JobFailed(
                f"Run {self.run_id} is still going; stop it before starting another",
                hint="One training run at a time: they would share the GPU.",
            )
        if processes > 1 and command is None:
            raise JobFailed(f"{job} cannot run on several GPUs (it has no command to launch under torchrun)")

        def start(on_event: Sink):
            if processes > 1:
                return TorchrunRunner(command, ctx, processes, on_event)
            # The child never imports the app's main module (import_main=False): it loads Qt.
            return ChildRunner(Work.job(job, config, ctx), on_event, import_main=False)

        task = Task(start, title=f"run {ctx.run_id}", interval_ms=self._interval_ms)
        for name in ("metrics", "sample", "progress", "log", "checkpoint"):
            getattr(task, name).connect(getattr(self, name))
        task.finished.connect(self._end)
        task.failed.connect(self._end)
        self._ctx, self._task = ctx, task
        self.running_changed.emit(True)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask the job to checkpoint and stop; end it if it has not after grace_s. Never waits."""
        if self._task is not None:
            self._task.runner.stop(grace_s=grace_s)

    def kill(self) -> None:
        if self._task is not None:
            self._task.kill()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """For quitting: stop politely, wait up to `timeout`, then kill. Blocks (the window is
        closing), relays what is left, and returns True if the job stopped by itself."""
        if self._task is None:
            return True
        return self._task.shutdown(timeout)

    def _end(self, final: Finished | Failed) -> None:
        # The child has exited and recorded its run when its last event arrives (core.runs), so
        # listeners may read the run's final row and start the next job right away.
        self._task = None
        self.running_changed.emit(False)
        (self.finished if isinstance(final, Finished) else self.failed).emit(final)
