"""`rlhf-workbench train-rm`: a reward-model run from a terminal (core/terminal_runs.py runs it).
Events become plain lines: one per report (log_every steps), per evaluation and per checkpoint."""

from __future__ import annotations

from pathlib import Path

from ..config import RewardConfig
from ..terminal_runs import EventLines, RunPrinter, run_job_from_terminal


def train_reward_model(
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
    from .train import JOB_PATH

    return run_job_from_terminal(
        project_path, kind="reward", command="train-rm", config_cls=RewardConfig, job_path=JOB_PATH,
        printer=EventLines() if events else TrainPrinter(), config_path=config_path, overrides=overrides, name=name,
        resume=resume, created_run=created_run,
        describe=lambda config, verb: f"{verb} a reward model on {config.base_model!r}",
        final_path_key="best_checkpoint", final_path_label="best checkpoint", check_world=RewardConfig.check_world,
        batch_line=_global_batch_line, prepare=_build_demo_model,
    )


def _build_demo_model(config: RewardConfig) -> None:
    from ..models import DEMO, ensure_demo_model

    if config.base_model.strip() == DEMO:
        ensure_demo_model()


def _global_batch_line(config: RewardConfig, world: int) -> str:
    accum = config.gradient_accumulation_steps
    return (
        f"global batch = per-rank {config.batch_size // world} x {world} ranks x accumulation {accum} "
        f"({config.batch_size * accum} pairs per optimizer step)"
    )


class TrainPrinter(RunPrinter):
    """Reward-model training: loss, accuracy, learning rate and speed; validation figures."""

    def metric_lines(self, v: dict[str, float]) -> list[str]:
        lines = []
        if "train/loss" in v:
            lines.append(
                f"loss {v['train/loss']:.4f}  accuracy {v.get('train/accuracy', float('nan')):.3f}  "
                f"lr {v.get('train/learning_rate', float('nan')):.3g}  {v.get('perf/pairs_per_s', 0.0):.0f} pairs/s"
            )
        if "eval/loss" in v:
            lines.append(f"validation loss {v['eval/loss']:.4f}  accuracy {v['eval/accuracy']:.3f}")
        return lines
