"""The runners: a job in a thread (tests, the CLI, short jobs) or in a child process (training
from the GUI). Both call `jobs.execute`, which records the run; reach them through core.jobs.

In a child process a crash, an out-of-memory kill or a stuck kernel then takes the child, not the window, and GPU
memory returns when the child ends. The child is started with "spawn" (the same on every
platform, safe beside the GUI's threads) and calls `jobs.execute` with a sink that puts events
into a multiprocessing queue and a stop flag backed by a multiprocessing event. It records its own
run; the parent relays events and supervises:

- stop() sets the event (the job checkpoints and returns); past the grace period the child's
  process group is terminated, then killed, so helpers it started (data loader workers, ranks)
  go with it;
- if the child ends without its Finished or Failed, the parent emits Failed saying how it ended
  (exit code or signal) and marks the run failed itself;
- if the parent dies, the child notices (its parent's sentinel closes) and stops politely.

Runs stopped by force are recorded as 'cancelled' (someone asked), unexpected deaths as 'failed'.
"""

from __future__ import annotations

import atexit
import faulthandler
import multiprocessing
import multiprocessing.util  # registers its exit hook before ours (see _end_children_at_exit)
import os
import queue
import signal
import sys
import threading
import types
import weakref
from contextlib import contextmanager, nullcontext
from multiprocessing.connection import wait as wait_for
from typing import Any

from .errors import WorkbenchError
from .events import Event, Failed, Finished, Metric, Progress, Sink
from .jobs import JobFailed, RunContext, error_text, execute

CRASH_LOG_NAME = "crash.log"
STOP_GRACE_S = 10.0  # how long a job has to checkpoint and return once asked to stop
TERMINATE_GRACE_S = 2.0  # then between SIGTERM and SIGKILL
_EXIT_S = 10.0  # how long a child that has sent its last event may take to exit
_POLL_S = 0.05
_NATIVE_CRASHES = {"SIGSEGV", "SIGBUS", "SIGABRT", "SIGILL", "SIGFPE"}

_live: weakref.WeakSet[ChildJob] = weakref.WeakSet()


# -- in a thread -------------------------------------------------------------------------------


class ThreadJob:
    """A job executing in a thread of this process. `on_event` is called from that thread."""

    def __init__(self, job_path: str, config: Any, ctx: RunContext, on_event: Sink | None = None):
        self.ctx = ctx
        self.result: Finished | Failed | None = None
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._on_event = on_event or (lambda event: None)
        self._thread = threading.Thread(
            target=self._main, args=(job_path, config), name=f"job {ctx.run_id}", daemon=True
        )
        self._thread.start()

    def _main(self, job_path: str, config: Any) -> None:
        def deliver(event: Event) -> None:
            if isinstance(event, (Finished, Failed)):
                self.result = event  # set before listeners hear it, so they can read it
            self._on_event(event)

        try:
            execute(job_path, config, self.ctx, deliver, self._stop.is_set)
        except Exception as exc:  # noqa: BLE001 -- the run could not even be recorded (database locked, gone)
            if self.result is None:
                deliver(Failed(f"{type(exc).__name__}: {exc}", hint="The run could not be recorded in the project."))
        finally:
            self._ended.set()

    def stop(self) -> None:
        """Ask the job to checkpoint and return."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        # An Event, not Thread.join: in Python 3.11 a join interrupted by Ctrl+C (KeyboardInterrupt
        # raised while it waits) marks the thread as ended for good (CPython gh-90882), and every
        # later join returns at once while the job is still writing its checkpoint.
        return self._ended.wait(timeout)

    @property
    def done(self) -> bool:
        return self._ended.is_set()


def run_in_thread(job_path: str, config: Any, ctx: RunContext, on_event: Sink | None = None) -> ThreadJob:
    return ThreadJob(job_path, config, ctx, on_event)


# -- in a child process ------------------------------------------------------------------------


class ChildJob:
    """A job executing in a spawned child process.

    Events arrive on a reader thread: passed to `on_event` when given (called from that
    thread), otherwise kept for `events()`. `result` is the final Finished or Failed.
    """

    def __init__(
        self, job_path: str, config: Any, ctx: RunContext, on_event: Sink | None = None, *, import_main: bool = True
    ):
        self.ctx = ctx
        self.result: Finished | Failed | None = None
        self.last_step: int | None = None
        self._on_event = on_event
        self._events: queue.Queue[Event] = queue.Queue()
        self._done = threading.Event()
        self._ended_by: str | None = None  # "stop" or "kill" when this side ended the child
        self._grace_s = STOP_GRACE_S
        self._insister: threading.Thread | None = None
        mp = multiprocessing.get_context("spawn")
        self._queue = mp.Queue()
        self._stop_event = mp.Event()
        self._process = mp.Process(
            target=_child_main,
            args=(job_path, config, ctx, self._queue, self._stop_event),
            name=f"rlhf-workbench-job-{ctx.run_id}",
        )
        try:
            with nullcontext() if import_main else _main_module_hidden():
                self._process.start()
        except Exception as exc:  # usually a config that cannot be pickled
            failed = Failed(f"Could not start the run's process: {type(exc).__name__}: {exc}")
            record_end(ctx, "failed", error_text(failed))
            raise JobFailed(failed.message) from exc
        _live.add(self)
        self._reader = threading.Thread(target=self._read, name=f"{ctx.run_id} events", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def events(self, timeout: float | None = None):
        """Yield events until the final one (only without on_event)."""
        while True:
            event = self._events.get(timeout=timeout)
            yield event
            if isinstance(event, (Finished, Failed)):
                return

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask politely; insist (terminate, then kill) if the child is still there after grace_s.
        Returns at once."""
        if self._done.is_set():
            return
        self._stop_event.set()
        if self._insister is None:
            self._grace_s = grace_s
            self._insister = threading.Thread(target=self._insist, args=(grace_s,), daemon=True)
            self._insister.start()

    def kill(self) -> None:
        """End the child (and its helpers) now."""
        if self._done.is_set():
            return
        self._ended_by = self._ended_by or "kill"
        self._signal_group(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the final event is delivered and the child is gone; True if it is."""
        return self._done.wait(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop politely, kill after `timeout`, and wait for the end; True if it stopped by itself."""
        self.stop(grace_s=timeout)
        self.join(timeout + TERMINATE_GRACE_S + 1.0)
        if not self._done.is_set():
            self.kill()
            self.join(_EXIT_S)
        return self._ended_by is None

    # -- supervising ---------------------------------------------------------------------------

    def _alive(self) -> bool:
        # The sentinel, not is_alive(): only the reader thread reaps the child.
        return not wait_for([self._process.sentinel], timeout=0)

    def _insist(self, grace_s: float) -> None:
        if wait_for([self._process.sentinel], timeout=grace_s):
            return
        self._ended_by = "stop"
        self._signal_group(signal.SIGTERM)
        if not wait_for([self._process.sentinel], timeout=TERMINATE_GRACE_S):
            self._signal_group(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)

    def _signal_group(self, sig: int) -> None:
        pid = self._process.pid
        if pid is not None and hasattr(os, "killpg"):
            try:
                os.killpg(pid, sig)  # the child leads its own group (see _child_main)
                return
            except (ProcessLookupError, PermissionError):
                pass  # not yet a group leader (still starting): signal the child alone
        try:
            self._process.kill() if sig == getattr(signal, "SIGKILL", None) else self._process.terminate()
        except (OSError, ValueError):
            pass  # already gone

    def _deliver(self, event: Event) -> None:
        if isinstance(event, (Metric, Progress)):
            self.last_step = event.step
        if isinstance(event, (Finished, Failed)):
            self.result = event
        if self._on_event is not None:
            self._on_event(event)
        else:
            self._events.put(event)

    def _read(self) -> None:
        try:
            final = None
            empty_after_death = False
            while final is None:
                try:
                    event = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    if self._alive():
                        continue
                    # What the child wrote before it died is already in the pipe: one more empty
                    # read after its death means nothing more will come.
                    if empty_after_death:
                        break
                    empty_after_death = True
                    continue
                if isinstance(event, (Finished, Failed)):
                    final = event
                else:
                    self._deliver(event)
            self._process.join(_EXIT_S if final is not None else None)
            # A child stuck on a leftover thread, or helpers (ranks, loader workers) outliving a
            # dead child: none of them may stay behind.
            self._signal_group(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
            self._process.join()
            if final is None:
                final = self._died()
            self._deliver(final)
        except Exception as exc:  # noqa: BLE001 -- never leave a listener waiting for an end that will not come
            self._deliver(Failed(f"Lost track of the run's process: {type(exc).__name__}: {exc}"))
        finally:
            self._done.set()
            self._queue.close()
            _live.discard(self)

    def _died(self) -> Failed:
        code = self._process.exitcode
        signame = None
        if code is None:
            how = "exit code unknown"
        elif code < 0:
            try:
                signame = signal.Signals(-code).name
            except ValueError:
                signame = f"signal {-code}"
            how = f"signal {signame}"
        else:
            how = f"exit code {code}"
        crash_log = self.ctx.run_dir / CRASH_LOG_NAME
        if self._ended_by == "stop":
            message = f"The run did not stop within {self._grace_s:g} s of being asked, so it was ended ({how})"
            hint, status = "Work since its last checkpoint is lost; the run can be resumed from that checkpoint.", "cancelled"
        elif self._ended_by == "kill":
            message, hint, status = f"The run was ended before it finished ({how})", None, "cancelled"
        else:
            message, status = f"The training process ended unexpectedly ({how})", "failed"
            if signame == "SIGKILL":
                hint = ("Something killed it; most often the system, when memory runs out. "
                        "Try a smaller batch size, shorter sequences or a smaller model.")
            elif signame in _NATIVE_CRASHES:
                hint = f"It crashed in native code (PyTorch, a GPU driver); {crash_log} may say where."
            else:
                hint = "Its last checkpoint, if any, is kept: the run can be resumed from it."
        failed = Failed(message, hint=hint, step=self.last_step)
        record_end(self.ctx, status, error_text(failed))
        return failed


def record_end(ctx: RunContext, status: str, error: str) -> None:
    """Mark the run ended unless the child recorded its own end just before it went."""
    try:
        with ctx.open_project() as project:
            project.store.end_live_run(ctx.run_id, status, error=error)
    except WorkbenchError:
        pass  # the project is gone or locked for good: the event still tells the person


def run_in_child(
    job_path: str, config: Any, ctx: RunContext, on_event: Sink | None = None, *, import_main: bool = True
) -> ChildJob:
    """Start the job in a spawned child. `import_main=False` keeps the child from importing this
    program's main module again, as spawn otherwise does: the GUI passes it, so that the child
    never loads Qt; a script whose config class lives in its main module needs the default."""
    return ChildJob(job_path, config, ctx, on_event, import_main=import_main)


@contextmanager
def _main_module_hidden():
    # spawn records the main module's name or file for the child to import (get_preparation_data
    # runs inside start()); a stand-in without either leaves nothing to record.
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


@atexit.register
def _end_children_at_exit() -> None:
    # Registered after multiprocessing's own exit hook (imported above), so it runs first: that
    # hook would wait for a non-daemonic child (training) to end by itself.
    for job in list(_live):
        job.shutdown(timeout=5.0)


def _child_main(job_path: str, config: Any, ctx: RunContext, events, stop_event) -> None:
    # Ctrl+C in a terminal reaches the whole foreground group: the parent decides what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)  # a group of its own, so that insisting ends its helpers too
    crash_path = ctx.run_dir / CRASH_LOG_NAME
    try:
        crash_log = open(crash_path, "w", encoding="utf-8")  # noqa: SIM115 -- open for the whole run
        faulthandler.enable(crash_log)
    except OSError:
        crash_log = None  # execute() says what is wrong with the run's folder

    parent = multiprocessing.parent_process()

    def stop_when_parent_dies() -> None:
        parent.join()
        events.cancel_join_thread()  # nobody reads the queue any more: exit without flushing it
        stop_event.set()

    if parent is not None:
        threading.Thread(target=stop_when_parent_dies, daemon=True).start()
    try:
        execute(job_path, config, ctx, events.put, stop_event.is_set)
    finally:
        if crash_log is not None:
            faulthandler.disable()
            crash_log.close()
            if crash_path.stat().st_size == 0:
                crash_path.unlink()
        events.close()
        events.join_thread()  # the final event is in the pipe before the process ends
