"""Any CSV or JSON lines file, read through an explicit column mapping (`--map prompt=question,...`).

`ReadOptions.mapping` maps a target field to the file's column. Targets:
- `prompt` (required): text, or a list of {"role", "content"} messages (JSON-encoded in CSV);
- either `chosen` + `rejected` (a labelled pair: the chosen response wins), or `response_a` +
  `response_b` with an optional `verdict` column (a/b/tie/both_bad and common spellings such as
  model_a, A, 1/2, tie (bothbad)); an empty verdict leaves the pair for people to label.
  `ReadOptions.verdict_values` says what the column's values mean where the usual spellings do
  not (PandaLM's `0=tie,1=a,2=b`, `-1=b,1=a`, words in any language: `parse_verdict_values`);
  `verdict` may name several columns joined by `+` (`annotator1+annotator2+annotator3`), each
  read as its own annotator, named `<annotator>:<column>` (`dataset:mapped:annotator1` by default);
- `margin` (optional number: how much better, as TRL's margin column);
- `system` (optional text: a system message put before the prompt).

This format is never picked by detection: a mapping is a statement by the person about what the
columns mean, which no guess should make for them. Verdicts are attributed to `dataset:mapped`
unless the import names an annotator.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
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
# What a value of --verdict-values may map to: a verdict, or none (the pair is left to label).
_VALUE_TARGETS = {"a": "a", "b": "b", "tie": "tie", "both_bad": "both_bad", "none": ""}
VERDICT_VALUES_SETTING = "--verdict-values"


def value_key(value: Any) -> str:
    """A verdict cell's value as a key of the verdict values: 1, 1.0, "1" and " 1.0 " are one value,
    and words match whatever their case."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return text.lower()
        value = number
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_verdict_values(text: str) -> dict[str, str]:
    """`0=tie,1=a,2=b` (or `-1=b,1=a`, `gut=a,schlecht=b`) as the verdict values; ConfigError
    naming the setting and the item when one is unusable."""
    values: dict[str, str] = {}
    for item in text.split(","):
        value, sep, verdict = item.rpartition("=")
        if not item.strip():
            continue
        if not sep or not value.strip():
            raise ConfigError(f"{VERDICT_VALUES_SETTING}: {item.strip()!r} is not VALUE=VERDICT (e.g. 0=tie,1=a,2=b)")
        target = _VALUE_TARGETS.get(verdict.strip().lower())
        if target is None:
            raise ConfigError(
                f"{VERDICT_VALUES_SETTING}: {item.strip()!r}: {verdict.strip()!r} is not a verdict; "
                f"use {', '.join(_VALUE_TARGETS)}"
            )
        key = value_key(value)
        if key in values and values[key] != target:
            raise ConfigError(f"{VERDICT_VALUES_SETTING}: the value {value.strip()!r} is given two verdicts")
        values[key] = target
    if not values:
        raise ConfigError(f"{VERDICT_VALUES_SETTING} is empty; write VALUE=VERDICT pairs, e.g. 0=tie,1=a,2=b")
    return values


def verdict_columns(value: str, columns: Iterable[str] = ()) -> list[str]:
    """The columns a mapping's `verdict` names: one, or several joined by `+` (a column whose own
    name holds a `+` is taken whole)."""
    if value in columns:
        return [value]
    return [c.strip() for c in value.split("+")]


def mapped_columns(mapping: Mapping[str, str], columns: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(target, column) for every column the mapping names, each verdict column on its own."""
    columns = list(columns)
    pairs = []
    for target, value in mapping.items():
        if target == "verdict" and isinstance(value, str):
            pairs.extend((target, c) for c in verdict_columns(value, columns))
        else:
            pairs.append((target, value))
    return pairs


def mapping_problem(mapping: Mapping[str, str], verdict_values: Mapping[str, str] | None = None) -> str | None:
    """What is wrong with a mapping (and verdict values) on its own (before looking at any file), or None."""
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
    if "verdict" in mapping and any(not c for c in verdict_columns(mapping["verdict"])):
        return f"the verdict columns {mapping['verdict']!r} have an empty name; join them with +, e.g. annotator1+annotator2"
    if verdict_values and "verdict" not in mapping:
        return f"{VERDICT_VALUES_SETTING} says what a verdict column's values mean, but no column is mapped to verdict"
    return None


def check_mapping(
    mapping: Mapping[str, str], columns: Sequence[str] | None = None, verdict_values: Mapping[str, str] | None = None
) -> None:
    """Raises ConfigError if the mapping is unusable, or names columns that `columns` lacks.

    For callers (CLI, GUI) that want to refuse a mapping before reading the file; the reader
    checks the same things on every row.
    """
    problem = mapping_problem(mapping, verdict_values)
    if problem is None and columns is not None:
        problem = _missing_column(mapping, columns)
    if problem is not None:
        raise ConfigError(problem)


def _missing_column(mapping: Mapping[str, str], columns: Sequence[str]) -> str | None:
    for target, column in mapped_columns(mapping, columns):
        if column not in columns:
            return f"no column {column!r} (mapped to {target}); the columns are: {', '.join(map(str, columns))}"
    return None


def _check_before_reading(options: ReadOptions, sample: Sample) -> None:
    """The import pipeline's up-front check: a bad mapping is one error, not every row rejected."""
    problem = mapping_problem(options.mapping, options.verdict_values)
    if problem is not None:
        raise FieldError(None, problem)
    for target, column in mapped_columns(options.mapping, sample.columns):
        if column not in sample.columns:
            raise FieldError(column, _missing_column({target: column}, sample.columns))


def detect(sample: Sample) -> int:
    return 0


def parse_row(row: dict[str, Any], options: ReadOptions) -> Iterator[PairRecord]:
    mapping = options.mapping
    problem = mapping_problem(mapping)
    if problem is not None:
        raise FieldError(None, problem)
    for target, column in mapped_columns(mapping, row):
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
        yield PairRecord(prompt, a, b, verdict="a", annotator=options.annotator, margin=margin)
        return
    a, b = text_field(row, mapping["response_a"]), text_field(row, mapping["response_b"])
    columns = verdict_columns(mapping["verdict"], row) if "verdict" in mapping else []
    verdicts = [(column, _verdict(row, column, options.verdict_values)) for column in columns]
    if len(columns) > 1:
        # Each column is one annotator: "dataset:mapped:annotator1", or "<--annotator>:annotator1".
        base = options.annotator or ANNOTATOR
        records = [
            PairRecord(prompt, a, b, verdict=verdict, annotator=f"{base}:{column}", margin=margin)
            for column, verdict in verdicts
            if verdict is not None
        ]
    else:
        verdict = verdicts[0][1] if verdicts else None
        records = [PairRecord(prompt, a, b, verdict=verdict, annotator=options.annotator if verdict else None, margin=margin)]
    # A pair nobody judged in this file is still a pair, to label.
    yield from records or [PairRecord(prompt, a, b, margin=margin)]


def _verdict(row: dict[str, Any], column: str, values: Mapping[str, str]) -> str | None:
    value = row[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FieldError(column, f"is {_kind(value)}; expected {_VERDICT_HELP if not values else _known(values)}")
    if values:
        verdict = values.get(value_key(value))
        if verdict is None:
            raise FieldError(column, f"is {value!r}, which {VERDICT_VALUES_SETTING} does not give a verdict; "
                                     f"{_known(values)}")
        return verdict or None
    verdict = _VERDICTS.get(str(value).strip().lower())
    if verdict is None:
        raise FieldError(column, f"is {value!r}; expected {_VERDICT_HELP} (or say what its values mean with "
                                 f"{VERDICT_VALUES_SETTING}, e.g. 0=tie,1=a,2=b)")
    return verdict


def _known(values: Mapping[str, str]) -> str:
    listed = ", ".join(f"{key}={verdict or 'none'}" for key, verdict in values.items())
    return f"{VERDICT_VALUES_SETTING} maps {listed}"


FORMAT = register(
    Format(
        name="mapped",
        description="Any CSV or JSON lines file through a column mapping (--map prompt=question,chosen=good,...)",
        detect=detect,
        parse_row=parse_row,
        annotator=ANNOTATOR,
        check=_check_before_reading,
        columns=lambda options: [column for _, column in mapped_columns(options.mapping)],
        names_annotators=True,
    )
)
