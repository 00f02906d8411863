"""One dataclass per job, every field documented in place.

Each field's `metadata` carries what a form needs to offer it and what `validate()` enforces:
`help` (one sentence for a tooltip), `min` / `max` (inclusive bounds for numbers), `choices`
(allowed strings) and `optional` (None is allowed: the field is left out of a TOML file). The GUI
builds its forms from these (`dataclasses.fields(RewardConfig)`); nothing here imports torch, so
a form can be built without loading it.

Configs are saved as TOML. Loading refuses unknown keys and wrong types, naming the key and the
file, so a typo in `learning_rte` is an error and never a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = ["RewardConfig", "config_to_dict", "config_from_dict", "load_config", "save_config", "ConfigError"]


def _f(default: Any, help: str, **limits: Any) -> Any:
    return field(default=default, metadata={"help": help, **limits})


@dataclass
class RewardConfig:
    """Training a reward model on a project's labelled pairs (Bradley-Terry, as TRL's RewardTrainer).

    The defaults suit the demo project on a laptop CPU: the tiny demo model reaches 95-98% validation
    accuracy in 660 steps, ~15 s on two CPU cores. For a real model, lower `learning_rate` (1e-5 to
    5e-5 for full fine-tuning, ~1e-4 with LoRA), train fewer epochs (1-3), raise `max_length`, and
    use a GPU.
    """

    # -- the model -------------------------------------------------------------------------------
    base_model: str = _f(
        "demo",
        "A local model folder, a model in this machine's Hugging Face cache (org/name), a reward-model "
        "checkpoint, or 'demo' for the tiny built-in demo model.",
    )
    max_length: int = _f(
        256,
        "Longest prompt + response in tokens. Longer ones keep the start of the prompt and the end of "
        "the response.",
        min=8,
        max=131072,
    )
    trust_remote_code: bool = _f(
        False, "Run Python code shipped with the model folder. Only for models from a source you trust."
    )
    # -- optimisation ----------------------------------------------------------------------------
    batch_size: int = _f(16, "Pairs per forward pass (each pair is two sequences).", min=1, max=4096)
    gradient_accumulation_steps: int = _f(
        1, "Forward passes summed into one optimizer step. Global batch = batch_size x this.", min=1, max=1024
    )
    epochs: float = _f(60.0, "Passes over the training pairs (ignored when max_steps is set).", min=0.01, max=10000.0)
    max_steps: int | None = _f(
        None, "Stop after this many optimizer steps; empty: run for `epochs`.", min=1, max=10_000_000, optional=True
    )
    learning_rate: float = _f(
        5e-4,
        "Peak learning rate of AdamW. The demo model learns from scratch and wants ~5e-4; a pretrained "
        "model wants 1e-5 to 5e-5 (1e-4 with LoRA).",
        min=1e-9,
        max=10.0,
    )
    weight_decay: float = _f(0.0, "AdamW weight decay.", min=0.0, max=1.0)
    warmup_ratio: float = _f(0.05, "Share of the steps spent raising the learning rate from 0.", min=0.0, max=0.5)
    lr_scheduler: str = _f(
        "linear", "How the learning rate decays after warm-up.", choices=("linear", "cosine", "constant")
    )
    max_grad_norm: float = _f(
        1.0, "Gradients are clipped to this norm before each step; 0 turns clipping off.", min=0.0, max=1e6
    )
    center_rewards_coefficient: float | None = _f(
        None,
        "Adds this x mean((r_chosen + r_rejected)^2) to the loss, keeping rewards centred on 0 "
        "(TRL's option; 0.01 is typical). Empty: off.",
        min=0.0,
        max=100.0,
        optional=True,
    )
    # -- hardware --------------------------------------------------------------------------------
    precision: str = _f(
        "fp32",
        "Arithmetic precision. bf16 halves memory and is fast on recent GPUs; fp16 needs a CUDA GPU and uses a "
        "loss scaler.",
        choices=("fp32", "bf16", "fp16"),
    )
    gradient_checkpointing: bool = _f(
        False, "Recompute activations in the backward pass: less memory, ~30% slower."
    )
    device: str = _f("auto", "Where to train. auto: a CUDA GPU, else Apple's MPS, else the CPU.", choices=("auto", "cuda", "mps", "cpu"))
    torch_threads: int | None = _f(
        None,
        "CPU threads torch may use. Empty: one for a small model (under 20M parameters) on the CPU, where more "
        "only wait on each other, else torch's default (all cores).",
        min=1,
        max=1024,
        optional=True,
    )
    seed: int = _f(0, "Seeds the split, the data order, the new reward head and dropout.", min=0, max=2**32 - 1)
    # -- data ------------------------------------------------------------------------------------
    validation_fraction: float = _f(
        0.2,
        "Share of the labelled pairs held out for validation, split by prompt (a prompt is never on both sides).",
        min=0.0,
        max=0.9,
    )
    include_ties: bool = _f(
        False,
        "Train on tied pairs too, pulling the two rewards together. Both-bad and skipped pairs never train.",
    )
    # -- reporting and checkpoints ---------------------------------------------------------------
    log_every: int = _f(10, "Report training loss and accuracy every this many steps.", min=1, max=1_000_000)
    eval_every: int = _f(50, "Evaluate on the validation pairs every this many steps (and at the end).", min=1, max=1_000_000)
    save_every: int = _f(
        100, "Write a checkpoint every this many steps (and at the end, and when stopped).", min=1, max=1_000_000
    )
    keep_last: int = _f(2, "Checkpoints kept besides the best one; older ones are deleted.", min=1, max=1000)
    # -- LoRA --------------------------------------------------------------------------------------
    lora: bool = _f(False, "Train small low-rank adapters (and the reward head) instead of every weight.")
    lora_r: int = _f(16, "LoRA rank.", min=1, max=1024)
    lora_alpha: float = _f(32.0, "LoRA scaling numerator (the update is scaled by alpha / r).", min=0.0, max=1e4)
    lora_dropout: float = _f(0.0, "Dropout on the LoRA path.", min=0.0, max=0.9)
    lora_target_modules: str = _f(
        "auto",
        "Layers that get adapters: comma-separated module names (e.g. q_proj,v_proj), 'all-linear', or "
        "'auto' (peft's choice for the architecture).",
    )

    def validate(self) -> "RewardConfig":
        """Raises ConfigError naming the first field outside its allowed values; returns self."""
        validate_fields(self)
        if not self.base_model.strip():
            raise ConfigError("base_model: is empty; give a model folder, a cached model name or 'demo'")
        if self.lora and not self.lora_target_modules.strip():
            raise ConfigError("lora_target_modules: is empty; give module names, 'all-linear' or 'auto'")
        return self

    def check_world(self, world: int) -> None:
        """Refuses a batch that `world` ranks (torchrun processes, GPUs) cannot share equally."""
        if world > 1 and self.batch_size % world:
            raise ConfigError(
                f"batch_size: {self.batch_size} pairs cannot be split evenly over {world} ranks; batch_size is the "
                f"global batch of one forward pass, so choose a multiple of {world}"
            )


# -- shared machinery (every job config uses it) ------------------------------------------------

C = TypeVar("C")


def _allowed(hint: Any) -> tuple[tuple[type, ...], bool]:
    """The Python types a field accepts, and whether None is among them."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    optional = type(None) in args
    kinds = tuple(a for a in args if a is not type(None))
    return kinds, optional


def _check_type(name: str, value: Any, hint: Any, where: str) -> Any:
    kinds, optional = _allowed(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}{name}: must be set")
    # bool is an int in Python; a `true` where a number belongs is a mistake, not 1.
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{where}{name}: expected {_type_name(kinds)}, got {value!r}")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds):
        raise ConfigError(f"{where}{name}: expected {_type_name(kinds)}, got {type(value).__name__} {value!r}")
    return value


def _type_name(kinds: tuple[type, ...]) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def validate_fields(config: Any) -> None:
    """Types, ranges and choices from each field's metadata; raises ConfigError naming the field."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = _check_type(f.name, getattr(config, f.name), hints[f.name], "")
        setattr(config, f.name, value)
        if value is None:
            continue
        meta = f.metadata
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{f.name}: must be one of {', '.join(meta['choices'])}, not {value!r}")
        lo, hi = meta.get("min"), meta.get("max")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value:  # NaN passes every comparison below
                raise ConfigError(f"{f.name}: is not a number")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ConfigError(f"{f.name}: must be between {lo:g} and {hi:g}, not {value:g}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain values; None (an optional field left empty) is left out, as TOML has no null."""
    return {k: v for k, v in dataclasses.asdict(config).items() if v is not None}


def config_from_dict(cls: type[C], data: dict[str, Any], *, source: str | Path | None = None) -> C:
    """A config from plain values; unknown keys and wrong types raise ConfigError naming key and source.

    Missing keys keep their defaults. Ranges are checked by `validate()`, not here, so that a form
    can load a file and show which field is out of range.
    """
    where = f"{source}: " if source is not None else ""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}unknown setting {unknown[0]!r} (known: {', '.join(sorted(names))})")
    values = {k: _check_type(k, v, hints[k], where) for k, v in data.items()}
    return cls(**values)


def load_config(cls: type[C], path: str | Path) -> C:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    return config_from_dict(cls, data, source=path)


def save_config(config: Any, path: str | Path) -> None:
    import tomli_w

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(tomli_w.dumps(config_to_dict(config)), encoding="utf-8")
    tmp.replace(path)
