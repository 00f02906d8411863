"""The four models of PPO and how they are found and loaded.

    policy      the causal LM being trained
    reference   a frozen copy of the starting policy; with LoRA, the policy itself with its adapter
                switched off (one copy of the base weights in memory)
    value       a scalar head per token: a copy of the reward model (as TRL and the N+ details
                do), or of the policy with a new head
    reward      frozen; scores a whole response. Its tokenizer may differ from the policy's: the
                response is decoded to text and re-tokenized (TRL refuses such pairs)

Where each comes from is a string a person typed (see PPOConfig): 'demo', a folder, a model in the
Hugging Face cache, a checkpoint of this project, or a run id.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..models import (
    DEMO,
    ModelError,
    _load_config,
    check_safe_weights,
    load_reward_model,
    load_tokenizer,
    quiet_transformers,
    resolve_model,
)
from .config import LATEST_REWARD_MODEL, PPOConfig

POLICY_DIR, VALUE_DIR = "policy", "value"


@dataclass
class PPOModels:
    policy: Any
    reference: Any | None  # None: the policy with its LoRA adapter disabled
    value: Any
    reward: Any
    tokenizer: Any
    reward_tokenizer: Any

    @contextlib.contextmanager
    def reference_model(self):
        """The reference policy to run a forward pass with (the adapter is off inside, with LoRA)."""
        if self.reference is not None:
            yield self.reference
            return
        with self.policy.disable_adapter():
            yield self.policy

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for m in (self.policy, self.value) for p in m.parameters() if p.requires_grad]


# -- finding them ----------------------------------------------------------------------------------


def resolve_policy(spec: str) -> Path:
    """A policy folder: 'demo' is the demo policy; a PPO checkpoint or run folder means its policy."""
    text = str(spec).strip()
    if text == DEMO:
        from .demo_policy import ensure_demo_policy

        return ensure_demo_policy()
    path = Path(text).expanduser()
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        if (path / POLICY_DIR).is_dir():
            return path / POLICY_DIR
        latest = _latest_ppo_checkpoint(path)
        if latest is not None:
            return latest / POLICY_DIR
    return resolve_model(text)


def _latest_ppo_checkpoint(run_dir: Path) -> Path | None:
    from .checkpoint import latest_checkpoint

    return latest_checkpoint(run_dir)


def resolve_reward_model(spec: str, project=None) -> Path:
    """'latest' is the best checkpoint of the project's newest finished reward run; a run id, that
    run's best; anything else, what resolve_model makes of it."""
    text = str(spec).strip()
    if project is not None and text == LATEST_REWARD_MODEL:
        text = latest_reward_run(project)
    if project is not None and project.store.run(text) is not None:
        return _reward_run_checkpoint(project, text)
    if text == LATEST_REWARD_MODEL:
        raise ModelError("reward_model: 'latest' needs a project; give a reward-model folder")
    return resolve_model(text)


def latest_reward_run(project) -> str:
    """The id of the project's newest finished reward-model run that has a checkpoint: what
    'latest' means now."""
    for run in project.store.runs(newest_first=True, decode=True):
        if run["kind"] == "reward" and run["status"] == "finished" and _run_checkpoint(project, run) is not None:
            return run["id"]
    raise ModelError(
        "reward_model: 'latest' found no finished reward-model run with a checkpoint in this project; "
        "train one in the Reward model tab (or `rlhf-workbench train-rm`) first"
    )


def _reward_run_checkpoint(project, run_id: str) -> Path:
    run = project.store.run(run_id)
    if run is None or run["kind"] != "reward":
        raise ModelError(f"reward_model: run {run_id} is not a reward-model run")
    folder = _run_checkpoint(project, run)
    if folder is None:
        raise ModelError(f"reward_model: run {run_id} has no checkpoint yet")
    return folder


def _run_checkpoint(project, run) -> Path | None:
    from ..jobs import run_dir_of
    from ..reward.checkpoint import best_checkpoint, latest_checkpoint

    run_dir = run_dir_of(project, run)
    return best_checkpoint(run_dir) or latest_checkpoint(run_dir)


# -- loading them ----------------------------------------------------------------------------------


def load_policy(spec: str | Path, *, trust_remote_code: bool = False, dtype: Any = None, trainable: bool = False):
    """(causal LM, tokenizer) from anything resolve_policy takes; a LoRA folder loads its base too."""
    folder = resolve_policy(str(spec))
    dtype = dtype or torch.float32
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        check_safe_weights(folder)
        base_name = _adapter_base(folder)
        base, tokenizer = load_policy(base_name, trust_remote_code=trust_remote_code, dtype=dtype)
        if (folder / "tokenizer_config.json").is_file():
            tokenizer = load_tokenizer(folder, trust_remote_code=trust_remote_code)
        with quiet_transformers():
            model = PeftModel.from_pretrained(base, folder, is_trainable=trainable)
        return model, tokenizer
    check_safe_weights(folder)
    config = _load_config(folder, trust_remote_code)
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


def load_models(config: PPOConfig, project=None, *, log=lambda message: None) -> PPOModels:
    """Policy, reference, value and reward model for a run, as the config names them.

    Raises ModelError naming the setting whose model cannot be loaded.
    """
    try:
        policy, tokenizer = load_policy(config.policy, trust_remote_code=config.trust_remote_code, trainable=True)
    except ModelError as exc:
        raise ModelError(f"policy: {exc}") from None
    if config.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        if hasattr(policy, "peft_config"):
            raise ModelError("policy: is already a LoRA adapter; turn lora off to go on training it, or merge it first")
        target = config.lora_target_modules.strip()
        targets: Any = None if target == "auto" else target if target == "all-linear" else [
            t.strip() for t in target.split(",") if t.strip()
        ]
        lora = LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout, target_modules=targets,
        )
        try:
            policy = get_peft_model(policy, lora)
        except ValueError as exc:
            raise ModelError(f"lora_target_modules: {_first_line(exc)}") from None
        reference = None
    else:
        reference, _ = load_policy(config.policy, trust_remote_code=config.trust_remote_code)
        reference.requires_grad_(False)
    try:
        reward_path = resolve_reward_model(config.reward_model, project)
        reward, reward_tokenizer = load_reward_model(reward_path, trust_remote_code=config.trust_remote_code, trainable=False)
    except ModelError as exc:
        raise ModelError(f"reward_model: {exc}" if not str(exc).startswith("reward_model:") else str(exc)) from None
    reward.requires_grad_(False)
    reward.eval()
    value_from = config.value_model
    if value_from == "reward" and not same_vocabulary(tokenizer, reward_tokenizer):
        log(
            "value_model: the reward model reads other tokens than the policy writes, so the value model starts "
            "from the policy with a new head instead"
        )
        value_from = "policy"
    if value_from == "reward":
        value, _ = load_reward_model(reward_path, trust_remote_code=config.trust_remote_code)
    else:
        value, _ = load_reward_model(resolve_policy(config.policy), trust_remote_code=config.trust_remote_code)
    if hasattr(value, "merge_and_unload"):
        value = value.merge_and_unload()  # a LoRA reward model: its merged weights start the value model
    value.config.pad_token_id = tokenizer.pad_token_id
    value.requires_grad_(True)
    return PPOModels(policy, reference, value, reward, tokenizer, reward_tokenizer)


def same_vocabulary(a, b) -> bool:
    """Whether two tokenizers map text to the same ids (then token ids can pass between models)."""
    return a is b or a.get_vocab() == b.get_vocab()
