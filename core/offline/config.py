"""The offline policy methods' settings: one documented dataclass for SFT and DPO (no torch here).

Names follow TRL's DPOConfig and SFTConfig where they have the setting (`beta`, `loss_type`,
`label_smoothing`, `max_length`), so a setting found in a TRL recipe means the same here. A setting
of one method says so in its help and its `methods` metadata (the app shows each method its own
form); set for the other method it is refused, naming it. The defaults suit the demo project on a
laptop CPU; each field's help says what to change for a real model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..training.config import check_lora, check_method_fields, lora_setting, setting, validate_fields

METHODS = ("sft", "dpo")
METHOD_TITLES = {"sft": "SFT", "dpo": "DPO"}
DPO, SFT = ("dpo",), ("sft",)
CHOSEN = "chosen"  # sft_data: the preferred responses of the project's labelled pairs


@dataclass
class OfflineConfig:
    """A causal LM trained on fixed data, no sampling, no reward model: the offline half of alignment.

    - **sft**: supervised fine-tuning on prompt + response, the loss on the response's tokens only
      (InstructGPT's first step; the warm start of every RL method).
    - **dpo**: the project's labelled pairs straight into the policy (Rafailov et al. 2023): the
      policy's log-probability of the chosen response over the rejected one, measured against the
      reference (the policy it starts from, whose log-probabilities are computed once before
      training and kept with the run), under the loss `loss_type` names.

    For a real model: learning_rate ~5e-7 to 5e-6 for DPO (1e-5 to 5e-5 for SFT; ten times more with
    LoRA), 1-3 epochs, max_length 1024 or more, bf16, a GPU.
    """

    method: str = setting(
        "dpo",
        "How the policy learns: dpo (from the labelled pairs directly, against the policy it starts from) or sft "
        "(supervised, on prompt + response, the loss on the response).",
        choices=METHODS,
        basic=True,
    )
    # -- the model -------------------------------------------------------------------------------
    policy: str = setting(
        "demo",
        "The causal LM to train: a local model folder, a model in the Hugging Face cache (org/name), a policy "
        "checkpoint of this project (an SFT, DPO or RL run's), or 'demo' for the built-in demo policy.",
        basic=True,
    )
    trust_remote_code: bool = setting(
        False, "Run Python code shipped with the model folder. Only for models from a source you trust."
    )
    max_length: int = setting(
        256,
        "Longest prompt + response in tokens. Longer ones keep the start of the prompt and the end of the response.",
        min=8,
        max=131072,
    )
    # -- data --------------------------------------------------------------------------------------
    sft_data: str = setting(
        CHOSEN,
        "SFT: what to learn from: 'chosen' (the preferred response of every labelled pair of the project), or a "
        "JSONL or CSV file with 'prompt' and 'response' columns.",
        methods=SFT,
        basic=True,
    )
    validation_fraction: float = setting(
        0.2,
        "Share of the labelled pairs held out for validation, split by prompt exactly as the reward model splits "
        "them with the same seed, so their validation accuracies compare.",
        min=0.0,
        max=0.9,
    )
    split_from: str | None = setting(
        None,
        "Validate on the validation pairs of this reward-model run (its id), and train on the rest of the labelled "
        "pairs. Empty: the split validation_fraction and seed make.",
        optional=True,
    )
    # -- DPO ---------------------------------------------------------------------------------------
    beta: float = setting(
        0.1,
        "DPO: how far the policy may move from the reference (higher: less far). 0.1 is TRL's default; 0.01-0.5 "
        "is the usual range.",
        min=1e-6,
        max=100.0,
        methods=DPO,
        basic=True,
    )
    loss_type: str = setting(
        "sigmoid",
        "DPO: the loss, as TRL names it: sigmoid (DPO's own), ipo (Azar et al.: squared, on per-token "
        "averages), robust (Chowdhury et al.: unbiased under label_smoothing's share of flipped labels).",
        choices=("sigmoid", "ipo", "robust"),
        methods=DPO,
    )
    label_smoothing: float = setting(
        0.0,
        "DPO: the share of labels assumed wrong. With sigmoid it is conservative DPO (cDPO: the loss also "
        "rewards the flipped preference a little); with robust, robust DPO. Below 0.5.",
        min=0.0,
        max=0.49,
        methods=DPO,
    )
    sft_weight: float = setting(
        1.0,
        "DPO: adds this x the SFT loss of the chosen responses (their mean negative log-likelihood per token; RPO, "
        "Pang et al. 2024; TRL: loss_type ['sigmoid', 'sft'] with loss_weights [1, this]). It keeps DPO from "
        "lowering the chosen responses' likelihood with the rejected ones', which can wreck a small model's "
        "writing: on the demo, plain DPO (0) peaks near 0.8 of answers following the rules and then declines, while 1.0 "
        "reaches 0.95. 0: plain DPO, TRL's default.",
        min=0.0,
        max=100.0,
        methods=DPO,
    )
    # -- optimisation ----------------------------------------------------------------------------
    batch_size: int = setting(
        16, "Examples per forward pass: pairs for DPO (each is two sequences), sequences for SFT.", min=1, max=4096,
        basic=True,
    )
    gradient_accumulation_steps: int = setting(
        1, "Forward passes summed into one optimizer step. Global batch = batch_size x this.", min=1, max=1024
    )
    epochs: float = setting(
        10.0, "Passes over the training data (ignored when max_steps is set).", min=0.01, max=10000.0,
        basic=True,
    )
    max_steps: int | None = setting(
        None, "Stop after this many optimizer steps; empty: run for `epochs`.", min=1, max=10_000_000, optional=True
    )
    learning_rate: float = setting(
        3e-4,
        "Peak learning rate of AdamW. The demo policy wants ~3e-4; a pretrained model ~5e-7 to 5e-6 for DPO, 1e-5 "
        "to 5e-5 for SFT (ten times more with LoRA).",
        min=1e-10,
        max=10.0,
        basic=True,
    )
    weight_decay: float = setting(0.0, "AdamW weight decay.", min=0.0, max=1.0)
    warmup_ratio: float = setting(0.1, "Share of the steps spent raising the learning rate from 0.", min=0.0, max=0.5)
    lr_scheduler: str = setting(
        "linear", "How the learning rate decays after warm-up.", choices=("linear", "cosine", "constant")
    )
    max_grad_norm: float = setting(
        1.0, "Gradients are clipped to this norm before each step; 0 turns clipping off.", min=0.0, max=1e6
    )
    # -- hardware --------------------------------------------------------------------------------
    precision: str = setting(
        "fp32",
        "Arithmetic precision. bf16 halves memory and is fast on recent GPUs; fp16 needs a CUDA GPU and uses a "
        "loss scaler.",
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
        "CPU threads torch may use. Empty: one for a small model (under 20M parameters) on the CPU, where more "
        "only wait on each other, else torch's default (all cores).",
        min=1,
        max=1024,
        optional=True,
    )
    seed: int = setting(0, "Seeds the split, the data order and dropout.", min=0, max=2**32 - 1)
    # -- reporting and checkpoints ---------------------------------------------------------------
    log_every: int = setting(5, "Report the training figures every this many steps.", min=1, max=1_000_000)
    eval_every: int = setting(25, "Evaluate on the validation pairs every this many steps (and at the end).", min=1, max=1_000_000)
    save_every: int = setting(
        100, "Write a checkpoint every this many steps (and at the end, and when stopped).", min=1, max=1_000_000
    )
    keep_last: int = setting(2, "Checkpoints kept besides the best one; older ones are deleted, except one another run started from.", min=1, max=1000)
    # -- LoRA --------------------------------------------------------------------------------------
    lora: bool = setting(
        False,
        "Train small low-rank adapters instead of every weight (the checkpoint is the adapter; it loads over the "
        "base model).",
        basic=True,
    )
    lora_r: int = lora_setting("r")
    lora_alpha: float = lora_setting("alpha")
    lora_dropout: float = lora_setting("dropout")
    lora_target_modules: str = lora_setting("target_modules")

    def validate(self) -> "OfflineConfig":
        """Raises ConfigError naming the first field outside its allowed values; returns self."""
        validate_fields(self)
        check_method_fields(self, self.method)
        if not self.policy.strip():
            raise ConfigError("policy: is empty; give a model folder, a cached model name or 'demo'")
        if self.method == "sft" and not self.sft_data.strip():
            raise ConfigError("sft_data: is empty; give 'chosen' or a JSONL or CSV file with prompt and response columns")
        check_lora(self)
        return self

    def check_world(self, world: int) -> None:
        """Refuses a batch that `world` ranks (torchrun processes, GPUs) cannot share equally."""
        if world > 1 and self.batch_size % world:
            raise ConfigError(
                f"batch_size: {self.batch_size} cannot be split evenly over {world} ranks; batch_size is the global "
                f"batch of one forward pass, so choose a multiple of {world}"
            )
