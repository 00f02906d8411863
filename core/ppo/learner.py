"""Step 4 of an update (train.py): epochs of clipped policy and value updates over minibatches.

Each minibatch is one optimizer step over the policy and value models together. Its rows are
cut into microbatches (gradient accumulation) and, within one, into groups of rows of similar
length, each padded only to its own longest row; every loss is normalised by the microbatch's
token count, so the gradient is the same however the rows are grouped.

Under torchrun each rank holds rows rank, rank + world, ... of the batch: it computes the loss of
its own rows of every minibatch, still normalised by the whole microbatch's token count, and the
ranks sum their gradients before the step (core.training.distributed.sum_gradients), which is then the
step one process would take.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ..training import distributed
from ..training.guards import check_finite
from ..training.optim import adamw, loss_scaler, lr_schedule
from ..training.rollout import Rollout, length_groups, response_logits, token_values
from . import algorithm as alg
from .config import PPOConfig
from .models import PPOModels

NAN_HINT = "lower learning_rate, keep max_grad_norm on (e.g. 1.0), train in fp32; the last good checkpoint is kept"
_FIGURES = ("pg", "vf", "pg_clip", "vf_clip", "approxkl", "ratio", "entropy")


class Learner:
    """The optimizer, its schedule and (fp16) loss scaler, and the update they take."""

    def __init__(self, models: PPOModels, config: PPOConfig, total_updates: int, autocast, n_params: int):
        self.models, self.config, self.autocast, self.n_params = models, config, autocast, n_params
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.params = models.trainable()
        # eps 1e-5 as in the N+ details (and CleanRL).
        self.optimizer = adamw(
            self.params, lr=config.learning_rate, eps=1e-5, weight_decay=config.weight_decay
        )
        total_steps = total_updates * config.num_ppo_epochs * config.num_mini_batches
        # Linear decay to zero over the run, as TRL's default schedule and CleanRL's anneal_lr.
        self.scheduler = lr_schedule(self.optimizer, "linear", warmup_steps=0, total_steps=total_steps)
        self.scaler = loss_scaler(config.precision)

    def learn(self, update, rollout: Rollout, old_logprobs, advantages, returns, old_values, mask) -> dict[str, float]:
        """Trains on one update's batch (the whole batch's tensors, this rank's rollout); returns the figures."""
        config, rank, world = self.config, self.rank, self.world
        batch = len(mask)  # the global batch; this rank holds rows rank, rank + world, ...
        mini, micro = config.mini_batch_size, config.micro_batch_size
        order_gen = torch.Generator().manual_seed(alg.mix_seed(config.seed, update, 1))
        lengths = rollout.lengths
        global_mask = mask
        if world > 1:
            old_logprobs, advantages, returns, old_values, mask = (
                t[rank::world] for t in (old_logprobs, advantages, returns, old_values, mask))
        names = _FIGURES
        sums = dict.fromkeys(names, 0.0)  # token-weighted
        tokens_seen = 0
        for _epoch in range(config.num_ppo_epochs):
            order = torch.randperm(batch, generator=order_gen).to(mask.device)
            for start in range(0, batch, mini):
                for micro_start in range(start, start + mini, micro):
                    rows = order[micro_start : micro_start + micro]
                    n_tokens = float(global_mask[rows].sum())
                    if world > 1:
                        rows = rows[rows % world == rank] // world
                    # Rows of similar length together, each group only as wide as its longest row:
                    # the padding of left-padded prompts and of short responses is not computed.
                    for group in length_groups(lengths, rows, n_params=self.n_params) if len(rows) else ():
                        stats = self._backward(rollout.select(group), group, old_logprobs, advantages, returns,
                                               old_values, mask, n_tokens)
                        for name in names:
                            sums[name] += stats[name]
                    tokens_seen += n_tokens
                if world > 1:
                    distributed.sum_gradients(self.params)
                if self.scaler is not None:
                    self.scaler.unscale_(self.optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.params, config.max_grad_norm or float("inf"))
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    # The weights in memory would be spoilt: no step, and no checkpoint from them.
                    check_finite(float(grad_norm), "the gradient norm", at=f"update {update}", step=update, hint=NAN_HINT)
                    self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        if world > 1:
            sums = dict(zip(names, distributed.all_reduce_sum([sums[name] for name in names])))
        per_token = {name: value / max(tokens_seen, 1.0) for name, value in sums.items()}
        return {
            "policy/approxkl_avg": per_token["approxkl"],
            "policy/clipfrac_avg": per_token["pg_clip"],
            "policy/entropy_avg": per_token["entropy"],
            "loss/policy_avg": per_token["pg"],
            "loss/value_avg": per_token["vf"],
            "val/clipfrac_avg": per_token["vf_clip"],
            "val/ratio": per_token["ratio"],
        }

    def _backward(self, part: Rollout, rows, old_logprobs, advantages, returns, old_values, mask, n_tokens: float):
        """Forward and backward of one group of rows; returns its figures, each x its token count."""
        config, models = self.config, self.models
        width = part.responses.shape[1]
        with self.autocast or nullcontext():
            logits = response_logits(models.policy, part)
            vpred = token_values(models.value, part)
        m = mask[rows, :width]
        # One log-softmax over the vocabulary serves the log-probs and the entropy.
        all_logprobs = torch.log_softmax(logits.float() / config.temperature, dim=-1)
        logprobs = all_logprobs.gather(-1, part.responses[..., None]).squeeze(-1)
        pg_loss, pg_stats = alg.policy_loss(
            logprobs, old_logprobs[rows, :width], advantages[rows, :width], m, config.cliprange, n_tokens)
        vf_loss, vf_stats = alg.value_loss(
            vpred, old_values[rows, :width], returns[rows, :width], m, config.cliprange_value, n_tokens)
        loss = (pg_loss + config.vf_coef * vf_loss) / config.gradient_accumulation_steps
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        group_tokens = float(m.sum())
        with torch.no_grad():
            detached = all_logprobs.detach()
            entropy = alg.masked_mean(-(detached.exp() * detached).sum(-1), m)
        # The losses are already over n_tokens (the microbatch's); as token-weighted sums:
        return {
            "pg": pg_loss.item() * n_tokens,
            "vf": vf_loss.item() * n_tokens,
            "pg_clip": pg_stats["clipfrac"].item() * group_tokens,
            "vf_clip": vf_stats["clipfrac"].item() * group_tokens,
            "approxkl": pg_stats["approxkl"].item() * group_tokens,
            "ratio": pg_stats["ratio"].item() * group_tokens,
            "entropy": entropy.item() * group_tokens,
        }
