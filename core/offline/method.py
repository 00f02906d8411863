"""SFT and DPO as one training method: what the CLI (`dpo`, `sft`), torchrun and the app's Offline
tab know of them (core/training/method.py). A run's kind is its method. Imports no torch."""

from __future__ import annotations

from ..demo_policy import DEMO_POLICY_SPEC
from ..generate import GenerateConfig
from ..training.console import RunPrinter
from ..training.memory import MemoryPlan, ModelUse, Pass
from ..training.method import PolicyOutput, TrainingMethod
from .config import METHOD_TITLES, METHODS, OfflineConfig


class OfflinePrinter(RunPrinter):
    """SFT: loss and token accuracy; DPO: loss, implicit-reward accuracy and margin; validation."""

    def metric_lines(self, v: dict[str, float]) -> list[str]:
        lines = []
        if "train/loss" in v:
            if "rewards/accuracies" in v:
                detail = f"accuracy {v['rewards/accuracies']:.3f}  margin {v.get('rewards/margins', float('nan')):+.3f}"
            else:
                detail = f"token accuracy {v.get('mean_token_accuracy', float('nan')):.3f}"
            unit = "pairs/s" if "perf/pairs_per_s" in v else "sequences/s"
            speed = v.get("perf/pairs_per_s", v.get("perf/sequences_per_s", 0.0))
            lines.append(f"loss {v['train/loss']:.4f}  {detail}  lr {v.get('train/learning_rate', float('nan')):.3g}  "
                         f"{speed:.0f} {unit}")
        if "eval/loss" in v:
            accuracy = v.get("eval/accuracy", v.get("eval/mean_token_accuracy"))
            name = "accuracy" if "eval/accuracy" in v else "token accuracy"
            lines.append(f"validation loss {v['eval/loss']:.4f}  {name} {accuracy:.3f}")
        return lines


def _build_demo_policy(config: OfflineConfig) -> None:
    from ..demo_policy import ensure_demo_policy
    from ..models import DEMO

    if config.policy.strip() == DEMO:
        ensure_demo_policy()


def _global_batch_line(config: OfflineConfig, world: int) -> str:
    accum = config.gradient_accumulation_steps
    unit = "pairs" if config.method == "dpo" else "sequences"
    return (
        f"global batch = per-rank {config.batch_size // world} x {world} ranks x accumulation {accum} "
        f"({config.batch_size * accum} {unit} per optimizer step)"
    )


def _sampling(config: OfflineConfig) -> dict:
    """An SFT or DPO run samples nothing while it trains: compared with its reference, both sample
    as the Generate dialog does by default, on every prompt of the project."""
    defaults = GenerateConfig()
    return dict(
        reference=config.policy, prompt_origin=None, max_new_tokens=defaults.max_new_tokens,
        temperature=defaults.temperature, top_p=defaults.top_p, max_prompt_length=defaults.max_prompt_length,
        device=config.device, precision=config.precision, trust_remote_code=config.trust_remote_code,
    )


def _describe(config: OfflineConfig, verb: str) -> str:
    return f"{verb} {config.policy!r} by {METHOD_TITLES[config.method]}"


def _memory_plan(config: OfflineConfig) -> MemoryPlan:
    """One policy. DPO's reference is that policy before training: its log-probabilities are
    computed once, before the first step, so no second model is held. The loss reads logits at the
    response's tokens alone (ResponseLogits): taken as half of max_length."""
    sequences = config.batch_size * (2 if config.method == "dpo" else 1)
    run = Pass(sequences, config.max_length, logit_tokens=max(1, config.max_length // 2))
    policy = ModelUse("policy", config.policy, train=run, infer=(run,) if config.method == "dpo" else (),
                      demo=DEMO_POLICY_SPEC, lora=config.lora, setting="policy")
    return MemoryPlan((policy,), config.precision, config.gradient_checkpointing, config.lora_r,
                      config.lora_target_modules, config.device)


OFFLINE = TrainingMethod(
    kinds=METHODS,
    title="SFT / DPO",
    job="rlhf_workbench.core.offline.train:run",
    config=OfflineConfig,
    command="dpo",
    help="train a policy on the labelled pairs directly by DPO (or supervised, by SFT: the `sft` command)",
    description="Train a policy on the project's labelled pairs by DPO, no reward model and no sampling, recording "
    "the run as the app does; `sft` fine-tunes it on the chosen responses (or a prompt/response file) instead. "
    "Without --config: the demo policy with settings that suit the demo project on a CPU.",
    set_example="--set beta=0.1 --set loss_type=ipo --set policy=/models/my-sft",
    describe=_describe,
    final_path_key="best_checkpoint",
    final_path_label="best checkpoint",
    printer=OfflinePrinter,
    batch_line=_global_batch_line,
    prepare=_build_demo_policy,
    kind_of=lambda config: config.method,
    aliases={"sft": {"method": "sft"}},
    policy=PolicyOutput(folder=None, sampling=_sampling),  # a checkpoint is a causal-LM folder
    # batch_size is the global batch (torchrun's ranks share it); the last step of an epoch may hold fewer
    examples_per_step=lambda config: (
        config.batch_size * config.gradient_accumulation_steps, "pairs" if config.method == "dpo" else "sequences"
    ),
    memory_plan=_memory_plan,
)
