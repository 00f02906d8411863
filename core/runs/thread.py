"""Work in a thread of this process: the CLI's runs, the ranks of a torchrun launch, the GUI's
database tasks, tests.

    runner = ThreadRunner(Work.job(JOB_PATH, config, ctx), on_event=printer)
    runner.stop()                 # the work sees stop() set at its next check
    runner.join(); runner.result  # Finished or Failed

`on_event` is called from the runner's thread. A thread cannot be ended from outside, so `kill`
is `stop`; work that must be killable runs in a child process (child.py).
"""

from __future__ import annotations

import threading

from ..events import Event, Failed, Finished, Sink
from .work import Work, execute


class ThreadRunner:
    """Executes `work` in a daemon thread, at once; `result` is its Finished or Failed."""

    def __init__(self, work: Work, on_event: Sink | None = None):
        self.work = work
        self.result: Finished | Failed | None = None
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._on_event = on_event or (lambda event: None)
        self._thread = threading.Thread(target=self._main, name=f"work {work.name}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        def deliver(event: Event) -> None:
            if isinstance(event, (Finished, Failed)):
                self.result = event  # set before listeners hear it, so they can read it
            self._on_event(event)

        try:
            execute(self.work, deliver, self._stop.is_set)
        except Exception as exc:  # noqa: BLE001 -- the run could not even be recorded (database locked, gone)
            if self.result is None:
                deliver(Failed(f"{type(exc).__name__}: {exc}", hint="The run could not be recorded in the project."))
        finally:
            self._ended.set()

    def stop(self, grace_s: float | None = None) -> None:
        """Ask the work to stop (a job checkpoints and returns). Returns at once."""
        self._stop.set()

    kill = stop

    def join(self, timeout: float | None = None) -> bool:
        # An Event, not Thread.join: in Python 3.11 a join interrupted by Ctrl+C (KeyboardInterrupt
        # raised while it waits) marks the thread as ended for good (CPython gh-90882), and every
        # later join returns at once while the job is still writing its checkpoint.
        return self._ended.wait(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop and wait up to `timeout`; True if it ended by then."""
        self.stop()
        return self.join(timeout)

    @property
    def done(self) -> bool:
        return self._ended.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()
