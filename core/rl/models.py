"""The models of the RL methods and how they are found and loaded.

    policy      the causal LM being trained
    reference   a frozen copy of the starting policy; with LoRA, the policy itself with its adapter
                switched off (one copy of the base weights in memory). RLOO and GRPO with beta 0
                have none: nothing holds the policy near its start, so nothing is loaded.
    value       PPO's alone: a scalar head per token, a copy of the reward model (as TRL and the
                N+ details do) or of the policy with a new head. RLOO and GRPO load none.
    reward      frozen; scores a whole response. Its tokenizer may differ from the policy's: the
                response is decoded to text and re-tokenized (TRL refuses such pairs)
    gold        optional (gold_model), frozen: another reward model as the true goal, scoring the same
                answers for objective/gold_score; nothing trains against it

Where each comes from is a string a person typed (see RLConfig): 'demo', a folder, a model in the
Hugging Face cache, a checkpoint of this project, or a run id.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from ..models import LoraSettings, ModelError, load_reward_model
from ..training.policy import load_policy, resolve_policy, with_new_lora
from ..training.run_models import resolve_reward_model
from .config import RLConfig

VALUE_DIR = "value"


@dataclass
class RLModels:
    policy: Any
    reference: Any | None  # None: the policy with its LoRA adapter disabled (or no reference at all)
    value: Any | None  # None: a critic-free method
    reward: Any
    tokenizer: Any
    reward_tokenizer: Any
    has_reference: bool = True  # False: the method keeps no KL to a reference (GRPO, RLOO with beta 0)
    gold: Any | None = None  # a reward model acting as the true goal (gold_model), frozen; None: none
    gold_tokenizer: Any | None = None

    @contextlib.contextmanager
    def reference_model(self):
        """The reference policy to run a forward pass with (the adapter is off inside, with LoRA)."""
        if not self.has_reference:
            raise RuntimeError("this run keeps no reference model")
        if self.reference is not None:
            yield self.reference
            return
        with self.policy.disable_adapter():
            yield self.policy

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for m in (self.policy, self.value) if m is not None for p in m.parameters() if p.requires_grad]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_models(config: RLConfig, project=None, *, log=lambda message: None) -> RLModels:
    """Policy, reference, value and reward model for a run, as the config names them and its
    method needs them.

    Raises ModelError naming the setting whose model cannot be loaded.
    """
    has_reference = config.method == "ppo" or config.beta != 0.0
    try:
        policy, tokenizer = load_policy(config.policy, trust_remote_code=config.trust_remote_code, trainable=True)
    except ModelError as exc:
        raise ModelError(f"policy: {exc}") from None
    if config.lora:
        policy = with_new_lora(policy, LoraSettings(config.lora_r, config.lora_alpha, config.lora_dropout,
                                                    config.lora_target_modules))
        reference = None
    elif has_reference:
        reference, _ = load_policy(config.policy, trust_remote_code=config.trust_remote_code)
        reference.requires_grad_(False)
    else:
        reference = None
    try:
        reward_path = resolve_reward_model(config.reward_model, project)
        reward, reward_tokenizer = load_reward_model(reward_path, trust_remote_code=config.trust_remote_code, trainable=False)
    except ModelError as exc:
        raise ModelError(f"reward_model: {exc}" if not str(exc).startswith("reward_model:") else str(exc)) from None
    reward.requires_grad_(False)
    reward.eval()
    gold = gold_tokenizer = None
    if config.gold_model:
        try:
            gold, gold_tokenizer = load_reward_model(resolve_reward_model(config.gold_model, project),
                                                     trust_remote_code=config.trust_remote_code, trainable=False)
        except ModelError as exc:
            raise ModelError(f"gold_model: {exc}") from None
        gold.requires_grad_(False)
        gold.eval()
    if config.method != "ppo":
        return RLModels(policy, reference, None, reward, tokenizer, reward_tokenizer, has_reference, gold, gold_tokenizer)
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
    return RLModels(policy, reference, value, reward, tokenizer, reward_tokenizer, gold=gold, gold_tokenizer=gold_tokenizer)


def same_vocabulary(a, b) -> bool:
    """Whether two tokenizers map text to the same ids (then token ids can pass between models)."""
    return a is b or a.get_vocab() == b.get_vocab()
