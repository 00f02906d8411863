"""Work in a spawned child process, supervised: training from the GUI, and the GUI's short model
work (score a text, most-wrong pairs, score pairs, generate, compare with reference).

    runner = ChildRunner(Work.task("rlhf_workbench.core.reward.remote:score_texts", path, texts,
                                   what="scoring"), on_event=inbox.append, import_main=False)
    runner.stop()      # asks politely; insists (terminate, then kill) after the grace period
    runner.kill()      # ends it now
    runner.join(); runner.result

A crash, an out-of-memory kill or a stuck kernel then takes the child, not the window, and the
memory (GPU memory too) returns when the child ends. The child is started with "spawn" (the same
on every platform, safe beside the GUI's threads) and calls `execute` with a sink that puts
events into a multiprocessing queue and a stop flag backed by a multiprocessing event. Recorded
work records its own run; the parent relays events and supervises (ProcessRunner):

- stop() asks (the work checkpoints and returns, or gives up and raises Stopped); past the grace
  period the child's process group is terminated, then killed, so helpers it started (data
  loader workers, ranks) go with it;
- if the child ends without its Finished or Failed, the parent emits Failed saying how it ended
  (exit code or signal, and what that usually means) within a fraction of a second, and marks a
  recorded run failed itself;
- if the parent dies, the child notices (its parent's sentinel closes) and stops politely.

Runs stopped by force are recorded as 'cancelled' (someone asked), unexpected deaths as 'failed'.
A process rather than a Pool: a worker that dies (out of memory) would leave a Pool's caller
waiting for ever, where a sentinel says at once that it is gone.
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

from ..errors import JobFailed
from ..events import Event, Failed, Finished, Metric, Progress, Sink
from .records import CRASH_LOG_NAME, error_text, record_end
from .work import Work, execute

STOP_GRACE_S = 10.0  # how long work has to checkpoint and return once asked to stop
TERMINATE_GRACE_S = 2.0  # then between SIGTERM and SIGKILL
EXIT_S = 10.0  # how long a child that has sent its last event may take to exit
_POLL_S = 0.05
_NATIVE_CRASHES = {"SIGSEGV", "SIGBUS", "SIGABRT", "SIGILL", "SIGFPE"}
_KILL = signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM

_live: weakref.WeakSet[ProcessRunner] = weakref.WeakSet()
_starting = threading.Lock()  # spawn's start-up swaps the main module for a moment (see _main_module_hidden)


class ProcessRunner:
    """What supervising work in another process means, whatever started it (ChildRunner here,
    TorchrunRunner in torchrun.py): the same face as ThreadRunner, plus kill and a pid.

    A subclass starts the process, reads its events (calling `_deliver` for each and `_end` once
    at the end, from its reader thread), and says how to ask it to stop and how to signal it.
    """

    def __init__(self, work: Work, on_event: Sink | None):
        self.work = work
        self.result: Finished | Failed | None = None
        self.last_step: int | None = None
        self._on_event = on_event
        self._events: queue.Queue[Event] = queue.Queue()
        self._done = threading.Event()
        self._ended_by: str | None = None  # "stop" or "kill" when this side ended the process
        self._grace_s = STOP_GRACE_S
        self._insister: threading.Thread | None = None

    # -- the face every runner has ---------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def stopping(self) -> bool:
        return self._insister is not None

    def events(self, timeout: float | None = None):
        """Yield events until the final one (only when no on_event was given)."""
        while True:
            event = self._events.get(timeout=timeout)
            yield event
            if isinstance(event, (Finished, Failed)):
                return

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask politely; insist if the process is still there after grace_s. Returns at once."""
        if self._done.is_set():
            return
        self._ask_to_stop()
        if self._insister is None:
            self._grace_s = grace_s
            self._insister = threading.Thread(target=self._insist, args=(grace_s,), daemon=True)
            self._insister.start()

    def kill(self) -> None:
        """End the process (and its helpers) now."""
        if self._done.is_set():
            return
        self._ended_by = self._ended_by or "kill"
        self._signal_group(_KILL)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the final event is delivered and the process is gone; True if it is."""
        return self._done.wait(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop politely, kill after `timeout`, and wait for the end; True if it stopped by itself."""
        self.stop(grace_s=timeout)
        self.join(timeout + self._insist_extra_s() + 1.0)
        if not self._done.is_set():
            self.kill()
            self.join(EXIT_S)
        return self._ended_by is None

    # -- what a subclass says ----------------------------------------------------------------------

    def _ask_to_stop(self) -> None:
        raise NotImplementedError

    def _wait_for_exit(self, timeout: float) -> bool:
        """True once the process has ended (within `timeout`)."""
        raise NotImplementedError

    def _signal_group(self, sig: int) -> None:
        raise NotImplementedError

    def _exit_code(self) -> int | None:
        raise NotImplementedError

    def _insist_extra_s(self) -> float:
        return TERMINATE_GRACE_S

    def _asked_end(self, how: str) -> tuple[str, str | None]:
        """(message, hint) for a run this side ended: it ignored stop, or was killed."""
        if self._ended_by == "kill":
            return f"The run was ended before it finished ({how})", None
        message = f"The run did not stop within {self._grace_s:g} s of being asked, so it was ended ({how})"
        return message, "Work since its last checkpoint is lost; the run can be resumed from that checkpoint."

    def _unexpected_end(self, how: str, signame: str | None) -> tuple[str, str | None]:
        """(message, hint) for a process that ended without its last event and unasked."""
        subject = "training" if self.work.run is not None else self.work.what
        message = f"The {subject} process ended unexpectedly ({how})"
        if signame == "SIGKILL":
            hint = ("Something killed it; most often the system, when memory runs out. "
                    "Try a smaller batch size, shorter sequences or a smaller model.")
        elif signame in _NATIVE_CRASHES:
            where = f"; {self.work.run.run_dir / CRASH_LOG_NAME} may say where" if self.work.run is not None else ""
            hint = f"It crashed in native code (PyTorch, a GPU driver){where}."
        elif self.work.run is not None:
            hint = "Its last checkpoint, if any, is kept: the run can be resumed from it."
        else:
            hint = None
        return message, hint

    # -- supervising -------------------------------------------------------------------------------

    def _insist(self, grace_s: float) -> None:
        if self._wait_for_exit(grace_s):
            return
        self._ended_by = "stop"
        self._signal_group(signal.SIGTERM)
        if not self._wait_for_exit(TERMINATE_GRACE_S):
            self._signal_group(_KILL)

    def _deliver(self, event: Event) -> None:
        if isinstance(event, (Metric, Progress)):
            self.last_step = event.step
        if isinstance(event, (Finished, Failed)):
            self.result = event
        if self._on_event is not None:
            self._on_event(event)
        else:
            self._events.put(event)

    def _end(self, final: Finished | Failed | None) -> None:
        """The process is gone: deliver its last event, or say how it ended without one."""
        try:
            self._deliver(final if final is not None else self._died())
        finally:
            self._done.set()
            _live.discard(self)

    def _died(self) -> Finished | Failed:
        """The last event of a process that ended without sending its own."""
        code = self._exit_code()
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
        if self._ended_by is not None and self.work.run is None:
            # A task someone asked to stop, ended because it did not in time: what they asked for.
            # (Work keeps nothing it has not committed, and a transaction dies with its process.)
            # Worded as the stop the child answers itself ("… was cancelled; …"): to the person who
            # pressed Cancel, a child still loading torch when asked is no different.
            return Finished({"message": f"The {self.work.what} was cancelled: it was ended before it finished ({how})"},
                            stopped=True)
        if self._ended_by is not None:
            (message, hint), status = self._asked_end(how), "cancelled"
        else:
            (message, hint), status = self._unexpected_end(how, signame), "failed"
        failed = Failed(message, hint=hint, step=self.last_step)
        if self.work.run is not None:
            record_end(self.work.run, status, error_text(failed))
        return failed


class ChildRunner(ProcessRunner):
    """Executes `work` in a spawned child process, at once.

    Events arrive on a reader thread: passed to `on_event` when given (called from that thread),
    otherwise kept for `events()`. `import_main=False` keeps the child from importing this
    program's main module again, as spawn otherwise does: the GUI passes it, so that the child
    never loads Qt; a script whose config class lives in its main module needs the default.
    """

    def __init__(self, work: Work, on_event: Sink | None = None, *, import_main: bool = True):
        super().__init__(work, on_event)
        if not isinstance(work.target, str):
            raise TypeError("work for a child process names its function ('package.module:function')")
        mp = multiprocessing.get_context("spawn")
        self._queue = mp.Queue()
        self._stop_event = mp.Event()
        self._process = mp.Process(
            target=_child_main, args=(work, self._queue, self._stop_event),
            name=f"rlhf-workbench-{work.run.run_id if work.run else work.what.replace(' ', '-')}",
        )
        try:
            with _starting, (nullcontext() if import_main else _main_module_hidden()):
                self._process.start()
        except Exception as exc:  # usually arguments that cannot be pickled
            failed = Failed(f"Could not start the {work.what} process: {type(exc).__name__}: {exc}")
            if work.run is not None:
                record_end(work.run, "failed", error_text(failed))
            raise JobFailed(failed.message) from exc
        _live.add(self)
        self._reader = threading.Thread(target=self._read, name=f"{self._process.name} events", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _ask_to_stop(self) -> None:
        self._stop_event.set()

    def _wait_for_exit(self, timeout: float) -> bool:
        # The sentinel, not is_alive(): only the reader thread reaps the child.
        return bool(wait_for([self._process.sentinel], timeout=timeout))

    def _exit_code(self) -> int | None:
        return self._process.exitcode

    def _signal_group(self, sig: int) -> None:
        pid = self._process.pid
        if pid is not None and hasattr(os, "killpg"):
            try:
                os.killpg(pid, sig)  # the child leads its own group (see _child_main)
                return
            except (ProcessLookupError, PermissionError):
                pass  # not yet a group leader (still starting): signal the child alone
        try:
            self._process.kill() if sig == _KILL else self._process.terminate()
        except (OSError, ValueError):
            pass  # already gone

    def _read(self) -> None:
        final = None
        try:
            empty_after_death = False
            while final is None:
                try:
                    event = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    if not self._wait_for_exit(0):
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
            self._process.join(EXIT_S if final is not None else None)
            # A child stuck on a leftover thread, or helpers (ranks, loader workers) outliving a
            # dead child: none of them may stay behind.
            self._signal_group(_KILL)
            self._process.join()
        except Exception as exc:  # noqa: BLE001 -- never leave a listener waiting for an end that will not come
            final = Failed(f"Lost track of the {self.work.what} process: {type(exc).__name__}: {exc}")
        finally:
            self._queue.close()
            self._end(final)


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
    for runner in list(_live):
        runner.shutdown(timeout=5.0)


def _child_main(work: Work, events, stop_event) -> None:
    # Ctrl+C in a terminal reaches the whole foreground group: the parent decides what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)  # a group of its own, so that insisting ends its helpers too
    crash_path = work.run.run_dir / CRASH_LOG_NAME if work.run is not None else None
    crash_log = None
    if crash_path is not None:
        try:
            crash_log = open(crash_path, "w", encoding="utf-8")  # noqa: SIM115 -- open for the whole run
            faulthandler.enable(crash_log)
        except OSError:
            crash_log = None  # execute() says what is wrong with the run's folder
    else:
        faulthandler.enable()  # to stderr

    parent = multiprocessing.parent_process()

    def stop_when_parent_dies() -> None:
        parent.join()
        events.cancel_join_thread()  # nobody reads the queue any more: exit without flushing it
        stop_event.set()

    if parent is not None:
        threading.Thread(target=stop_when_parent_dies, daemon=True).start()
    try:
        execute(work, events.put, stop_event.is_set)
    finally:
        if crash_log is not None:
            faulthandler.disable()
            crash_log.close()
            if crash_path.stat().st_size == 0:
                crash_path.unlink()
        events.close()
        events.join_thread()  # the final event is in the pipe before the process ends
