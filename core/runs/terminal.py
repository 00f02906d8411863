"""A training run from a terminal (`train-rm`, `ppo`, ...), recorded as the app records it.

The run goes through the same records and runner as the app's (start_run / resume_run, then
the job in a ThreadRunner), so the project's Runs tab shows it, with its metrics and checkpoints.
The method's printer turns the events into lines, or EventLines into JSON lines for the app that
launched the command (torchrun.py). Ctrl+C or SIGTERM stops the run politely, with a checkpoint.

Under `torchrun --nproc_per_node=N` every rank runs the command: rank 0 creates or resumes the
run, records it and prints, and hands the run to the others; they train beside it
(core.training.distributed) unrecorded, and say nothing unless they fail, naming their rank.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError
from ..events import Failed, Finished
from ..project import Project
from ..training.config import config_from_dict, config_to_dict, load_config
from ..training.console import EventLines
from ..training.method import TrainingMethod
from ..training.run_models import check_model_settings
from .records import RunContext, created_run_context, resume_run, start_run
from .thread import ThreadRunner
from .work import Work

ECHO_S = 2.0


# Signals that came before the run's runner was up (see defer_signals).
_early_signals: list[int] = []


def defer_signals():
    """Note SIGTERM and Ctrl+C instead of dying of them, until `_wait` takes them over. The CLI
    calls this first thing for a training command: Python's default would kill the process
    wherever it is, and between start_run and the job's first line that left a run marked
    'created' for ever, with no checkpoint and nothing said. A signal noted before the run exists
    ends the command with nothing recorded; after, it stops the run politely like any other.
    Returns what puts the handlers before it back (for a caller that goes on: tests, notebooks)."""
    _early_signals.clear()
    previous = _on_signals(lambda signum, frame: _early_signals.append(signum))
    return lambda: _on_signals(*previous)


def _stopped_early() -> None:
    if _early_signals:
        name = signal.Signals(_early_signals[0]).name
        raise WorkbenchError(f"stopped ({name}) before the run was created; nothing was recorded")


def run_from_terminal(
    method: TrainingMethod,
    project_path: Path,
    *,
    config_path: Path | None = None,
    overrides: list[str] = (),
    name: str = "",
    resume: str | None = None,
    created_run: str | None = None,
    events: bool = False,
    fixed: Mapping[str, Any] | None = None,
    preset: str | None = None,
    force: bool = False,
) -> int:
    """Runs `method` on the project to its end and returns the exit status: settings from
    --config and --set (or the run's own with --resume), Ctrl+C a polite stop. `created_run` is
    a run the app created (and configured) for this command to execute; `events` prints JSON
    lines for it instead of the method's lines. `fixed`: settings the command stands for (`ppo`
    is `rl` with method ppo); another value for one of them is refused, naming it. The memory
    estimate is printed first; a run that cannot fit is refused unless `force` (a run the app
    created was shown the estimate there, and only prints it)."""
    from ..training import distributed

    multi = distributed.launched()
    if multi and not method.distributed:
        raise WorkbenchError(f"{method.command} does not train under torchrun yet; run it as one process")
    ctx = None
    with Project.open(project_path) as project:
        if resume or created_run:
            if preset is not None:
                raise WorkbenchError(f"run {resume or created_run} has its own settings; leave out --preset")
            config = _run_config(method, project, resume or created_run, config_path, overrides)
            for key, value in (fixed or {}).items():
                if getattr(config, key) != value:
                    raise WorkbenchError(f"run {resume or created_run} has {key} {getattr(config, key)}; this command "
                                         f"runs {key} {value} (use `{method.command}`)")
            if not multi:
                _check_memory(method, config, project, force=force or bool(created_run), quiet=events)
                ctx = resume_run(project, resume) if resume else created_run_context(project, created_run)
        else:
            config = config_from_options(method, config_path, overrides, fixed, preset)
            check_model_settings(config, project)  # a bad folder refused before a run exists
            _stopped_early()
            if not multi:
                _check_memory(method, config, project, force=force, quiet=events)
                ctx = start_run(project, kind=method.run_kind(config), name=name, config=config)
    printer = EventLines() if events else method.printer()
    if multi:
        # Every rank read the same settings; each refuses a bad one itself, before any waiting.
        world = distributed.env_world_size()
        config.check_world(world)
        _check_memory(method, _rank_share(config, world), project_path, force=force or bool(created_run),
                      quiet=events or os.environ.get("RANK", "0") != "0")
        if method.prepare is not None:
            method.prepare(config)
        distributed.setup(getattr(config, "device", "auto"))
        try:
            return _run_on_ranks(method, project_path, config, printer, name=name, resume=resume,
                                 created_run=created_run)
        finally:
            distributed.cleanup()
    print(f"run {ctx.run_id}: {method.describe(config, 'resuming' if resume else 'training')}; "
          f"its folder is {ctx.run_dir}", flush=True)
    runner = ThreadRunner(Work.job(method.job, config, ctx), printer)
    _wait(runner)
    return _report(method, runner.result, ctx, project_path)


def _check_memory(method: TrainingMethod, config, project: Project | Path, *, force: bool, quiet: bool) -> None:
    """Prints the memory estimate's line; refuses a run that cannot fit unless forced, with the
    settings that would make it fit. Under torchrun every rank decides alike (one settings, one
    arithmetic), so all refuse together; rank 0 alone prints."""
    from ..training.memory import memory_check

    if isinstance(project, Project):
        check = memory_check(method, config, project=project)
    else:
        check = memory_check(method, config, project)
    if not quiet:
        print(f"memory: {check.line}", flush=True)
    if check.fits or force:
        return
    tips = "; ".join(" ".join(f"--set {k}={_toml(v)}" for k, v in tip.changes.items()) + f" ({tip.label.rsplit(': ', 1)[-1]})"
                     for tip in check.suggestions)
    raise WorkbenchError(f"this run {check.line.removesuffix(' — does not fit')}, more than it has"
                         + (f"; try {tips}" if tips else "") + "; --force starts it anyway")


def _rank_share(config, world: int):
    """The settings one rank's memory sees: every rank holds every model, and its share of the
    batch (batch_size is the global batch of a forward pass, or of an update for RL)."""
    import dataclasses

    return dataclasses.replace(config, batch_size=max(1, config.batch_size // world)) if world > 1 else config


def _toml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def config_from_options(method: TrainingMethod, config_path: Path | None, overrides: list[str] = (),
                        fixed: Mapping[str, Any] | None = None, preset: str | None = None) -> Any:
    """The settings a new run of `method` starts with: the defaults, the --preset's over them, the
    --config file's over those (the settings it names), each --set over it all, and what the command
    fixes (`ppo`: method ppo); validated. Copy command's test reads the commands it builds back
    through here (core/cli.py's `training_config`)."""
    config = load_config(method.config, config_path) if config_path else method.config()
    given = parse_overrides(overrides)
    settings = {**config_to_dict(config), **given}
    if preset is not None:
        from ..training.presets import find_preset

        named = set(_file_keys(config_path)) | set(given)
        algorithm = (fixed or {}).get("method") or settings.get("method") or method.kinds[0]
        settings.update({k: v for k, v in find_preset(preset).settings_for(method.config, algorithm).items()
                         if k not in named})
    for key, value in (fixed or {}).items():
        # A --set that says otherwise is refused even when it names the default (`sft --set
        # method=dpo`); a --config file's value only when it is not the default (a full file, as
        # Copy command writes, has every setting).
        contradicts = given[key] != value if key in given else (
            key in settings and settings[key] != getattr(method.config(), key) and settings[key] != value)
        if contradicts:
            raise WorkbenchError(f"{key}: this command runs {key} {value}, not {settings[key]}")
        settings[key] = value
    return config_from_dict(method.config, settings, source="--set").validate()


def _file_keys(config_path: Path | None) -> list[str]:
    """The settings a --config file names (load_config has read it already: it is valid TOML)."""
    if config_path is None:
        return []
    import tomllib

    with Path(config_path).open("rb") as fh:
        return list(tomllib.load(fh))


def _run_config(method: TrainingMethod, project: Project, run_id: str, config_path, overrides) -> Any:
    if config_path or overrides:
        raise WorkbenchError(f"run {run_id} has its own settings; leave out --config and --set")
    run = project.store.run(run_id)
    if run is None:
        raise WorkbenchError(f"{project.path}: has no run {run_id!r}")
    if run["kind"] not in method.kinds:
        raise WorkbenchError(f"{project.path}: run {run_id} is a {run['kind']} run, not a {method.command} run")
    return config_from_dict(method.config, run["config"], source=f"run {run_id}")


def _wait(runner: ThreadRunner) -> None:
    """Waits for the run; Ctrl+C or SIGTERM stops it politely, with a checkpoint.

    SIGTERM is how a cluster's scheduler ends a job at its time limit, and how torchrun ends the
    ranks that are left when one fails: a rank stopping politely then finds its peer gone at the
    next collective and records that (failed: lost contact), where dying at once would leave
    the run marked 'running' with nothing said. A second signal ends the process at once.
    """
    previous = _on_signals(_interrupt)
    try:
        if _early_signals:  # asked to stop before this could listen: the run stops at its first chance
            _early_signals.clear()
            raise KeyboardInterrupt
        while not runner.join(0.2):
            pass
    except KeyboardInterrupt:
        print("stopping: writing a checkpoint...", flush=True)
        runner.stop()
        # torchrun forwards the terminal's Ctrl+C to ranks that got it already: a second signal
        # right after the first is that echo, not a person insisting.
        first = time.monotonic()
        _on_signals(lambda signum, frame: _interrupt(signum, frame) if time.monotonic() - first > ECHO_S else None)
        runner.join()
    finally:
        _on_signals(*previous)


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


def _report(method: TrainingMethod, result, ctx: RunContext, project_path, *, who: str = "") -> int:
    if not isinstance(result, Finished):
        return _report_failure(result, who)
    summary = result.summary
    figures = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
        if k not in (method.final_path_key, "stopped")
    )
    print(f"{'stopped' if result.stopped else 'done'}: {figures}")
    if summary.get(method.final_path_key):
        print(f"{method.final_path_label}: {summary[method.final_path_key]}")
    if result.stopped:
        print(f"resume with: rlhf-workbench {method.command} {project_path} --resume {ctx.run_id}")
    return 0


def _report_failure(result: Failed | None, who: str) -> int:
    message = getattr(result, "message", None) or "the run ended without a result"
    hint = getattr(result, "hint", None)
    print(f"error: {who}{message}" + (f" ({hint})" if hint else ""), file=sys.stderr, flush=True)
    return 1


def _run_on_ranks(method: TrainingMethod, project_path, config, printer, *, name, resume, created_run) -> int:
    """One rank's part of a torchrun launch (the process group is up)."""
    from ..training import distributed

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
                    ctx = start_run(project, kind=method.run_kind(config), name=name, config=config)
        except WorkbenchError as exc:
            failure = str(exc)
    # The others learn the run (or why there is none) from rank 0, so all use one run folder.
    ctx, failure = distributed.broadcast_object((ctx, failure))
    if failure is not None:
        if rank == 0:
            raise WorkbenchError(failure)
        return 1
    who = f"rank {rank}: "
    if rank == 0:
        print(f"run {ctx.run_id}: {method.describe(config, 'resuming' if resume else 'training')}; "
              f"its folder is {ctx.run_dir}", flush=True)
        if method.batch_line is not None:
            print(method.batch_line(config, world), flush=True)
        runner = ThreadRunner(Work.job(method.job, config, ctx), printer)
        _wait(runner)
        status = _report(method, runner.result, ctx, project_path, who=who)
    else:
        # Rank 0 records the run for all: the others' events go nowhere, their end to the terminal.
        runner = ThreadRunner(Work.job(method.job, config, ctx, record=False))
        _wait(runner)
        status = 0 if isinstance(runner.result, Finished) else _report_failure(runner.result, who)
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
