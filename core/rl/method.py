"""The RL methods (PPO, RLOO, GRPO) as one training method: what the CLI (`rl`, and `ppo` for
PPO), torchrun and the app's RL tab know of them (core/training/method.py). A run's kind is its
method, so the Runs tab and the run ids say which one it was. Imports no torch."""

from __future__ import annotations

from ..demo_policy import DEMO_POLICY_SPEC
from ..models import DEMO_MODEL_SPEC
from ..training.console import RunPrinter
from ..training.memory import MemoryPlan, ModelUse, Pass
from ..training.method import PolicyOutput, TrainingMethod
from .config import METHOD_TITLES, METHODS, RLConfig


class RLPrinter(RunPrinter):
    """One line per update, and the samples."""

    unit = "update"
    print_samples = True

    def metric_lines(self, v: dict[str, float]) -> list[str]:
        kl = f"kl {v['objective/kl']:.3f}  " if "objective/kl" in v else ""
        spread = f"group std {v['reward_std_in_group']:.3f}  " if "reward_std_in_group" in v else ""
        gold = f"gold {v['objective/gold_score']:.2f}  " if "objective/gold_score" in v else ""
        return [
            f"score {v['objective/scores']:+.3f}  {gold}{kl}{spread}entropy {v['policy/entropy_avg']:.3f}  "
            f"length {v['val/response_length']:.1f}  clip {v['policy/clipfrac_avg']:.3f}  "
            f"{v['perf/episodes_per_s']:.1f} episodes/s"
        ]


def _build_demo_policy(config: RLConfig) -> None:
    from ..demo_policy import ensure_demo_policy
    from ..models import DEMO

    if config.policy.strip() == DEMO:
        ensure_demo_policy()


def _global_batch_line(config: RLConfig, world: int) -> str:
    return (
        f"global batch = per-rank {config.batch_size // world} x {world} ranks ({config.batch_size} episodes per "
        f"update); each minibatch of {config.mini_batch_size} episodes is shared by the ranks and its gradients summed"
    )


def _sampling(config: RLConfig) -> dict:
    """Compared with its reference, a run's policy samples its own prompts as it did in training."""
    return dict(
        reference=config.policy, prompt_origin=config.prompt_origin, max_new_tokens=config.max_new_tokens,
        temperature=config.temperature, top_p=config.top_p, max_prompt_length=config.max_prompt_length,
        device=config.device, precision=config.precision, trust_remote_code=config.trust_remote_code,
    )


def _describe(config: RLConfig, verb: str) -> str:
    return (f"{verb} {config.policy!r} by {METHOD_TITLES[config.method]} against reward model "
            f"{config.reward_model!r}")


def _memory_plan(config: RLConfig) -> MemoryPlan:
    """PPO: policy, reference, value and reward model; RLOO and GRPO: no value model, and no
    reference with beta 0; with LoRA the reference is the policy with its adapter off (no second
    copy). A rollout samples the whole batch with a KV cache and scores it without gradients; each
    optimizer step's forward and backward holds a micro-batch (batch / num_mini_batches /
    gradient_accumulation_steps) of prompt + response through the policy (and PPO's value model)."""
    length = config.max_prompt_length + config.max_new_tokens
    batch, micro, new = config.batch_size, max(1, config.micro_batch_size), config.max_new_tokens
    sample, score = Pass(batch, length, 1, generate=True), Pass(batch, length, new)
    models = [ModelUse("policy", config.policy, train=Pass(micro, length, new), infer=(sample, score),
                       demo=DEMO_POLICY_SPEC, lora=config.lora, setting="policy")]
    if config.method == "ppo" or config.beta != 0.0:
        models.append(ModelUse("reference", config.policy, infer=(score,), demo=DEMO_POLICY_SPEC,
                               same_as="policy" if config.lora else None, setting="policy"))
    if config.method == "ppo":
        from_reward = config.value_model == "reward"
        models.append(ModelUse("value", config.reward_model if from_reward else config.policy, head="scalar",
                               train=Pass(micro, length), infer=(Pass(batch, length),),
                               demo=DEMO_MODEL_SPEC if from_reward else DEMO_POLICY_SPEC,
                               setting="reward_model" if from_reward else "policy"))
    models.append(ModelUse("reward", config.reward_model, head="scalar", infer=(Pass(batch, length),),
                           setting="reward_model"))
    return MemoryPlan(tuple(models), config.precision, config.gradient_checkpointing, config.lora_r,
                      config.lora_target_modules, config.device)


RL = TrainingMethod(
    kinds=METHODS,
    title="RL",
    job="rlhf_workbench.core.rl.train:run",
    config=RLConfig,
    command="rl",
    help="train a policy against a reward model by PPO, RLOO or GRPO (--set method=...)",
    description="Train a policy on the project's prompts against a reward model, by PPO (the default), RLOO or "
    "GRPO (--set method=rloo), recording the run as the app does. Without --config: the demo policy against the "
    "project's latest reward model, with settings that suit the demo project on a CPU.",
    set_example="--set method=grpo --set total_episodes=2048 --set policy=/models/my-sft",
    describe=_describe,
    final_path_key="last_checkpoint",
    final_path_label="last checkpoint",
    printer=RLPrinter,
    unit="update",
    batch_line=_global_batch_line,
    prepare=_build_demo_policy,
    kind_of=lambda config: config.method,
    aliases={"ppo": {"method": "ppo"}},
    policy=PolicyOutput(folder="policy", sampling=_sampling),  # beside the value model, in the latest checkpoint
    # an update learns from batch_size episodes (its minibatches and accumulation only cut them up)
    examples_per_step=lambda config: (config.batch_size, "episodes"),
    memory_plan=_memory_plan,
)
