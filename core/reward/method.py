"""The reward model as a training method: what the CLI (`train-rm`), torchrun and the app's
Reward model tab know of it (core/training/method.py). Imports no torch."""

from __future__ import annotations

from ..training.console import RunPrinter
from ..training.memory import MemoryPlan, ModelUse, Pass
from ..training.method import TrainingMethod
from .config import RewardConfig


class RewardPrinter(RunPrinter):
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


def _memory_plan(config: RewardConfig) -> MemoryPlan:
    """One model with a scalar head; a forward pass holds batch_size pairs, both sides of each."""
    model = ModelUse("reward model", config.base_model, head="scalar", lora=config.lora, setting="base_model",
                     train=Pass(2 * config.batch_size, config.max_length))
    return MemoryPlan((model,), config.precision, config.gradient_checkpointing, config.lora_r,
                      config.lora_target_modules, config.device)


REWARD_MODEL = TrainingMethod(
    kinds=("reward",),
    title="Reward model",
    job="rlhf_workbench.core.reward.train:run",
    config=RewardConfig,
    command="train-rm",
    help="train a reward model on a project's labelled pairs",
    description="Train a reward model (Bradley-Terry) on the project's pairs judged 'A better' or 'B better', "
    "recording the run as the app does. Without --config: the tiny demo model with settings that suit the "
    "demo project on a CPU.",
    set_example="--set epochs=3 --set base_model=/models/my-rm",
    describe=lambda config, verb: f"{verb} a reward model on {config.base_model!r}",
    final_path_key="best_checkpoint",
    final_path_label="best checkpoint",
    printer=RewardPrinter,
    batch_line=_global_batch_line,
    prepare=_build_demo_model,
    # batch_size is the global batch (torchrun's ranks share it); the last step of an epoch may hold fewer
    examples_per_step=lambda config: (config.batch_size * config.gradient_accumulation_steps, "pairs"),
    memory_plan=_memory_plan,
)
