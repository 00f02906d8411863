"""Step 4 of an update (train.py): epochs of clipped policy updates (and PPO's value updates) over
minibatches; the method's objective (objectives.py) says what each part's loss is.

Each minibatch is one optimizer step over the trained models together (PPO: the policy and the
value model; RLOO, GRPO: the policy). Its rows are cut into microbatches (gradient accumulation)
and, within one, into groups of rows of similar length, each padded only to its own longest row;
every loss is normalised by the whole microbatch's counts (its tokens, its responses; GRPO's dapo
by an optimizer step's tokens), so the gradient is the same however the rows are grouped.

Under torchrun each rank holds rows rank, rank + world, ... of the batch: it computes the loss of
its own rows of every minibatch, still normalised by the whole microbatch's counts, and the ranks
sum their gradients before the step (core.training.distributed.sum_gradients), which is then the
step one process would take.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ..training import distributed
from ..training.guards import check_finite
from ..training.optim import adamw, loss_scaler, lr_schedule
from ..training.rollout import Rollout, length_groups, prompt_groups, response_logits, token_values
from ..training.rollout import tempered as _tempered
from . import algorithm as alg
from .config import RLConfig
from .models import RLModels
from .objectives import Objective, Part, Targets

# In the order they are met (as core/training/loop.py's): the learning rate far more often than the rest.
NAN_HINT = (
    "likely causes, most likely first: (1) learning_rate too high for this policy (try a tenth of it); "
    "(2) fp16/bf16 overflow (train in fp32); (3) max_grad_norm off (set it, e.g. 1.0); (4) rewards far out of "
    "scale from the reward model. The last good checkpoint is kept"
)


class Learner:
    """The optimizer, its schedule and (fp16) loss scaler, and the update they take."""

    def __init__(self, models: RLModels, config: RLConfig, objective: Objective, total_updates: int, autocast,
                 n_params: int):
        self.models, self.config, self.objective, self.autocast, self.n_params = models, config, objective, autocast, n_params
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.params = models.trainable()
        # eps 1e-5 as in the N+ details (and CleanRL).
        self.optimizer = adamw(
            self.params, lr=config.learning_rate, eps=1e-5, weight_decay=config.weight_decay
        )
        total_steps = total_updates * config.epochs * config.num_mini_batches
        # Linear decay to zero over the run, as TRL's default schedule and CleanRL's anneal_lr.
        self.scheduler = lr_schedule(self.optimizer, "linear", warmup_steps=0, total_steps=total_steps)
        self.scaler = loss_scaler(config.precision)

    def learn(self, update, rollout: Rollout, old_logprobs, targets: Targets, mask) -> dict[str, float]:
        """Trains on one update's batch (the whole batch's tensors, this rank's rollout); returns the figures."""
        config, rank, world = self.config, self.rank, self.world
        batch = len(mask)  # the global batch; this rank holds rows rank, rank + world, ...
        mini, micro = config.mini_batch_size, config.micro_batch_size
        order_gen = torch.Generator().manual_seed(alg.mix_seed(config.seed, update, 1))
        lengths = rollout.lengths
        global_mask = mask
        # GRPO's dapo: the real tokens of an optimizer step, on average over the batch (as TRL's).
        step_tokens = float(global_mask.sum()) / config.num_mini_batches
        if world > 1:
            old_logprobs, mask = old_logprobs[rank::world], mask[rank::world]
            targets = _local(targets, rank, world)
        sums: dict[str, float] = {}
        tokens_seen = responses_seen = 0.0
        group = config.group_size
        # A group's rows (RLOO, GRPO) stay together, in the minibatches and in the length groups,
        # so that one pass reads their shared prompt once (rollout.response_logits).
        together = prompt_groups(len(rollout.response_lengths), group, rank, world, rollout.tokens.device)
        for _epoch in range(config.epochs):
            order = torch.randperm(batch // group, generator=order_gen)
            order = (order[:, None] * group + torch.arange(group)).flatten().to(mask.device)
            for start in range(0, batch, mini):
                for micro_start in range(start, start + mini, micro):
                    rows = order[micro_start : micro_start + micro]
                    part = Part(tokens=float(global_mask[rows].sum()), responses=len(rows), step_tokens=step_tokens)
                    if world > 1:
                        rows = rows[rows % world == rank] // world
                    # Rows of similar length together, each group only as wide as its longest row:
                    # the padding of left-padded prompts and of short responses is not computed.
                    for part_rows in length_groups(lengths, rows, n_params=self.n_params, together=together) if len(rows) else ():
                        stats = self._backward(rollout.select(part_rows), part_rows, old_logprobs, targets, mask, part)
                        for name, value in stats.items():
                            sums[name] = sums.get(name, 0.0) + value
                    tokens_seen += part.tokens
                    responses_seen += part.responses
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
        names = sorted(sums)
        if world > 1:
            # Every rank has the same names (each holds rows of every microbatch).
            sums = dict(zip(names, distributed.all_reduce_sum([sums[name] for name in names])))
        return self.objective.summarize(sums, tokens_seen, responses_seen)

    def _backward(self, part: Rollout, rows, old_logprobs, targets: Targets, mask, counts: Part) -> dict[str, float]:
        """Forward and backward of one group of rows; returns its figures (sums, see the objective)."""
        config, models = self.config, self.models
        width = part.responses.shape[1]
        with self.autocast or nullcontext():
            logits = response_logits(models.policy, part, n_params=self.n_params)
            vpred = token_values(models.value, part) if self.objective.uses_value else None
        # One log-softmax over the vocabulary serves the log-probs and the entropy. The logits are
        # divided in place: nothing else reads them, and a [B, R, V] copy costs as much.
        all_logprobs = torch.log_softmax(_tempered(logits, config.temperature), dim=-1)
        logprobs = all_logprobs.gather(-1, part.responses[..., None]).squeeze(-1)
        with torch.no_grad():
            detached = all_logprobs.detach()
            entropy = -(detached.exp() * detached).sum(-1)
        loss, stats = self.objective.loss(logprobs, entropy, vpred, rows, width, targets, old_logprobs, mask, counts)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        return stats


def _local(targets: Targets, rank: int, world: int) -> Targets:
    """This rank's rows (rank, rank + world, ...) of the batch's targets."""
    def mine(t):
        return t[rank::world] if t is not None else None

    return Targets(mine(targets.advantages), mine(targets.returns), mine(targets.values), targets.figures,
                   targets.per_response, targets.mean_kl, mine(targets.ref_logprobs))
