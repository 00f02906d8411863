"""`rlhf-workbench ppo`: a PPO run from a terminal, recorded as the app records it (see
core/terminal_runs.py, which runs it). Each update becomes one line; warnings and checkpoints too."""

from __future__ import annotations

from pathlib import Path

from ..events import Event, Sample
from ..terminal_runs import EventLines, RunPrinter, run_job_from_terminal


def run_ppo(
    project_path: Path,
    *,
    config_path: Path | None = None,
    overrides: list[str] = (),
    name: str = "",
    resume: str | None = None,
    created_run: str | None = None,
    events: bool = False,
) -> int:
    """Runs the job to its end (Ctrl+C: stop with a checkpoint); returns the exit status."""
    from .config import PPOConfig
    from .train import JOB_PATH

    return run_job_from_terminal(
        project_path, kind="ppo", command="ppo", config_cls=PPOConfig, job_path=JOB_PATH,
        printer=EventLines() if events else PPOPrinter(), config_path=config_path, overrides=overrides, name=name,
        resume=resume, created_run=created_run,
        describe=lambda config, verb: f"{verb} {config.policy!r} by PPO against reward model {config.reward_model!r}",
        final_path_key="last_checkpoint", final_path_label="last checkpoint", check_world=PPOConfig.check_world,
        batch_line=_global_batch_line, prepare=_build_demo_policy,
    )


def _build_demo_policy(config) -> None:
    from ..models import DEMO
    from .demo_policy import ensure_demo_policy

    if config.policy.strip() == DEMO:
        ensure_demo_policy()


def _global_batch_line(config, world: int) -> str:
    return (
        f"global batch = per-rank {config.batch_size // world} x {world} ranks ({config.batch_size} episodes per "
        f"update); each minibatch of {config.mini_batch_size} episodes is shared by the ranks and its gradients summed"
    )


class PPOPrinter(RunPrinter):
    """One line per update, and the samples."""

    unit = "update"

    def metric_lines(self, v: dict[str, float]) -> list[str]:
        return [
            f"score {v['objective/scores']:+.3f}  kl {v['objective/kl']:.3f}  entropy {v['policy/entropy_avg']:.3f}  "
            f"length {v['val/response_length']:.1f}  clip {v['policy/clipfrac_avg']:.3f}  "
            f"{v['perf/episodes_per_s']:.1f} episodes/s"
        ]

    def other(self, event: Event) -> None:
        if isinstance(event, Sample):
            self._line(f"  sample: {_one_line(event.prompt)} -> {_one_line(event.response)}  (score {event.score:+.2f})")


def _one_line(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
