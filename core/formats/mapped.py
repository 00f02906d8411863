"""Any CSV or JSON lines file, read through an explicit column mapping (`--map prompt=question,...`).

`ReadOptions.mapping` maps a target field to the file's column. Targets:
- `prompt` (required): text, or a list of {"role", "content"} messages (JSON-encoded in CSV);
- either `chosen` + `rejected` (a labelled pair: the chosen response wins), or `response_a` +
  `response_b` with an optional `verdict` column (a/b/tie/both_bad and common spellings such as
  model_a, A, 1/2, tie (bothbad)); an empty verdict leaves the pair for people to label;
- `margin` (optional number: how much better, as TRL's margin column);
- `system` (optional text: a system message put before the prompt).

This format is never picked by detection: a mapping is a statement by the person about what the
columns mean, which no guess should make for them. Verdicts are attributed to `dataset:mapped`
unless the import names an annotator.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..errors import ConfigError, FieldError
from ..records import Message, PairRecord
from . import Format, ReadOptions, _kind, optional_number, register, text_field
from .pairs import prompt_field
from .rows import Sample

ANNOTATOR = "dataset:mapped"
TARGETS: tuple[str, ...] = ("prompt", "chosen", "rejected", "response_a", "response_b", "verdict", "margin", "system")

_VERDICTS: dict[str, str] = {}
for _verdict, _spellings in {
    "a": ("a", "model_a", "response_a", "1", "1.0", "left", "first"),
    "b": ("b", "model_b", "response_b", "2", "2.0", "right", "second"),
    "tie": ("tie", "draw", "equal", "same"),
    "both_bad": ("both_bad", "both bad", "bothbad", "both-bad", "tie (bothbad)", "tie_bothbad", "neither"),
}.items():
    for _spelling in _spellings:
        _VERDICTS[_spelling] = _verdict
_VERDICT_HELP = "a, b, tie or both_bad (or model_a / model_b, A / B, 1 / 2, tie (bothbad)); empty for none"


def mapping_problem(mapping: Mapping[str, str]) -> str | None:
    """What is wrong with a mapping on its own (before looking at any file), or None."""
    unknown = [t for t in mapping if t not in TARGETS]
    if unknown:
        return f"unknown mapping target {', '.join(repr(t) for t in unknown)}; the targets are: {', '.join(TARGETS)}"
    empty = [t for t, column in mapping.items() if not isinstance(column, str) or not column.strip()]
    if empty:
        return f"the mapping gives no column for {', '.join(empty)}"
    labelled = "chosen" in mapping or "rejected" in mapping
    unlabelled = "response_a" in mapping or "response_b" in mapping
    if labelled and unlabelled:
        return "map either chosen + rejected or response_a + response_b, not both"
    if labelled and not {"chosen", "rejected"} <= mapping.keys():
        return "the mapping needs both chosen and rejected"
    if unlabelled and not {"response_a", "response_b"} <= mapping.keys():
        return "the mapping needs both response_a and response_b"
    if not labelled and not unlabelled:
        return "the mapping needs chosen + rejected or response_a + response_b"
    if labelled and "verdict" in mapping:
        return "a verdict column only goes with response_a + response_b (chosen + rejected already says which won)"
    if "prompt" not in mapping:
        return "the mapping needs a prompt column"
    return None


def check_mapping(mapping: Mapping[str, str], columns: Sequence[str] | None = None) -> None:
    """Raises ConfigError if the mapping is unusable, or names columns that `columns` lacks.

    For callers (CLI, GUI) that want to refuse a mapping before reading the file; the reader
    checks the same things on every row.
    """
    problem = mapping_problem(mapping)
    if problem is None and columns is not None:
        problem = _missing_column(mapping, columns)
    if problem is not None:
        raise ConfigError(problem)


def _missing_column(mapping: Mapping[str, str], columns: Sequence[str]) -> str | None:
    for target, column in mapping.items():
        if column not in columns:
            return f"no column {column!r} (mapped to {target}); the columns are: {', '.join(map(str, columns))}"
    return None


def _check_before_reading(options: ReadOptions, sample: Sample) -> None:
    """The import pipeline's up-front check: a bad mapping is one error, not every row rejected."""
    problem = mapping_problem(options.mapping)
    if problem is not None:
        raise FieldError(None, problem)
    for target, column in options.mapping.items():
        if column not in sample.columns:
            raise FieldError(column, _missing_column({target: column}, sample.columns))


def detect(sample: Sample) -> int:
    return 0


def parse_row(row: dict[str, Any], options: ReadOptions) -> Iterator[PairRecord]:
    mapping = options.mapping
    problem = mapping_problem(mapping)
    if problem is not None:
        raise FieldError(None, problem)
    for target, column in mapping.items():
        if column not in row:
            raise FieldError(column, _missing_column({target: column}, list(row)))

    prompt = prompt_field(row, mapping["prompt"])
    if "system" in mapping and row[mapping["system"]] is not None:  # null, like empty, means no system message
        system = text_field(row, mapping["system"])
        if system.strip():
            if prompt[0].role == "system":
                raise FieldError(mapping["system"], "is set, but the prompt already starts with a system message")
            prompt = (Message("system", system),) + prompt
    margin = optional_number(row, mapping["margin"]) if "margin" in mapping else None

    if "chosen" in mapping:
        a, b = text_field(row, mapping["chosen"]), text_field(row, mapping["rejected"])
        verdict: str | None = "a"
    else:
        a, b = text_field(row, mapping["response_a"]), text_field(row, mapping["response_b"])
        verdict = _verdict(row, mapping["verdict"]) if "verdict" in mapping else None
    yield PairRecord(prompt, a, b, verdict=verdict, margin=margin)


def _verdict(row: dict[str, Any], column: str) -> str | None:
    value = row[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FieldError(column, f"is {_kind(value)}; expected {_VERDICT_HELP}")
    verdict = _VERDICTS.get(str(value).strip().lower())
    if verdict is None:
        raise FieldError(column, f"is {value!r}; expected {_VERDICT_HELP}")
    return verdict


FORMAT = register(
    Format(
        name="mapped",
        description="Any CSV or JSON lines file through a column mapping (--map prompt=question,chosen=good,...)",
        detect=detect,
        parse_row=parse_row,
        annotator=ANNOTATOR,
        check=_check_before_reading,
        columns=lambda options: options.mapping.values(),
    )
)
