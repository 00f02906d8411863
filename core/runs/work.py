"""What a runner runs, and what running it means: `Work` and `execute`.

A piece of work is a plain function. It reports into `sink` (Progress, Metric, Sample, Log,
Checkpoint events) and polls `stop()`; it ends by returning a value, or by raising:

    def score_pairs(project_path, *, sink, stop):          # a task: its value is its result
        ...sink(Progress(done, total, "scoring"))...
        ...if stop(): raise Stopped("nothing was scored")...
        return {"scored": n}

    def run(config, ctx, sink, stop):                       # a job: a run's training loop
        ...checkpoint and return early when stop() is set...
        return {"final figures": ..., "stopped": stopped}

- WorkbenchError (JobFailed for a training failure, with its step) is a failure the work
  understands: its message and hint reach the person as they are.
- Stopped says it was asked to stop and kept nothing (an import rolled back, a generation
  abandoned). A job that stops keeps a checkpoint instead and returns `"stopped": True`.
- Anything else is a bug: the person gets "ExceptionType: message", the traceback goes to the
  run's error.log (or the terminal).

`Work` names the function by import path ("package.module:function"), so that a spawned child
imports it there and the parent never imports what it needs (torch); in a thread any callable
will do. A job's Work also carries the run it records (`Work.job`). `execute` runs it here and
now and returns its last event, Finished or Failed; the runners (thread.py, child.py,
torchrun.py) call it elsewhere and supervise.
"""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import DatabaseBusy, JobFailed, Stopped, WorkbenchError, disk_full_error, is_disk_full_os_error
from ..events import Failed, Finished, Log, Sink, StopFlag
from .records import ERROR_LOG_NAME, LOG_NAME, Recorder, RunContext, RunLock, error_text, save_failed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Work:
    """A function with its arguments, called as `target(*args, **kwargs, sink=sink, stop=stop)`.

    `run`: the run this work executes and records (its row, figures, log, outcome); None for work
    that records nothing (a task, or a training job on a rank other than 0). `what` names it in
    messages ("The pair scoring process ended unexpectedly").
    """

    target: str | Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    run: RunContext | None = None
    what: str = "work"

    @classmethod
    def job(cls, target: str, config: Any, ctx: RunContext, *, record: bool = True) -> Work:
        """A training job, `target(config, ctx, sink, stop)`, recorded as the run `ctx` names."""
        return cls(target, (config, ctx), run=ctx if record else None, what="run")

    @classmethod
    def task(cls, target: str | Callable[..., Any], *args: Any, what: str = "work", **kwargs: Any) -> Work:
        """Anything else: `target(*args, **kwargs, sink=, stop=)`, its value the result."""
        return cls(target, args, kwargs, what=what)

    @property
    def name(self) -> str:
        return self.target if isinstance(self.target, str) else getattr(self.target, "__qualname__", repr(self.target))


def load_target(target: str | Callable[..., Any]) -> Callable[..., Any]:
    """The function named `package.module:function` (a callable is its own target)."""
    if callable(target):
        return target
    module_name, _, attr = str(target).partition(":")
    if not module_name or not attr:
        raise JobFailed(f"{target!r} is not a job: a job is named 'package.module:function'")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise JobFailed(f"Cannot find the job {target!r}: {exc}") from exc
    if not callable(function):
        raise JobFailed(f"{target!r} is not a function")
    return function


def execute(work: Work, sink: Sink, stop: StopFlag) -> Finished | Failed:
    """Run the work here and now; emits and returns its Finished or Failed.

    Recorded work has its outcome in the database before the last event is emitted, so whoever
    hears it can read the run's final row. Errors end in Failed; only an interrupt (Ctrl+C)
    propagates.
    """
    result = _execute_recorded(work, sink, stop) if work.run is not None else _execute_unrecorded(work, sink, stop)
    sink(result)
    return result


def failed_from(exc: WorkbenchError, *, step: int | None = None) -> Failed:
    """The Failed event for a failure the work understands."""
    own_step = getattr(exc, "step", None)
    return Failed(exc.message, hint=exc.hint, step=own_step if own_step is not None else step)


def _execute_unrecorded(work: Work, sink: Sink, stop: StopFlag) -> Finished | Failed:
    try:
        value = load_target(work.target)(*work.args, **work.kwargs, sink=sink, stop=stop)
    except Stopped as exc:
        return Finished({"message": exc.message}, stopped=True)
    except WorkbenchError as exc:
        return failed_from(exc)
    except Exception as exc:  # noqa: BLE001 -- a bug: its traceback to the log, one line to the person
        log.exception("%s failed", work.name)
        return Failed(f"{type(exc).__name__}: {exc}", hint="This looks like a bug in the workbench; its log has the details.")
    # A mapping is also a summary (a job's, on a rank that does not record the run).
    summary = plain_summary(value) if isinstance(value, Mapping) else {}
    return Finished(summary, bool(summary.get("stopped")), value=value)


def _execute_recorded(work: Work, sink: Sink, stop: StopFlag) -> Finished | Failed:
    ctx = work.run
    try:
        project = ctx.open_project()
    except WorkbenchError as exc:
        return Failed(str(exc), hint="The run's project could not be opened; nothing was recorded.")
    lock = RunLock(ctx.run_dir)
    try:
        if not lock.acquire():
            return Failed(f"Run {ctx.run_id} is already running in another process", hint="Stop it first.")
        return _execute_locked(work, ctx, project.store, sink, stop)
    finally:
        lock.release()
        project.close()


def _set_status(store, run_id: str, status: str, **kwargs) -> None:
    """A run's status, however long another program holds the database: a run never fails, nor
    loses its outcome, because an import is writing. An end that cannot be recorded at all (a
    full disk) is logged: the run's last event still tells the person, and its row stays
    'running' with its lock free, which reads as interrupted."""
    while True:
        try:
            store.set_run_status(run_id, status, **kwargs)
            return
        except DatabaseBusy:
            time.sleep(0.2)
        except WorkbenchError as exc:
            if status == "running":
                raise
            log.warning("could not record run %s as %s: %s", run_id, status, exc)
            return


def _execute_locked(work: Work, ctx: RunContext, store, sink: Sink, stop: StopFlag) -> Finished | Failed:
    try:
        _set_status(store, ctx.run_id, "running")
    except WorkbenchError as exc:
        return Failed(exc.message, hint=exc.hint)
    recorder = Recorder(store, ctx.run_id, sink, ctx.run_dir / LOG_NAME)
    try:
        try:
            for note in ctx.resume_notes:
                recorder(Log(note[:1].upper() + note[1:], "warning"))
            summary = plain_summary(load_target(work.target)(*work.args, **work.kwargs, sink=recorder, stop=stop))
        finally:
            recorder.close()
        if recorder.error is not None:
            raise save_failed(recorder.error)
    except WorkbenchError as exc:
        result = failed_from(exc, step=recorder.last_step)
        _set_status(store, ctx.run_id, "failed", error=error_text(result))
        return result
    except Exception as exc:  # noqa: BLE001 -- a bug in the job: recorded, never raised into the GUI
        if is_disk_full_os_error(exc):
            # Not a bug: the disk ran out (a checkpoint, most often), and the run can resume.
            full = disk_full_error(getattr(exc, "filename", None) or ctx.run_dir, "the run stopped here", cause=exc)
            result = Failed(full.message, hint=f"{full.hint} The run can then be resumed from its last checkpoint.",
                            step=recorder.last_step)
            _set_status(store, ctx.run_id, "failed", error=error_text(result))
            return result
        log = ctx.run_dir / ERROR_LOG_NAME
        log.write_text(traceback.format_exc(), encoding="utf-8", errors="replace")
        result = Failed(
            f"{type(exc).__name__}: {exc}",
            hint=f"This looks like a bug in the workbench; the details are in {log}.",
            step=recorder.last_step,
        )
        _set_status(store, ctx.run_id, "failed", error=error_text(result))
        return result
    except BaseException:
        _set_status(store, ctx.run_id, "cancelled", error="Interrupted")
        raise
    stopped = bool(summary.get("stopped"))
    _set_status(store, ctx.run_id, "cancelled" if stopped else "finished", summary=summary)
    return Finished(summary, stopped)


def plain_summary(summary: Any) -> dict[str, float | int | str]:
    """Only plain values travel and are stored; numpy and torch scalars are unwrapped."""
    if summary is None:
        return {}
    if not isinstance(summary, Mapping):
        return {"result": str(summary)}
    plain: dict[str, Any] = {}
    for key, value in summary.items():
        if value is not None and not isinstance(value, (bool, int, float, str)):
            try:
                value = value.item()
            except (AttributeError, TypeError, ValueError, RuntimeError):
                value = str(value)
        if value is not None:
            plain[str(key)] = value
    return plain
