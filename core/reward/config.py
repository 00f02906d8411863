"""The reward model's settings: one documented dataclass (core/training/config.py's conventions;
no torch here)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..training.config import check_lora, lora_setting, setting, validate_fields


@dataclass
class RewardConfig:
    """Training a reward model on a project's labelled pairs (Bradley-Terry, as TRL's RewardTrainer).

    The defaults suit the demo project on a laptop CPU: the tiny demo model reaches 95-98% validation
    accuracy in 660 steps, ~15 s on two CPU cores. For a real model, lower `learning_rate` (1e-5 to
    5e-5 for full fine-tuning, ~1e-4 with LoRA), train fewer epochs (1-3), raise `max_length`, and
    use a GPU.
    """

    # -- the model -------------------------------------------------------------------------------
    base_model: str = setting(
        "demo",
        "A local model folder, a model in this machine's Hugging Face cache (org/name), a reward-model "
        "checkpoint, or 'demo' for the tiny built-in demo model.",
        basic=True,
    )
    max_length: int = setting(
        256,
        "Longest prompt + response in tokens. Longer ones keep the start of the prompt and the end of "
        "the response.",
        min=8,
        max=131072,
    )
    trust_remote_code: bool = setting(
        False, "Run Python code shipped with the model folder. Only for models from a source you trust."
    )
    # -- optimisation ----------------------------------------------------------------------------
    batch_size: int = setting(16, "Pairs per forward pass (each pair is two sequences).", min=1, max=4096, basic=True)
    gradient_accumulation_steps: int = setting(
        1, "Forward passes summed into one optimizer step. Global batch = batch_size x this.", min=1, max=1024
    )
    epochs: float = setting(
        60.0, "Passes over the training pairs (ignored when max_steps is set).", min=0.01, max=10000.0,
        basic=True,
    )
    max_steps: int | None = setting(
        None, "Stop after this many optimizer steps; empty: run for `epochs`.", min=1, max=10_000_000, optional=True
    )
    learning_rate: float = setting(
        5e-4,
        "Peak learning rate of AdamW. The demo model learns from scratch and wants ~5e-4; a pretrained "
        "model wants 1e-5 to 5e-5 (1e-4 with LoRA).",
        min=1e-9,
        max=10.0,
        basic=True,
    )
    weight_decay: float = setting(0.0, "AdamW weight decay.", min=0.0, max=1.0)
    warmup_ratio: float = setting(0.05, "Share of the steps spent raising the learning rate from 0.", min=0.0, max=0.5)
    lr_scheduler: str = setting(
        "linear", "How the learning rate decays after warm-up.", choices=("linear", "cosine", "constant")
    )
    max_grad_norm: float = setting(
        1.0, "Gradients are clipped to this norm before each step; 0 turns clipping off.", min=0.0, max=1e6
    )
    center_rewards_coefficient: float | None = setting(
        None,
        "Adds this x mean((r_chosen + r_rejected)^2) to the loss, keeping rewards centred on 0 "
        "(TRL's option; 0.01 is typical). Empty: off.",
        min=0.0,
        max=100.0,
        optional=True,
    )
    # -- hardware --------------------------------------------------------------------------------
    precision: str = setting(
        "fp32",
        "Arithmetic precision. bf16 halves memory and is fast on recent GPUs; fp16 needs a CUDA GPU and uses a "
        "loss scaler.",
        choices=("fp32", "bf16", "fp16"),
        basic=True,
    )
    gradient_checkpointing: bool = setting(
        False, "Recompute activations in the backward pass: less memory, ~30% slower."
    )
    device: str = setting(
        "auto", "Where to train. auto: a CUDA GPU, else Apple's MPS, else the CPU.", choices=("auto", "cuda", "mps", "cpu"),
        basic=True,
    )
    torch_threads: int | None = setting(
        None,
        "CPU threads torch may use. Empty: one for a small model (under 20M parameters) on the CPU, where more "
        "only wait on each other, else torch's default (all cores).",
        min=1,
        max=1024,
        optional=True,
    )
    seed: int = setting(0, "Seeds the split, the data order, the new reward head and dropout.", min=0, max=2**32 - 1)
    # -- data ------------------------------------------------------------------------------------
    validation_fraction: float = setting(
        0.2,
        "Share of the labelled pairs held out for validation, split by prompt (a prompt is never on both sides).",
        min=0.0,
        max=0.9,
    )
    include_ties: bool = setting(
        False,
        "Train on tied pairs too, pulling the two rewards together. Both-bad and skipped pairs never train.",
    )
    # -- reporting and checkpoints ---------------------------------------------------------------
    log_every: int = setting(10, "Report training loss and accuracy every this many steps.", min=1, max=1_000_000)
    eval_every: int = setting(50, "Evaluate on the validation pairs every this many steps (and at the end).", min=1, max=1_000_000)
    save_every: int = setting(
        100, "Write a checkpoint every this many steps (and at the end, and when stopped).", min=1, max=1_000_000
    )
    keep_last: int = setting(2, "Checkpoints kept besides the best one; older ones are deleted, except one another run started from.", min=1, max=1000)
    # -- LoRA --------------------------------------------------------------------------------------
    lora: bool = setting(
        False, "Train small low-rank adapters (and the reward head) instead of every weight.",
        basic=True,
    )
    lora_r: int = lora_setting("r")
    lora_alpha: float = lora_setting("alpha")
    lora_dropout: float = lora_setting("dropout")
    lora_target_modules: str = lora_setting("target_modules")

    def validate(self) -> "RewardConfig":
        """Raises ConfigError naming the first field outside its allowed values; returns self."""
        validate_fields(self)
        if not self.base_model.strip():
            raise ConfigError("base_model: is empty; give a model folder, a cached model name or 'demo'")
        check_lora(self)
        return self

    def check_world(self, world: int) -> None:
        """Refuses a batch that `world` ranks (torchrun processes, GPUs) cannot share equally."""
        if world > 1 and self.batch_size % world:
            raise ConfigError(
                f"batch_size: {self.batch_size} pairs cannot be split evenly over {world} ranks; batch_size is the "
                f"global batch of one forward pass, so choose a multiple of {world}"
            )
