"""A training job from a terminal (`train-rm`, `ppo`), recorded as the app records it.

The run goes through the same runner as the app's (core.jobs: start_run / resume_run, then the
job in a thread), so the project's Runs tab shows it, with its metrics and checkpoints. A printer
turns the events into lines (RunPrinter; each command says how its metrics read), or into JSON
lines for the app that launched the command (EventLines, core/torchrun.py). Ctrl+C or SIGTERM
stops the run politely, with a checkpoint.

Under `torchrun --nproc_per_node=N` every rank runs the command: rank 0 creates or resumes the
run, records it and prints, and hands the run to the others; they train beside it
(core.distributed) and say nothing unless they fail, naming their rank.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import tomllib
import traceback
from pathlib import Path
from typing import Any

from .config import config_from_dict, config_to_dict, load_config
from .errors import WorkbenchError
from .events import Checkpoint, Event, Failed, Finished, Log, Metric, Progress


def run_job_from_terminal(
    project_path: Path,
    *,
    kind: str,
    command: str,
    config_cls: type,
    job_path: str,
    printer,
    config_path: Path | None,
    overrides: list[str],
    name: str,
    resume: str | None,
    describe,
    final_path_key: str,
    final_path_label: str,
    check_world=None,
    batch_line=None,
    prepare=None,
    created_run: str | None = None,
) -> int:
    """A training job from a terminal (train-rm, ppo): settings from --config and --set (or the run's
    own with --resume), the run recorded as the app records it, Ctrl+C a polite stop.

    `check_world(config, world_size)` says the job can train under torchrun (and refuses settings
    the ranks cannot share); without it, a torchrun launch is refused. `batch_line(config, world)`
    is the line rank 0 prints at start about how the ranks share the batch. `created_run` is a run
    the app created (and configured) for this command to execute. `prepare(config)` runs
    on every rank before they join: once a process group exists, transformers' save_pretrained
    writes only on rank 0, so a model the job would build the first time (the demo models) is
    built here instead, by every rank at once (build_once: the first one renamed into place wins).
    """
    from . import distributed
    from .jobs import resume_run, run_in_thread, start_run
    from .project import Project

    multi = distributed.launched()
    if multi and check_world is None:
        raise WorkbenchError(f"{command} does not train under torchrun yet; run it as one process")
    with Project.open(project_path) as project:
        if resume or created_run:
            run_id = resume or created_run
            if config_path or overrides:
                raise WorkbenchError(f"run {run_id} has its own settings; leave out --config and --set")
            run = project.store.run(run_id)
            if run is None:
                raise WorkbenchError(f"{project.path}: has no run {run_id!r}")
            if run["kind"] != kind:
                raise WorkbenchError(f"{project.path}: run {run_id} is a {run['kind']} run, not a {kind} run")
            config = config_from_dict(config_cls, run["config"], source=f"run {run_id}")
            if not multi:
                ctx = resume_run(project, resume) if resume else created_run_context(project, created_run)
        else:
            config = load_config(config_cls, config_path) if config_path else config_cls()
            settings = {**config_to_dict(config), **parse_overrides(overrides)}
            config = config_from_dict(config_cls, settings, source="--set").validate()
            if not multi:
                ctx = start_run(project, kind=kind, name=name, config=config)
    if multi:
        # Every rank read the same settings; each refuses a bad one itself, before any waiting.
        check_world(config, distributed.env_world_size())
        if prepare is not None:
            prepare(config)
        distributed.setup(getattr(config, "device", "auto"))
        try:
            return _run_on_ranks(
                project_path, kind=kind, command=command, job_path=job_path, printer=printer, config=config,
                name=name, resume=resume, describe=describe, final_path_key=final_path_key,
                final_path_label=final_path_label, batch_line=batch_line, created_run=created_run,
            )
        finally:
            distributed.cleanup()
    verb = "resuming" if resume else "training"
    print(f"run {ctx.run_id}: {describe(config, verb)}; its folder is {ctx.run_dir}", flush=True)
    job = run_in_thread(job_path, config, ctx, printer)
    _wait(job)
    return _report(job.result, ctx, project_path, command, final_path_key, final_path_label)


def created_run_context(project, run_id: str):
    """The context for executing a run that was created (start_run) but never started."""
    from .jobs import RunContext, run_dir_of

    run = project.store.run(run_id)
    if run["status"] != "created":
        raise WorkbenchError(f"run {run_id} has already started ({run['status']}); resume it instead")
    return RunContext(project.path, run_id, run_dir_of(project, run))


def _wait(job) -> None:
    """Waits for the job; Ctrl+C or SIGTERM stops it politely, with a checkpoint.

    SIGTERM is how a cluster's scheduler ends a job at its time limit, and how torchrun ends the
    ranks that are left when one fails: a rank stopping politely then finds its peer gone at the
    next collective and records that (failed: lost contact), where dying at once would leave
    the run marked 'running' with nothing said. A second signal ends the process at once.
    """
    previous = _on_signals(_interrupt)
    try:
        while not job.join(0.2):
            pass
    except KeyboardInterrupt:
        print("stopping: writing a checkpoint...", flush=True)
        job.stop()
        # torchrun forwards the terminal's Ctrl+C to ranks that got it already: a second signal
        # right after the first is that echo, not a person insisting.
        first = time.monotonic()
        _on_signals(lambda signum, frame: _interrupt(signum, frame) if time.monotonic() - first > ECHO_S else None)
        job.join()
    finally:
        _on_signals(*previous)


ECHO_S = 2.0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _on_signals(on_term, on_int=None):
    """Installs handlers for SIGTERM and SIGINT (`on_int` defaults to `on_term`); returns the ones
    before. Only the main thread can, which is where Python runs them; elsewhere nothing changes."""
    if on_term is None or threading.current_thread() is not threading.main_thread():
        return None, None
    before = signal.signal(signal.SIGTERM, on_term)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background: stay deaf to Ctrl+C
        return before, None
    return before, signal.signal(signal.SIGINT, on_int or on_term)


def _report(result, ctx, project_path, command, final_path_key, final_path_label, *, who: str = "") -> int:
    if result is None or not hasattr(result, "summary"):
        message = getattr(result, "message", None) or "the run ended without a result"
        hint = getattr(result, "hint", None)
        print(f"error: {who}{message}" + (f" ({hint})" if hint else ""), file=sys.stderr)
        return 1
    summary = result.summary
    figures = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items() if k not in (final_path_key, "stopped")
    )
    print(f"{'stopped' if result.stopped else 'done'}: {figures}")
    if summary.get(final_path_key):
        print(f"{final_path_label}: {summary[final_path_key]}")
    if result.stopped:
        print(f"resume with: rlhf-workbench {command} {project_path} --resume {ctx.run_id}")
    return 0


def _run_on_ranks(project_path, *, kind, command, job_path, printer, config, name, resume, describe,
                  final_path_key, final_path_label, batch_line, created_run) -> int:
    """One rank's part of a torchrun launch (the process group is up)."""
    from . import distributed
    from .jobs import resume_run, run_in_thread, start_run
    from .project import Project

    rank, world = distributed.rank(), distributed.world_size()
    ctx, failure = None, None
    if rank == 0:
        try:
            with Project.open(project_path) as project:
                if resume:
                    ctx = resume_run(project, resume)
                elif created_run:
                    ctx = created_run_context(project, created_run)
                else:
                    ctx = start_run(project, kind=kind, name=name, config=config)
        except WorkbenchError as exc:
            failure = str(exc)
    # The others learn the run (or why there is none) from rank 0, so all use one run folder.
    ctx, failure = distributed.broadcast_object((ctx, failure))
    if failure is not None:
        if rank == 0:
            raise WorkbenchError(failure)
        return 1
    if rank == 0:
        verb = "resuming" if resume else "training"
        print(f"run {ctx.run_id}: {describe(config, verb)}; its folder is {ctx.run_dir}", flush=True)
        if batch_line is not None:
            print(batch_line(config, world), flush=True)
        job = run_in_thread(job_path, config, ctx, printer)
    else:
        job = _RankJob(job_path, config, ctx)
    _wait(job)
    who = f"rank {rank}: "
    if rank == 0:
        status = _report(job.result, ctx, project_path, command, final_path_key, final_path_label, who=who)
    else:
        status = _report_rank(job.result, who)
    if status == 0:
        # Nobody leaves before everyone is done: a rank that failed instead breaks this barrier,
        # and the ones waiting in it end too, instead of waiting for a peer that is gone.
        try:
            distributed.barrier()
        except Exception as exc:  # noqa: BLE001 -- any failure of a peer, however the backend words it
            print(f"error: {who}another rank failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                  file=sys.stderr, flush=True)
            return 1
    return status


def _report_rank(result, who: str) -> int:
    if isinstance(result, Finished):
        return 0
    message = getattr(result, "message", None) or "the run ended without a result"
    hint = getattr(result, "hint", None)
    print(f"error: {who}{message}" + (f" ({hint})" if hint else ""), file=sys.stderr, flush=True)
    return 1


class _RankJob:
    """The job on a rank other than 0, in a thread like ThreadJob: unrecorded (rank 0 records the
    run for all), its events dropped, its end kept in `result` as Finished or Failed."""

    def __init__(self, job_path: str, config: Any, ctx):
        self.result: Finished | Failed | None = None
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(job_path, config, ctx), name="rank job", daemon=True)
        self._thread.start()

    def _main(self, job_path: str, config: Any, ctx) -> None:
        from . import distributed
        from .jobs import JobFailed, load_job

        try:
            summary = load_job(job_path)(config, ctx, distributed.drop_events, self._stop.is_set) or {}
            self.result = Finished(summary, bool(summary.get("stopped")))
        except JobFailed as exc:
            self.result = Failed(exc.message, hint=exc.hint, step=exc.step)
        except Exception as exc:  # noqa: BLE001 -- no run folder log of its own: the traceback goes to stderr
            traceback.print_exc()
            self.result = Failed(f"{type(exc).__name__}: {exc}")
        finally:
            self._ended.set()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)  # not Thread.join: see ThreadJob.join


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs, each VALUE read as TOML (3, 1e-4, true, "text"); a bare word is a string."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WorkbenchError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=3")
        try:
            values[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = value.strip()
    return values


class RunPrinter:
    """A sink that prints a run's events as lines (called from the job's thread); subclasses say
    how a Metric reads (`metric_lines`) and what a step is called (`unit`)."""

    unit = "step"

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.total: int | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.total = event.total
        elif isinstance(event, Log):
            self._line(event.message if event.level == "info" else f"{event.level}: {event.message}")
        elif isinstance(event, Metric):
            at = f"{self.unit} {event.step}" + (f"/{self.total}" if self.total else "")
            for line in self.metric_lines(event.values):
                self._line(f"{at}  {line}")
        elif isinstance(event, Checkpoint):
            self._line(f"checkpoint at {self.unit} {event.step}: {event.path}" + ("  (best so far)" if event.best else ""))
        else:
            self.other(event)

    def metric_lines(self, values: dict[str, float]) -> list[str]:
        return []

    def other(self, event: Event) -> None:
        """Events the base class does not print (samples, for PPO)."""

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class EventLines:
    """A sink that prints every event as one line of JSON (events.event_line), for the app that
    launched this command under torchrun to read back (core/torchrun.py)."""

    def __call__(self, event: Event) -> None:
        from .events import event_line

        print(event_line(event), flush=True)
