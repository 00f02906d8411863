"""DPO's losses and the log-probabilities they are made of: small pure functions, tested against TRL
1.16's DPOTrainer on a fixed batch (tests/test_offline_vs_trl.py) and against values worked by hand.

A pair's log-ratio is how much more the policy likes a response than the reference does,
log pi(y|x) - log ref(y|x), summed over the response's tokens; its implicit reward is beta x that.
With delta = (chosen log-ratio) - (rejected log-ratio):

    sigmoid  -(1 - e) logsigmoid(beta delta) - e logsigmoid(-beta delta)     DPO; e > 0: cDPO
    ipo      (delta_avg - 1 / (2 beta))^2, delta_avg from per-token means    Azar et al. 2023
    robust   (-(1 - e) logsigmoid(beta delta) + e logsigmoid(-beta delta)) / (1 - 2e)   rDPO

e is label_smoothing. TRL 1.16 has no label smoothing in `sigmoid` (it is `robust`'s); with e = 0
the two agree, and cDPO (e > 0) is Mitchell's note's loss, as TRL's sigmoid was before 1.0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSS_TYPES = ("sigmoid", "ipo", "robust")


def dpo_losses(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    reference_chosen: Tensor,
    reference_rejected: Tensor,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_tokens: Tensor | None = None,
    rejected_tokens: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(per-pair losses, chosen rewards, rejected rewards) from summed response log-probs, one per pair.

    `chosen_tokens` and `rejected_tokens` (each response's token count) are needed by ipo only.
    The rewards are detached: they are reported, not trained on.
    """
    chosen_ratio = policy_chosen - reference_chosen
    rejected_ratio = policy_rejected - reference_rejected
    delta = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * delta) * (1 - label_smoothing) - F.logsigmoid(-beta * delta) * label_smoothing
    elif loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the ipo loss needs each response's token count")
        average = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
        losses = (average - 1 / (2 * beta)) ** 2
    elif loss_type == "robust":
        clean = -(1 - label_smoothing) * F.logsigmoid(beta * delta)
        flipped = -label_smoothing * F.logsigmoid(-beta * delta)
        losses = (clean - flipped) / (1 - 2 * label_smoothing)
    else:
        raise ValueError(f"unknown DPO loss type {loss_type!r} (known: {', '.join(LOSS_TYPES)})")
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def chosen_nll(policy_chosen: Tensor, chosen_tokens: Tensor) -> Tensor:
    """The SFT loss of a batch's chosen responses: their negative log-likelihood per token (TRL's `sft`
    loss type, which DPO's `sft_weight` adds)."""
    return -policy_chosen.sum() / chosen_tokens.sum().clamp(min=1)


def pair_figures(
    chosen_rewards: Tensor, rejected_rewards: Tensor, policy_chosen: Tensor, policy_rejected: Tensor
) -> dict[str, Tensor]:
    """TRL's DPO figures of a batch (means over its pairs), as 0-d tensors, unprefixed."""
    with torch.no_grad():
        return {
            "rewards/chosen": chosen_rewards.mean(),
            "rewards/rejected": rejected_rewards.mean(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
            "logps/chosen": policy_chosen.detach().mean(),
            "logps/rejected": policy_rejected.detach().mean(),
        }


def token_logprobs(logits: Tensor, targets: Tensor) -> Tensor:
    """log p(target) under each row of logits ([T, V] and [T] -> [T]), in float32.

    cross_entropy is log_softmax and the gather fused: no [T, V] copy of log-probs is kept for backward.
    """
    return -F.cross_entropy(logits.float(), targets, reduction="none")
