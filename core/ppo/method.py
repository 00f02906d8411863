"""PPO as a training method: what the CLI (`ppo`), torchrun and the app's PPO tab know of it
(core/training/method.py). Imports no torch."""

from __future__ import annotations

from ..training.console import RunPrinter
from ..training.method import TrainingMethod
from .config import PPOConfig


class PPOPrinter(RunPrinter):
    """One line per update, and the samples."""

    unit = "update"
    print_samples = True

    def metric_lines(self, v: dict[str, float]) -> list[str]:
        return [
            f"score {v['objective/scores']:+.3f}  kl {v['objective/kl']:.3f}  entropy {v['policy/entropy_avg']:.3f}  "
            f"length {v['val/response_length']:.1f}  clip {v['policy/clipfrac_avg']:.3f}  "
            f"{v['perf/episodes_per_s']:.1f} episodes/s"
        ]


def _build_demo_policy(config: PPOConfig) -> None:
    from ..demo_policy import ensure_demo_policy
    from ..models import DEMO

    if config.policy.strip() == DEMO:
        ensure_demo_policy()


def _global_batch_line(config: PPOConfig, world: int) -> str:
    return (
        f"global batch = per-rank {config.batch_size // world} x {world} ranks ({config.batch_size} episodes per "
        f"update); each minibatch of {config.mini_batch_size} episodes is shared by the ranks and its gradients summed"
    )


PPO = TrainingMethod(
    kind="ppo",
    title="PPO",
    job="rlhf_workbench.core.ppo.train:run",
    config=PPOConfig,
    command="ppo",
    help="train a policy by PPO against a reward model",
    description="Run PPO on the project's prompts against a reward model, recording the run as the app does. "
    "Without --config: the demo policy against the project's latest reward model, with settings that suit the "
    "demo project on a CPU.",
    set_example="--set total_episodes=2048 --set policy=/models/my-sft",
    describe=lambda config, verb: f"{verb} {config.policy!r} by PPO against reward model {config.reward_model!r}",
    final_path_key="last_checkpoint",
    final_path_label="last checkpoint",
    printer=PPOPrinter,
    unit="update",
    batch_line=_global_batch_line,
    prepare=_build_demo_policy,
)
