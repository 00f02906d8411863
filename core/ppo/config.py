"""The PPO job's settings: one documented dataclass, like CleanRL's `Args` (no torch here).

Names follow TRL's PPOConfig where one exists (`kl_coef`, `cliprange`, `vf_coef`, `lam`,
`num_ppo_epochs`, `missing_eos_penalty`, ...) so a setting found in a TRL recipe means the same
here. The defaults suit the demo project on a laptop CPU; the docstring of each field says what to
change for a real model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..training.config import setting, validate_fields
from ..training.run_models import LATEST_REWARD_MODEL


@dataclass
class PPOConfig:
    """Proximal Policy Optimization of a causal LM against a reward model (RLHF's third step).

    Each update: sample `batch_size` prompts, generate a response to each, score them with the reward
    model, subtract a per-token KL penalty against the reference, compute advantages with GAE, and
    take `num_ppo_epochs` passes of clipped policy and value losses over minibatches. The defaults
    move the demo policy from 0.46-0.51 to 0.84-0.91 of its answers following the demo rules in 256
    updates, about 2.5-3 minutes on two CPU cores (bench/ppo_demo.py, seeds 0-4). For a real model:
    learning_rate ~1e-6 to 3e-6 (1e-5 with LoRA), temperature 0.7, kl_coef 0.05, a GPU, and bf16.
    """

    # -- the models ------------------------------------------------------------------------------
    policy: str = setting(
        "demo",
        "The causal LM to train: a local model folder, a model in this machine's Hugging Face cache, a "
        "checkpoint of this project, or 'demo' for the built-in demo policy.",
    )
    reward_model: str = setting(
        LATEST_REWARD_MODEL,
        "The reward model: 'latest' (the best checkpoint of this project's newest finished reward-model run, "
        "kept for the whole run, resumes included), a reward-model run id, or any local sequence-classification "
        "model folder.",
    )
    value_model: str = setting(
        "reward",
        "Where the value model starts: 'reward' (a copy of the reward model, as TRL and the N+ details do) or "
        "'policy' (a copy of the policy with a new scalar head).",
        choices=("reward", "policy"),
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
    batch_size: int = setting(64, "Prompts (episodes) per PPO update.", min=1, max=65536)
    max_new_tokens: int = setting(24, "Longest response in tokens; generation stops earlier at the end-of-text token.", min=1, max=32768)
    temperature: float = setting(0.7, "Sampling temperature (TRL's default). Lower is more focused; 1.0 samples the model as it is.", min=0.01, max=10.0)
    top_p: float = setting(1.0, "Nucleus sampling: sample from the smallest set of tokens with this much probability.", min=0.01, max=1.0)
    missing_eos_penalty: float | None = setting(
        None,
        "Subtract this from the score of a response that never ends (hits max_new_tokens); e.g. 1.0. Empty: off.",
        min=0.0,
        max=1000.0,
        optional=True,
    )
    # -- rewards -----------------------------------------------------------------------------------
    kl_coef: float = setting(
        0.3,
        "Weight of the per-token KL penalty against the reference (the start value when adaptive_kl is on). 0.3 keeps "
        "the demo policy from exploiting the demo reward model; 0.05 is TRL's default for real models.",
        min=0.0,
        max=100.0,
    )
    kl_estimator: str = setting(
        "k1",
        "How KL is estimated per token: k1 = log p - log q (unbiased, can go negative), k3 = (r - 1) - log r "
        "(never negative, lower variance).",
        choices=("k1", "k3"),
    )
    adaptive_kl: bool = setting(False, "Adjust kl_coef during training so the KL tracks target_kl (Ziegler et al.).")
    target_kl: float = setting(6.0, "The KL (summed over a response) the adaptive controller aims for.", min=0.0, max=1e4)
    kl_horizon: int = setting(10000, "Episodes over which the adaptive controller moves kl_coef.", min=1, max=10**9)
    whiten_rewards: bool = setting(False, "Whiten the per-token rewards of each batch before GAE (TRL's option).")
    normalize_scores: bool = setting(
        False, "Divide reward-model scores by their running standard deviation and remove their running mean."
    )
    # -- the update ------------------------------------------------------------------------------
    learning_rate: float = setting(
        3e-4,
        "AdamW learning rate of policy and value model. The demo wants ~3e-4; a pretrained model ~1e-6 to 3e-6.",
        min=1e-10,
        max=1.0,
    )
    num_ppo_epochs: int = setting(4, "Passes over each batch of rollouts.", min=1, max=100)
    num_mini_batches: int = setting(4, "Minibatches per pass; each is one optimizer step.", min=1, max=4096)
    gradient_accumulation_steps: int = setting(1, "Forward passes summed into each minibatch's optimizer step.", min=1, max=1024)
    cliprange: float = setting(0.2, "Clip range of the policy ratio.", min=0.0, max=10.0)
    cliprange_value: float = setting(0.2, "Clip range of the value prediction around its rollout value.", min=0.0, max=1e4)
    vf_coef: float = setting(0.1, "Weight of the value loss.", min=0.0, max=100.0)
    gamma: float = setting(1.0, "Discount factor of GAE.", min=0.0, max=1.0)
    lam: float = setting(0.95, "Lambda of GAE.", min=0.0, max=1.0)
    max_grad_norm: float = setting(1.0, "Gradients are clipped to this norm; 0 turns clipping off.", min=0.0, max=1e6)
    weight_decay: float = setting(0.0, "AdamW weight decay.", min=0.0, max=1.0)
    total_episodes: int = setting(16384, "Stop after this many episodes (responses generated and learned from).", min=1, max=10**10)
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
    )
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass: less memory, ~30% slower.")
    device: str = setting("auto", "Where to train. auto: a CUDA GPU, else Apple's MPS, else the CPU.", choices=("auto", "cuda", "mps", "cpu"))
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
    save_every: int = setting(25, "Write a checkpoint (policy and value model) every this many updates, and at the end.", min=1, max=10**6)
    keep_last: int = setting(2, "Checkpoints kept; older ones are deleted.", min=1, max=1000)
    # -- LoRA --------------------------------------------------------------------------------------
    lora: bool = setting(
        False,
        "Train low-rank adapters on the policy; the reference is then the policy with its adapter off (one copy of "
        "the base weights in memory).",
    )
    lora_r: int = setting(16, "LoRA rank.", min=1, max=1024)
    lora_alpha: float = setting(32.0, "LoRA scaling numerator (the update is scaled by alpha / r).", min=0.0, max=1e4)
    lora_dropout: float = setting(0.0, "Dropout on the LoRA path.", min=0.0, max=0.9)
    lora_target_modules: str = setting(
        "auto", "Layers that get adapters: comma-separated module names, 'all-linear', or 'auto' (peft's choice)."
    )

    def validate(self) -> PPOConfig:
        """Raises ConfigError naming the first setting outside its allowed values; returns self."""
        validate_fields(self)
        if not self.policy.strip():
            raise ConfigError("policy: is empty; give a model folder, a cached model name, a checkpoint or 'demo'")
        if not self.reward_model.strip():
            raise ConfigError("reward_model: is empty; give 'latest', a reward-model run id or a model folder")
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
        if self.lora and not self.lora_target_modules.strip():
            raise ConfigError("lora_target_modules: is empty; give module names, 'all-linear' or 'auto'")
        return self

    def check_world(self, world: int) -> None:
        """Refuses an update that `world` ranks (torchrun processes, GPUs) cannot share equally."""
        if world > 1 and self.batch_size % world:
            raise ConfigError(
                f"batch_size: {self.batch_size} episodes cannot be split evenly over {world} ranks; batch_size is "
                f"the global number of episodes of an update, so choose a multiple of {world}"
            )

    @property
    def mini_batch_size(self) -> int:
        return self.batch_size // self.num_mini_batches

    @property
    def micro_batch_size(self) -> int:
        return self.mini_batch_size // self.gradient_accumulation_steps
