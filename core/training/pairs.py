"""The labelled pairs every preference method trains on (the reward model, DPO): which pairs,
the split, tokens, batches. How one prompt and response become tokens is text.py.

Which pairs train
-----------------
Pairs whose prompt the project holds out (store.heldout_prompt_ids: Evaluate samples there) never
train, and are counted apart (`held_out`).
A pair trains when its active judgments settle on `a` or `b` under `store.settle_verdict`'s rule:
undone judgments are ignored, skips say nothing, one judgment stands on its own, and several
need a strict majority (two of three, three of four...; a 1-1 split leaves the pair out). Ties,
both-bad verdicts and pairs with no settled verdict are left out; with `include_ties` a tie trains
in both orders, which pulls its two rewards together. Validation holds decisive pairs only (a tie
whose prompt falls on the validation side is left out: it has no right answer to score).

The split is by prompt: every pair of a prompt goes to the same side, so the validation accuracy
measures responses to prompts the model never saw, not memory of the prompt.

Batches
-------
Pairs are shuffled each epoch (seeded by seed and epoch, so a resumed run sees the same order),
cut into mega-batches of 50 batches, sorted by length within each, batched, and the batches
shuffled again: little padding, no visible order. The epoch's longest batch goes first so that
running out of memory shows at the first step, not an hour in. A batch stacks its B chosen and B
rejected sequences into one (2B, L) forward, padded to the longest of the 2B.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..records import Message
from .text import Prompt, encode_response, pad_rows

__all__ = [
    "TextPair",
    "ProjectPairs",
    "load_project_pairs",
    "pairs_by_id",
    "split_by_prompt",
    "encode_pair",
    "epoch_batches",
    "collate",
]

# (prompt, chosen, rejected) or (prompt, chosen, rejected, margin): what `train` takes, from a
# project or from anywhere else (a benchmark passes its own).
TextPair = tuple

MEGA_BATCH = 50
# Batches per run sorted a second time by response length (epoch_batches' rest_lengths), where a
# pair's prompt goes into a KV cache (prefix.py; a packed pair is one row, grouped by its length). On
# bench/rm_vs_trl.py's HH pairs, with the answers after the prompt in up to four passes of similar
# length (prefix.shared_hidden), 4 leaves the fewest tokens to compute: 254k against 384k for two
# sequences a pair in batches grouped by total length (1.51x), 335k real.
SORTED_RUN = 4
# In a run's folder: the pair ids it trains and validates on (the split of its start, kept on resume;
# what "the same validation pairs" means when methods are compared).
SPLIT_FILE = "split.json"


@dataclass
class ProjectPairs:
    """A project's trainable pairs, split. `*_ids` are pair ids (a tie appears once)."""

    train: list[tuple] = field(default_factory=list)
    val: list[tuple] = field(default_factory=list)
    train_ids: list[int] = field(default_factory=list)
    val_ids: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def load_project_pairs(store, *, validation_fraction: float, seed: int, include_ties: bool = False) -> ProjectPairs:
    """Settled pairs from a store, split by prompt. See the module docstring for the rules."""
    counts = {"pairs": 0, "decisive": 0, "ties": 0, "both_bad": 0, "unsettled": 0, "held_out": 0}
    usable = []  # (prompt, pair id, its TextPairs, is a tie)
    heldout = store.heldout_prompt_keys()
    for pair in store.iter_export_pairs():
        if heldout and _conversation_key(pair.prompt) in heldout:
            counts["held_out"] += 1  # Evaluate samples on these prompts: nothing trains on them
            continue
        counts["pairs"] += 1
        kind = {"a": "decisive", "b": "decisive", "tie": "ties", "both_bad": "both_bad"}.get(pair.verdict, "unsettled")
        counts[kind] += 1
        texts = text_pairs_of(pair, include_ties=include_ties)
        if texts:
            usable.append((pair.prompt, pair.pair_id, texts, pair.verdict == "tie"))
    train_idx, val_idx = split_by_prompt([u[0] for u in usable], validation_fraction, seed)
    result = ProjectPairs(counts=counts)
    for i in train_idx:
        _, pair_id, texts, _ = usable[i]
        result.train_ids.append(pair_id)
        result.train.extend(texts)
    for i in val_idx:
        _, pair_id, texts, tie = usable[i]
        if not tie:  # a tie has no right answer to score accuracy against
            result.val_ids.append(pair_id)
            result.val.extend(texts)
    return result


def pairs_by_id(store, ids: Sequence[int], *, include_ties: bool = False) -> tuple[list[tuple], list[int]]:
    """(TextPairs, their pair ids) for the pairs with these ids, in id order, under their current
    verdicts; pairs that no longer carry a preference are left out."""
    wanted = set(ids)
    pairs, found = [], []
    for pair in store.iter_export_pairs():
        texts = text_pairs_of(pair, include_ties=include_ties) if pair.pair_id in wanted else []
        if texts:
            pairs.extend(texts)
            found.append(pair.pair_id)
    return pairs, found


def text_pairs_of(pair, *, include_ties: bool) -> list[tuple]:
    """What one settled ExportPair trains as: (prompt, chosen, rejected[, margin]), a tie as both
    orders (when asked for), anything else as nothing."""
    if pair.verdict in ("a", "b"):
        chosen, rejected = (pair.response_a, pair.response_b) if pair.verdict == "a" else (pair.response_b, pair.response_a)
        return [(pair.prompt, chosen, rejected) if pair.margin is None else (pair.prompt, chosen, rejected, float(pair.margin))]
    if pair.verdict == "tie" and include_ties:
        return [(pair.prompt, pair.response_a, pair.response_b), (pair.prompt, pair.response_b, pair.response_a)]
    return []


def split_by_prompt(prompts: Sequence[Any], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): prompts shuffled (seeded), whole prompts moved to
    validation until it holds `fraction` of the pairs. Both sides are non-empty when fraction > 0
    and there are at least two prompts."""
    groups: dict[Any, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(_prompt_key(prompt), []).append(i)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    target = fraction * len(prompts)
    val: list[int] = []
    if fraction > 0 and len(keys) >= 2:
        for key in keys[:-1]:  # the last prompt always trains
            if len(val) >= target:
                break
            val.extend(groups[key])
    val_set = set(val)
    train = [i for i in range(len(prompts)) if i not in val_set]
    return train, sorted(val)


def _conversation_key(prompt: Prompt) -> tuple:
    """A prompt as a tuple of (role, content), as store.heldout_prompt_keys gives them."""
    if isinstance(prompt, str):
        return (("user", prompt),)
    return _prompt_key(prompt)


def _prompt_key(prompt: Prompt) -> Any:
    if isinstance(prompt, str):
        return ("user", prompt)
    return tuple((m.role, m.content) if isinstance(m, Message) else (m["role"], m["content"]) for m in prompt)


def encode_pair(tokenizer, pair: Sequence[Any], max_length: int) -> tuple[list[int], list[int], float | None]:
    """(chosen ids, rejected ids, margin) for one TextPair, each at most max_length tokens."""
    prompt, chosen, rejected = pair[0], pair[1], pair[2]
    margin = float(pair[3]) if len(pair) > 3 and pair[3] is not None else None
    return (
        encode_response(tokenizer, prompt, chosen, max_length),
        encode_response(tokenizer, prompt, rejected, max_length),
        margin,
    )


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                  rest_lengths: Sequence[int] | None = None) -> list[list[int]]:
    """The batches (lists of pair indices) of one epoch: a pure function of its arguments.

    With `rest_lengths`, `lengths` are the pairs' shared prompts and `rest_lengths` their longer
    response after it (a batch is computed as one pass over its prompts, padded to the longest, and one
    over its responses, padded to theirs: training/prefix.py): within a mega-batch sorted by prompt,
    each run of SORTED_RUN batches is sorted again by response, so that both passes pad little.
    """
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * MEGA_BATCH
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        if rest_lengths is not None:
            run = batch_size * SORTED_RUN
            chunk = [i for r in range(0, len(chunk), run) for i in sorted(chunk[r : r + run], key=lambda i: -rest_lengths[i])]
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    if batches:
        total = lengths if rest_lengths is None else [a + b for a, b in zip(lengths, rest_lengths)]
        longest = max(range(len(batches)), key=lambda b: max(total[i] for i in batches[b]))
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def batches_per_epoch(n_pairs: int, batch_size: int) -> int:
    # Equal to len(epoch_batches(...)) without building them: every mega-batch but the last is full.
    full, rest = divmod(n_pairs, batch_size * MEGA_BATCH)
    return full * MEGA_BATCH + math.ceil(rest / batch_size)


def collate(encoded: Sequence[tuple[list[int], list[int], float | None]], indices: Sequence[int], pad_id: int):
    """{'input_ids', 'attention_mask': (2B, L), 'margin': (B,) or None}: chosen rows first."""
    import torch

    batch = pad_rows([encoded[i][0] for i in indices] + [encoded[i][1] for i in indices], pad_id)
    margins = [encoded[i][2] for i in indices]
    batch["margin"] = None
    if any(m is not None for m in margins):
        batch["margin"] = torch.tensor([m or 0.0 for m in margins], dtype=torch.float32)
    return batch
