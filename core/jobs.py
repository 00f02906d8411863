"""How long work runs and reports: one path for the GUI, the CLI and the tests.

A job is a plain function, named by its import path so that a spawned child can find it:

    def run(config, ctx: RunContext, sink: Sink, stop: StopFlag) -> dict:
        ...emit Metric / Sample / Progress / Log / Checkpoint events into sink...
        ...poll stop() between steps; when it is set, checkpoint and return early...
        return {"final figures": ...}

It returns a summary (plain numbers and strings, stored with the run and shown in the Runs tab;
`"stopped": True` when it ended because stop() was set). It raises `JobFailed` for failures it
understands (NaN loss, out of memory, bad config: message + hint) and may raise anything else
for bugs; either way the run is marked failed with the message, never a traceback in the GUI.

The runners own everything around the job: the run's row in the database (created, running,
finished / failed / cancelled, with times, error and summary), persisting Metric and Sample
events from the job's own process, and emitting the final Finished or Failed event. `execute`
(here) does that in the calling thread; runners.py runs it in a thread or a child process:

    ctx = start_run(project, kind="reward", name="first try", config=RewardConfig(...))
    result = execute("rlhf_workbench.core.reward.train:run", config, ctx, sink, stop)   # here
    job = run_in_thread(job_path, config, ctx, on_event)     # a thread: CLI, tests
    job = run_in_child(job_path, config, ctx, on_event)      # a spawned process: the GUI

A run's folder holds `config.toml` (what it was asked to do), `log.txt` (its Log events),
`error.log` (the traceback of a bug), `crash.log` (a native crash in a child) and whatever the job
writes (checkpoints). The database has its summary (runs.summary, JSON) and every complete
checkpoint it reported (the checkpoints table): `resume_run` continues from the last of those.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import math
import re
import secrets
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w

from .errors import WorkbenchError
from .events import (
    Checkpoint,
    Event,
    Failed,
    Finished,
    Log,
    Metric,
    Progress,
    Sample,
    Sink,
    StopFlag,
)
from .project import Project

CONFIG_NAME = "config.toml"
LOG_NAME = "log.txt"
ERROR_LOG_NAME = "error.log"
LOCK_NAME = ".running.lock"
# Metrics and samples wait at most this long (seconds) before they are written: one commit a
# second costs training nothing, and a crash loses at most the last second of figures.
FLUSH_S = 1.0
_KIND_PREFIX = {"reward": "rm", "ppo": "ppo", "generate": "gen"}


class JobFailed(WorkbenchError):
    """A failure the job understands: `message` says what happened, `hint` what to try."""

    def __init__(self, message: str, *, hint: str | None = None, step: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.step = step


@dataclass(frozen=True)
class RunContext:
    """Where a job runs: its project, its run id and its folder (`<project>/runs/<run_id>/`, which
    exists). `resume` asks the job to continue from the last complete checkpoint in run_dir:
    `resume_checkpoint` (at `resume_step`) is the last one the run reported; the metrics logged
    after it are gone from the database, so the job logs them again from there."""

    project_path: Path
    run_id: str
    run_dir: Path
    resume: bool = False
    resume_checkpoint: Path | None = None
    resume_step: int | None = None

    def open_project(self) -> Project:
        """The job's own connection (a child process cannot share the parent's)."""
        return Project.open(self.project_path)


# -- setting runs up ---------------------------------------------------------------------------


def new_run_id(kind: str) -> str:
    """Sortable and readable: `rm-20261121-142501-3f9a` (kind, local time, a random tail)."""
    prefix = _KIND_PREFIX.get(kind) or re.sub(r"[^a-z0-9]+", "", kind.lower())[:8] or "run"
    return f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _plain(value: Any) -> Any:
    """Config values as TOML and JSON can hold them: None dropped, paths and enums as text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value if v is not None]
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def config_dict(config: Any) -> dict[str, Any]:
    """A job's config (a dataclass; a mapping is accepted too) as a plain dict."""
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return _plain(dataclasses.asdict(config))
    if isinstance(config, Mapping):
        return _plain(config)
    raise TypeError(f"a job's config is a dataclass, not {type(config).__name__}")


def config_toml(config: Mapping[str, Any]) -> str:
    return tomli_w.dumps(_plain(config))


def run_dir_of(project: Project, run: Mapping[str, Any]) -> Path:
    """A run's folder. Recorded relative to the project, so a moved project keeps its runs."""
    return project.path / (run.get("output_dir") or f"runs/{run['id']}")


def start_run(project: Project, *, kind: str, name: str, config: Any) -> RunContext:
    """A new run: its folder with config.toml, and its row (status 'created')."""
    data = config_dict(config)
    for _attempt in range(20):
        run_id = new_run_id(kind)
        run_dir = project.runs_dir / run_id
        if project.store.run(run_id) is not None:
            continue
        try:
            run_dir.mkdir(parents=True)  # exclusive: two runs started in one second still differ
        except FileExistsError:
            continue
        break
    else:
        raise WorkbenchError(f"{project.runs_dir}: could not find a free name for a new run")
    try:
        (run_dir / CONFIG_NAME).write_text(config_toml(data), encoding="utf-8")
        project.store.create_run(
            run_id, kind=kind, name=name.strip() or run_id, config=data, output_dir=f"runs/{run_id}"
        )
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return RunContext(project.path, run_id, run_dir)


def resume_run(project: Project, run_id: str) -> RunContext:
    """A context that continues `run_id` from its last complete checkpoint (or from the start)."""
    run = project.store.run(run_id)
    if run is None:
        raise WorkbenchError(f"{project.path}: has no run {run_id!r}")
    run_dir = run_dir_of(project, run)
    if _RunLock.held(run_dir):
        raise WorkbenchError(f"Run {run_id} is running; stop it before resuming it")
    # A run still marked 'running' whose lock nobody holds lost its process without a word (a
    # power cut, the app and its child killed together): it can be resumed like any other.
    last = project.store.last_checkpoint(run_id)
    step = last["step"] if last else None
    project.store.truncate_metrics(run_id, step if step is not None else -1)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = (project.path / last["path"]) if last else None
    return RunContext(project.path, run_id, run_dir, resume=True, resume_checkpoint=checkpoint, resume_step=step)


def run_is_executing(run_dir: Path) -> bool:
    """Whether a process is executing the run whose folder this is (it holds the run's lock)."""
    return _RunLock.held(run_dir)


class _RunLock:
    """An OS lock on a file in the run's folder, held while a process executes the run: the
    database says what a run was doing, the lock whether anyone still is (it goes with the
    process, however that ends)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_NAME
        self._file = None

    def acquire(self) -> bool:
        f = open(self.path, "a+b")  # noqa: SIM115 -- held until release()
        try:
            _lock_file(f)
        except OSError:
            f.close()
            return False
        self._file = f
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file = None

    @classmethod
    def held(cls, run_dir: Path) -> bool:
        if not run_dir.is_dir():
            return False
        lock = cls(run_dir)
        if lock.acquire():
            lock.release()
            return False
        return True


try:
    import fcntl

    def _lock_file(f) -> None:
        # flock, not lockf: two opens in one process conflict too (a thread runner and a check).
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

except ImportError:  # Windows
    import msvcrt

    def _lock_file(f) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)


# -- executing a job ---------------------------------------------------------------------------


class _Recorder:
    """The sink a job gets: persists its metrics and samples from its own process, batched, and
    forwards every event.

    A timer thread writes the batch once a second, so a job that logs a figure and then computes
    for a minute still has it on disk; a Checkpoint is written at once, in the same transaction
    as every figure before it. The lock guards the buffers and the connection they share.
    """

    def __init__(self, store, run_id: str, forward: Sink, log_path: Path):
        self._store, self._run_id, self._forward, self._flush_s = store, run_id, forward, FLUSH_S
        self._lock = threading.Lock()
        self._metrics: list[tuple[int, str, float, float]] = []
        self._samples: list[tuple[int, str, str, float | None, float, dict[str, float]]] = []
        self.error: BaseException | None = None  # why the figures could not be saved
        self._closing = threading.Event()
        self._log = open(log_path, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115
        self._timer = threading.Thread(target=self._flush_every, name=f"{run_id} metrics", daemon=True)
        self._timer.start()
        self.last_step: int | None = None

    def __call__(self, event: Event) -> None:
        if self.error is not None:
            raise _save_failed(self.error)
        if isinstance(event, Metric):
            # SQLite stores NaN as NULL; a NaN loss still reaches the curves, just not the table.
            rows = [(event.step, k, v, event.time) for k, v in event.values.items() if not math.isnan(v)]
            with self._lock:
                self._metrics.extend(rows)
            self.last_step = event.step
        elif isinstance(event, Sample):
            with self._lock:
                self._samples.append((event.step, event.prompt, event.response, event.score, time.time(), event.extra))
        elif isinstance(event, Progress):
            self.last_step = event.step
        elif isinstance(event, Checkpoint):
            self.flush(checkpoint=(event.step, event.path, event.best))
        elif isinstance(event, Log):
            self._log.write(f"{datetime.fromtimestamp(event.time):%Y-%m-%d %H:%M:%S} {event.level}: {event.message}\n")
        elif isinstance(event, (Finished, Failed)):
            raise TypeError("a job returns its summary or raises JobFailed; the runner reports the end")
        self._forward(event)

    def flush(self, checkpoint: tuple[int, str, bool] | None = None) -> None:
        with self._lock:
            if not (self._metrics or self._samples or checkpoint):
                return
            metrics, samples = self._metrics, self._samples
            self._metrics, self._samples = [], []
            if checkpoint is not None:
                step, path, best = checkpoint
                # Relative to the project where it lies inside it, like the run's folder.
                project_dir = self._store.path.parent
                if Path(path).is_absolute() and Path(path).is_relative_to(project_dir):
                    path = Path(path).relative_to(project_dir).as_posix()
                checkpoint = (step, str(path), best)
            self._store.save_run_records(self._run_id, metrics=metrics, samples=samples, checkpoint=checkpoint)

    def _flush_every(self) -> None:
        while not self._closing.wait(self._flush_s):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 -- reported to the job at its next event, which fails it
                self.error = exc
                return

    def close(self) -> None:
        """Stop the timer and write what is left; a failure to is kept in `error`."""
        self._closing.set()
        self._timer.join()
        self._log.close()
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 -- the caller decides what it means for the run
            self.error = self.error or exc


def _save_failed(exc: BaseException) -> JobFailed:
    return JobFailed(
        f"Could not save the run's figures: {exc}",
        hint="Check that the disk has room and the project folder can be written to.",
    )


def load_job(job_path: str) -> Callable[..., Any]:
    """The function named `package.module:function`."""
    module_name, _, attr = job_path.partition(":")
    if not module_name or not attr:
        raise JobFailed(f"{job_path!r} is not a job: a job is named 'package.module:function'")
    try:
        job = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise JobFailed(f"Cannot find the job {job_path!r}: {exc}") from exc
    if not callable(job):
        raise JobFailed(f"{job_path!r} is not a function")
    return job


def _plain_summary(summary: Any) -> dict[str, float | int | str]:
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


def error_text(failed: Failed) -> str:
    """How a failure is recorded in runs.error: the message, then the hint on a line of its own."""
    return f"{failed.message}\n{failed.hint}" if failed.hint else failed.message


def execute(job_path: str, config: Any, ctx: RunContext, sink: Sink, stop: StopFlag) -> Finished | Failed:
    """Run the job here and now, recording the run; emits and returns its Finished or Failed.

    The outcome is in the database before the last event is emitted, so whoever hears it can
    read the run's final row. Errors end in Failed; only an interrupt (Ctrl+C) propagates.
    """
    try:
        project = ctx.open_project()
    except WorkbenchError as exc:
        result = Failed(str(exc), hint="The run's project could not be opened; nothing was recorded.")
        sink(result)
        return result
    lock = _RunLock(ctx.run_dir)
    try:
        if not lock.acquire():
            result = Failed(f"Run {ctx.run_id} is already running in another process", hint="Stop it first.")
        else:
            result = _execute_locked(job_path, config, ctx, project.store, sink, stop)
    finally:
        lock.release()
        project.close()
    sink(result)
    return result


def _execute_locked(job_path, config, ctx: RunContext, store, sink: Sink, stop: StopFlag) -> Finished | Failed:
    store.set_run_status(ctx.run_id, "running")
    recorder = _Recorder(store, ctx.run_id, sink, ctx.run_dir / LOG_NAME)
    try:
        try:
            summary = _plain_summary(load_job(job_path)(config, ctx, recorder, stop))
        finally:
            recorder.close()
        if recorder.error is not None:
            raise _save_failed(recorder.error)
    except JobFailed as exc:
        result = Failed(exc.message, hint=exc.hint, step=exc.step if exc.step is not None else recorder.last_step)
        store.set_run_status(ctx.run_id, "failed", error=error_text(result))
        return result
    except Exception as exc:  # noqa: BLE001 -- a bug in the job: recorded, never raised into the GUI
        log = ctx.run_dir / ERROR_LOG_NAME
        log.write_text(traceback.format_exc(), encoding="utf-8", errors="replace")
        result = Failed(
            f"{type(exc).__name__}: {exc}",
            hint=f"This looks like a bug in the workbench; the details are in {log}.",
            step=recorder.last_step,
        )
        store.set_run_status(ctx.run_id, "failed", error=error_text(result))
        return result
    except BaseException:
        store.set_run_status(ctx.run_id, "cancelled", error="Interrupted")
        raise
    stopped = bool(summary.get("stopped"))
    store.set_run_status(ctx.run_id, "cancelled" if stopped else "finished", summary=summary)
    return Finished(summary, stopped)


def __getattr__(name: str):
    # The runners live in runners.py (one file would pass 400 lines) and are reachable from
    # here, the one place to look; imported on first use, since they import this module.
    if name in ("ThreadJob", "run_in_thread", "ChildJob", "run_in_child"):
        from . import runners

        return getattr(runners, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
