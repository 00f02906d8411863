"""A pair's prompt computed once: the technique every preference method here shares (the reward
model, DPO).

A pair's chosen and rejected sequences begin with the same prompt, and on HH the prompt is most of
the text; trainers (TRL's, and ours before this) run it through the model twice. Here the pairs'
common beginnings go through the backbone once, into a KV cache; the cache is then repeated for the
two responses of each pair, and each continues from it with its own tokens at their own positions.
Attention sees exactly what it sees in two separate sequences (every response token attends to the
whole prompt and to its own earlier tokens, never to the other response), so the hidden states,
losses and gradients are those of two separate passes up to float rounding (gradients flow back
through the cache into the prompt: tests/test_prefix_sharing.py). "Accelerating Direct Preference
Optimization with Prefix Sharing" (Wang et al. 2024) does the same with one packed sequence and a
block mask; a KV cache needs nothing of the attention implementation but what generation needs.

Where it cannot be used, callers fall back to two sequences: gradient checkpointing (which turns the
cache off in training) and models whose backbone the caller cannot reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["common_prefix", "SharedBatch", "in_row_order", "shared_batch", "shared_hidden", "worth_sharing"]

# Below this many prompt tokens saved per pair, a second pass through the model costs more than it saves.
MIN_SAVED_PER_PAIR = 8


def worth_sharing(shares: Sequence[int]) -> bool:
    """Whether computing pairs' prompts once pays for the extra pass, given each pair's shareable
    tokens. Judged once for a whole dataset, never per batch: under torchrun each rank holds part
    of a batch, and one rule for every batch keeps the ranks' arithmetic the one process's."""
    return bool(shares) and sum(shares) >= MIN_SAVED_PER_PAIR * len(shares)


def common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """How many first tokens `a` and `b` share, at most `limit`."""
    n = 0
    for x, y in zip(a, b):
        if n >= limit or x != y:
            break
        n += 1
    return n


class SharedBatch:
    """A batch of pairs split into their shared prefixes and the rows' rests, as tensors.

    rows are the pairs' first sequences, then their second ones (as every pair batch here is
    ordered); `prefix` is [B, P] right-padded, `rest` [2B, W] right-padded, `starts` [2B] where
    each rest begins in its full sequence.
    """

    def __init__(self, prefix_ids, prefix_mask, rest_ids, rest_mask, starts, owner, saved: int):
        self.prefix_ids, self.prefix_mask = prefix_ids, prefix_mask
        self.rest_ids, self.rest_mask = rest_ids, rest_mask
        self.starts, self.owner = starts, owner
        self.saved = saved  # prompt tokens not computed twice

    def to(self, device, non_blocking: bool = False) -> SharedBatch:
        moved = [t.to(device, non_blocking=non_blocking) for t in (self.prefix_ids, self.prefix_mask, self.rest_ids,
                                                           self.rest_mask, self.starts, self.owner)]
        return SharedBatch(*moved, saved=self.saved)


def shared_batch(first: Sequence[list[int]], second: Sequence[list[int]], limits: Sequence[int], pad_id: int) -> SharedBatch | None:
    """The pairs (first[i], second[i]) as a SharedBatch, each sharing its common first tokens up to
    limits[i]; None when a pair shares nothing (its two sequences differ from the first token)."""
    n = len(first)
    shares = [common_prefix(a, b, limit) for a, b, limit in zip(first, second, limits)]
    if not shares or min(shares) < 1:
        return None
    prefixes = [first[i][: shares[i]] for i in range(n)]
    rests = [first[i][shares[i] :] for i in range(n)] + [second[i][shares[i] :] for i in range(n)]
    prefix_ids, prefix_mask = _right_pad(prefixes, pad_id)
    rest_ids, rest_mask = _right_pad(rests, pad_id)
    owner = torch.arange(n).repeat(2)
    starts = torch.tensor(shares * 2)
    return SharedBatch(prefix_ids, prefix_mask, rest_ids, rest_mask, starts, owner, saved=sum(shares))


def shared_hidden(backbone, batch: SharedBatch, *, n_params: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The backbone's last hidden states at every position of each row's rest, as (rows [g], hidden
    [g, W_g, H]) for groups of rows of similar length.

    The prompts go through once; then the rests, in one pass or, when the padding saved pays for the
    extra passes (rollout.length_groups' cost model), in up to four of rows of similar length (a pair's
    two answers often differ in length: one pass pads every row to the longest of the batch). Each
    group continues from its own copy of its rows' prompt cache.
    """
    from transformers import DynamicCache

    from .rollout import length_groups

    width = batch.prefix_ids.shape[1]
    device = batch.prefix_ids.device
    cache = DynamicCache()
    backbone(
        input_ids=batch.prefix_ids, attention_mask=batch.prefix_mask,
        position_ids=torch.arange(width, device=device).expand_as(batch.prefix_ids),
        past_key_values=cache, use_cache=True,
    )
    states = [(layer.keys, layer.values) for layer in cache.layers]
    lengths = batch.rest_mask.sum(1)
    groups = length_groups(lengths.cpu(), torch.arange(len(lengths)), n_params=n_params)
    out = []
    for rows in groups:
        rows = rows.to(device)
        rest_width = int(lengths[rows].max())
        owners = batch.owner[rows]
        group_cache = DynamicCache()
        for index, (keys, values) in enumerate(states):
            group_cache.update(keys[owners], values[owners], index)
        hidden = backbone(
            input_ids=batch.rest_ids[rows, :rest_width],
            attention_mask=torch.cat([batch.prefix_mask[owners], batch.rest_mask[rows, :rest_width]], dim=1),
            position_ids=batch.starts[rows, None] + torch.arange(rest_width, device=device),
            past_key_values=group_cache, use_cache=True,
        ).last_hidden_state
        out.append((rows, hidden))
    return out


def in_row_order(rows: list[torch.Tensor], values: list[torch.Tensor]) -> torch.Tensor:
    """The groups' per-row values back in the batch's row order."""
    order = torch.cat(rows)
    return torch.cat(values)[torch.argsort(order)]


def _right_pad(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask
