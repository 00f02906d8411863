"""Chatbot-Arena style battles: one prompt, two models' responses, and which one the person preferred.

Two layouts are read, as CSV or JSON lines:
- `prompt`, `response_a`, `response_b` (lmsys arena-human-preference-55k, the Kaggle set). In that
  data each text field is a JSON-encoded list of turns, e.g. '["turn 1", "turn 2"]'; a turn may be
  null where a model gave no answer (read as an empty answer). Plain text is one turn.
- `conversation_a`, `conversation_b`: each side's whole conversation as `{"role", "content"}`
  messages (lmsys chatbot_arena_conversations, arena-human-preference-100k, mt_bench_human_judgments).

The verdict comes from `winner` (model_a, model_b, tie, "tie (bothbad)" and spellings of both-bad)
or from the one-hot columns `winner_model_a`, `winner_model_b`, `winner_tie`. It is attributed to
`dataset:arena`; model names, the battle id and the arena judge go to `meta`.

Multi-turn battles: the two sides share the user's turns but, after the first answer, not the
assistant's. The pair's prompt is what the two sides really share (their common opening, cut back
to the last user turn before they differ); when they differ only in the last answer, that is the
whole history and the two last answers are compared. When they differ earlier, each side's
response is the rest of its conversation, later turns marked "User:" / "Assistant:". Comparing only
the last answers would attach the verdict to a history that one of the two models never saw, and
the person judged the whole conversation anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import FieldError
from ..records import Message, PairRecord
from . import Format, ReadOptions, SkipRow, _kind, register, text_field
from .pairs import decode_json_list, is_message_list, parse_messages, require_columns
from .rows import Sample

ANNOTATOR = "dataset:arena"
IDENTICAL = "the two responses are identical"

_WINNERS: dict[str, str] = {
    "model_a": "a",
    "a": "a",
    "model_b": "b",
    "b": "b",
    "tie": "tie",
    "draw": "tie",
    "tie (bothbad)": "both_bad",
    "tie(bothbad)": "both_bad",
    "tie_bothbad": "both_bad",
    "tie (both bad)": "both_bad",
    "bothbad": "both_bad",
    "both_bad": "both_bad",
    "both bad": "both_bad",
    "both-bad": "both_bad",
}
_ONE_HOT = (("winner_model_a", "a"), ("winner_model_b", "b"), ("winner_tie", "tie"))
_META = ("id", "question_id", "model_a", "model_b", "judge", "language", "turn")
COLUMNS = (
    "prompt", "response_a", "response_b", "conversation_a", "conversation_b", "winner",
    *(column for column, _ in _ONE_HOT), *_META,
)
_LABELS = {"user": "User", "assistant": "Assistant", "system": "System"}


def detect(sample: Sample) -> int:
    columns = set(sample.columns)
    has_winner = "winner" in columns or {"winner_model_a", "winner_model_b"} <= columns
    if not has_winner:
        return 0
    if {"prompt", "response_a", "response_b"} <= columns or {"conversation_a", "conversation_b"} <= columns:
        return 90
    return 0


def parse_row(row: dict[str, Any], options: ReadOptions) -> Iterator[PairRecord]:
    if "conversation_a" in row or "conversation_b" in row:
        require_columns(row, ("conversation_a", "conversation_b"))
        side_a = _conversation(row, "conversation_a")
        side_b = _conversation(row, "conversation_b")
    else:
        require_columns(row, ("prompt", "response_a", "response_b"))
        prompts = _turns(row, "prompt")
        if not any(p.strip() for p in prompts):
            raise FieldError("prompt", "is empty; expected the user's text")
        side_a = _interleave(prompts, _turns(row, "response_a"), "response_a")
        side_b = _interleave(prompts, _turns(row, "response_b"), "response_b")
    prompt, response_a, response_b = _split(side_a, side_b)
    verdict = _verdict(row)
    if response_a == response_b:
        # Two models that answered alike: real Arena exports have many, mostly marked ties. Not
        # bad data, but no pair either (nothing to prefer), so skipped and counted, not refused.
        raise SkipRow(IDENTICAL)
    yield PairRecord(prompt, response_a, response_b, verdict=verdict, annotator=ANNOTATOR, meta=_meta(row))


def _turns(row: dict[str, Any], column: str) -> list[str]:
    """A text field as a list of turns: a real list (JSON lines), a JSON-encoded list, or plain text."""
    value = row.get(column)
    if isinstance(value, list):
        turns = value
    else:
        text = text_field(row, column)
        decoded = decode_json_list(text)
        if decoded is None or not all(t is None or isinstance(t, str) for t in decoded):
            return [text]
        turns = decoded
    if not turns:
        raise FieldError(column, "is an empty list; expected at least one turn")
    for index, turn in enumerate(turns):
        if turn is not None and not isinstance(turn, str):
            raise FieldError(f"{column}[{index}]", f"is {_kind(turn)}; expected text")
    # In the lmsys data a null turn is a model that failed to answer: an empty answer, not an error.
    return [t if t is not None else "" for t in turns]


def _interleave(prompts: list[str], responses: list[str], column: str) -> tuple[Message, ...]:
    if len(responses) != len(prompts):
        raise FieldError(column, f"has {len(responses)} turns but prompt has {len(prompts)}; expected one answer per prompt turn")
    messages: list[Message] = []
    for user, answer in zip(prompts, responses):
        messages += [Message("user", user), Message("assistant", answer)]
    return tuple(messages)


def _conversation(row: dict[str, Any], column: str) -> tuple[Message, ...]:
    value = row.get(column)
    if isinstance(value, str):
        decoded = decode_json_list(value)
        if decoded is None and value.lstrip().startswith("[{'"):
            raise FieldError(
                column,
                "is a Python list (single quotes), not JSON: the file was probably written by pandas' to_csv; "
                "write it as JSON lines instead (e.g. to_json(orient='records', lines=True))",
            )
        if decoded is None or not is_message_list(decoded):
            raise FieldError(column, "is text; expected a list of {\"role\", \"content\"} messages")
        value = decoded
    if value is None:
        text_field(row, column)  # says missing (with a misspelling hint) or null
    if not isinstance(value, list):
        raise FieldError(column, f"is {_kind(value)}; expected a list of messages")
    messages = parse_messages(value, column)
    if messages[-1].role != "assistant":
        raise FieldError(column, "does not end with an answer; expected the last message to be the assistant's")
    return messages


def _split(side_a: tuple[Message, ...], side_b: tuple[Message, ...]) -> tuple[tuple[Message, ...], str, str]:
    """(shared prompt, rest of side A, rest of side B); see the module docstring for why."""
    common = 0
    for x, y in zip(side_a, side_b):
        if x != y:
            break
        common += 1
    # The prompt must stop just before an answer on both sides, and leave each side an answer.
    cut = min(common, len(side_a) - 1, len(side_b) - 1)
    while cut > 0 and not (side_a[cut].role == "assistant" and side_b[cut].role == "assistant"):
        cut -= 1
    prompt = side_a[:cut]
    if not any(m.role == "user" for m in prompt):
        if common == 0:
            raise FieldError("conversation_b", "starts differently from conversation_a; expected both sides to answer the same user turn")
        raise FieldError("prompt", "has no user turn before the answers; expected the user's text first")
    return prompt, _render(side_a[cut:]), _render(side_b[cut:])


def _render(messages: tuple[Message, ...]) -> str:
    first, *later = messages
    return first.content + "".join(f"\n\n{_LABELS[m.role]}: {m.content}" for m in later)


def _verdict(row: dict[str, Any]) -> str:
    if "winner" in row:
        value = row["winner"]
        if not isinstance(value, str):
            raise FieldError("winner", f"is {_kind(value) if value is not None else 'null'}; expected model_a, model_b, tie or tie (bothbad)")
        verdict = _WINNERS.get(value.strip().lower())
        if verdict is None:
            raise FieldError("winner", f"is {value!r}; expected model_a, model_b, tie or tie (bothbad)")
        return verdict
    present = [(column, verdict) for column, verdict in _ONE_HOT if column in row]
    if not present:
        raise FieldError("winner", "is missing; expected a winner column (model_a, model_b, tie, tie (bothbad)) "
                                   "or winner_model_a / winner_model_b / winner_tie")
    chosen = [verdict for column, verdict in present if _flag(row, column)]
    if len(chosen) != 1:
        columns = ", ".join(column for column, _ in present)
        raise FieldError("winner_model_a", f"exactly one of {columns} should be 1, found {len(chosen)}")
    return chosen[0]


def _flag(row: dict[str, Any], column: str) -> bool:
    value = row[column]
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return value == 1
    if isinstance(value, str) and value.strip() in ("0", "1", "0.0", "1.0", "true", "false", "True", "False"):
        return value.strip() in ("1", "1.0", "true", "True")
    raise FieldError(column, f"is {value!r}; expected 0 or 1")


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    meta = {}
    for key in _META:
        value = row.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            meta[key] = value
    return meta


FORMAT = register(
    Format(
        name="arena",
        description="Chatbot-Arena battles: prompt, response_a, response_b (or conversation_a/b) and a winner",
        detect=detect,
        parse_row=parse_row,
        annotator=ANNOTATOR,
        columns=lambda options: COLUMNS,
    )
)
