"""Using a reward model: validation figures, scoring texts, the pairs it gets most wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..stats import pearson
from ..training.device import autocast
from ..training.pairs import collate, encode_pair
from ..training.prefix import (
    common_prefix,
    in_row_order,
    packs,
    pair_row_length,
    shared_batch,
    shared_hidden,
    worth_sharing,
)
from ..training.rollout import value_head
from ..training.text import encode_response, messages_of, pad_rows
from .loss import batch_metrics, reward_loss


def forward_rewards(model, batch: dict[str, torch.Tensor], device: torch.device, precision: str) -> torch.Tensor:
    """One reward per row of the batch, as float32."""
    with autocast(precision, device):
        out = model(
            input_ids=batch["input_ids"].to(device, non_blocking=True),
            attention_mask=batch["attention_mask"].to(device, non_blocking=True),
            use_cache=False,
        )
    return out.logits.squeeze(-1).float()


class PairRewards(torch.nn.Module):
    """[2B] rewards of a batch of pairs (chosen rows first), each pair's common prompt computed once
    when that pays (training/prefix.py), else the two sequences side by side. A module of its own,
    so that DDP wraps what is called."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        prefix = getattr(base, "base_model_prefix", None)
        backbone = getattr(base, prefix, None) if prefix else None
        checkpointing = any(getattr(m, "gradient_checkpointing", False) for m in base.modules())
        # Gradient checkpointing turns the KV cache off in training, and the cache is what shares.
        self.parts = (backbone, value_head(base)) if backbone is not None and _has_head(base) and not checkpointing else None
        self.n_params = sum(p.numel() for p in model.parameters())
        self.share = False  # set by share_if_worth, for the pairs it will score

    @property
    def packs(self) -> bool:
        """Whether a shared pair goes through as one packed row (prefix.packs)."""
        return self.parts is not None and packs(self.parts[0])

    def share_if_worth(self, encoded) -> bool:
        """Computes each prompt once from now on if these pairs share enough of it (prefix.worth_sharing)."""
        self.share = self.parts is not None and worth_sharing([shared_length(c, r) for c, r, *_ in encoded])
        return self.share

    def forward(self, encoded, indices: list[int], pad_id: int, device, precision: str) -> torch.Tensor:
        shared = None
        if self.share:
            first, second = [encoded[i][0] for i in indices], [encoded[i][1] for i in indices]
            # Each row keeps at least its last token for the second pass: its reward is read there.
            limits = [min(len(a), len(b)) - 1 for a, b in zip(first, second)]
            shared = shared_batch(first, second, limits, pad_id)
        if shared is None:
            return forward_rewards(self.model, collate(encoded, indices, pad_id), device, precision)
        shared = shared.to(device, non_blocking=True)
        backbone, head = self.parts
        lengths = shared.rest_mask.sum(1)
        with autocast(precision, device):
            groups = shared_hidden(backbone, shared, n_params=self.n_params)
            rows = [r for r, _ in groups]
            last = [hidden[torch.arange(len(r), device=device), lengths[r] - 1] for r, hidden in groups]
            return head(in_row_order(rows, last)).squeeze(-1).float()


def shared_length(chosen: list[int], rejected: list[int]) -> int:
    """The tokens a pair's two sequences share (each keeps at least its last token: its reward is read there)."""
    return common_prefix(chosen, rejected, min(len(chosen), len(rejected)) - 1)


def _has_head(model) -> bool:
    return any(getattr(model, name, None) is not None for name in ("score", "classifier", "v_head"))


def shared_pair_rewards(model, encoded, indices: list[int], pad_id: int, device, precision: str = "fp32") -> torch.Tensor | None:
    """The rewards of the pairs at `indices` with each prompt computed once; None where it cannot be."""
    scorer = PairRewards(model)
    scorer.share = scorer.parts is not None
    return scorer(encoded, indices, pad_id, device, precision) if scorer.share else None


@torch.no_grad()
def pair_rewards(model, encoded, pad_id: int, *, batch_size: int, device, precision: str = "fp32"):
    """(chosen rewards, rejected rewards) for every encoded pair, in order, on the CPU."""
    was_training = model.training
    model.eval()
    scorer = PairRewards(model)
    packed = scorer.share_if_worth(encoded) and scorer.packs
    cost = [pair_row_length(len(c), len(r), shared_length(c, r) if packed else 0, packed) for c, r, *_ in encoded]
    order = sorted(range(len(encoded)), key=lambda i: -cost[i])
    chosen = torch.empty(len(encoded))
    rejected = torch.empty(len(encoded))
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            rewards = scorer(encoded, idx, pad_id, device, precision).cpu()
            chosen[idx] = rewards[: len(idx)]
            rejected[idx] = rewards[len(idx) :]
    finally:
        model.train(was_training)
    return chosen, rejected


def evaluate(model, encoded, pad_id: int, config, device) -> dict[str, float]:
    """eval/loss, eval/accuracy, eval/margin, eval/mean_reward over every validation pair, and
    the length figures beside them (length_figures)."""
    chosen, rejected = pair_rewards(
        model, encoded, pad_id, batch_size=config.batch_size, device=device, precision=config.precision
    )
    margins = [m for _, _, m in encoded]
    margin = torch.tensor([m or 0.0 for m in margins]) if any(m is not None for m in margins) else None
    loss = reward_loss(chosen, rejected, margin=margin, center_rewards_coefficient=config.center_rewards_coefficient)
    figures = {"loss": float(loss), **batch_metrics(chosen, rejected)}
    figures = {k: v for k, v in figures.items() if k in ("loss", "accuracy", "margin", "mean_reward")}
    answers = [answer_lengths(c, r) for c, r, _ in encoded]
    figures.update(length_figures(chosen.tolist(), rejected.tolist(), [a for a, _ in answers], [b for _, b in answers]))
    return {f"eval/{k}": v for k, v in figures.items()}


def answer_lengths(chosen: list[int], rejected: list[int]) -> tuple[int, int]:
    """The tokens of each answer after the prompt the two sequences share."""
    shared = common_prefix(chosen, rejected, min(len(chosen), len(rejected)))
    return len(chosen) - shared, len(rejected) - shared


# Two answers within this share of the longer one's length are "of similar length".
SIMILAR_LENGTH = 0.1


def length_figures(chosen: list[float], rejected: list[float], chosen_len: list[int], rejected_len: list[int]) -> dict[str, float]:
    """Whether a reward model learned length rather than quality (the commonest bias in preference
    data): `length_baseline_accuracy`, the accuracy of "the longer answer wins" on the same pairs
    (a tie is wrong, as in the model's accuracy), to set its accuracy beside; `accuracy_similar_length`,
    its accuracy on the pairs whose answers are within 10% in length, where length cannot decide;
    `length_correlation`, Pearson's r between every answer's reward and its length."""
    figures: dict[str, float] = {}
    n = len(chosen)
    if not n:
        return figures
    figures["length_baseline_accuracy"] = sum(a > b for a, b in zip(chosen_len, rejected_len)) / n
    similar = [i for i in range(n) if abs(chosen_len[i] - rejected_len[i]) <= SIMILAR_LENGTH * max(chosen_len[i], rejected_len[i])]
    if similar:
        figures["accuracy_similar_length"] = sum(chosen[i] > rejected[i] for i in similar) / len(similar)
        figures["similar_length_pairs"] = float(len(similar))
    r = pearson(chosen + rejected, [float(x) for x in chosen_len + rejected_len])
    if r is not None:
        figures["length_correlation"] = r
    return figures


# -- scoring -----------------------------------------------------------------------------------------

_TURN = re.compile(r"(?:^|\n\n)(User|Assistant|System|Human):[ ]?", re.IGNORECASE)


def parse_transcript(text: str) -> tuple[list[dict[str, str]], str] | None:
    """('User: q\\n\\nAssistant: r') -> ([{'role': 'user', 'content': 'q'}], 'r'); None if not one."""
    marks = list(_TURN.finditer(text))
    if not marks or marks[0].start() != 0 or marks[-1].group(1).lower() != "assistant" or len(marks) < 2:
        return None
    turns = []
    for mark, nxt in zip(marks, marks[1:] + [None]):
        role = mark.group(1).lower()
        turns.append({"role": "user" if role == "human" else role, "content": text[mark.end() : nxt.start() if nxt else None]})
    return turns[:-1], turns[-1]["content"]


def encode_text(tokenizer, item: Any, max_length: int) -> list[int]:
    """Token ids for one scoring input: (prompt, response), or a text.

    A text in transcript form ("User: ...\\n\\nAssistant: ...") is read back into a conversation,
    so that it is rendered (chat template) and truncated exactly as the training pairs were.
    Any other text is scored as it is, keeping its end when too long.
    """
    if isinstance(item, (tuple, list)):
        return encode_response(tokenizer, item[0], item[1], max_length)
    parsed = parse_transcript(item)
    if parsed is not None:
        return encode_response(tokenizer, parsed[0], parsed[1], max_length)
    ids = tokenizer(item)["input_ids"]
    return ids[-max_length:]


def score(model_path: str | Path, texts: Sequence[Any], *, max_length: int = 1024, batch_size: int = 16,
          device: str = "auto", trust_remote_code: bool = False) -> list[float]:
    """The reward of each text (or (prompt, response) pair) under the model at `model_path`."""
    from ..models import load_reward_model
    from ..training.device import resolve_device

    model, tokenizer = load_reward_model(model_path, trust_remote_code=trust_remote_code, trainable=False)
    target = resolve_device(device)
    model.to(target)
    return score_with(model, tokenizer, texts, max_length=max_length, batch_size=batch_size, device=target)


@torch.no_grad()
def score_with(model, tokenizer, texts: Sequence[Any], *, max_length: int, batch_size: int, device) -> list[float]:
    """Rewards from a loaded model (the GUI keeps one loaded and calls this for each request)."""
    rows = [encode_text(tokenizer, t, max_length) for t in texts]
    model.eval()
    scores: list[float] = []
    for start in range(0, len(rows), batch_size):
        batch = pad_rows(rows[start : start + batch_size], tokenizer.pad_token_id)
        scores += forward_rewards(model, batch, device, "fp32").cpu().tolist()
    return scores


def most_wrong_pairs(model, tokenizer, pairs: Sequence[tuple], *, max_length: int, batch_size: int = 16,
                     device=None, k: int = 20) -> list[dict[str, Any]]:
    """The k pairs with the lowest r_chosen - r_rejected, most confidently wrong first; `index` is
    the pair's position in `pairs`."""
    device = device or next(model.parameters()).device
    encoded = [encode_pair(tokenizer, p, max_length) for p in pairs]
    chosen, rejected = pair_rewards(model, encoded, tokenizer.pad_token_id, batch_size=batch_size, device=device)
    order = sorted(range(len(pairs)), key=lambda i: float(chosen[i] - rejected[i]))[:k]
    return [
        {
            "prompt": messages_of(pairs[i][0]),
            "chosen": pairs[i][1],
            "rejected": pairs[i][2],
            "reward_chosen": float(chosen[i]),
            "reward_rejected": float(rejected[i]),
            "margin": float(chosen[i] - rejected[i]),
            "index": i,
        }
        for i in order
    ]


def most_wrong_validation_pairs(checkpoint: str | Path, project, *, k: int = 20, device: str = "auto") -> list[dict[str, Any]]:
    """The validation pairs of the run that wrote `checkpoint` that its model gets most wrong.

    The run's split is read from its `split.json` (written when training started), so later labels
    do not move pairs between the sides; a pair is shown with its current verdict.
    """
    from ..models import ModelError, load_reward_model, resolve_model
    from ..training.device import resolve_device
    from ..training.pairs import SPLIT_FILE, pairs_by_id

    folder = resolve_model(checkpoint)
    split_path = folder.resolve().parent.parent / SPLIT_FILE
    if not split_path.is_file():
        raise ModelError(f"{folder}: is not a checkpoint of a project's reward-model run (no {split_path})")
    split = json.loads(split_path.read_text(encoding="utf-8"))
    pairs, ids = pairs_by_id(project.store, split["val_ids"])
    model, tokenizer = load_reward_model(folder, trainable=False)
    target = resolve_device(device)
    model.to(target)
    rows = most_wrong_pairs(model, tokenizer, pairs, max_length=split["max_length"], device=target, k=k)
    for row in rows:
        row["pair_id"] = ids[row["index"]]
    return rows


def most_wrong_validation_pairs_at(checkpoint: str | Path, project_path: str | Path, *, k: int = 20) -> list[dict[str, Any]]:
    """most_wrong_validation_pairs for a project given by its folder: callable in a child process."""
    from ..project import Project

    with Project.open(project_path) as project:
        return most_wrong_validation_pairs(checkpoint, project, k=k)
