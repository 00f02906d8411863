"""JobController: runs a job in a child process and relays its events to the GUI as Qt signals.

The child's events arrive on a reader thread (core.runners), which only appends them to a
deque; a timer on the GUI thread drains it ~15 times a second. So the event loop never waits on
training, widgets are touched only from the GUI thread (as Anki's QueryOp insists), and a burst
of a thousand metrics becomes one `metrics` signal per tick, which is what keeps the curves
cheap. Progress is coalesced to its latest value; samples, logs and checkpoints are all relayed.

    controller = JobController(parent)
    controller.metrics.connect(curves.append)
    controller.finished.connect(...); controller.failed.connect(...)
    controller.start("rlhf_workbench.core.reward.train:run", config, start_run(project, ...))
    controller.stop()            # polite, insists after grace_s; returns at once
    controller.shutdown(5.0)     # on quitting: stop, wait, kill
"""

from __future__ import annotations

from collections import deque
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from rlhf_workbench.core.events import Checkpoint, Event, Failed, Finished, Log, Metric, Progress, Sample
from rlhf_workbench.core.jobs import JobFailed, RunContext
from rlhf_workbench.core.runners import STOP_GRACE_S, ChildJob
from rlhf_workbench.core.torchrun import TorchrunJob, run_on_ranks

# ~15 Hz: curves look live, and each tick costs the event loop a bounded amount of work.
RELAY_INTERVAL_MS = 66


class JobController(QObject):
    """One job at a time (one GPU, one training): start it, hear it, stop it."""

    metrics = Signal(list)  # list[Metric]: everything since the last tick, in order
    sample = Signal(object)  # Sample
    progress = Signal(object)  # Progress: the latest only
    log = Signal(object)  # Log
    checkpoint = Signal(object)  # Checkpoint
    finished = Signal(object)  # Finished (stopped=True when it ended because it was asked to)
    failed = Signal(object)  # Failed: message for people, hint, step
    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None, *, interval_ms: int = RELAY_INTERVAL_MS):
        super().__init__(parent)
        self._job: ChildJob | TorchrunJob | None = None
        self._ctx: RunContext | None = None
        # deque.append and popleft are atomic: the reader thread appends, the GUI thread drains.
        self._inbox: deque[Event] = deque()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._relay)

    @property
    def is_running(self) -> bool:
        return self._job is not None

    @property
    def run_id(self) -> str | None:
        """The run being executed, or the last one (until the next start)."""
        return self._ctx.run_id if self._ctx is not None else None

    @property
    def pid(self) -> int | None:
        return self._job.pid if self._job is not None else None

    def start(self, job_path: str, config: Any, ctx: RunContext, *, processes: int = 1) -> None:
        """Start the job in a child process (under torchrun on `processes` GPUs when more than one).
        Raises JobFailed if one is running or it cannot start."""
        if self._job is not None:
            raise JobFailed(
                f"Run {self.run_id} is still going; stop it before starting another",
                hint="One training run at a time: they would share the GPU.",
            )
        self._inbox.clear()
        self._ctx = ctx
        # The child never imports the app's main module (run_in_child's import_main=False): it loads Qt.
        self._job = run_on_ranks(job_path, config, ctx, processes, self._inbox.append)
        self._timer.start()
        self.running_changed.emit(True)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask the job to checkpoint and stop; end it if it has not after grace_s. Never waits."""
        if self._job is not None:
            self._job.stop(grace_s=grace_s)

    def kill(self) -> None:
        if self._job is not None:
            self._job.kill()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """For quitting: stop politely, wait up to `timeout`, then kill. Blocks (the window is
        closing), relays what is left, and returns True if the job stopped by itself."""
        if self._job is None:
            return True
        polite = self._job.shutdown(timeout)
        self._relay()
        return polite

    def _relay(self) -> None:
        batch: list[Metric] = []
        latest_progress: Progress | None = None
        final: Finished | Failed | None = None
        while self._inbox:
            event = self._inbox.popleft()
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
            self._end(final)

    def _end(self, final: Finished | Failed) -> None:
        # The child has exited and recorded its run when its last event arrives (core.runners),
        # so listeners may read the run's final row and start the next job right away.
        self._timer.stop()
        self._job = None
        self.running_changed.emit(False)
        if isinstance(final, Finished):
            self.finished.emit(final)
        else:
            self.failed.emit(final)
