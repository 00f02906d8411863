"""A run's records: its row in the project's database, its folder, its lock, its figures.

    ctx = start_run(project, kind="reward", name="first try", config=RewardConfig(...))
    ctx = resume_run(project, run_id)            # continues from the last complete checkpoint

A run's folder (`<project>/runs/<run_id>/`) holds `config.toml` (what it was asked to do),
`log.txt` (its Log events), `error.log` (the traceback of a bug), `crash.log` (a native crash in a
child) and whatever the job writes (checkpoints). The database has its status and times, its
summary (runs.summary, JSON), its figures (metrics, samples) and every complete checkpoint it
reported (the checkpoints table): `resume_run` continues from the last of those.

The process executing a run holds an OS lock on a file in its folder: the database says what a run
was doing, the lock whether anyone still is (it goes with the process, however that ends). A run
marked 'running' whose lock is free lost its process without a word (SIGKILL, a power cut): it is
shown as 'interrupted' (shown_status) and resumes like a stopped one. Resuming passes over a
checkpoint with a damaged file for the newest intact one, and says so in the run's log.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import secrets
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w

from ..errors import DatabaseBusy, JobFailed, WorkbenchError, disk_full_error, is_disk_full_os_error
from ..events import Checkpoint, Event, Failed, Finished, Log, Metric, Progress, Sample, Sink
from ..project import Project

CONFIG_NAME = "config.toml"
LOG_NAME = "log.txt"
ERROR_LOG_NAME = "error.log"
CRASH_LOG_NAME = "crash.log"
LOCK_NAME = ".running.lock"
# Metrics and samples wait at most this long (seconds) before they are written: one commit a
# second costs training nothing, and a crash loses at most the last second of figures.
FLUSH_S = 1.0
# How long one flush waits for a database another program holds before it keeps its figures for
# the next one (short: the job's own thread waits this long at a checkpoint), and after how long a
# busy database is worth a line in the run's log.
BUSY_WAIT_S = 1.0
BUSY_LOG_S = 10.0
_KIND_PREFIX = {"reward": "rm", "ppo": "ppo", "generate": "gen"}


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
    # Why a newer checkpoint was passed over (a damaged file, a folder gone): said in the run's log.
    resume_notes: tuple[str, ...] = ()

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
    if project.store.refusal is not None:  # read-only, or a disk too full to open for writing
        raise project.store.refusal
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
    except BaseException as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        if is_disk_full_os_error(exc):
            raise disk_full_error(run_dir.parent, "the run was not started", cause=exc) from exc
        raise
    return RunContext(project.path, run_id, run_dir)


def resume_run(project: Project, run_id: str) -> RunContext:
    """A context that continues `run_id` from its last complete checkpoint (or from the start)."""
    run = project.store.run(run_id)
    if run is None:
        raise WorkbenchError(f"{project.path}: has no run {run_id!r}")
    run_dir = run_dir_of(project, run)
    if project.store.refusal is not None:
        raise project.store.refusal
    if RunLock.held(run_dir):
        raise WorkbenchError(f"Run {run_id} is running; stop it before resuming it")
    # A run still marked 'running' whose lock nobody holds lost its process without a word (a
    # power cut, the app and its child killed together): it can be resumed like any other.
    last, notes = _newest_intact_checkpoint(project, run_id)
    step = last["step"] if last else None
    project.store.truncate_metrics(run_id, step if step is not None else -1)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = (project.path / last["path"]) if last else None
    return RunContext(project.path, run_id, run_dir, resume=True, resume_checkpoint=checkpoint, resume_step=step,
                      resume_notes=notes)


def _newest_intact_checkpoint(project: Project, run_id: str) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """The newest checkpoint the run reported whose files are whole, and why each newer one was
    passed over. A file cut short (a copy interrupted, a disk that filled, a repair gone wrong)
    costs the steps since the checkpoint before it, not the run; when none is whole the person is
    told which files are damaged, and nothing is changed."""
    from ..models import damaged_files

    recorded = project.store.checkpoints(run_id)
    notes: list[str] = []
    for row in reversed(recorded):
        folder = project.path / row["path"]
        if not folder.is_dir():
            notes.append(f"the checkpoint at step {row['step']} ({folder}) is gone")
            continue
        damaged = damaged_files(folder)
        if not damaged:
            if notes:
                notes[-1] += f"; resuming from the one at step {row['step']} instead"
            return row, tuple(notes)
        notes.append(f"the checkpoint at step {row['step']} is damaged: " + "; ".join(
            f"{path} {problem}" for path, problem in damaged))
    if recorded:
        raise WorkbenchError(f"Run {run_id} has no intact checkpoint to resume from: " + "; ".join(notes))
    return None, ()


def created_run_context(project: Project, run_id: str) -> RunContext:
    """The context for executing a run that was created (start_run) but never started."""
    run = project.store.run(run_id)
    if run is None:
        raise WorkbenchError(f"{project.path}: has no run {run_id!r}")
    if run["status"] != "created":
        raise WorkbenchError(f"run {run_id} has already started ({run['status']}); resume it instead")
    return RunContext(project.path, run_id, run_dir_of(project, run))


def record_end(ctx: RunContext, status: str, error: str) -> None:
    """Mark the run ended, for a supervisor whose run's process died before it could say so
    itself (unless that process recorded its own end just before it went)."""
    try:
        with ctx.open_project() as project:
            project.store.end_live_run(ctx.run_id, status, error=error)
    except WorkbenchError:
        pass  # the project is gone or locked for good: the event still tells the person


def log_tail(run_dir: Path, max_bytes: int = 200_000) -> str:
    """The end of a run's log (its last `max_bytes`), as text; empty when it has none."""
    path = run_dir / LOG_NAME
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def error_text(failed: Failed) -> str:
    """How a failure is recorded in runs.error: the message, then the hint on a line of its own."""
    return f"{failed.message}\n{failed.hint}" if failed.hint else failed.message


# -- who is executing a run --------------------------------------------------------------------

INTERRUPTED = "interrupted"
INTERRUPTED_HELP = ("Its process ended without a word (killed, or the computer stopped) and nobody holds its lock: "
                    "it can be resumed from its last checkpoint.")
# What Resume continues: a run that was stopped, failed, or lost its process.
RESUMABLE = ("cancelled", "failed", INTERRUPTED)


def shown_status(project: Project, run: Mapping[str, Any]) -> str:
    """A run's status as a person should read it. The database says 'running' until the process
    says otherwise; a process killed by SIGKILL (or the app and its child killed together) never
    does. The lock tells: `_execute_recorded` takes it before writing 'running' and writes the end
    before letting go, so 'running' with a free lock is a run whose process is gone."""
    status = run["status"]
    if status == "running" and not RunLock.held(run_dir_of(project, run)):
        return INTERRUPTED
    return status


def run_is_executing(run_dir: Path) -> bool:
    """Whether a process is executing the run whose folder this is (it holds the run's lock)."""
    return RunLock.held(run_dir)


class RunLock:
    """An OS lock on a file in the run's folder, held while a process executes the run."""

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


# -- the figures -------------------------------------------------------------------------------


class Recorder:
    """The sink a recorded job gets: persists its metrics and samples from its own process,
    batched, writes its log, and forwards every event.

    A timer thread writes the batch once a second, so a job that logs a figure and then computes
    for a minute still has it on disk; a Checkpoint is written at once, in the same transaction
    as every figure before it. `_lock` guards the buffers, `_writing` the connection.

    While another program holds the database (a long import), the figures and checkpoint records
    wait here, in order, and each flush tries again: a busy database never fails a run. After
    BUSY_LOG_S the run's log says so, once, and again when they are written.
    """

    def __init__(self, store, run_id: str, forward: Sink, log_path: Path):
        self._store, self._run_id, self._forward, self._flush_s = store, run_id, forward, FLUSH_S
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        # (metrics, samples, checkpoint) batches not yet written, oldest first.
        self._pending: list[tuple[list, list, tuple[int, str, bool] | None]] = []
        self._metrics: list[tuple[int, str, float, float]] = []
        self._samples: list[tuple[int, str, str, float | None, float, dict[str, float]]] = []
        self._busy_since: float | None = None
        self._busy_logged = False
        self.error: BaseException | None = None  # why the figures could not be saved
        self._closing = threading.Event()
        self._log = open(log_path, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115
        self._timer = threading.Thread(target=self._flush_every, name=f"{run_id} metrics", daemon=True)
        self._timer.start()
        self.last_step: int | None = None

    def __call__(self, event: Event) -> None:
        if self.error is not None:
            raise save_failed(self.error)
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
            self._write_log(event.time, event.level, event.message)
        elif isinstance(event, (Finished, Failed)):
            raise TypeError("a job returns its summary or raises JobFailed; the runner reports the end")
        self._forward(event)

    def _write_log(self, t: float, level: str, message: str) -> None:
        if not self._log.closed:
            self._log.write(f"{datetime.fromtimestamp(t):%Y-%m-%d %H:%M:%S} {level}: {message}\n")

    def flush(self, checkpoint: tuple[int, str, bool] | None = None, *, wait_s: float = BUSY_WAIT_S) -> bool:
        """Write every figure so far (and the checkpoint after them). False when the database is
        busy: they stay here for the next flush. Other errors (a full disk) are raised."""
        with self._lock:
            if self._metrics or self._samples or checkpoint:
                if checkpoint is not None:
                    step, path, best = checkpoint
                    # Relative to the project where it lies inside it, like the run's folder.
                    project_dir = self._store.path.parent
                    if Path(path).is_absolute() and Path(path).is_relative_to(project_dir):
                        path = Path(path).relative_to(project_dir).as_posix()
                    checkpoint = (step, str(path), best)
                self._pending.append((self._metrics, self._samples, checkpoint))
                self._metrics, self._samples = [], []
        with self._writing:
            with self._lock:
                batches, self._pending = self._pending, []
            if not batches:
                return True
            try:
                self._store.save_run_records(
                    self._run_id,
                    metrics=[row for m, _, _ in batches for row in m],
                    samples=[row for _, s, _ in batches for row in s],
                    checkpoints=[c for _, _, c in batches if c is not None],
                    wait_s=wait_s,
                )
            except BaseException as exc:
                with self._lock:
                    self._pending[:0] = batches  # nothing was written: keep them, in order
                if isinstance(exc, DatabaseBusy):
                    self._note_busy(batches)
                    return False
                raise
        if self._busy_logged:
            waited = time.monotonic() - self._busy_since
            self._write_log(time.time(), "info", f"the project's database is free again after {waited:.0f} s; "
                            "the figures kept meanwhile are saved")
        self._busy_since, self._busy_logged = None, False
        return True

    def _note_busy(self, batches) -> None:
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        if not self._busy_logged and now - self._busy_since >= BUSY_LOG_S:
            self._busy_logged = True
            n = sum(len(m) + len(s) for m, s, _ in batches)
            message = (f"the project's database is busy (another program is writing to it); the run goes on "
                       f"and keeps its figures ({n} so far) until it can save them")
            self._write_log(time.time(), "warning", message)
            try:
                self._forward(Log(message, level="warning"))
            except Exception:  # noqa: BLE001 -- telling is a courtesy; the figures are what matters
                pass

    def _flush_every(self) -> None:
        while not self._closing.wait(self._flush_s):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 -- reported to the job at its next event, which fails it
                self.error = exc
                return

    def close(self) -> None:
        """Stop the timer and write what is left, waiting for a busy database as long as it takes
        (the run's work is done; only its figures are left to save). A failure is kept in `error`."""
        self._closing.set()
        self._timer.join()
        try:
            while not self.flush():
                time.sleep(self._flush_s)
        except Exception as exc:  # noqa: BLE001 -- the caller decides what it means for the run
            self.error = self.error or exc
        finally:
            self._log.close()


def save_failed(exc: BaseException) -> JobFailed:
    return JobFailed(
        f"Could not save the run's figures: {exc}",
        hint=getattr(exc, "hint", None) or "Check that the disk has room and the project folder can be written to.",
    )
