"""`rlhf-workbench ppo`: a PPO run from a terminal, recorded as the app records it (see
core/reward/console.py, which runs it). Each update becomes one line; warnings and checkpoints too."""

from __future__ import annotations

import sys
from pathlib import Path

from ..events import Checkpoint, Event, Log, Metric, Progress, Sample
from ..reward.console import run_job_from_terminal


def run_ppo(
    project_path: Path,
    *,
    config_path: Path | None = None,
    overrides: list[str] = (),
    name: str = "",
    resume: str | None = None,
) -> int:
    """Runs the job to its end (Ctrl+C: stop with a checkpoint); returns the exit status."""
    from .config import PPOConfig
    from .train import JOB_PATH

    return run_job_from_terminal(
        project_path, kind="ppo", command="ppo", config_cls=PPOConfig, job_path=JOB_PATH, printer=PPOPrinter(),
        config_path=config_path, overrides=overrides, name=name, resume=resume,
        describe=lambda config, verb: f"{verb} {config.policy!r} by PPO against reward model {config.reward_model!r}",
        final_path_key="last_checkpoint", final_path_label="last checkpoint",
    )


class PPOPrinter:
    """A sink that prints a PPO run's events as lines (called from the job's thread)."""

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
            at = f"update {event.step}" + (f"/{self.total}" if self.total else "")
            self._line(
                f"{at}  score {v['objective/scores']:+.3f}  kl {v['objective/kl']:.3f}  "
                f"entropy {v['policy/entropy_avg']:.3f}  length {v['val/response_length']:.1f}  "
                f"clip {v['policy/clipfrac_avg']:.3f}  {v['perf/episodes_per_s']:.1f} episodes/s"
            )
        elif isinstance(event, Sample):
            self._line(f"  sample: {_one_line(event.prompt)} -> {_one_line(event.response)}  (score {event.score:+.2f})")
        elif isinstance(event, Checkpoint):
            self._line(f"checkpoint at update {event.step}: {event.path}")

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def _one_line(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
