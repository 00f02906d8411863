"""Plain prompt lists: a .txt file with one prompt per line, or CSV/JSON lines with a `prompt` column.

These become prompts with no responses yet, for generating candidate responses with a local model
later. In CSV/JSON lines the prompt may also be a list of `{"role", "content"}` messages (TRL's
conversational prompt-only rows), so a multi-turn prompt list needs no other format.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..records import PromptRecord
from . import Format, ReadOptions, register
from .pairs import RESPONSE_COLUMNS, VERDICT_COLUMNS, prompt_field
from .rows import Sample


def detect(sample: Sample) -> int:
    if sample.container == "text":
        # Every line of a text file is a prompt: nothing else reads text files.
        return 60
    columns = set(sample.columns)
    if "prompt" not in columns or columns & (RESPONSE_COLUMNS | VERDICT_COLUMNS):
        return 0
    # OpenAssistant trees also have a `prompt` key, holding a message object: not a prompt list.
    if not all(isinstance(row.get("prompt"), (str, list)) for row in sample.rows if "prompt" in row):
        return 0
    return 50


def parse_row(row: dict[str, Any], options: ReadOptions) -> Iterator[PromptRecord]:
    yield PromptRecord(prompt_field(row))


FORMAT = register(
    Format(
        name="prompts",
        description="Prompt lists: a .txt file with one prompt per line, or CSV/JSON lines with a prompt column",
        detect=detect,
        parse_row=parse_row,
        columns=lambda options: ("prompt",),
    )
)
