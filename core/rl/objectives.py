"""What each RL method makes of a scored batch, and the loss it takes on a part of it.

The loop (train.py) is one path for every method: rollout, scoring, then `objective.targets()`
(step 3: rewards and advantages), the update (learner.py calls `objective.loss()` on each group of
rows it backpropagates), and the figures. The arithmetic itself is in algorithm.py (PPO) and
group.py (RLOO, GRPO); this is the glue that gives all three the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import algorithm as alg
from . import group as grp
from .config import RLConfig


@dataclass
class Scored:
    """A batch after scoring (step 2), the whole batch on every rank. [B, R] tensors are zero or
    invalid past each response's end (`mask`)."""

    old_logprobs: torch.Tensor  # [B, R] the sampling policy's log-probs of the drawn tokens
    ref_logprobs: torch.Tensor | None  # [B, R] the reference's, when the method uses one
    values: torch.Tensor | None  # [B, R] the value model's, for PPO
    scores: torch.Tensor  # [B] after the missing-EOS penalty (and PPO's normalisation)
    raw_scores: torch.Tensor  # [B] the reward model's scores as they came
    mask: torch.Tensor  # [B, R]
    lengths: torch.Tensor  # [B] response lengths


@dataclass
class Targets:
    """What the update learns from (step 3's result), and the figures it gives."""

    advantages: torch.Tensor  # [B, R] (PPO) or [B] (RLOO, GRPO)
    returns: torch.Tensor | None = None  # [B, R] PPO's value targets
    values: torch.Tensor | None = None  # [B, R] PPO's values at sampling, masked
    figures: dict[str, float] = field(default_factory=dict)
    per_response: dict[str, list[float]] = field(default_factory=dict)  # for the samples table
    mean_kl: float | None = None  # objective/kl: the KL summed over a response, its mean over the batch
    ref_logprobs: torch.Tensor | None = None  # [B, R] GRPO's KL in the loss needs them


@dataclass
class Part:
    """How a part of a minibatch counts in its optimizer step: the counts of the whole microbatch
    it belongs to (the loss of every part is over those, so the parts add up exactly)."""

    tokens: float  # real tokens of the microbatch
    responses: int  # responses of the microbatch
    step_tokens: float  # real tokens of an optimizer step on average over the batch (GRPO's dapo)


class Objective:
    """A method's advantages and loss; `figure_names` are its update figures, as learn() returns them."""

    name = ""
    uses_value = False

    def __init__(self, config: RLConfig):
        self.config = config

    @property
    def uses_reference(self) -> bool:
        return True

    def targets(self, scored: Scored, kl_coef: float) -> Targets:
        raise NotImplementedError

    def loss(self, logprobs, entropy, vpred, rows, width, targets: Targets, old_logprobs, mask, part: Part):
        """(this part's loss, already over its microbatch and the accumulation steps, and its figures
        as token- or response-weighted sums)."""
        raise NotImplementedError

    def summarize(self, sums: dict[str, float], tokens: float, responses: float) -> dict[str, float]:
        raise NotImplementedError


class PPOObjective(Objective):
    """GAE over a per-token reward with a KL penalty, and clipped policy and value losses."""

    name = "ppo"
    uses_value = True

    def targets(self, scored: Scored, kl_coef: float) -> Targets:
        config, mask = self.config, scored.mask
        kl = alg.kl_per_token(scored.old_logprobs, scored.ref_logprobs, config.kl_estimator) * mask
        rewards, non_score = alg.token_rewards(scored.scores, kl, mask, scored.lengths, kl_coef)
        if config.whiten_rewards:
            rewards = alg.masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = alg.gae(rewards, scored.values, mask, gamma=config.gamma, lam=config.lam)
        advantages = alg.masked_whiten(advantages, mask)
        kl_rows = kl.sum(1)
        mean_kl = float(kl_rows.mean())
        figures = {
            "objective/kl": mean_kl,
            "objective/non_score_reward": float(non_score.sum(1).mean()),
            "objective/rlhf_reward": float(scored.scores.mean() + non_score.sum(1).mean()),
            "objective/kl_coef": kl_coef,
        }
        return Targets(advantages, returns, scored.values * mask, figures, {"kl": kl_rows.tolist()}, mean_kl)

    def loss(self, logprobs, entropy, vpred, rows, width, targets, old_logprobs, mask, part):
        config = self.config
        m = mask[rows, :width]
        pg_loss, pg_stats = alg.policy_loss(
            logprobs, old_logprobs[rows, :width], targets.advantages[rows, :width], m, config.cliprange, part.tokens)
        vf_loss, vf_stats = alg.value_loss(
            vpred, targets.values[rows, :width], targets.returns[rows, :width], m, config.cliprange_value, part.tokens)
        loss = (pg_loss + config.vf_coef * vf_loss) / config.gradient_accumulation_steps
        tokens = float(m.sum())
        # The losses are already over the microbatch's tokens; as token-weighted sums:
        return loss, {
            "pg": pg_loss.item() * part.tokens,
            "vf": vf_loss.item() * part.tokens,
            "pg_clip": pg_stats["clipfrac"].item() * tokens,
            "vf_clip": vf_stats["clipfrac"].item() * tokens,
            "approxkl": pg_stats["approxkl"].item() * tokens,
            "ratio": pg_stats["ratio"].item() * tokens,
            "entropy": alg.masked_mean(entropy, m).item() * tokens,
        }

    def summarize(self, sums, tokens, responses):
        per_token = {name: value / max(tokens, 1.0) for name, value in sums.items()}
        return {
            "policy/approxkl_avg": per_token["approxkl"],
            "policy/clipfrac_avg": per_token["pg_clip"],
            "policy/entropy_avg": per_token["entropy"],
            "loss/policy_avg": per_token["pg"],
            "loss/value_avg": per_token["vf"],
            "val/clipfrac_avg": per_token["vf_clip"],
            "val/ratio": per_token["ratio"],
        }


class _GroupObjective(Objective):
    """What RLOO and GRPO share: groups of num_generations responses, no value model, beta.

    Their loss figures are sums over what the clip acts on (whole responses for RLOO, tokens for
    GRPO: `clip_units`), and the loss itself as each microbatch's (or dapo's optimizer step's)."""

    @property
    def uses_reference(self) -> bool:
        return self.config.beta != 0.0

    @property
    def epsilon_high(self) -> float:
        return self.config.epsilon_high if self.config.epsilon_high is not None else self.config.epsilon

    def _targets(self, scored: Scored, advantages: torch.Tensor, kl_rows: torch.Tensor | None) -> Targets:
        k, beta = self.config.num_generations, self.config.beta
        groups = grp.grouped(scored.raw_scores.float(), k)
        group_std = grp.std(groups, dim=1)
        figures = {
            # TRL's GRPO names: the scores' spread over the batch, and the share of groups whose
            # responses all scored alike (they teach nothing: every advantage is zero); and the
            # spread within a group, on average, which is what the baselines work with.
            "reward_std": float(grp.std(scored.raw_scores.float())),
            "reward_std_in_group": float(group_std.mean()),
            "frac_reward_zero_std": float(torch.isclose(group_std, torch.zeros_like(group_std)).float().mean()),
        }
        per_response = {"advantage": advantages.tolist()}
        mean_kl = None
        if kl_rows is not None:
            mean_kl = float(kl_rows.mean())
            figures["objective/kl"] = mean_kl
            figures["objective/non_score_reward"] = -beta * mean_kl
            per_response["kl"] = kl_rows.tolist()
        figures["objective/rlhf_reward"] = float(scored.scores.mean()) - beta * (mean_kl or 0.0)
        return Targets(advantages, figures=figures, per_response=per_response, mean_kl=mean_kl,
                       ref_logprobs=scored.ref_logprobs)

    def _kl_rows(self, scored: Scored) -> torch.Tensor | None:
        if scored.ref_logprobs is None:
            return None
        return grp.sequence_kl(scored.old_logprobs, scored.ref_logprobs, scored.mask)

    def _stats(self, share: torch.Tensor, clipped: grp.ClippedLoss, units: torch.Tensor, logprobs, old, entropy, m):
        """The figures of one part: `units` marks what the clip acts on (1 per response or per token)."""
        with torch.no_grad():
            log_ratio = (logprobs - old) * m
            return {
                "loss": share.item(),
                "clip": float(((clipped.low_clipped | clipped.high_clipped) * units).sum()),
                "clip_low": float((clipped.low_clipped * units).sum()),
                "clip_high": float((clipped.high_clipped * units).sum()),
                "ratio": float((clipped.ratio * units).sum()),
                "clip_units": float(units.sum()),
                "approxkl": float((0.5 * log_ratio**2).sum()),
                "entropy": alg.masked_mean(entropy, m).item() * float(m.sum()),
            }

    def loss_parts(self) -> int:
        """How many `loss` figures add up over an update (one per microbatch)."""
        config = self.config
        return config.epochs * config.num_mini_batches * config.gradient_accumulation_steps

    def summarize(self, sums, tokens, responses):
        units = max(sums["clip_units"], 1.0)
        return {
            "policy/clipfrac_avg": sums["clip"] / units,
            "policy/clipfrac_low": sums["clip_low"] / units,
            "policy/clipfrac_high": sums["clip_high"] / units,
            "policy/entropy_avg": sums["entropy"] / max(tokens, 1.0),
            "policy/approxkl_avg": sums["approxkl"] / max(tokens, 1.0),
            "loss/policy_avg": sums["loss"] / self.loss_parts(),
            "val/ratio": sums["ratio"] / units,
        }


class RLOOObjective(_GroupObjective):
    """Leave-one-out baselines on score - beta x KL; a clipped whole-response ratio."""

    name = "rloo"

    def targets(self, scored: Scored, kl_coef: float) -> Targets:
        kl_rows = self._kl_rows(scored)
        rewards = scored.scores.float() - self.config.beta * kl_rows if kl_rows is not None else scored.scores.float()
        advantages = grp.rloo_advantages(rewards, self.config.num_generations, normalize=self.config.normalize_advantages)
        return self._targets(scored, advantages, kl_rows)

    def loss(self, logprobs, entropy, vpred, rows, width, targets, old_logprobs, mask, part):
        config = self.config
        m = mask[rows, :width]
        old = old_logprobs[rows, :width]
        clipped = grp.rloo_sequence_loss(
            logprobs, old, targets.advantages[rows], m, epsilon=config.epsilon, epsilon_high=self.epsilon_high)
        share = clipped.loss.sum() / part.responses  # this part's share of its microbatch's mean
        units = torch.ones_like(clipped.ratio)
        return share / config.gradient_accumulation_steps, self._stats(share, clipped, units, logprobs, old, entropy, m)


class GRPOObjective(_GroupObjective):
    """Group-mean baselines on the score; a clipped per-token ratio, beta x k3 KL in the loss."""

    name = "grpo"

    def targets(self, scored: Scored, kl_coef: float) -> Targets:
        advantages = grp.grpo_advantages(
            scored.scores.float(), self.config.num_generations, scale_rewards=self.config.scale_rewards).advantages
        return self._targets(scored, advantages, self._kl_rows(scored))

    def loss(self, logprobs, entropy, vpred, rows, width, targets, old_logprobs, mask, part):
        config = self.config
        m = mask[rows, :width]
        old = old_logprobs[rows, :width]
        ref = targets.ref_logprobs[rows, :width] if self.uses_reference else None
        clipped, _kl = grp.grpo_token_loss(
            logprobs, old, targets.advantages[rows], ref_logprobs=ref, beta=config.beta,
            epsilon=config.epsilon, epsilon_high=self.epsilon_high)
        share = grp.grpo_reduce(
            clipped.loss, m, config.loss_type, max_new_tokens=config.max_new_tokens, batch_tokens=part.step_tokens)
        if config.loss_type == "dapo":
            # Over an optimizer step's tokens already: the microbatches of a step add up to it.
            loss = share
        else:
            # The others are means over the microbatch's responses, averaged over its accumulation steps.
            share = share / part.responses
            loss = share / config.gradient_accumulation_steps
        stats = self._stats(share, clipped, m.float(), logprobs, old, entropy, m)
        return loss, stats

    def loss_parts(self) -> int:
        config = self.config
        if config.loss_type == "dapo":  # one loss per optimizer step
            return config.epochs * config.num_mini_batches
        return super().loss_parts()


OBJECTIVES = {"ppo": PPOObjective, "rloo": RLOOObjective, "grpo": GRPOObjective}


def objective_for(config: RLConfig) -> Objective:
    return OBJECTIVES[config.method](config)
