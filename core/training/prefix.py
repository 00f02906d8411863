"""A pair's prompt computed once: the technique every preference method here shares (the reward
model, DPO).

A pair's chosen and rejected sequences begin with the same prompt, and on HH the prompt is most of
the text; trainers (TRL's, and ours before this) run it through the model twice. Here each pair
goes through the backbone as one row: the prompt, then the first response, then the second, under
a block mask by which each response attends to the prompt and to its own earlier tokens, never to
the other response, at the positions it has in its own sequence ("Accelerating Direct Preference
Optimization with Prefix Sharing", Wang et al. 2024). Attention sees exactly what it sees in two
separate sequences, so the hidden states, losses and gradients are those of two separate passes up
to float rounding (tests/test_prefix_sharing.py).

That needs an attention implementation that takes a ready 4D mask (`sdpa`, `eager`). For the others
(FlashAttention, flex) the prompts go through once into a KV cache, which each response continues
from: the same arithmetic in two or more passes, needing nothing of the attention but what
generation needs. One packed pass took 20% less time than the cache's passes for a reward model of
bench/rm_vs_trl.py's size on batches of 8 pairs of HH-like lengths (prompts 60-320 tokens, answers
10-80; forward and backward, interleaved, 2 threads): no cache copied for each response, and one
pass of larger matrices rather than two or more of smaller ones.

Where neither can be used, callers fall back to two sequences: gradient checkpointing (which turns
the cache off in training; the packed pass would do, but one rule for both keeps it simple) and
models whose backbone the caller cannot reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["common_prefix", "SharedBatch", "in_row_order", "packed_hidden", "packs", "pair_row_length", "shared_batch", "shared_hidden", "worth_sharing"]

# Pack each pair in one row when the attention takes a ready 4D mask (tests switch it off to try the cache).
PACK = True
PACKABLE = ("eager", "sdpa")

# Below this many prompt tokens saved per pair, a second pass through the model costs more than it saves.
MIN_SAVED_PER_PAIR = 8


def worth_sharing(shares: Sequence[int]) -> bool:
    """Whether computing pairs' prompts once pays for the extra pass, given each pair's shareable
    tokens. Judged once for a whole dataset, never per batch: under torchrun each rank holds part
    of a batch, and one rule for every batch keeps the ranks' arithmetic the one process's."""
    return bool(shares) and sum(shares) >= MIN_SAVED_PER_PAIR * len(shares)


def packs(backbone) -> bool:
    """Whether shared_hidden packs each pair in one row for this backbone (else: a KV cache)."""
    return PACK and backbone.config._attn_implementation in PACKABLE


def pair_row_length(first: int, second: int, shared: int, packed: bool) -> int:
    """The tokens a pair of sequences of these lengths costs a pass, for ordering pairs longest first:
    packed, one row of both with the `shared` tokens once; else (two rows, or a cache and two rests)
    the longer one, which the batch pads to."""
    return first + second - shared if packed else max(first, second)


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

    def __init__(self, prefix_ids, prefix_mask, rest_ids, rest_mask, starts, owner, saved: int, pad_id: int):
        self.prefix_ids, self.prefix_mask = prefix_ids, prefix_mask
        self.rest_ids, self.rest_mask = rest_ids, rest_mask
        self.starts, self.owner = starts, owner
        self.saved = saved  # prompt tokens not computed twice
        self.pad_id = pad_id

    def to(self, device, non_blocking: bool = False) -> SharedBatch:
        moved = [t.to(device, non_blocking=non_blocking) for t in (self.prefix_ids, self.prefix_mask, self.rest_ids,
                                                           self.rest_mask, self.starts, self.owner)]
        return SharedBatch(*moved, saved=self.saved, pad_id=self.pad_id)


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
    return SharedBatch(prefix_ids, prefix_mask, rest_ids, rest_mask, starts, owner, saved=sum(shares), pad_id=pad_id)


def shared_hidden(backbone, batch: SharedBatch, *, n_params: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The backbone's last hidden states at every position of each row's rest, as (rows [g], hidden
    [g, W_g, H]) for groups of rows.

    Packed (packed_hidden) where the attention allows: one group. Else the prompts go through once
    into a KV cache; then the rests, in one pass or, when the padding saved pays for the
    extra passes (rollout.length_groups' cost model), in up to four of rows of similar length (a pair's
    two answers often differ in length: one pass pads every row to the longest of the batch). Each
    group continues from its own copy of its rows' prompt cache.
    """
    if packs(backbone):
        return packed_hidden(backbone, batch)
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


def packed_hidden(backbone, batch: SharedBatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """As shared_hidden, in one pass: each pair as one row, its prompt then both rests, under a mask
    by which a rest attends to the prompt and to its own earlier tokens, never to the other rest, at
    the positions it has in its own sequence (the layout of Wang et al. 2024). One group: every row.

    Needs an attention that takes a ready 4D mask: `eager` (added to the scores, so a float mask) or
    `sdpa` (a boolean one)."""
    n, prefix_width = batch.prefix_ids.shape
    rest_width = batch.rest_ids.shape[1]
    device = batch.prefix_ids.device
    prefix_len = batch.prefix_mask.sum(1)
    rest_len = batch.rest_mask.sum(1)
    second_at = prefix_len + rest_len[:n]  # where each pair's second rest begins in its packed row
    end = second_at + rest_len[n:]
    width = int(end.max())
    col = torch.arange(width, device=device).expand(n, width)
    # Each packed position's segment: 0 the prompt, 1 the first rest, 2 the second, 3 padding.
    segment = (col >= prefix_len[:, None]).long() + (col >= second_at[:, None]).long() + (col >= end[:, None]).long()
    first_col = (col - prefix_len[:, None]).clamp(0, rest_width - 1)
    second_col = (col - second_at[:, None]).clamp(0, rest_width - 1)
    ids = torch.where(
        segment == 0, batch.prefix_ids.gather(1, col.clamp(max=prefix_width - 1)),
        torch.where(segment == 1, batch.rest_ids[:n].gather(1, first_col), batch.rest_ids[n:].gather(1, second_col)),
    ).masked_fill(segment == 3, batch.pad_id)
    # The second rest continues the prompt, as if the first were not there.
    positions = torch.where(segment == 2, col - rest_len[:n, None], col)
    query, key = segment[:, :, None], segment[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    allowed = causal & ((key == 0) | (key == query))  # padding attends to itself and the prompt: no empty row
    if backbone.config._attn_implementation == "eager":
        mask = torch.zeros(allowed.shape, dtype=torch.float32, device=device)
        mask = mask.masked_fill(~allowed, torch.finfo(torch.float32).min)[:, None]
    else:
        mask = allowed[:, None]
    hidden = backbone(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).last_hidden_state
    starts = torch.cat([prefix_len, second_at])
    where = (starts[:, None] + torch.arange(rest_width, device=device)).clamp(max=width - 1)
    pair = torch.arange(n, device=device).repeat(2)
    return [(torch.arange(2 * n, device=device), hidden[pair[:, None], where])]


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
