"""Reading rows out of outside files: JSON lines, a JSON array, CSV/TSV, plain text lines, Parquet
or Arrow; any of the text ones compressed with gzip, bzip2, xz or zstd.

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

Data is published compressed (HH-RLHF's own files are `*.jsonl.gz`) and as Parquet (the Hugging
Face hub serves preference datasets so; `datasets` saves Arrow files). A compressed file is
recognised by its first bytes, whatever its name, and read as its content: its container is
sniffed from the content (and the name without `.gz`), line numbers are the content's, and
progress is the position in the compressed file. zstd is read through pyarrow's codec, so it
needs no package of its own. Parquet and Arrow files are read through pyarrow, one record batch
at a time; their rows are numbered from 1 as the lines of a JSON lines file are, and formats
detect them by their columns as for any other file.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import io
import itertools
import json
import lzma
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import InputError
from ..records import Rejected

CONTAINERS = ("jsonl", "json", "csv", "tsv", "text", "parquet", "arrow")
# Containers pyarrow reads (binary, never compressed on the outside).
TABLE_CONTAINERS = ("parquet", "arrow")
# The first bytes of each compression's stream. bzip2's "BZh" is followed by the block size and
# a block's (or the empty stream's) magic, so that a text starting "BZh" is not taken for one.
_COMPRESSIONS = (
    ("gzip", (b"\x1f\x8b",)),
    ("bz2", tuple(b"BZh" + size + block for size in b"1 2 3 4 5 6 7 8 9".split() for block in (b"1AY&SY", b"\x17rE8P\x90"))),
    ("xz", (b"\xfd7zXZ\x00",)),
    ("zstd", (b"\x28\xb5\x2f\xfd",)),
)
_COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zst", ".zstd")
# Rows per record batch read from a Parquet or Arrow file.
_TABLE_BATCH_ROWS = 1024
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
            saved = sorted(p.name for p in self.path.glob("*.arrow"))
            if saved:  # a dataset saved by `datasets` (save_to_disk): its rows are in these files
                raise InputError(f"is a folder; choose one of its Arrow files: {', '.join(saved[:5])}", path=self.path)
            raise InputError("is a folder; choose a file", path=self.path)
        self.total_bytes = self.path.stat().st_size
        self.bytes_read = 0
        self._samples: dict[int, Sample] = {}
        self._raw = None  # the compressed file being read, for progress()
        with open(self.path, "rb") as f:
            magic = f.read(16)
        self.compression = _compression_of(magic)  # "gzip", "bz2", "xz", "zstd" or None
        self.container = container or self._sniff_container(magic)
        if self.container not in CONTAINERS:
            raise InputError(f"unknown container {self.container!r}; use one of {', '.join(CONTAINERS)}", path=self.path)
        if self.compression is not None and self.container in TABLE_CONTAINERS:
            raise InputError(f"a {self.container} file inside {self.compression} compression cannot be read; "
                             "decompress it first", path=self.path)

    def progress(self) -> int:
        """How far into the file reading has got, in the file's bytes (out of total_bytes)."""
        raw = self._raw
        if raw is None:
            return self.bytes_read
        try:
            return raw.tell()  # a compressed file: bytes_read counts its content
        except (ValueError, OSError):
            return self.total_bytes  # closed: read to the end

    def _sniff_container(self, magic: bytes) -> str:
        suffix = self.path.suffix.lower()
        if self.compression is None:
            if magic.startswith(b"PAR1"):
                return "parquet"
            if magic.startswith(b"ARROW1") or suffix in (".arrow", ".feather"):
                return "arrow"
        else:
            # "pairs.jsonl.gz" is a JSON lines file.
            suffix = Path(self.path.stem).suffix.lower() if suffix in _COMPRESSED_SUFFIXES else ""
        try:
            with self._content() as f:
                head = f.read(_SNIFF_BYTES)
        except _DECOMPRESSION_ERRORS as exc:
            raise self._damaged(exc, None) from None
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
        self._raw = None
        return sample

    def rows(self, skip: int = 0) -> Iterator[Row | Rejected]:
        """Every row, or rejected row, of the file in order; `skip` passes over the first ones
        (an import's reading process starts where the importing one stopped): for JSON lines
        without parsing them, since every line that is not blank is one row."""
        if self.container == "jsonl":
            rows = self._jsonl_rows(skip)
        else:
            reader = {
                "json": self._json_rows,
                "csv": self._csv_rows,
                "tsv": self._csv_rows,
                "text": self._text_rows,
                "parquet": self._table_rows,
                "arrow": self._table_rows,
            }[self.container]
            rows = itertools.islice(reader(), skip, None)
        return rows if self.compression is None else self._guarded(rows)

    # -- compressed files -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _content(self) -> Iterator[io.BufferedIOBase]:
        """The file's content as a binary file: itself, or decompressed as it is read."""
        raw = open(self.path, "rb")  # noqa: SIM115 -- closed below, after what wraps it
        try:
            if self.compression is None:
                yield raw
                return
            self._raw = raw
            with _decompressing(self.compression, raw, self.path) as content:
                yield content
        finally:
            raw.close()

    def _read_content(self) -> bytes:
        if self.compression is None:
            return self.path.read_bytes()
        try:
            with self._content() as f:
                return f.read()
        except _DECOMPRESSION_ERRORS as exc:
            raise self._damaged(exc, None) from None

    def _guarded(self, rows: Iterator[Row | Rejected]) -> Iterator[Row | Rejected]:
        """Rows of a compressed file, a damaged or truncated stream reported as bad input."""
        line = None
        try:
            for item in rows:
                line = item.line
                yield item
        except _DECOMPRESSION_ERRORS as exc:
            raise self._damaged(exc, line) from None

    def _damaged(self, exc: BaseException, line: int | None) -> InputError:
        after = f" after line {line} of its content" if line is not None else ""
        return InputError(
            f"the {self.compression} data is damaged or cut short{after} ({exc or type(exc).__name__}); "
            "nothing was imported", path=self.path,
        )

    # -- Parquet and Arrow --------------------------------------------------------------------------

    def _table_rows(self) -> Iterator[Row | Rejected]:
        pa = _pyarrow(self.path, f"reading {self.container} files")
        try:
            if self.container == "parquet":
                import pyarrow.parquet as pq

                table = pq.ParquetFile(self.path)
                total_rows = table.metadata.num_rows
                batches = table.iter_batches(batch_size=_TABLE_BATCH_ROWS)
            else:
                table = _arrow_table(pa, self.path)
                total_rows = table.num_rows
                batches = iter(table.to_batches(max_chunksize=_TABLE_BATCH_ROWS))
            if total_rows == 0:
                raise InputError("has no rows", path=self.path)
            index = 0
            for batch in batches:
                for data in batch.to_pylist():
                    index += 1
                    yield Row(index, data)
                self.bytes_read = self.total_bytes * index // total_rows
        except (pa.ArrowException, OSError) as exc:
            kind = "Parquet" if self.container == "parquet" else "Arrow"
            raise InputError(f"is not a readable {kind} file ({exc})", path=self.path) from None

    # -- containers -------------------------------------------------------------------------------

    def _jsonl_rows(self, skip: int = 0) -> Iterator[Row | Rejected]:
        seen_content = False
        with self._content() as f:
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
        raw = self._read_content()
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
        raw = self._read_content()
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


# -- compression and pyarrow ------------------------------------------------------------------------

# What a damaged or truncated compressed stream raises: gzip.BadGzipFile is an OSError, a cut-short
# stream an EOFError, pyarrow's zstd errors OSError or ArrowInvalid (a ValueError). Caught only
# around reading a compressed file's bytes, where a ValueError can come from nothing else.
_DECOMPRESSION_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, ValueError, zlib.error, lzma.LZMAError)


def _compression_of(magic: bytes) -> str | None:
    for name, starts in _COMPRESSIONS:
        if magic.startswith(starts):
            return name
    return None


@contextlib.contextmanager
def _decompressing(compression: str, raw, path: Path) -> Iterator[io.BufferedIOBase]:
    if compression == "gzip":
        stream = gzip.GzipFile(fileobj=raw, mode="rb")  # every member, as zcat reads them
    elif compression == "bz2":
        stream = bz2.BZ2File(raw, mode="rb")
    elif compression == "xz":
        stream = lzma.LZMAFile(raw, mode="rb")  # noqa: SIM115 -- closed below
    else:
        # zstd through pyarrow's codec (the app already needs pyarrow for Parquet): no package of its own.
        pa = _pyarrow(path, "reading zstd-compressed files")
        if not pa.Codec.is_available("zstd"):
            raise InputError("this pyarrow was built without zstd; decompress the file first (zstd -d)", path=path)
        stream = io.BufferedReader(pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), "zstd"))
    try:
        yield stream
    finally:
        with contextlib.suppress(*_DECOMPRESSION_ERRORS, ValueError):
            stream.close()


def _pyarrow(path: Path, what: str):
    try:
        import pyarrow
    except ImportError:
        raise InputError(f"{what} needs pyarrow, which is not installed (pip install pyarrow)", path=path) from None
    return pyarrow


def _arrow_table(pa, path: Path):
    """An Arrow IPC file: the file form (Feather v2), or the stream form that `datasets` saves
    (save_to_disk's data-*.arrow, its cache files). Memory-mapped, so reading it whole copies nothing."""
    source = pa.memory_map(str(path))
    try:
        return pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_stream(source).read_all()
