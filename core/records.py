"""The plain records that flow between formats, the store and exports.

A prompt is a conversation: a tuple of messages with roles `system`, `user` and `assistant`
(outside formats' own role names, such as HH-RLHF's `Human`/`Assistant` or OpenAssistant's
`prompter`, are mapped onto these). A pair is two responses to one prompt, and may carry a verdict
from the data itself, given by a named annotator such as `dataset:hh-rlhf`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

import orjson

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")

Verdict = Literal["a", "b", "tie", "both_bad", "skip"]
VERDICTS: tuple[str, ...] = ("a", "b", "tie", "both_bad", "skip")
# Verdicts that say which response is better; the others carry no preference direction.
DECISIVE_VERDICTS: tuple[str, ...] = ("a", "b")
# Swapping the two responses of a pair turns a verdict into this one.
SWAPPED_VERDICT: dict[str, str] = {"a": "b", "b": "a", "tie": "tie", "both_bad": "both_bad", "skip": "skip"}

# Annotators whose name starts with this are labels that came with imported data, not people.
DATASET_ANNOTATOR_PREFIX = "dataset:"

# The largest margin accepted. A margin is subtracted from a reward difference of a few units
# inside logsigmoid: past ~100 the pair's loss is already linear in it and outweighs every other
# pair in its batch, and past fp16's largest number (65,504) it becomes infinite in a mixed
# precision run (1e300 does even in fp32). 1e4 leaves any sane scale (ratings, score gaps of
# hundreds) room while refusing the values that can only be a unit or parsing mistake.
MAX_MARGIN = 1e4


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


Conversation = tuple[Message, ...]


def conversation_to_json(conversation: Conversation) -> str:
    """The canonical serialisation: stored in the database and hashed for deduplication.

    Byte for byte what `json.dumps(..., ensure_ascii=False, separators=(",", ":"))` writes (the
    digests of existing projects depend on it; tests/test_import_speed_paths.py checks it), made
    by orjson in a quarter of the time. The one difference: orjson refuses a lone surrogate
    (TypeError), where json would write it; imports reject such text first (importing._validate).
    """
    # The keys spelled out: their order is part of the canonical form.
    return orjson.dumps([{"role": m.role, "content": m.content} for m in conversation]).decode("utf-8")


def conversation_from_json(text: str) -> Conversation:
    return tuple(Message(m["role"], m["content"]) for m in orjson.loads(text))


def user_prompt(text: str) -> Conversation:
    """A single-turn prompt."""
    return (Message("user", text),)


@dataclass(slots=True)
class PairRecord:
    """Two responses to one prompt, as read from outside data (or made by the demo generator)."""

    prompt: Conversation
    response_a: str
    response_b: str
    verdict: str | None = None  # one of VERDICTS, relative to response_a / response_b
    annotator: str | None = None  # who gave the verdict; required when verdict is set
    margin: float | None = None  # how much better, where the data says (TRL's `margin` column)
    origin: str | None = None  # where the pair came from; the pipeline defaults it to the format name
    meta: dict[str, Any] | None = None  # source ids kept for traceability (e.g. OASST message ids)
    line: int | None = None  # set by the pipeline: where in the file this record came from


@dataclass(slots=True)
class PromptRecord:
    """A prompt with no responses yet (a plain prompt list), to generate responses for later."""

    prompt: Conversation
    origin: str | None = None
    meta: dict[str, Any] | None = None
    line: int | None = None


Record = Union[PairRecord, PromptRecord]


@dataclass(slots=True)
class Rejected:
    """A row that could not be imported, and why. Reported by `--skip-bad` imports."""

    line: int | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.reason}"


@dataclass(slots=True)
class ExportPair:
    """A pair as the exporters see it: texts, and the verdict that the export policy settled on."""

    pair_id: int
    prompt: Conversation
    response_a: str
    response_b: str
    origin: str
    verdict: str | None = None
    annotator: str | None = None  # the single annotator behind the verdict, or "consensus"
    margin: float | None = None
    judgments: list[tuple[str, str]] = field(default_factory=list)  # (annotator, verdict), active only
