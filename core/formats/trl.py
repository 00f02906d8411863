"""TRL preference data: the `{"prompt", "chosen", "rejected"}` rows that TRL's trainers take.

Reading accepts every preference form in TRL's dataset guide, in JSON lines, a JSON array or CSV
(CSV cells are text, so CSV holds only the string forms):

- explicit prompt, strings: `{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}`;
- implicit prompt, strings: `{"chosen": "The sky is blue.", "rejected": "The sky is green."}`; the
  prompt is the common prefix, cut as TRL's `extract_prompt` does (a space just before the point
  where the two differ goes with the responses). An empty common prefix is an empty prompt. Two
  whole HH-RLHF transcripts are cut at the turn instead, exactly as the hh-rlhf reader cuts them
  (a character cut would leave "Assistant: I" in the prompt when both answers begin with "I");
- conversational: `prompt` a list of `{"role", "content"}` messages and `chosen`/`rejected` lists
  holding one assistant message; or, implicitly, `chosen`/`rejected` whole conversations sharing
  the prompt's messages (then a `prompt` column that repeats them is allowed, as in UltraFeedback).

A string prompt that is an HH-style transcript (`"\\n\\nHuman: ...\\n\\nAssistant:"`, as in
HH-derived TRL datasets) becomes its messages; its trailing `"\\n\\nAssistant:"` is the cue for the
response, and the one space that follows it in each response is removed, as in HH-RLHF itself.
Any other string prompt is one user message. An optional `margin` column is kept, and an optional
`annotator` column says who gave the verdict (our own exports write it, so that a round trip keeps
who said what); without it the verdict is attributed to `dataset:trl`.

Writing: `trl` writes string rows; a prompt that is one user message is written as its text, a
longer conversation as an HH-style transcript ending in `"\\n\\nAssistant:"` with each response
after one space, which reads back into the same messages. Prompts that text cannot hold exactly (a
system message, or a prompt that would read back differently) are skipped with a reason that points
to `trl-conversational`, which writes messages and holds any prompt. TRL knows only chosen and
rejected, so pairs without a decisive verdict (a or b) are skipped and counted.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from typing import Any, TextIO

from ..errors import FieldError
from ..records import ROLES, Conversation, ExportPair, Message, PairRecord
from . import Format, ReadOptions, WriteReport, chosen_and_rejected, optional_number, register, text_field
from .hh_rlhf import (
    ASSISTANT,
    HUMAN,
    common_prefix_length,
    looks_like_transcript,
    parse_transcript,
    render_transcript,
    split_pair,
)
from .rows import Sample

ANNOTATOR = "dataset:trl"
COLUMNS = ("prompt", "chosen", "rejected", "margin", "annotator")

# -- reading ---------------------------------------------------------------------------------------


def detect(sample: Sample) -> int:
    if sample.container == "text" or not {"chosen", "rejected"} <= set(sample.columns):
        return 0
    rows = [r for r in sample.rows if "chosen" in r and "rejected" in r]
    strings = sum(1 for r in rows if isinstance(r["chosen"], str) and isinstance(r["rejected"], str))
    lists = sum(1 for r in rows if isinstance(r["chosen"], list) and isinstance(r["rejected"], list))
    if (strings + lists) * 2 <= len(rows):
        return 0  # chosen/rejected hold something else (numbers, ids): some other format's columns
    if "prompt" in sample.columns or lists > strings:
        return 80
    hh = sum(1 for r in rows if looks_like_transcript(r["chosen"]) and looks_like_transcript(r["rejected"]))
    # HH-RLHF files are implicit-prompt TRL data too, but the hh-rlhf reader knows them better.
    return 40 if hh * 2 > len(rows) else 60


def parse_row(row: dict[str, Any], options: ReadOptions) -> Iterable[PairRecord]:
    chosen = _text_or_messages(row, "chosen")
    rejected = _text_or_messages(row, "rejected")
    if isinstance(chosen, str) != isinstance(rejected, str):
        raise FieldError(
            "rejected",
            f"is {_form(rejected)} but 'chosen' is {_form(chosen)}; expected both text or both lists of messages",
        )
    if isinstance(chosen, str):
        prompt, chosen, rejected = _string_pair(row, chosen, rejected)
    else:
        prompt, chosen, rejected = _conversational_pair(row, chosen, rejected)
    return (
        PairRecord(
            prompt,
            chosen,
            rejected,
            verdict="a",
            annotator=_annotator(row),
            margin=optional_number(row, "margin"),
            origin="trl",
        ),
    )


def _string_pair(row: dict[str, Any], chosen: str, rejected: str) -> tuple[Conversation, str, str]:
    if "prompt" not in row:
        _refuse_misspelt_prompt(row)
        if looks_like_transcript(chosen) and looks_like_transcript(rejected):
            # Whole HH dialogues: cut at the turn, not at the first differing character.
            return split_pair(chosen, rejected)
        cut = common_prefix_length(chosen, rejected)
        if 0 < cut < min(len(chosen), len(rejected)) and chosen[cut - 1] == " ":
            cut -= 1  # as TRL: "The sky is| blue." rather than "The sky is |blue."
        prompt_text, chosen, rejected = chosen[:cut], chosen[cut:], rejected[cut:]
        prompt, cue_space = _prompt_from_text(prompt_text, "chosen")
        if not prompt:
            raise _no_prompt(row)
    else:
        value = _text_or_messages(row, "prompt")
        if isinstance(value, list):
            return _messages(value, "prompt"), chosen, rejected
        if not value.strip():
            raise FieldError("prompt", "is empty; expected the prompt's text")
        prompt, cue_space = _prompt_from_text(value, "prompt")
    if cue_space:
        chosen, rejected = _strip_one_space(chosen), _strip_one_space(rejected)
    return prompt, chosen, rejected


def _prompt_from_text(text: str, field: str) -> tuple[Conversation, bool]:
    """The prompt's messages, and whether responses begin with a space that belongs to an HH cue."""
    if not text:
        return (), False
    if not looks_like_transcript(text):
        return (Message("user", text),), False
    if text.endswith(ASSISTANT):
        return parse_transcript(text[: -len(ASSISTANT)], field), True
    if text.endswith(ASSISTANT + " "):
        # The cue already holds the space, so the responses start with their first real character.
        return parse_transcript(text[: -len(ASSISTANT) - 1], field), False
    return parse_transcript(text, field), False


def _conversational_pair(row: dict[str, Any], chosen: list, rejected: list) -> tuple[Conversation, str, str]:
    chosen_messages = _messages(chosen, "chosen")
    rejected_messages = _messages(rejected, "rejected")
    if chosen_messages == rejected_messages:
        raise FieldError(None, "chosen and rejected are the same conversation; a pair needs two different responses")
    if "prompt" not in row:
        _refuse_misspelt_prompt(row)
        # Implicit prompt: the messages both conversations share.
        n = 0
        while n < min(len(chosen_messages), len(rejected_messages)) and chosen_messages[n] == rejected_messages[n]:
            n += 1
        prompt = chosen_messages[:n]
        if not prompt:
            raise _no_prompt(row)
    else:
        value = _text_or_messages(row, "prompt")
        prompt = _messages(value, "prompt") if isinstance(value, list) else _prompt_from_text(value, "prompt")[0]
        n = len(prompt)
        if not (n and chosen_messages[:n] == prompt and rejected_messages[:n] == prompt):
            n = 0  # the usual explicit form: chosen and rejected hold only the responses
    chosen_text = _one_assistant_message(chosen_messages[n:], "chosen")
    return prompt, chosen_text, _one_assistant_message(rejected_messages[n:], "rejected")


# Columns that often hold the prompt in other people's files: named when a row has no prompt.
_PROMPT_LIKE = ("question", "instruction", "query", "input", "context", "text", "history", "conversation", "messages")


def _prompt_column_guess(row: dict[str, Any]) -> str | None:
    """The row's column that was most likely meant as `prompt`: a near-miss spelling first, then
    a name that usually holds prompts."""
    others = [k for k in row if isinstance(k, str) and k not in COLUMNS]
    by_lower = {k.strip().lower(): k for k in others}
    close = difflib.get_close_matches("prompt", list(by_lower), n=1, cutoff=0.75)
    if close:
        return by_lower[close[0]]
    return next((by_lower[name] for name in _PROMPT_LIKE if name in by_lower), None)


def _refuse_misspelt_prompt(row: dict[str, Any]) -> None:
    """A column spelt like `prompt` ("promt", "Prompt") is a prompt the implicit-prompt reading
    would silently drop, making the shared beginning of the responses (often nothing) the prompt."""
    guess = _prompt_column_guess(row)
    if guess is not None and difflib.get_close_matches("prompt", [guess.strip().lower()], n=1, cutoff=0.75):
        raise _no_prompt(row, "is missing")


def _no_prompt(row: dict[str, Any], what: str = "is missing, and chosen and rejected share no beginning to take "
               "it from (the implicit-prompt form), so the prompt would be empty") -> FieldError:
    columns = ", ".join(str(k) for k in list(row)[:12]) + (", …" if len(row) > 12 else "")
    guess = _prompt_column_guess(row)
    if guess is not None:
        hint = (
            f"; did you mean 'prompt' (the column '{guess}')? Rename the column, or import with "
            f"--map prompt={guess},chosen=chosen,rejected=rejected"
        )
    else:
        hint = "; expected a 'prompt' column, or chosen and rejected that both begin with the prompt"
    return FieldError("prompt", f"{what} (the columns are: {columns}){hint}")


def _one_assistant_message(messages: Conversation, field: str) -> str:
    if len(messages) != 1:
        raise FieldError(
            field,
            f"has {len(messages)} messages after the prompt; expected one assistant message "
            "(or whole conversations that differ only in their last message)",
        )
    if messages[0].role != "assistant":
        raise FieldError(field, f"ends with a message by {messages[0].role!r}; expected the assistant's response")
    return messages[0].content


def _messages(value: list, field: str) -> Conversation:
    messages = []
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise FieldError(field, f"message {number} is {_form(item)}; expected {{\"role\": ..., \"content\": ...}}")
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise FieldError(field, f"message {number} has role {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise FieldError(field, f"message {number} has content that is {_form(content)}; expected text")
        messages.append(Message(role, content))
    return tuple(messages)


def _text_or_messages(row: dict[str, Any], name: str) -> str | list:
    value = row.get(name)
    if isinstance(value, list):
        return value
    return text_field(row, name)  # raises FieldError for missing, null or not text, with a misspelling hint


def _annotator(row: dict[str, Any]) -> str | None:
    value = row.get("annotator")
    if value is None or value == "":
        return None  # the pipeline attributes the verdict to the format's annotator, dataset:trl
    if not isinstance(value, str):
        raise FieldError("annotator", f"is {_form(value)}; expected the name of who chose")
    return value


def _strip_one_space(text: str) -> str:
    return text[1:] if text.startswith(" ") else text


def _form(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, bool):
        return "true/false"
    return f"a number ({value})" if isinstance(value, (int, float)) else type(value).__name__


# -- writing ---------------------------------------------------------------------------------------


def _prompt_as_text(prompt: Conversation) -> tuple[str, str] | None:
    """(prompt text, what goes before each response), or None when text cannot hold the prompt exactly."""
    # One user message is the prompt's text, unless it is empty or reads as a transcript itself:
    # then it goes out as a transcript, as any other conversation does.
    if len(prompt) == 1 and prompt[0].role == "user" and _prompt_from_text(prompt[0].content, "prompt") == (prompt, False):
        return prompt[0].content, ""
    if not prompt:
        return "", ""
    if any(m.role == "system" for m in prompt):
        return None
    text = render_transcript(prompt) + ASSISTANT
    # Read it back as the reader will: role tags inside a message, or a first turn that is not
    # the user's, would come back as different messages.
    return (text, " ") if text.startswith(HUMAN) and _prompt_from_text(text, "prompt") == (prompt, True) else None


def _finish(row: dict[str, Any], pair: ExportPair, out: TextIO) -> None:
    if pair.margin is not None:
        row["margin"] = pair.margin
    if pair.annotator:
        row["annotator"] = pair.annotator
    out.write(json.dumps(row, ensure_ascii=False))
    out.write("\n")


def write(pairs: Iterable[ExportPair], out: TextIO) -> WriteReport:
    report = WriteReport()
    for pair, chosen, rejected in chosen_and_rejected(pairs, report):
        written = _prompt_as_text(pair.prompt)
        if written is None:
            if any(m.role == "system" for m in pair.prompt):
                report.skip(
                    "with a system message, which a text prompt has no place for (export as trl-conversational)"
                )
            else:
                report.skip("whose prompt text cannot hold unambiguously (export as trl-conversational)")
            continue
        prompt_text, lead = written
        _finish({"prompt": prompt_text, "chosen": lead + chosen, "rejected": lead + rejected}, pair, out)
        report.written += 1
    return report


def write_conversational(pairs: Iterable[ExportPair], out: TextIO) -> WriteReport:
    report = WriteReport()
    for pair, chosen, rejected in chosen_and_rejected(pairs, report):
        row = {
            "prompt": [m.to_dict() for m in pair.prompt],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        _finish(row, pair, out)
        report.written += 1
    return report


FORMAT = register(
    Format(
        name="trl",
        description='TRL preference rows: {"prompt", "chosen", "rejected"} as text or as role/content messages, '
        "or with the prompt implicit in chosen/rejected; optional margin",
        detect=detect,
        parse_row=parse_row,
        write=write,
        annotator=ANNOTATOR,
        columns=lambda options: COLUMNS,
    )
)

# The same reader under the name people will try after exporting with it; detection leaves it to `trl`.
CONVERSATIONAL = register(
    Format(
        name="trl-conversational",
        description='TRL preference rows with messages: {"prompt": [{"role", "content"}...], '
        '"chosen": [{"role": "assistant", ...}], "rejected": [...]}',
        detect=lambda sample: 0,
        parse_row=parse_row,
        write=write_conversational,
        annotator=ANNOTATOR,
        columns=lambda options: COLUMNS,
    )
)
