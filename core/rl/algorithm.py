"""The arithmetic of PPO for language models, as plain functions on tensors (no models here).

Shapes: B responses, R response positions; `mask` [B, R] is True on real response tokens.
The steps, in the order one update takes them (Huang et al., "The N+ Implementation Details of
RLHF with PPO", and TRL's PPOTrainer, whose metric names we keep):

1. per-token KL of the policy from the reference: k1 = log p - log q, or k3 = (r - 1) - log r
   with r = q / p (never negative, lower variance; Schulman's estimator);
2. per-token rewards: -kl_coef x KL everywhere, plus the reward model's score on the last real
   token of the response (never on padding);
3. advantages by GAE (gamma, lambda) over the response, returns = advantages + values, then
   advantages whitened over the real tokens of the batch;
4. the clipped policy loss and the clipped value loss, averaged over real tokens.
"""

from __future__ import annotations

import math

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    n = mask.sum()
    # Bessel's correction, as TRL does; one token has no spread to correct.
    return var * n / (n - 1) if n > 1 else var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True) -> torch.Tensor:
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str) -> torch.Tensor:
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"kl_estimator: {estimator!r} is not k1 or k3")


def token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, non-score rewards) [B, R]: the KL penalty on every real token, the score on the last."""
    non_score = -kl_coef * kl * mask
    rewards = non_score.clone()
    last = (lengths - 1).clamp(min=0)
    rewards[torch.arange(len(scores), device=scores.device), last] += scores
    return rewards, non_score


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) [B, R] by generalised advantage estimation; padding gets zeros.

    Values past a response's end are zero, so the last real token bootstraps from nothing.
    """
    values = values * mask
    rewards = rewards * mask
    width = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(width)):
        next_value = values[:, t + 1] if t + 1 < width else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def _mean_over(values: torch.Tensor, mask: torch.Tensor, n_tokens: float | None) -> torch.Tensor:
    # n_tokens: a larger batch's token count, when this is one part of it (the parts' losses then
    # add up to the batch's mean exactly).
    return masked_mean(values, mask) if n_tokens is None else (values * mask).sum() / n_tokens


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float,
    n_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped surrogate, averaged over real tokens (over `n_tokens` when given); stats are
    means over this part's tokens."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = _mean_over(torch.maximum(unclipped, clipped), mask, n_tokens)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approxkl": 0.5 * masked_mean(log_ratio**2, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float,
    n_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    losses = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    loss = 0.5 * _mean_over(losses, mask, n_tokens)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean(((clipped - returns) ** 2 > (values - returns) ** 2).float(), mask)}
    return loss, stats


class AdaptiveKLController:
    """Ziegler et al. (2019): moves the KL coefficient so the KL tracks a target, at most 20% of
    the way per horizon."""

    def __init__(self, kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = kl_coef, target, horizon

    def update(self, current_kl: float, n_episodes: int) -> None:
        if self.target <= 0 or not math.isfinite(current_kl):
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_episodes / self.horizon


class RunningMoments:
    """Mean and standard deviation of every score seen so far (Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().double()
        n = values.numel()
        if n == 0:
            return
        batch_mean, batch_var = float(values.mean()), float(values.var(unbiased=False))
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 1e-12))

    def state(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), int(state["count"])


def mix_seed(*numbers: int) -> int:
    # A seed per (run seed, update, purpose) that does not collide for nearby values.
    value = 0x9E3779B97F4A7C15
    for number in numbers:
        value = (value ^ (number + 0x9E3779B9 + (value << 6) + (value >> 2))) & (2**63 - 1)
    return value
