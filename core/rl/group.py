"""The arithmetic of RLOO and GRPO, as plain functions on tensors, beside PPO's (algorithm.py).

Both sample a group of k responses to each prompt and measure each response against its own
group instead of a value model. Shapes: N = prompts x k responses, in groups of k consecutive
rows; R response positions; `mask` [N, R] is True on real response tokens. Log-probs are of the
sampled tokens at the sampling temperature.

RLOO (Ahmadian et al. 2024, "Back to Basics"; TRL's RLOOTrainer):
1. a response's reward is its score minus beta x its KL from the reference, summed over its tokens
   (k1: log p - log q of the sampling policy, as TRL computes it);
2. its advantage is that reward minus the mean reward of the other k - 1 responses to its prompt
   (leave-one-out), optionally normalised over the batch;
3. the loss is PPO's clipped surrogate on the ratio of whole-response probabilities, averaged over
   responses.

GRPO (Shao et al. 2024, DeepSeekMath; TRL's GRPOTrainer):
1. a response's advantage is its score minus its group's mean score, divided by the group's
   standard deviation when `scale_rewards` says so (Dr. GRPO leaves it out);
2. the per-token loss is the clipped surrogate on the per-token ratio (with DAPO's separate upper
   clip) plus beta x the per-token KL to the reference (k3), in the loss rather than the reward;
3. the per-token losses add up by `loss_type`: grpo (each response's mean, then their mean),
   dr_grpo (the sum over responses x max_new_tokens), dapo (the sum over the batch's tokens).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# Added to a standard deviation before dividing by it, as TRL does.
STD_EPS = 1e-4


def grouped(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N] -> [N / k, k]: one row per prompt (its responses are consecutive)."""
    if values.shape[0] % group_size:
        raise ValueError(f"{values.shape[0]} responses are not whole groups of {group_size}")
    return values.view(-1, group_size)


def std(values: torch.Tensor, dim: int | None = None, keepdim: bool = False) -> torch.Tensor:
    """The sample standard deviation (Bessel's correction), as TRL's nanstd gives it."""
    return values.std(dim=dim, keepdim=keepdim, correction=1) if dim is not None else values.std(correction=1)


# -- advantages ----------------------------------------------------------------------------------


def sequence_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N] each response's KL from the reference, summed over its tokens (k1 = log p - log q)."""
    return ((logprobs - ref_logprobs) * mask).sum(1)


def rloo_advantages(rewards: torch.Tensor, group_size: int, *, normalize: bool = False) -> torch.Tensor:
    """[N] each reward minus the mean of its k - 1 siblings' rewards; over the batch to mean 0 and
    std 1 when `normalize`."""
    groups = grouped(rewards, group_size)
    baselines = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    advantages = (groups - baselines).reshape(-1)
    if normalize:
        advantages = (advantages - advantages.mean()) / (std(advantages) + STD_EPS)
    return advantages


class GroupAdvantages(NamedTuple):
    advantages: torch.Tensor  # [N]
    group_std: torch.Tensor  # [N / k] the standard deviation of each group's scores
    zero_std: torch.Tensor  # [N / k] True where a group's responses all scored alike (no signal)


def grpo_advantages(scores: torch.Tensor, group_size: int, *, scale_rewards: str = "none") -> GroupAdvantages:
    """Each score minus its group's mean, divided by the group's (or the batch's) std + 1e-4 when
    `scale_rewards` is "group" (or "batch")."""
    groups = grouped(scores, group_size)
    group_std = std(groups, dim=1)
    advantages = (groups - groups.mean(1, keepdim=True)).reshape(-1)
    if scale_rewards == "group":
        advantages = advantages / (group_std.repeat_interleave(group_size) + STD_EPS)
    elif scale_rewards == "batch":
        advantages = advantages / (std(scores) + STD_EPS)
    elif scale_rewards != "none":
        raise ValueError(f"scale_rewards: {scale_rewards!r} is not none, group or batch")
    zero_std = torch.isclose(group_std, torch.zeros_like(group_std))
    return GroupAdvantages(advantages, group_std, zero_std)


# -- losses ---------------------------------------------------------------------------------------


class ClippedLoss(NamedTuple):
    loss: torch.Tensor  # per token [N, R] (GRPO) or per response [N] (RLOO), before any reduction
    ratio: torch.Tensor  # the probability ratio, same shape
    low_clipped: torch.Tensor  # True where the ratio fell below 1 - epsilon with a negative advantage
    high_clipped: torch.Tensor  # True where it rose above 1 + epsilon_high with a positive advantage


def clipped_surrogate(log_ratio: torch.Tensor, advantages: torch.Tensor, epsilon: float, epsilon_high: float) -> ClippedLoss:
    """-min(r A, clip(r, 1 - epsilon, 1 + epsilon_high) A) with r = exp(log_ratio); `advantages`
    broadcast over `log_ratio`."""
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high)
    loss = -torch.min(ratio * advantages, clipped * advantages)
    return ClippedLoss(loss, ratio, (ratio < 1 - epsilon) & (advantages < 0), (ratio > 1 + epsilon_high) & (advantages > 0))


def grpo_token_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    *,
    epsilon: float,
    epsilon_high: float,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
) -> tuple[ClippedLoss, torch.Tensor | None]:
    """GRPO's per-token loss [N, R] (the surrogate plus beta x k3 KL) and the per-token KL (None
    without a reference). `advantages` is per response [N]."""
    surrogate = clipped_surrogate(logprobs - old_logprobs, advantages[:, None], epsilon, epsilon_high)
    kl = None
    loss = surrogate.loss
    if beta != 0.0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs the reference's log-probs")
        delta = ref_logprobs - logprobs
        kl = torch.exp(delta) - delta - 1  # k3: never negative
        loss = loss + beta * kl
    return surrogate._replace(loss=loss), kl


def grpo_reduce(
    token_loss: torch.Tensor, mask: torch.Tensor, loss_type: str, *, max_new_tokens: int, batch_tokens: float
) -> torch.Tensor:
    """The loss of these responses, by `loss_type`: their share of the update's loss, so that the
    optimizer step over a minibatch sums its parts.

    - grpo: each response's mean over its tokens, summed over these responses (the caller divides
      by the minibatch's responses);
    - dr_grpo: the sum over tokens / max_new_tokens (the caller divides by the minibatch's responses);
    - dapo: the sum over tokens / `batch_tokens`, the real tokens of the minibatch (TRL: of the
      generation batch, per optimizer step).
    """
    mask = mask.to(token_loss.dtype)
    if loss_type == "grpo":
        return ((token_loss * mask).sum(1) / mask.sum(1).clamp(min=1.0)).sum()
    if loss_type == "dr_grpo":
        return (token_loss * mask).sum() / max_new_tokens
    if loss_type == "dapo":
        return (token_loss * mask).sum() / max(batch_tokens, 1.0)
    raise ValueError(f"loss_type: {loss_type!r} is not grpo, dr_grpo or dapo")


def rloo_sequence_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    *, epsilon: float, epsilon_high: float,
) -> ClippedLoss:
    """RLOO's loss per response [N]: the clipped surrogate on the ratio of whole-response
    probabilities, exp(sum log p - sum log p_old)."""
    log_ratio = ((logprobs - old_logprobs) * mask).sum(1)
    return clipped_surrogate(log_ratio, advantages, epsilon, epsilon_high)
