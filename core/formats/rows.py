"""Reading rows out of outside files: JSON lines, a JSON array, CSV/TSV, or plain text lines.

Formats never open files themselves: they receive rows (dicts) from here, with line numbers, so
that every error names the file and the line, and so that each format is only a mapping from a
row to records. Problems that belong to one row (bad JSON on line 7, invalid UTF-8 on line 9,
a CSV row with too many fields) come out as `Rejected` items; problems with the whole file (empty,
binary) raise `InputError`.

JSON is parsed with orjson, about three times as fast as the standard library's `json` here,
and stricter: it refuses NaN/Infinity and lone surrogate escapes ("\\ud800"), which are not
valid JSON text. Whatever orjson refuses is read again with `json`, which is slow but gives the
messages a person can act on (the column of a syntax error, the byte that is not UTF-8) and
accepts what orjson refuses without cause (a number too large for a double, such as 1e400).
A row holding NaN/Infinity or a lone surrogate is then rejected naming its field.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import InputError
from ..records import Rejected

CONTAINERS = ("jsonl", "json", "csv", "tsv", "text")
_SNIFF_BYTES = 64 * 1024
_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class Row:
    line: int  # 1-based line where the row starts (for a JSON array: the item's 1-based index)
    data: dict[str, Any]


@dataclass
class Sample:
    """The first rows of a file, for format detection."""

    path: Path
    container: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


class RowSource:
    """A file opened for row reading. `bytes_read` / `total_bytes` give progress while iterating."""

    def __init__(self, path: str | Path, container: str | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise InputError("no such file", path=self.path)
        if self.path.is_dir():
            raise InputError("is a folder; choose a file", path=self.path)
        self.total_bytes = self.path.stat().st_size
        self.bytes_read = 0
        self._samples: dict[int, Sample] = {}
        self.container = container or self._sniff_container()
        if self.container not in CONTAINERS:
            raise InputError(f"unknown container {self.container!r}; use one of {', '.join(CONTAINERS)}", path=self.path)

    def _sniff_container(self) -> str:
        with open(self.path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
        if not head.strip():
            raise InputError("the file is empty", path=self.path)
        if b"\x00" in head:
            raise InputError("looks like a binary file, not text; expected JSON lines, JSON or CSV", path=self.path)
        if head.startswith(_BOM):
            head = head[len(_BOM):]
        try:
            # A multi-byte character may be cut at the end of the sniffed block; that is not an error.
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4 and _looks_binary(head):
                raise InputError(
                    "looks like a binary file, not text; expected JSON lines, JSON or CSV", path=self.path
                ) from None
        suffix = self.path.suffix.lower()
        first = head.lstrip()[:1]
        if first == b"[":
            return "json"
        if first == b"{":
            first_line = head.lstrip().split(b"\n", 1)[0].strip()
            # A pretty-printed JSON document starts with a lone "{"; JSON lines never do.
            return "json" if first_line == b"{" else "jsonl"
        if suffix in (".jsonl", ".json", ".ndjson"):
            return "jsonl"
        if suffix == ".tsv":
            return "tsv"
        if suffix == ".txt":
            return "text"
        return "csv"

    def sample(self, n: int = 50) -> Sample:
        # Kept: detection, a format's check and the import's report each look at it, and reading
        # it again costs a whole read for a JSON array.
        cached = self._samples.get(n)
        if cached is not None:
            return cached
        sample = self._samples[n] = Sample(self.path, self.container)
        columns: dict[str, None] = {}
        for item in self.rows():
            if isinstance(item, Row):
                sample.rows.append(item.data)
                columns.update(dict.fromkeys(item.data))
                if len(sample.rows) >= n:
                    break
        sample.columns = list(columns)
        self.bytes_read = 0
        return sample

    def rows(self, skip: int = 0) -> Iterator[Row | Rejected]:
        """Every row, or rejected row, of the file in order; `skip` passes over the first ones
        (an import's reading process starts where the importing one stopped): for JSON lines
        without parsing them, since every line that is not blank is one row."""
        if self.container == "jsonl":
            return self._jsonl_rows(skip)
        reader = {
            "json": self._json_rows,
            "csv": self._csv_rows,
            "tsv": self._csv_rows,
            "text": self._text_rows,
        }[self.container]
        return itertools.islice(reader(), skip, None)

    # -- containers -------------------------------------------------------------------------------

    def _jsonl_rows(self, skip: int = 0) -> Iterator[Row | Rejected]:
        seen_content = False
        with open(self.path, "rb") as f:
            lines = enumerate(f, start=1)
            if skip > 0:
                for number, raw in lines:
                    self.bytes_read += len(raw)
                    if number == 1 and raw.startswith(_BOM):
                        raw = raw[len(_BOM):]
                    if raw and not raw.isspace():
                        seen_content = True
                        skip -= 1
                        if skip == 0:
                            break
            for number, raw in lines:
                self.bytes_read += len(raw)
                if number == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                # isspace rather than strip, which copies the line; b"" is a first line that was a lone BOM.
                if not raw or raw.isspace():
                    continue
                seen_content = True
                try:
                    data = orjson.loads(raw)
                    clean = not (isinstance(data, dict) and _needs_json(data))
                except orjson.JSONDecodeError:
                    clean = False
                if not clean:
                    # Rare: json gives the reason a person can act on, or reads what orjson refuses.
                    try:
                        data = _json_line(raw)
                    except _LineError as exc:
                        yield Rejected(number, None, exc.reason)
                        continue
                    problem = _invalid_value(data) if isinstance(data, dict) else None
                    if problem is not None:
                        yield Rejected(number, *problem)
                        continue
                if not isinstance(data, dict):
                    yield Rejected(number, None, f"expected a JSON object {{...}}, found {_json_kind(data)}")
                    continue
                yield Row(number, data)
        if not seen_content:
            raise InputError("the file is empty", path=self.path)

    def _json_rows(self) -> Iterator[Row | Rejected]:
        raw = self.path.read_bytes()
        self.bytes_read = len(raw)
        if raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        try:
            items = self._array_items(orjson.loads(raw))
            clean = not any(_needs_json(item) for item in items if isinstance(item, dict))
        except orjson.JSONDecodeError:
            clean = False
        if not clean:
            # Rare: json gives the reason a person can act on, or reads what orjson refuses; items
            # holding NaN/Infinity or a lone surrogate are then rejected one by one below.
            try:
                items = self._array_items(json.loads(raw.decode("utf-8"), parse_constant=_NonFinite))
            except UnicodeDecodeError as exc:
                line = raw.count(b"\n", 0, exc.start) + 1
                raise InputError("is not valid UTF-8; save the file as UTF-8", path=self.path, line=line) from None
            except json.JSONDecodeError as exc:
                raise InputError(f"is not valid JSON ({exc.msg}, column {exc.colno}); the file may be truncated", path=self.path, line=exc.lineno) from None
            except RecursionError:
                raise InputError("nests [ or { too deeply to read (about a thousand levels or more)", path=self.path) from None
        for index, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                yield Rejected(index, None, f"item {index} of the array: expected a JSON object, found {_json_kind(item)}")
                continue
            problem = None if clean else _invalid_value(item)
            if problem is not None:
                field_name, reason = problem
                yield Rejected(index, field_name, f"item {index} of the array {reason}")
                continue
            yield Row(index, item)

    def _array_items(self, document: Any) -> list[Any]:
        if isinstance(document, dict):
            # {"data": [...]} / {"rows": [...]}: a common wrapper; a lone object is one row.
            lists = [v for v in document.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
            document = lists[0] if len(lists) == 1 and len(document) <= 3 else [document]
        if not isinstance(document, list):
            raise InputError(f"expected a JSON array of objects, found {_json_kind(document)}", path=self.path)
        if not document:
            raise InputError("the JSON array is empty", path=self.path)
        return document

    def _decoded_text(self) -> str:
        raw = self.path.read_bytes()
        self.bytes_read = len(raw)
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise InputError(
                f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8", path=self.path, line=line
            ) from None

    def _csv_rows(self) -> Iterator[Row | Rejected]:
        text = self._decoded_text()
        delimiter = "\t" if self.container == "tsv" else _sniff_delimiter(text)
        csv.field_size_limit(1 << 30)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError("the file is empty", path=self.path) from None
        except csv.Error as exc:
            raise InputError(f"is not valid CSV ({exc})", path=self.path, line=1) from None
        header = [h.strip() for h in header]
        if not any(header):
            raise InputError("the first line should be a header naming the columns, but it is empty", path=self.path, line=1)
        duplicates = {h for h in header if header.count(h) > 1}
        if duplicates:
            raise InputError(f"the header names a column twice: {', '.join(sorted(duplicates))}", path=self.path, line=1)
        line = reader.line_num + 1
        any_row = False
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                yield Rejected(line, None, f"is not valid CSV ({exc})")
                line = reader.line_num + 1
                continue
            start, line = line, reader.line_num + 1
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            any_row = True
            if len(values) != len(header):
                yield Rejected(start, None, f"has {len(values)} fields but the header has {len(header)} ({', '.join(header)})")
                continue
            yield Row(start, dict(zip(header, values)))
        if not any_row:
            raise InputError("has a header but no rows", path=self.path)

    def _text_rows(self) -> Iterator[Row | Rejected]:
        text = self._decoded_text()
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield Row(number, {"prompt": line.rstrip("\r")})


# -- JSON that orjson refuses, or reads differently ------------------------------------------------

# Two things orjson accepts are read again with json, to keep what json gave:
# - an integer beyond 64 bits, which orjson reads as a float, rounded. Formats read numbers only
#   from a row's top-level values (ids kept in meta, a margin), so those are the ones checked;
# - nesting deeper than _DEEP levels. json refuses about a thousand (Python's recursion limit,
#   less the stack in use), orjson only 1024; a value between would pass here and then crash
#   whatever recurses into it later (repr in an error message) instead of being rejected.
# Checking costs 0.03 s per 100,000 HH rows (their values are strings); a float that large or a
# row that deep is merely read twice.
_INT64_MIN = -(2**63)
_UINT64_END = 2**64
_DEEP = 500


def _needs_json(row: dict[str, Any]) -> bool:
    for value in row.values():
        kind = type(value)
        if kind is float:
            # Strictly above: -(2**63) - 1 rounds to the float -(2**63).
            if not _INT64_MIN < value < _UINT64_END:
                return True
        elif (kind is list or kind is dict) and _deeper_than(value, _DEEP):
            return True
    return False


def _deeper_than(value: list | dict, levels: int) -> bool:
    # A stack, not recursion: recursing that deep is what this guards against.
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > levels:
            return True
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (list, dict)):
                stack.append((child, depth + 1))
    return False


class _NonFinite:
    """What json makes of the literals NaN, Infinity and -Infinity (its `parse_constant`).

    They are not JSON and orjson refuses them; Python's json module writes them, so they do turn
    up. A row holding one is rejected naming its field (see `_invalid_value`).
    """

    def __init__(self, literal: str):
        self.literal = literal


class _LineError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _json_line(raw: bytes) -> Any:
    """One line read with the standard library's json; `_LineError` with a reason if unreadable."""
    try:
        # Strict UTF-8, as orjson reads: encoded surrogates (CESU-8) are not UTF-8 either.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _LineError(
            f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8"
        ) from None
    # A byte order mark inside the file (files joined with `cat`): json.loads skips one on bytes only.
    text = text.removeprefix("\ufeff")
    try:
        return json.loads(text, parse_constant=_NonFinite)
    except json.JSONDecodeError as exc:
        hint = "; the file may be truncated" if not raw.endswith(b"\n") else ""
        raise _LineError(f"is not valid JSON ({exc.msg}, column {exc.colno}){hint}") from None
    except RecursionError:
        # json.loads recurses once per level: a hostile or broken line must not crash the import.
        raise _LineError("nests [ or { too deeply to read (about a thousand levels or more)") from None


def _invalid_value(row: dict[str, Any]) -> tuple[str | None, str] | None:
    """(field, reason) for a row read by json that holds NaN/Infinity or a lone surrogate, else None."""
    for key, value in row.items():
        escape = lone_surrogate(key)
        if escape is not None:
            return None, f"has a column name with an invalid \\u escape: a lone surrogate ({escape})"
        reason = _first_invalid(value)
        if reason is not None:
            return key, reason
    return None


def _first_invalid(value: Any) -> str | None:
    # A stack, not recursion: json accepted nesting close to Python's recursion limit.
    stack = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            escape = lone_surrogate(value)
            if escape is not None:
                return f"has an invalid \\u escape: a lone surrogate ({escape}), which is not valid text"
        elif isinstance(value, _NonFinite):
            return f"holds {value.literal}, which is not a JSON number; write null for a missing number"
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
    return None


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in `text` written as its \\u escape ("\\ud800"), or None.

    JSON's "\\ud800" makes one in Python's json; it is not text: it cannot be written as UTF-8,
    so hashing and SQLite fail on it.
    """
    if text.isascii():  # a flag of the string: costs nothing
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"\\u{ord(text[exc.start]):04x}"
    return None


def _sniff_delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    return "\t" if first_line.count("\t") > first_line.count(",") else ","


def _looks_binary(head: bytes) -> bool:
    # Control characters other than whitespace are rare in text of any encoding.
    controls = sum(1 for b in head[:4096] if b < 32 and b not in (9, 10, 13))
    return controls > len(head[:4096]) * 0.01


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "an array", dict: "an object"}.get(
        type(value), type(value).__name__
    )
