"""Outside data formats: one module per format, each a `Format` registered here.

A format is a mapping from rows (dicts read by `rows.RowSource`) to records (`PairRecord`,
`PromptRecord`), a `detect` score for automatic detection, and where it makes sense a writer.
`parse_row` raises `FieldError` naming the field; the import pipeline adds the file and line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..errors import FieldError, InputError
from ..records import ExportPair, Record
from .rows import RowSource, Sample

# Texts longer than this are almost certainly a mistake (a whole file in one field); the labelling
# view is built to stay responsive well past 200,000 characters, so the limit sits far above that.
MAX_TEXT_CHARS = 1_000_000


class SkipRow(Exception):
    """Raised by `parse_row` for a row that is fine data but holds nothing to import (an Arena
    battle whose two models answered the same): the import skips it and counts it by `reason`,
    rather than refuse the file as it does a bad row."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ReadOptions:
    mapping: dict[str, str] = field(default_factory=dict)  # target field -> column (the `mapped` format)
    annotator: str | None = None  # overrides who the data's own verdicts are attributed to
    # What the values of a verdict column mean (the `mapped` format): a cell value as
    # mapped.value_key writes it -> a verdict, or "" for none; empty: the usual spellings.
    verdict_values: dict[str, str] = field(default_factory=dict)
    max_chars: int = MAX_TEXT_CHARS


@dataclass
class WriteReport:
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> how many pairs

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    # 0 = not this format; higher = surer. Detection picks the highest; a tie is reported as ambiguous.
    detect: Callable[[Sample], int]
    parse_row: Callable[[dict[str, Any], ReadOptions], Iterable[Record]] | None = None
    write: Callable[[Iterable[ExportPair], TextIO], WriteReport] | None = None
    write_suffix: str = ".jsonl"
    annotator: str | None = None  # who the data's own verdicts are attributed to, e.g. "dataset:hh-rlhf"
    # Checks the options against the file's first rows before anything is read for real, so that
    # a problem with the whole import (a mapping naming a missing column) is reported once, not
    # as every row rejected. Raises FieldError or ConfigError.
    check: Callable[[ReadOptions, Sample], None] | None = None
    # Optional fast path for large imports: `pair_row(row, max_chars)` returns, for a row that
    # `parse_row` would turn into exactly one valid pair (every check of importing._validate
    # passed) with verdict `pair_row_verdict` by the format's annotator, no margin, no meta and
    # origin = the format's name, the tuple (canonical prompt JSON as records.conversation_to_json
    # writes it, response A, response B), each as UTF-8 bytes; and None for any other row, which then takes the
    # general path (parse_row, validation, its precise error). Both paths must give identical
    # items: tests/test_import_speed_paths.py checks them against each other.
    pair_row: Callable[[dict[str, Any], int], tuple[bytes, bytes, bytes] | None] | None = None
    pair_row_verdict: str | None = None
    # The top-level columns the format reads (given the options: the mapped format reads what its
    # mapping names), so that an import can name the ones it ignores: a column that was meant to be
    # read and was not (a misspelt name, a verdict the format has no place for) must not go unseen.
    # None where the format does not say (nested formats such as OpenAssistant trees).
    columns: Callable[[ReadOptions], Iterable[str]] | None = None
    # The format names each verdict's annotator itself, `ReadOptions.annotator` included (the
    # mapped format's several verdict columns, one annotator each); otherwise the import puts
    # `ReadOptions.annotator` in place of whatever the data says.
    names_annotators: bool = False


def ignored_columns(fmt: Format, options: ReadOptions, columns: Iterable[str]) -> list[str]:
    """The columns among `columns` (a file's) that `fmt` does not read, in the file's order."""
    if fmt.columns is None:
        return []
    read = set(fmt.columns(options))
    return [str(c) for c in columns if c not in read]


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> Format:
    _load_all()
    try:
        return FORMATS[name]
    except KeyError:
        raise InputError(f"unknown format {name!r}; choose one of: {', '.join(sorted(FORMATS))}") from None


def readable_formats() -> list[Format]:
    _load_all()
    return [f for f in FORMATS.values() if f.parse_row is not None]


def writable_formats() -> list[Format]:
    _load_all()
    return [f for f in FORMATS.values() if f.write is not None]


@dataclass
class Detection:
    format: Format
    source: RowSource
    sample: Sample
    scores: dict[str, int]


def detect(path: str | Path, *, container: str | None = None) -> Detection:
    """Which format a file is in, judged from its first rows. Raises InputError when unsure."""
    source = RowSource(path, container)
    sample = source.sample()
    if not sample.rows:
        # Every sampled row was bad: read again to surface the first problem with its line.
        for item in source.rows():
            raise InputError(str(item), path=source.path)
        raise InputError("has no rows", path=source.path)
    scores = {f.name: f.detect(sample) for f in readable_formats() if f.name != "mapped"}
    scores = {name: s for name, s in scores.items() if s > 0}
    if not scores:
        columns = ", ".join(sample.columns[:12])
        raise InputError(
            f"the format could not be recognised (columns: {columns}); name it with --format, "
            f"or map the columns with --map prompt=...,chosen=...,rejected=...",
            path=source.path,
        )
    best = max(scores.values())
    winners = sorted(name for name, s in scores.items() if s == best)
    if len(winners) > 1:
        raise InputError(f"could be any of {', '.join(winners)}; choose one with --format", path=source.path)
    return Detection(get_format(winners[0]), source, sample, scores)


# -- helpers for writers ---------------------------------------------------------------------------


def chosen_and_rejected(pairs: Iterable[ExportPair], report: WriteReport) -> Iterator[tuple[ExportPair, str, str]]:
    """(pair, chosen, rejected) for each pair with an a/b verdict; the rest are counted as skipped.

    For the formats that can only say which response was preferred (ties and both-bad cannot be
    written in them).
    """
    for pair in pairs:
        if pair.verdict == "a":
            yield pair, pair.response_a, pair.response_b
        elif pair.verdict == "b":
            yield pair, pair.response_b, pair.response_a
        else:
            report.skip("without a chosen/rejected verdict")


# -- helpers for parse_row -------------------------------------------------------------------------


def text_field(row: dict[str, Any], name: str, *, allow_empty: bool = True, column: str | None = None) -> str:
    """row[column or name] as text; FieldError naming the field if missing or not text."""
    key = column or name
    if key not in row:
        close = _close_match(key, row)
        hint = f" (there is a '{close}': misspelled?)" if close else ""
        raise FieldError(key, f"is missing; expected text{hint}")
    value = row[key]
    if value is None:
        raise FieldError(key, "is null; expected text")
    if not isinstance(value, str):
        raise FieldError(key, f"is {_kind(value)}; expected text")
    if not allow_empty and not value.strip():
        raise FieldError(key, "is empty")
    return value


def optional_number(row: dict[str, Any], name: str) -> float | None:
    value = row.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise FieldError(name, f"is {_kind(value)}; expected a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldError(name, f"is {value!r}; expected a number") from None
    if not math.isfinite(number):
        raise FieldError(name, f"is {value!r}; expected a finite number")
    return number


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _close_match(key: str, row: dict[str, Any]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(key, [k for k in row if isinstance(k, str)], n=1, cutoff=0.75)
    return matches[0] if matches else None


_loaded = False


def _load_all() -> None:
    """Import every format module once, so that each registers itself."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if module.name not in ("rows",) and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
