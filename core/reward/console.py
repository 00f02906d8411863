"""`rlhf-workbench train-rm`: a reward-model run from a terminal, recorded as the app records it.

The run goes through the same runner as the app's (core.jobs: start_run / resume_run, then the
job in a thread), so the project's Runs tab shows it, with its metrics and checkpoints. Events
become plain lines: one per report (log_every steps), per evaluation and per checkpoint.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

from ..config import RewardConfig, config_from_dict, config_to_dict, load_config
from ..errors import WorkbenchError
from ..events import Checkpoint, Event, Log, Metric, Progress


def train_reward_model(
    project_path: Path,
    *,
    config_path: Path | None = None,
    overrides: list[str] = (),
    name: str = "",
    resume: str | None = None,
) -> int:
    """Runs the job to its end (Ctrl+C: stop with a checkpoint); returns the exit status."""
    from .train import JOB_PATH

    return run_job_from_terminal(
        project_path, kind="reward", command="train-rm", config_cls=RewardConfig, job_path=JOB_PATH,
        printer=TrainPrinter(), config_path=config_path, overrides=overrides, name=name, resume=resume,
        describe=lambda config, verb: f"{verb} a reward model on {config.base_model!r}",
        final_path_key="best_checkpoint", final_path_label="best checkpoint",
    )


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
) -> int:
    """A training job from a terminal (train-rm, ppo): settings from --config and --set (or the run's
    own with --resume), the run recorded as the app records it, Ctrl+C a polite stop."""
    from ..jobs import resume_run, run_in_thread, start_run
    from ..project import Project

    with Project.open(project_path) as project:
        if resume:
            if config_path or overrides:
                raise WorkbenchError("--resume continues a run with its own settings; leave out --config and --set")
            run = project.store.run(resume)
            if run is None:
                raise WorkbenchError(f"{project.path}: has no run {resume!r}")
            if run["kind"] != kind:
                raise WorkbenchError(f"{project.path}: run {resume} is a {run['kind']} run, not a {kind} run")
            config = config_from_dict(config_cls, run["config"], source=f"run {resume}")
            ctx = resume_run(project, resume)
        else:
            config = load_config(config_cls, config_path) if config_path else config_cls()
            settings = {**config_to_dict(config), **parse_overrides(overrides)}
            config = config_from_dict(config_cls, settings, source="--set").validate()
            ctx = start_run(project, kind=kind, name=name, config=config)
    verb = "resuming" if resume else "training"
    print(f"run {ctx.run_id}: {describe(config, verb)}; its folder is {ctx.run_dir}", flush=True)
    job = run_in_thread(job_path, config, ctx, printer)
    try:
        while not job.join(0.2):
            pass
    except KeyboardInterrupt:
        print("stopping: writing a checkpoint...", flush=True)
        job.stop()
        job.join()
    result = job.result
    if result is None or not hasattr(result, "summary"):
        message = getattr(result, "message", None) or "the run ended without a result"
        hint = getattr(result, "hint", None)
        print(f"error: {message}" + (f" ({hint})" if hint else ""), file=sys.stderr)
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


class TrainPrinter:
    """A sink that prints a training run's events as lines (called from the job's thread)."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.total: int | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.total = event.total
        elif isinstance(event, Log):
            self._line(event.message if event.level == "info" else f"{event.level}: {event.message}")
        elif isinstance(event, Metric):
            v = event.values
            at = f"step {event.step}" + (f"/{self.total}" if self.total else "")
            if "train/loss" in v:
                self._line(
                    f"{at}  loss {v['train/loss']:.4f}  accuracy {v.get('train/accuracy', float('nan')):.3f}  "
                    f"lr {v.get('train/learning_rate', float('nan')):.3g}  {v.get('perf/pairs_per_s', 0.0):.0f} pairs/s"
                )
            if "eval/loss" in v:
                self._line(f"{at}  validation loss {v['eval/loss']:.4f}  accuracy {v['eval/accuracy']:.3f}")
        elif isinstance(event, Checkpoint):
            self._line(f"checkpoint at step {event.step}: {event.path}" + ("  (best so far)" if event.best else ""))

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)
