"""Policies: causal LMs that a method trains or samples from, found and loaded as a person names them.

A policy is 'demo' (the tiny demo policy, built on first use), a causal-LM folder (or a LoRA
adapter folder over one), a model in the Hugging Face cache, or a run's checkpoint: an RL run
keeps its policy in its checkpoints' `policy/` folder (beside the value model), an SFT or DPO run's
checkpoint is the policy's folder itself; a checkpoint folder or a run folder (its latest
checkpoint) names that policy. Weights load from safetensors only (models.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..models import (
    DEMO,
    LoraSettings,
    ModelError,
    _load_config,
    check_model_files,
    check_safe_weights,
    load_tokenizer,
    quiet_transformers,
    resolve_model,
)

POLICY_DIR = "policy"


def resolve_policy(spec: str) -> Path:
    """A policy folder: 'demo' is the demo policy; a checkpoint or run folder means its policy."""
    text = str(spec).strip()
    if text == DEMO:
        from ..demo_policy import ensure_demo_policy

        return ensure_demo_policy()
    path = Path(text).expanduser()
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        if (path / POLICY_DIR).is_dir():
            return path / POLICY_DIR
        from .checkpoints import latest_checkpoint

        latest = latest_checkpoint(path)
        if latest is not None:
            return latest / POLICY_DIR if (latest / POLICY_DIR).is_dir() else latest
    return resolve_model(text)


def load_policy(spec: str | Path, *, trust_remote_code: bool = False, dtype: Any = None, trainable: bool = False):
    """(causal LM, tokenizer) from anything resolve_policy takes; a LoRA folder loads its base too."""
    folder = resolve_policy(str(spec))
    dtype = dtype or torch.float32
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        check_safe_weights(folder)
        check_model_files(folder)
        base_name = _adapter_base(folder)
        base, tokenizer = load_policy(base_name, trust_remote_code=trust_remote_code, dtype=dtype)
        if (folder / "tokenizer_config.json").is_file():
            tokenizer = load_tokenizer(folder, trust_remote_code=trust_remote_code)
        with quiet_transformers():
            model = PeftModel.from_pretrained(base, folder, is_trainable=trainable)
        return model, tokenizer
    check_safe_weights(folder)
    config = _load_config(folder, trust_remote_code)  # first: it is what refuses remote code
    check_model_files(folder)
    tokenizer = load_tokenizer(folder, trust_remote_code=trust_remote_code)
    from transformers import AutoModelForCausalLM

    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(
                folder, config=config, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
            )
    except ValueError as exc:
        raise ModelError(f"{folder}: {type(config).__name__} is not a causal language model ({_first_line(exc)})") from None
    except OSError as exc:
        raise ModelError(f"{folder}: the weights cannot be loaded ({_first_line(exc)})") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def with_new_lora(policy, lora: LoraSettings):
    """The policy with new LoRA adapters (peft's causal-LM task); its base weights stay frozen."""
    from peft import LoraConfig, TaskType, get_peft_model

    if hasattr(policy, "peft_config"):
        raise ModelError("policy: is already a LoRA adapter; turn lora off to go on training it, or merge it first "
                         "(Export model… in the Runs tab, or rlhf-workbench export-model)")
    target = lora.target_modules.strip()
    targets: Any = None if target == "auto" else target if target == "all-linear" else [
        t.strip() for t in target.split(",") if t.strip()
    ]
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=targets)
    try:
        return get_peft_model(policy, config)
    except ValueError as exc:
        raise ModelError(f"lora_target_modules: {_first_line(exc)}") from None


def _adapter_base(folder: Path) -> str:
    try:
        adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder / 'adapter_config.json'}: cannot be read ({exc})") from None
    base = adapter.get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{folder / 'adapter_config.json'}: does not name its base model")
    return base


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
