"""OpenAssistant message-tree export: one tree per line, sibling ranks become preference pairs.

A line is `{"message_tree_id", "tree_state", "prompt": message}`; a message has `message_id`,
`text`, `role` ("prompter" or "assistant"), `rank` (0 is best among its siblings; may be null),
`deleted`, `synthetic`, `review_result` and `replies` (its child messages), among other fields.

What becomes a pair: for every prompter message, each two of its assistant replies that carry a
rank. The lower rank is the better answer (verdict attributed to `dataset:oasst`); equal ranks are
a tie. The prompt is the whole conversation from the root down to that prompter message, so
multi-turn history is kept. Replies are paired in the order the tree lists them and the verdict
follows the ranks (exports usually list replies best first, so most verdicts are "a"; which side a
person sees on the left when labelling is decided by the labelling view, not here).

Left out, deliberately:
- unranked replies: with no rank there is no preference to record;
- deleted messages and messages that failed review (`review_result: false`, which the
  OpenAssistant exporter calls spam), together with everything below them, because a
  conversation whose history contains a removed message is not one people should train on;
- a pair whose two replies have the same text (no preference can be stated between them), so
  that a duplicate in one corner of a tree does not reject the whole tree.

Kept, deliberately: `synthetic` messages (written by a model, not a person). Their ranking was
still done by people, and the ranking is what a preference pair carries; the flag is kept in
`meta` so they can be told apart later.

The whole tree is checked against the schema before any pair is made: a malformed message
rejects its tree with an error naming the path to the field, e.g. `prompt.replies[2].text`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from ..errors import FieldError
from ..records import Message, PairRecord
from . import Format, ReadOptions, _kind, register
from .rows import Sample

ANNOTATOR = "dataset:oasst"
_ROLES = {"prompter": "user", "assistant": "assistant"}


@dataclass(slots=True)
class _Node:
    """One checked message: only the fields that decide pairs."""

    message_id: str
    role: str  # "prompter" or "assistant"
    text: str
    rank: int | None
    removed: bool  # deleted, or failed review
    synthetic: bool
    replies: list["_Node"]


def detect(sample: Sample) -> int:
    for row in sample.rows:
        prompt = row.get("prompt")
        if isinstance(prompt, dict) and ("message_tree_id" in row or "replies" in prompt):
            return 100
    return 0


def parse_row(row: dict[str, Any], options: ReadOptions) -> Iterator[PairRecord]:
    tree_id = _tree_id(row)
    root = _check_tree(row["prompt"])
    return _pairs(root, tree_id)


def _tree_id(row: dict[str, Any]) -> str:
    if "prompt" not in row:
        if "message_id" in row and "parent_id" in row:
            raise FieldError(
                "prompt",
                "is missing: this looks like OpenAssistant's flat message list (one message per row); "
                "the oasst format reads the tree export (one tree per line, e.g. *.trees.jsonl)",
            )
        raise FieldError("prompt", "is missing; expected the tree's first message")
    tree_id = row.get("message_tree_id")
    if tree_id is None and isinstance(row["prompt"], dict):
        # Older exports leave the id out; the root message's id is the tree's id by construction.
        tree_id = row["prompt"].get("message_id")
    if not isinstance(tree_id, str):
        raise FieldError("message_tree_id", f"is {_kind(tree_id) if tree_id is not None else 'missing'}; expected text")
    return tree_id


def _check_tree(prompt: Any) -> _Node:
    """The tree as _Nodes, every message checked; iterative, so a deep tree cannot overflow the stack."""
    root = _check_message(prompt, "prompt", parent_role=None)
    stack = [(root, prompt, "prompt")]
    while stack:
        node, raw, path = stack.pop()
        replies = raw.get("replies", [])
        if replies is None:
            replies = []
        if not isinstance(replies, list):
            raise FieldError(f"{path}.replies", f"is {_kind(replies)}; expected a list of messages")
        for index, child in enumerate(replies):
            child_path = f"{path}.replies[{index}]"
            child_node = _check_message(child, child_path, parent_role=node.role)
            node.replies.append(child_node)
            stack.append((child_node, child, child_path))
    return root


def _check_message(raw: Any, path: str, parent_role: str | None) -> _Node:
    if not isinstance(raw, dict):
        raise FieldError(path, f"is {_kind(raw) if raw is not None else 'null'}; expected a message object")
    text = raw.get("text")
    if not isinstance(text, str):
        raise FieldError(f"{path}.text", f"is {_describe(raw, 'text')}; expected the message's text")
    role = raw.get("role")
    if role not in _ROLES:
        raise FieldError(f"{path}.role", f"is {_describe(raw, 'role')}; expected 'prompter' or 'assistant'")
    expected = "prompter" if parent_role in (None, "assistant") else "assistant"
    if role != expected:
        where = "the first message" if parent_role is None else f"a reply to a {parent_role} message"
        raise FieldError(f"{path}.role", f"is {role!r}, but {where} must be {expected!r}")
    message_id = raw.get("message_id")
    if not isinstance(message_id, str):
        raise FieldError(f"{path}.message_id", f"is {_describe(raw, 'message_id')}; expected text")
    rank = raw.get("rank")
    if isinstance(rank, float) and rank.is_integer():
        rank = int(rank)
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
        raise FieldError(f"{path}.rank", f"is {rank!r}; expected a whole number from 0 (best) up, or null")
    flags = {}
    for name in ("deleted", "synthetic", "review_result"):
        value = raw.get(name)
        if value is not None and not isinstance(value, bool):
            raise FieldError(f"{path}.{name}", f"is {_kind(value)}; expected true or false")
        flags[name] = value
    return _Node(
        message_id=message_id,
        role=role,
        text=text,
        rank=rank,
        removed=bool(flags["deleted"]) or flags["review_result"] is False,
        synthetic=bool(flags["synthetic"]),
        replies=[],
    )


def _describe(raw: dict[str, Any], key: str) -> str:
    if key not in raw:
        return "missing"
    value = raw[key]
    if value is None:
        return "null"
    return repr(value) if isinstance(value, str) else _kind(value)


def _pairs(root: _Node, tree_id: str) -> Iterator[PairRecord]:
    stack: list[tuple[_Node, tuple[Message, ...]]] = [(root, ())]
    while stack:
        node, history = stack.pop()
        if node.removed:
            continue  # and everything below it
        history = history + (Message(_ROLES[node.role], node.text),)
        if node.role == "prompter":
            ranked = [r for r in node.replies if r.rank is not None and not r.removed]
            for a, b in combinations(ranked, 2):
                if a.text == b.text:
                    continue
                verdict = "a" if a.rank < b.rank else "b" if b.rank < a.rank else "tie"
                meta: dict[str, Any] = {
                    "tree_id": tree_id,
                    "parent_id": node.message_id,
                    "message_id_a": a.message_id,
                    "message_id_b": b.message_id,
                    "rank_a": a.rank,
                    "rank_b": b.rank,
                }
                if a.synthetic or b.synthetic:
                    meta["synthetic"] = [a.synthetic, b.synthetic]
                yield PairRecord(history, a.text, b.text, verdict=verdict, annotator=ANNOTATOR, meta=meta)
        # Reversed so that pairs come out in the tree's own order (depth first, first reply first).
        stack.extend((child, history) for child in reversed(node.replies))


FORMAT = register(
    Format(
        name="oasst",
        description="OpenAssistant message trees (one tree per line): ranked sibling replies become pairs",
        detect=detect,
        parse_row=parse_row,
        annotator=ANNOTATOR,
    )
)
