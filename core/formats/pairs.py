"""Unlabelled pairs to label: rows of `prompt`, `response_a`, `response_b`, and their writer.

This is the format for "here are two answers per prompt, let people judge them": a CSV or JSON
lines file with no verdict. The prompt is either text (one user turn) or a list of
`{"role", "content"}` messages; in a CSV cell such a list is written as JSON. The writer emits
the same shape, so exporting every pair of a project and importing the file elsewhere gives the
same pairs (verdicts are deliberately not written: this file is what you hand to labellers).

The message-list helpers here are shared with the other table-like formats (arena, prompts,
mapped), so that every format reads a conversation the same way.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

from ..errors import FieldError
from ..records import Conversation, ExportPair, Message, PairRecord
from . import Format, ReadOptions, WriteReport, _kind, register, text_field
from .rows import Sample

# Role names seen in outside data, mapped onto ours. Unknown roles are an error rather than a
# guess: a wrong guess would silently put words in the wrong mouth.
ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
}

# Columns that say a row carries responses (so it is not a bare prompt list) or a verdict (so it
# is not an unlabelled pair). Detection uses these to keep the formats apart.
RESPONSE_COLUMNS = frozenset({"chosen", "rejected", "response_a", "response_b", "completion", "conversation_a", "conversation_b"})
VERDICT_COLUMNS = frozenset({"winner", "winner_model_a", "winner_model_b", "winner_tie", "verdict", "label", "preference"})


# -- reading conversations ---------------------------------------------------------------------


def parse_messages(value: list[Any], field: str) -> Conversation:
    """A list of {"role", "content"} objects as a conversation; FieldError names the bad item."""
    if not value:
        raise FieldError(field, "is an empty list; expected at least one message")
    messages = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            raise FieldError(where, f"is {_kind(item)}; expected a message {{\"role\": ..., \"content\": ...}}")
        role = item.get("role")
        if not isinstance(role, str):
            raise FieldError(f"{where}.role", "is missing; expected user, assistant or system" if role is None else f"is {_kind(role)}; expected text")
        mapped = ROLE_ALIASES.get(role.strip().lower())
        if mapped is None:
            raise FieldError(f"{where}.role", f"is {role!r}; expected one of user, assistant, system")
        content = item.get("content")
        if not isinstance(content, str):
            what = "missing" if "content" not in item else ("null" if content is None else _kind(content))
            raise FieldError(f"{where}.content", f"is {what}; expected text")
        messages.append(Message(mapped, content))
    return tuple(messages)


def decode_json_list(value: str) -> list[Any] | None:
    """The list a CSV cell holds as JSON text (e.g. '["turn 1", "turn 2"]'), or None if it holds none.

    A cell that merely starts with "[" but is not a JSON list is ordinary text.
    """
    stripped = value.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    try:
        decoded = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        return None
    return decoded if isinstance(decoded, list) else None


def is_message_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def require_columns(row: dict[str, Any], names: Sequence[str]) -> None:
    """FieldError for the first of `names` that the row lacks.

    A misspelling is suggested only among the row's *other* keys: `response_a` is not a
    misspelling of a missing `response_b`, it is its sibling, and saying so would mislead.
    """
    for name in names:
        if name in row:
            continue
        others = [k for k in row if isinstance(k, str) and k not in names]
        close = difflib.get_close_matches(name, others, n=1, cutoff=0.75)
        hint = f"; there is a '{close[0]}': misspelled?" if close else ""
        keys = ", ".join(str(k) for k in list(row)[:12])
        raise FieldError(name, f"is missing (this row has: {keys}){hint}")


def prompt_field(row: dict[str, Any], column: str = "prompt") -> Conversation:
    """The prompt as a conversation: text is one user turn, a list (or JSON-encoded list) is messages."""
    value = row.get(column)
    if isinstance(value, list):
        return parse_messages(value, column)
    if column in row and value is not None and not isinstance(value, str):
        raise FieldError(column, f"is {_kind(value)}; expected text or a list of messages")
    text = text_field(row, column)  # missing (with a misspelling hint) or null
    if not text.strip():
        raise FieldError(column, "is empty; expected the prompt's text")
    decoded = decode_json_list(text)
    if decoded is not None and is_message_list(decoded):
        return parse_messages(decoded, column)
    return (Message("user", text),)


def prompt_to_json(prompt: Conversation) -> str | list[dict[str, str]]:
    """A single user turn as plain text (what people write by hand); anything else as messages."""
    if len(prompt) == 1 and prompt[0].role == "user":
        text = prompt[0].content
        decoded = decode_json_list(text)
        # Text that itself reads as a message list would come back as messages: write the list.
        if decoded is None or not is_message_list(decoded):
            return text
    return [m.to_dict() for m in prompt]
    return [m.to_dict() for m in prompt]


# -- the format --------------------------------------------------------------------------------


def detect(sample: Sample) -> int:
    columns = set(sample.columns)
    if not {"prompt", "response_a", "response_b"} <= columns:
        return 0
    # The same columns plus a winner are arena rows; still readable here (verdict ignored), but
    # arena is the better reading, so score lower than it does.
    return 40 if columns & VERDICT_COLUMNS else 80


def parse_row(row: dict[str, Any], options: ReadOptions) -> Iterator[PairRecord]:
    require_columns(row, ("prompt", "response_a", "response_b"))
    prompt = prompt_field(row)
    yield PairRecord(prompt, text_field(row, "response_a"), text_field(row, "response_b"))


def write(pairs: Iterable[ExportPair], out: TextIO) -> WriteReport:
    """Every pair, without verdicts: a file to hand to labellers, readable by this same format."""
    report = WriteReport()
    for pair in pairs:
        row = {"prompt": prompt_to_json(pair.prompt), "response_a": pair.response_a, "response_b": pair.response_b}
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        report.written += 1
    return report


FORMAT = register(
    Format(
        name="pairs",
        description="Unlabelled pairs: prompt, response_a, response_b (CSV or JSON lines); no verdict",
        detect=detect,
        parse_row=parse_row,
        write=write,
        columns=lambda options: ("prompt", "response_a", "response_b"),
    )
)
