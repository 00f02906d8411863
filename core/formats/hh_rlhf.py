"""Anthropic HH-RLHF transcripts: rows `{"chosen": str, "rejected": str}`.

Each string is a whole dialogue, `"\\n\\nHuman: ...\\n\\nAssistant: ..."`, ending in the response
being compared; there is no prompt field. Reading:

- The prompt is the shared part of the two transcripts up to their last `"\\n\\nAssistant:"`. Where
  the two differ before that (a response that itself goes on writing `"\\n\\nHuman:"` turns, which
  happens in the real data), the prompt is the longest common prefix cut back to the last
  `"\\n\\nAssistant:"` inside it, and each response keeps its extra role tags as plain text: they
  are what the model wrote, not turns a person took.
- The prompt is split into messages only at `"\\n\\nHuman:"` (user) and `"\\n\\nAssistant:"`
  (assistant). A bare `Human:` inside text is text: the real data has dozens of those.
- Every turn and response normally starts with one space after its tag; exactly one is removed
  (a second one is content), so that writing the pair back reproduces the transcript exactly.
- An empty response is real data (an empty answer was preferred to a harmful one) and imported.
- The chosen transcript's response becomes response A, with verdict "a" by `dataset:hh-rlhf`.

Writing produces the same transcripts, serialised as the published files are (UTF-8, not
escaped), so that an imported HH file exports byte for byte as it came in. Only pairs with a
decisive verdict (a or b) can be written: HH has only chosen/rejected. Prompts with a system
message are skipped with a counted reason rather than folded into the first Human turn: HH has
no place for them, and folding would put words in the human's mouth and make a different pair on
re-import; `trl-conversational` keeps them. Every written pair is read back in memory before it
is written, and a pair whose text would read back differently (role tags inside a prompt message,
a prompt that does not start with a user turn, responses sharing a role-tagged beginning) is
skipped with a reason instead of being written wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, TextIO

import orjson

from ..errors import FieldError
from ..records import Conversation, ExportPair, Message, PairRecord
from . import Format, ReadOptions, WriteReport, chosen_and_rejected, register, text_field
from .rows import Sample

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
ANNOTATOR = "dataset:hh-rlhf"

# Splits at each tag and takes the one space that follows it as part of the separator.
_TURNS = re.compile(r"\n\n(Human|Assistant): ?")
_ROLE_OF_TAG = {"Human": "user", "Assistant": "assistant"}
_TAG_OF_ROLE = {"user": HUMAN, "assistant": ASSISTANT}


def looks_like_transcript(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(HUMAN) and ASSISTANT in value


def common_prefix_length(a: str, b: str) -> int:
    """How many leading characters `a` and `b` share.

    Found by halving, so that the comparisons run inside Python's string code; `os.path.commonprefix`
    steps through the characters in Python, which is slow on whole dialogues.
    """
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a.startswith(b[:middle]):
            low = middle
        else:
            high = middle - 1
    return low


def parse_transcript(text: str, field: str) -> Conversation:
    """The messages of a transcript that starts with "\\n\\nHuman:"; FieldError naming `field` if not."""
    if not text.startswith(HUMAN):
        raise FieldError(field, f"should start with {HUMAN!r} (an HH-RLHF transcript), but starts with {text[:20]!r}")
    parts = _TURNS.split(text)
    # parts = ["", "Human", content, "Assistant", content, ...]: nothing comes before the first tag.
    # map rather than a generator expression: 10% less time on 100,000 prompts.
    roles = map(_ROLE_OF_TAG.__getitem__, parts[1::2])
    return tuple(map(Message, roles, parts[2::2]))


def render_transcript(prompt: Conversation) -> str:
    """The inverse of `parse_transcript` for user/assistant messages (a system message raises KeyError)."""
    return "".join(f"{_TAG_OF_ROLE[m.role]} {m.content}" for m in prompt)


def split_pair(chosen: str, rejected: str) -> tuple[Conversation, str, str]:
    """(prompt, chosen response, rejected response) of two transcripts of one dialogue."""
    cut = _last_answer_tag(chosen, "chosen")
    head = chosen[:cut]
    # The usual case, checked without a character-by-character comparison: both end in one
    # response after the same prompt.
    if _last_answer_tag(rejected, "rejected") != cut or not rejected.startswith(head):
        cut = chosen.rfind(ASSISTANT, 0, common_prefix_length(chosen, rejected))
        if cut < 0:
            raise FieldError(
                "rejected",
                f"does not share its dialogue with 'chosen' up to an {ASSISTANT!r} turn; "
                "expected two transcripts of the same conversation",
            )
        head = chosen[:cut]
    start = cut + len(ASSISTANT)
    # Exactly one space after the tag is removed: a second one is content.
    return parse_transcript(head, "chosen"), chosen[start:].removeprefix(" "), rejected[start:].removeprefix(" ")


def _last_answer_tag(text: str, name: str) -> int:
    """Where the last "\\n\\nAssistant:" of a transcript starts; FieldError naming `name` if not a transcript."""
    if not text.startswith(HUMAN):
        raise FieldError(name, f"should be an HH-RLHF transcript starting with {HUMAN!r}, but starts with {text[:20]!r}")
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        raise FieldError(name, f"has no {ASSISTANT!r} turn; expected a transcript ending in the assistant's response")
    return cut


def render_pair(prompt: Conversation, chosen: str, rejected: str) -> tuple[str, str]:
    head = render_transcript(prompt) + ASSISTANT + " "
    return head + chosen, head + rejected


def detect(sample: Sample) -> int:
    # A prompt column means TRL's explicit form, even when its prompts are HH transcripts.
    if sample.container == "text" or "prompt" in sample.columns:
        return 0
    rows = [r for r in sample.rows if "chosen" in r or "rejected" in r]
    hh = sum(1 for r in rows if looks_like_transcript(r.get("chosen")) and looks_like_transcript(r.get("rejected")))
    # Most rows, not all: one bad row among the sample should be reported on its line, not hide the format.
    return 90 if rows and hh * 2 > len(rows) else 0


def parse_row(row: dict[str, Any], options: ReadOptions) -> Iterable[PairRecord]:
    chosen = text_field(row, "chosen")
    rejected = text_field(row, "rejected")
    prompt, response_chosen, response_rejected = split_pair(chosen, rejected)
    return (
        PairRecord(
            prompt,
            response_chosen,
            response_rejected,
            verdict="a",
            annotator=ANNOTATOR,
            origin="hh-rlhf",
        ),
    )


def pair_row(row: dict[str, Any], max_chars: int) -> tuple[bytes, bytes, bytes] | None:
    """The fast path of `parse_row` for large imports (see `Format.pair_row`).

    For the usual row, two transcripts that end in one response each after the same prompt, with
    nothing for validation to refuse: (canonical prompt JSON, chosen response, rejected response)
    as UTF-8 bytes, exactly what `parse_row`, importing._validate and
    records.conversation_to_json give (encoded), in a third of the time: no Message objects, the
    checks that cannot fail on such a row left out, and the bytes that are hashed made once.
    Anything else (a missing or non-text field, responses that write role tags, too long a text,
    a lone surrogate, identical responses) returns None and takes the general path, which gives
    the same result or the precise error.
    """
    chosen = row.get("chosen")
    rejected = row.get("rejected")
    if (
        type(chosen) is not str
        or type(rejected) is not str
        or len(chosen) > max_chars  # every message and response is then within the limit
        or len(rejected) > max_chars
        or not chosen.startswith(HUMAN)
    ):
        return None
    cut = chosen.rfind(ASSISTANT)
    if cut < 0 or rejected.rfind(ASSISTANT) != cut:
        return None
    head = chosen[:cut]
    if not rejected.startswith(head):
        return None
    start = cut + _ASSISTANT_LENGTH
    response_chosen = chosen[start:].removeprefix(" ")
    response_rejected = rejected[start:].removeprefix(" ")
    if response_chosen == response_rejected:
        return None
    # parse_transcript's split, with dicts in the canonical JSON's key order instead of Messages.
    parts = _TURNS.split(head)
    roles = map(_ROLE_OF_TAG.__getitem__, parts[1::2])
    messages = [{"role": role, "content": content} for role, content in zip(roles, parts[2::2])]
    try:
        return _dumps(messages), response_chosen.encode("utf-8"), response_rejected.encode("utf-8")
    except (TypeError, UnicodeEncodeError):
        # A lone surrogate (never from orjson; rows json read with one are rejected before this):
        # orjson and strict UTF-8 refuse it, and the general path names its field.
        return None


_ASSISTANT_LENGTH = len(ASSISTANT)
_dumps = orjson.dumps


def write(pairs: Iterable[ExportPair], out: TextIO) -> WriteReport:
    report = WriteReport()
    for pair, chosen, rejected in chosen_and_rejected(pairs, report):
        if any(m.role == "system" for m in pair.prompt):
            report.skip("with a system message, which HH-RLHF transcripts have no place for")
            continue
        chosen_text, rejected_text = render_pair(pair.prompt, chosen, rejected)
        try:
            readable = split_pair(chosen_text, rejected_text) == (pair.prompt, chosen, rejected)
        except FieldError:
            readable = False
        if not readable:
            report.skip(
                "that HH-RLHF transcripts cannot hold unambiguously (a prompt not starting with a user "
                "turn, or role tags inside the text)"
            )
            continue
        # Default separators and unescaped UTF-8: the published files' own serialisation.
        out.write(json.dumps({"chosen": chosen_text, "rejected": rejected_text}, ensure_ascii=False))
        out.write("\n")
        report.written += 1
    return report


FORMAT = register(
    Format(
        name="hh-rlhf",
        description='Anthropic HH-RLHF transcripts: {"chosen", "rejected"}, each "\\n\\nHuman: ...\\n\\nAssistant: ..."',
        detect=detect,
        parse_row=parse_row,
        write=write,
        annotator=ANNOTATOR,
        pair_row=pair_row,
        pair_row_verdict="a",
        columns=lambda options: ("chosen", "rejected"),
    )
)
