"""Reward-model data: labelled pairs from a project, the split, tokens, batches.

Which pairs train
-----------------
A pair trains when its active judgments settle on `a` or `b` under `store.settle_verdict`'s rule:
undone judgments are ignored, skips say nothing, one judgment stands on its own, and several
need a strict majority (two of three, three of four...; a 1-1 split leaves the pair out). Ties,
both-bad verdicts and pairs with no settled verdict are left out; with `include_ties` a tie trains
in both orders, which pulls its two rewards together. Validation holds decisive pairs only (a tie
whose prompt falls on the validation side is left out: it has no right answer to score).

The split is by prompt: every pair of a prompt goes to the same side, so the validation accuracy
measures responses to prompts the model never saw, not memory of the prompt.

Text and truncation
-------------------
A pair is rendered with the tokenizer's chat template when it has one (the prompt's messages,
then the response as the assistant's turn), else as a plain transcript:
"User: <prompt>\n\nAssistant: <response>" (a system message becomes "System: ...").

When prompt + response exceed `max_length` tokens, the START of the prompt and the END of the
response are kept (the end of a response is where it goes right or wrong, and the reward is read
at the last token). Exactly: the response keeps all its tokens if the prompt leaves room
(response budget = max_length - prompt length); otherwise the prompt is first cut down to no less
than half the window, keeping its first tokens; a response that still does not fit loses its
first tokens. So with both long, each gets half: the prompt's first max_length//2 tokens and the
response's last max_length - max_length//2.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from ..records import Conversation, Message

__all__ = [
    "TextPair",
    "ProjectPairs",
    "load_project_pairs",
    "pairs_by_id",
    "split_by_prompt",
    "render",
    "encode_pair",
    "truncate",
    "epoch_batches",
    "collate",
]

Prompt = Union[str, Conversation, Sequence[Mapping[str, str]]]
# (prompt, chosen, rejected) or (prompt, chosen, rejected, margin): what `train` takes, from a
# project or from anywhere else (a benchmark passes its own).
TextPair = tuple

MEGA_BATCH = 50


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
    counts = {"pairs": 0, "decisive": 0, "ties": 0, "both_bad": 0, "unsettled": 0}
    usable = []  # (prompt, pair id, its TextPairs, is a tie)
    for pair in store.iter_export_pairs():
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


def _prompt_key(prompt: Prompt) -> Any:
    if isinstance(prompt, str):
        return ("user", prompt)
    return tuple((_role(m), _content(m)) for m in prompt)


def _role(m) -> str:
    return m.role if isinstance(m, Message) else m["role"]


def _content(m) -> str:
    return m.content if isinstance(m, Message) else m["content"]


def messages_of(prompt: Prompt) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": _role(m), "content": _content(m)} for m in prompt]


def transcript(messages: Sequence[Mapping[str, str]]) -> str:
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def render(tokenizer, prompt: Prompt, response: str) -> tuple[str, int, bool]:
    """(full text, where the response starts in it, whether the text has its special tokens)."""
    messages = messages_of(prompt)
    if getattr(tokenizer, "chat_template", None):
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": response}], tokenize=False
        )
        # Templates render the prompt the same way with or without the answer; where one does not
        # (some drop earlier reasoning), the shared beginning is the prompt.
        boundary = len(head) if full.startswith(head) else len(_common_prefix(head, full))
        return full, boundary, True
    head = transcript(messages) + "\n\nAssistant:"
    return f"{head} {response}", len(head), False


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


def encode_pair(tokenizer, pair: Sequence[Any], max_length: int) -> tuple[list[int], list[int], float | None]:
    """(chosen ids, rejected ids, margin) for one TextPair, each at most max_length tokens."""
    prompt, chosen, rejected = pair[0], pair[1], pair[2]
    margin = float(pair[3]) if len(pair) > 3 and pair[3] is not None else None
    return (
        encode_response(tokenizer, prompt, chosen, max_length),
        encode_response(tokenizer, prompt, rejected, max_length),
        margin,
    )


def encode_response(tokenizer, prompt: Prompt, response: str, max_length: int) -> list[int]:
    text, boundary, templated = render(tokenizer, prompt, response)
    # Tokenized whole (merges across the boundary stay as the model will see them when scoring a
    # full text); the offsets say which tokens belong to the response.
    enc = tokenizer(text, add_special_tokens=not templated, return_offsets_mapping=True)
    ids = enc["input_ids"]
    if len(ids) <= max_length:
        return ids
    start = next((i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > boundary and e > s), len(ids))
    return truncate(ids[:start], ids[start:], max_length)


def truncate(prompt_ids: list[int], response_ids: list[int], max_length: int) -> list[int]:
    """Keeps the start of the prompt and the end of the response (rule in the module docstring)."""
    if len(prompt_ids) + len(response_ids) <= max_length:
        return prompt_ids + response_ids
    response_budget = min(len(response_ids), max(max_length - len(prompt_ids), max_length - max_length // 2))
    prompt_budget = max_length - response_budget
    return prompt_ids[:prompt_budget] + response_ids[len(response_ids) - response_budget :]


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches (lists of pair indices) of one epoch: a pure function of its arguments."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * MEGA_BATCH
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
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


def pad_rows(rows: Sequence[list[int]], pad_id: int):
    """{'input_ids', 'attention_mask'}: the rows right-padded to the longest."""
    import torch

    width = max(1, max(len(r) for r in rows))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, ids in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[r, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
