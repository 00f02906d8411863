"""The RL methods' settings: one documented dataclass for PPO, RLOO and GRPO, like CleanRL's
`Args` (no torch here).

Names follow TRL where it has the setting: PPOConfig's (`kl_coef`, `cliprange`, `vf_coef`, `lam`,
`num_ppo_epochs`, `missing_eos_penalty`, ...) for PPO, GRPOConfig's and RLOOConfig's
(`num_generations`, `beta`, `epsilon`, `epsilon_high`, `num_iterations`, `loss_type`,
`scale_rewards`, `normalize_advantages`) for the critic-free methods, so that a setting found in a
TRL recipe means the same here. A setting of one method only says so in its help (and its
`methods` metadata, from which the app shows each method its own form); set for another method,
it is refused, naming it. The defaults suit the demo project on a laptop CPU; the help of each
field says what to change for a real model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..training.config import check_lora, check_method_fields, lora_setting, setting, validate_fields
from ..training.run_models import LATEST_REWARD_MODEL

METHODS = ("ppo", "rloo", "grpo")
METHOD_TITLES = {"ppo": "PPO", "rloo": "RLOO", "grpo": "GRPO"}
PPO, GROUP = ("ppo",), ("rloo", "grpo")


@dataclass
class RLConfig:
    """A causal LM trained online against a reward model (RLHF's third step), by one of three methods.

    Each update samples responses to a batch of prompts, scores them with the reward model, turns the
    scores into advantages and takes clipped policy-gradient steps, with a KL leash to the reference
    (the policy it started from). The methods differ in the advantage and the loss:

    - **ppo**: one response per prompt; a per-token KL penalty in the reward, a value model, GAE
      advantages, clipped policy and value losses (Schulman et al. 2017; Ouyang et al. 2022). The
      defaults move the demo policy from 0.46-0.51 to 0.84-0.91 of its answers following the demo
      rules in 256 updates, about 2.5-3 minutes on two CPU cores (bench/ppo_demo.py, seeds 0-4).
    - **rloo**: `num_generations` responses per prompt, no value model; a response's reward is its
      score minus beta x its KL, its advantage that reward minus the mean of its siblings' (Ahmadian
      et al. 2024); a clipped ratio of whole-response probabilities.
    - **grpo**: `num_generations` responses per prompt, no value model; the advantage is the score
      minus its group's mean (divided by the group's std with `scale_rewards`), a clipped per-token
      ratio, and the KL to the reference in the loss (Shao et al. 2024; DAPO, Dr. GRPO).

    For a real model: learning_rate ~1e-6 to 3e-6 (1e-5 with LoRA), temperature 0.7, a GPU, bf16,
    kl_coef 0.05 (PPO) or beta 0.0-0.04 (GRPO).
    """

    method: str = setting(
        "ppo",
        "How the policy learns: ppo (a value model and GAE), rloo (several responses per prompt, each against "
        "the mean of the others) or grpo (several responses per prompt, each against its group's mean).",
        choices=METHODS,
        basic=True,
    )
    # -- the models ------------------------------------------------------------------------------
    policy: str = setting(
        "demo",
        "The causal LM to train: a local model folder, a model in this machine's Hugging Face cache, a "
        "checkpoint of this project, or 'demo' for the built-in demo policy.",
        basic=True,
    )
    reward_model: str = setting(
        LATEST_REWARD_MODEL,
        "The reward model: 'latest' (the best checkpoint of this project's newest finished reward-model run, "
        "kept for the whole run, resumes included), a reward-model run id, or any local sequence-classification "
        "model folder.",
        basic=True,
    )
    gold_model: str | None = setting(
        None,
        "A reward model to act as the true goal: its mean score of each update's answers is logged as "
        "objective/gold_score beside the proxy's (over-optimisation shows as the proxy rising while it falls). "
        "A reward-model run id or folder, say one trained on more or other labels. Empty: the demo's rules "
        "on the demo's prompts, none elsewhere.",
        optional=True,
    )
    value_model: str = setting(
        "reward",
        "Where the value model starts: 'reward' (a copy of the reward model, as TRL and the N+ details do) or "
        "'policy' (a copy of the policy with a new scalar head).",
        choices=("reward", "policy"),
        methods=PPO,
    )
    trust_remote_code: bool = setting(
        False, "Run Python code shipped with the model folders. Only for models from a source you trust."
    )
    # -- prompts ---------------------------------------------------------------------------------
    prompt_origin: str | None = setting(
        None,
        "Train on the prompts of pairs whose origin starts with this (e.g. 'demo' or 'hh-rlhf'); empty: every "
        "prompt of the project.",
        optional=True,
    )
    max_prompt_length: int = setting(
        128, "Prompts longer than this many tokens keep their end (the question is usually last).", min=4, max=131072
    )
    # -- rollout -----------------------------------------------------------------------------------
    batch_size: int = setting(
        64,
        "Episodes (responses learned from) per update: as many prompts for PPO; for RLOO and GRPO, "
        "batch_size / num_generations prompts with num_generations responses each.",
        min=1,
        max=65536,
        basic=True,
    )
    num_generations: int = setting(
        4,
        "RLOO and GRPO: responses sampled per prompt, the group each one's advantage is measured against (TRL's "
        "name). At least 2.",
        min=2,
        max=1024,
        methods=GROUP,
        basic=True,
    )
    max_new_tokens: int = setting(24, "Longest response in tokens; generation stops earlier at the end-of-text token.", min=1, max=32768)
    temperature: float = setting(0.7, "Sampling temperature (TRL's default). Lower is more focused; 1.0 samples the model as it is.", min=0.01, max=10.0)
    top_p: float = setting(1.0, "Nucleus sampling: sample from the smallest set of tokens with this much probability.", min=0.01, max=1.0)
    missing_eos_penalty: float | None = setting(
        None,
        "Subtract this from the score of a response that never ends (hits max_new_tokens); e.g. 1.0. Empty: off. "
        "As in TRL, objective/scores is then the penalised score (what objective/rlhf_reward adds up); "
        "objective/scores_before_eos_penalty is the reward model's own.",
        min=0.0,
        max=1000.0,
        optional=True,
    )
    # -- rewards -----------------------------------------------------------------------------------
    kl_coef: float = setting(
        0.3,
        "Weight of the per-token KL penalty against the reference (the start value when adaptive_kl is on). 0.3 keeps "
        "the demo policy from exploiting the demo reward model; 0.05 is TRL's default for real models. PPO only "
        "(RLOO and GRPO: beta).",
        min=0.0,
        max=100.0,
        methods=PPO,
        basic=True,
    )
    kl_estimator: str = setting(
        "k1",
        "How KL is estimated per token: k1 = log p - log q (unbiased, can go negative), k3 = (r - 1) - log r "
        "(never negative, lower variance).",
        choices=("k1", "k3"),
        methods=PPO,
    )
    adaptive_kl: bool = setting(
        False, "Adjust kl_coef during training so the KL tracks target_kl (Ziegler et al.).", methods=PPO
    )
    target_kl: float = setting(
        6.0, "The KL (summed over a response) the adaptive controller aims for.", min=0.0, max=1e4, methods=PPO,
        requires="adaptive_kl",
    )
    kl_horizon: int = setting(
        10000, "Episodes over which the adaptive controller moves kl_coef.", min=1, max=10**9, methods=PPO,
        requires="adaptive_kl",
    )
    whiten_rewards: bool = setting(
        False, "Whiten the per-token rewards of each batch before GAE (TRL's option).", methods=PPO
    )
    normalize_scores: bool = setting(
        False,
        "Divide reward-model scores by their running standard deviation and remove their running mean.",
        methods=PPO,
    )
    beta: float = setting(
        0.05,
        "RLOO and GRPO: weight of the KL to the reference. RLOO subtracts beta x the response's KL from its "
        "reward (TRL's default 0.05); GRPO adds beta x the per-token KL (k3) to the loss, and with 0 loads no "
        "reference at all (TRL's default for GRPO).",
        min=0.0,
        max=100.0,
        methods=GROUP,
        basic=True,
    )
    scale_rewards: str = setting(
        "none",
        "GRPO: divide each advantage by the standard deviation of its group's scores (group), of the batch's "
        "(batch), or not at all (none, as Dr. GRPO recommends: the std favours questions that are too easy or "
        "too hard).",
        choices=("none", "group", "batch"),
        methods=("grpo",),
    )
    normalize_advantages: bool = setting(
        False, "RLOO: bring the batch's advantages to mean 0 and standard deviation 1.", methods=("rloo",)
    )
    # -- the update ------------------------------------------------------------------------------
    learning_rate: float = setting(
        3e-4,
        "AdamW learning rate of the policy (and PPO's value model). The demo wants ~3e-4; a pretrained model ~1e-6 "
        "to 3e-6.",
        min=1e-10,
        max=1.0,
        basic=True,
    )
    num_ppo_epochs: int = setting(4, "PPO: passes over each batch of rollouts.", min=1, max=100, methods=PPO)
    num_iterations: int = setting(
        1,
        "RLOO and GRPO: passes over each batch of responses (TRL's num_iterations, the mu of the GRPO paper); "
        "with more than one, the ratio to the sampling policy and its clipping come into play.",
        min=1,
        max=100,
        methods=GROUP,
    )
    num_mini_batches: int = setting(4, "Minibatches per pass; each is one optimizer step.", min=1, max=4096)
    gradient_accumulation_steps: int = setting(1, "Forward passes summed into each minibatch's optimizer step.", min=1, max=1024)
    cliprange: float = setting(0.2, "PPO: clip range of the policy ratio.", min=0.0, max=10.0, methods=PPO)
    cliprange_value: float = setting(
        0.2, "PPO: clip range of the value prediction around its rollout value.", min=0.0, max=1e4, methods=PPO
    )
    vf_coef: float = setting(0.1, "PPO: weight of the value loss.", min=0.0, max=100.0, methods=PPO)
    gamma: float = setting(1.0, "PPO: discount factor of GAE.", min=0.0, max=1.0, methods=PPO)
    lam: float = setting(0.95, "PPO: lambda of GAE.", min=0.0, max=1.0, methods=PPO)
    epsilon: float = setting(
        0.2, "RLOO and GRPO: clip range of the policy ratio, below 1 (and above, unless epsilon_high).",
        min=0.0, max=10.0, methods=GROUP,
    )
    epsilon_high: float | None = setting(
        None,
        "RLOO and GRPO: clip range of the ratio above 1 when it should differ from epsilon (DAPO's clip-higher: "
        "0.28). Empty: epsilon.",
        min=0.0,
        max=10.0,
        optional=True,
        methods=GROUP,
    )
    loss_type: str = setting(
        "dapo",
        "GRPO: how the per-token losses add up, as TRL names it: grpo (each response's mean, then the mean over "
        "responses: short responses weigh more per token), dr_grpo (the sum over a constant, batch x "
        "max_new_tokens), dapo (the mean over every token of the batch; TRL's default).",
        choices=("grpo", "dr_grpo", "dapo"),
        methods=("grpo",),
    )
    max_grad_norm: float = setting(1.0, "Gradients are clipped to this norm; 0 turns clipping off.", min=0.0, max=1e6)
    weight_decay: float = setting(0.0, "AdamW weight decay.", min=0.0, max=1.0)
    total_episodes: int = setting(
        16384, "Stop after this many episodes (responses generated and learned from).", min=1, max=10**10,
        basic=True,
    )
    # -- watchdogs (warnings, never stops) --------------------------------------------------------
    warn_kl: float = setting(20.0, "Warn when objective/kl passes this.", min=0.0, max=1e6)
    warn_length_ratio: float = setting(
        2.0, "Warn when the mean response length moves this many times away from the start while reward rises.", min=1.0, max=1000.0
    )
    warn_entropy: float = setting(0.05, "Warn when the mean per-token entropy falls below this (the policy stopped exploring).", min=0.0, max=100.0)
    warn_identical: float = setting(0.5, "Warn when this share of a batch's responses are the same text.", min=0.0, max=1.0)
    # -- hardware --------------------------------------------------------------------------------
    precision: str = setting(
        "fp32",
        "Arithmetic precision. bf16 halves memory and is fast on recent GPUs; fp16 needs a CUDA GPU and uses a loss scaler.",
        choices=("fp32", "bf16", "fp16"),
        basic=True,
    )
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass: less memory, ~30% slower.")
    device: str = setting(
        "auto", "Where to train. auto: a CUDA GPU, else Apple's MPS, else the CPU.", choices=("auto", "cuda", "mps", "cpu"),
        basic=True,
    )
    torch_threads: int | None = setting(
        None,
        "CPU threads torch may use. Empty: one for small models (under 20M parameters) on the CPU, else torch's default.",
        min=1,
        max=1024,
        optional=True,
    )
    seed: int = setting(0, "Seeds prompt order, sampling, the new value head and dropout.", min=0, max=2**32 - 1)
    # -- reporting and checkpoints ---------------------------------------------------------------
    sample_every: int = setting(5, "Every this many updates, a few prompts, responses and scores go to the samples table.", min=1, max=10**6)
    samples_per_report: int = setting(4, "How many samples each report holds.", min=0, max=1024)
    save_every: int = setting(
        25, "Write a checkpoint (the policy, and PPO's value model) every this many updates, and at the end.",
        min=1, max=10**6,
    )
    keep_last: int = setting(2, "Checkpoints kept; older ones are deleted, except one another run started from.", min=1, max=1000)
    # -- LoRA --------------------------------------------------------------------------------------
    lora: bool = setting(
        False,
        "Train low-rank adapters on the policy; the reference is then the policy with its adapter off (one copy of "
        "the base weights in memory).",
        basic=True,
    )
    lora_r: int = lora_setting("r")
    lora_alpha: float = lora_setting("alpha")
    lora_dropout: float = lora_setting("dropout")
    lora_target_modules: str = lora_setting("target_modules")

    def validate(self) -> RLConfig:
        """Raises ConfigError naming the first setting outside its allowed values; returns self."""
        validate_fields(self)
        check_method_fields(self, self.method)
        if self.method in GROUP and self.batch_size % self.num_generations:
            raise ConfigError(
                f"batch_size: {self.batch_size} episodes are not whole groups of num_generations "
                f"{self.num_generations}; choose a multiple of {self.num_generations}"
            )
        if not self.policy.strip():
            raise ConfigError("policy: is empty; give a model folder, a cached model name, a checkpoint or 'demo'")
        if not self.reward_model.strip():
            raise ConfigError("reward_model: is empty; give 'latest', a reward-model run id or a model folder")
        if self.gold_model is not None and self.gold_model.strip() == self.reward_model.strip():
            raise ConfigError("gold_model: is the reward model itself; the gold must be another judge (or empty)")
        if self.batch_size % self.num_mini_batches:
            raise ConfigError(
                f"num_mini_batches: {self.num_mini_batches} does not divide batch_size {self.batch_size}; "
                "each minibatch must hold the same number of episodes"
            )
        minibatch = self.batch_size // self.num_mini_batches
        if minibatch % self.gradient_accumulation_steps:
            raise ConfigError(
                f"gradient_accumulation_steps: {self.gradient_accumulation_steps} does not divide the minibatch of "
                f"{minibatch} episodes (batch_size / num_mini_batches)"
            )
        check_lora(self)
        return self

    def check_world(self, world: int) -> None:
        """Refuses an update that `world` ranks (torchrun processes, GPUs) cannot share equally:
        each rank takes every world-th episode, so it gets the same share of every group (the
        baselines are computed after the ranks gather their figures, over whole groups)."""
        if world > 1 and self.batch_size % (world * self.group_size):
            unit = f"{world} ranks" if self.group_size == 1 else f"{world} ranks in whole groups of {self.group_size}"
            raise ConfigError(
                f"batch_size: {self.batch_size} episodes cannot be split evenly over {unit}; batch_size is "
                f"the global number of episodes of an update, so choose a multiple of {world * self.group_size}"
            )

    @property
    def group_size(self) -> int:
        """Responses per prompt: num_generations for RLOO and GRPO, one for PPO."""
        return self.num_generations if self.method in GROUP else 1

    @property
    def prompts_per_update(self) -> int:
        return self.batch_size // self.group_size

    @property
    def epochs(self) -> int:
        """Passes over each batch: PPO's num_ppo_epochs, the others' num_iterations."""
        return self.num_ppo_epochs if self.method == "ppo" else self.num_iterations

    @property
    def mini_batch_size(self) -> int:
        return self.batch_size // self.num_mini_batches

    @property
    def micro_batch_size(self) -> int:
        return self.mini_batch_size // self.gradient_accumulation_steps
