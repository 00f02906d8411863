"""The Bradley-Terry reward loss and the per-batch metrics logged beside it.

Both follow TRL's `RewardTrainer.compute_loss` (TRL 1.12.0) so that a reward model trained here can
be compared with one trained there number for number; tests/test_reward_vs_trl.py checks it:

    loss = mean(-logsigmoid(r_c - r_r - margin))
           + center_rewards_coefficient * mean((r_c + r_r) ** 2)

The centering term is the mean of the squared *sum* of each pair's two rewards (Eisenstein et al.
2023, eq. 2), not the squared mean: it pulls every pair towards zero, not only their average.

Kept free of any model or trainer so the training loop, the evaluation and the tests share one
definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["batch_metrics", "reward_loss"]


def _as_float(t: Tensor) -> Tensor:
    # Rewards are a handful of scalars per batch, so computing the loss in at least fp32 costs
    # nothing; under bf16 autocast it keeps logsigmoid of small differences from rounding to the
    # same value. For fp32 inputs (what the parity test uses) this is the identity, as in TRL.
    return t.to(torch.promote_types(t.dtype, torch.float32))


def reward_loss(
    rewards_chosen: Tensor,
    rewards_rejected: Tensor,
    *,
    margin: Tensor | None = None,
    center_rewards_coefficient: float | None = None,
) -> Tensor:
    """Mean Bradley-Terry loss over a batch of pairs, as TRL's RewardTrainer computes it.

    `rewards_chosen` and `rewards_rejected` hold one scalar reward per pair (shape (B,), or (B, 1)
    straight from a one-label head: the two must have the same shape). `margin`, when given, is
    how much the chosen response must win by (one value per pair, or one for all); it is
    subtracted inside the sigmoid, so a pair with margin m is only "done" once r_c - r_r >> m.
    `center_rewards_coefficient` adds coefficient * mean((r_c + r_r)^2); None (TRL's default) adds
    nothing, and 0.0 adds an exact zero.
    """
    if rewards_chosen.shape != rewards_rejected.shape:
        raise ValueError(
            f"chosen and rejected rewards differ in shape: {tuple(rewards_chosen.shape)} vs "
            f"{tuple(rewards_rejected.shape)}"
        )
    if rewards_chosen.numel() == 0:
        # The mean of nothing is NaN, which would poison the optimiser state silently.
        raise ValueError("reward_loss needs at least one pair")
    chosen, rejected = _as_float(rewards_chosen), _as_float(rewards_rejected)
    difference = chosen - rejected
    if margin is not None:
        margin = margin.to(device=difference.device, dtype=difference.dtype)
        if margin.dim() > 0:
            # A (B,) margin against (B, 1) rewards would broadcast to (B, B): line them up first.
            margin = margin.reshape(difference.shape)
        difference = difference - margin
    loss = -F.logsigmoid(difference).mean()
    if center_rewards_coefficient is not None:
        loss = loss + center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
    return loss


def batch_metrics(rewards_chosen: Tensor, rewards_rejected: Tensor) -> dict[str, float]:
    """Per-batch figures under TRL's names, unprefixed (the caller adds `train/` or `eval/`).

    - accuracy: share of pairs with r_c > r_r. A tie counts as wrong, as in TRL (it compares with a
      strict `>`), so an untrained model that scores everything alike reads 0, not 0.5.
    - margin: mean of r_c - r_r.
    - mean_reward, min_reward, max_reward: over all 2B rewards, chosen and rejected together.

    The five values leave the device in one transfer, so logging every step costs one sync.
    """
    if rewards_chosen.shape != rewards_rejected.shape:
        raise ValueError(
            f"chosen and rejected rewards differ in shape: {tuple(rewards_chosen.shape)} vs "
            f"{tuple(rewards_rejected.shape)}"
        )
    if rewards_chosen.numel() == 0:
        raise ValueError("batch_metrics needs at least one pair")
    with torch.no_grad():
        chosen = _as_float(rewards_chosen.detach()).reshape(-1)
        rejected = _as_float(rewards_rejected.detach()).reshape(-1)
        both = torch.cat([chosen, rejected])
        figures = torch.stack(
            [
                (chosen > rejected).to(chosen.dtype).mean(),
                (chosen - rejected).mean(),
                both.mean(),
                both.min(),
                both.max(),
            ]
        ).tolist()
    return dict(zip(("accuracy", "margin", "mean_reward", "min_reward", "max_reward"), figures))
