"""Importing a file into a project: detect, read, validate, write, all in one transaction.

Bad input never half-imports. Without `skip_bad`, the first bad row stops the import with an
error naming the file, line and field, and the transaction is rolled back. With `skip_bad`,
good rows are imported and every rejected row is reported with its reason. Importing the same
file twice adds nothing the second time (content hashes; see store.py).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import Cancelled, ConfigError, FieldError, InputError, WorkbenchError
from .formats import Format, ReadOptions, detect, get_format
from .formats.rows import Row, RowSource, lone_surrogate
from .project import Project
from .records import ROLES, VERDICTS, PairRecord, PromptRecord, Rejected
from .store import BulkWriter, Store, now_iso

ProgressCallback = Callable[[int, int], None]  # (bytes done, bytes total)
CancelCheck = Callable[[], bool]

# How many rejected rows a report keeps in full; the count is always exact.
_REJECTED_KEPT = 1000


@dataclass
class ImportReport:
    path: str
    format: str
    rows: int = 0
    records: int = 0
    prompts_added: int = 0
    responses_added: int = 0
    pairs_added: int = 0
    pairs_existing: int = 0
    judgments_added: int = 0
    judgments_existing: int = 0
    rejected_count: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    seconds: float = 0.0
    import_id: int | None = None

    def summary(self) -> str:
        parts = [f"{self.pairs_added:,} pairs added"]
        if self.pairs_existing:
            parts.append(f"{self.pairs_existing:,} already in the project")
        if self.judgments_added:
            parts.append(f"{self.judgments_added:,} verdicts added")
        if self.prompts_added and not self.pairs_added:
            parts.append(f"{self.prompts_added:,} prompts added")
        if self.rejected_count:
            parts.append(f"{self.rejected_count:,} rows rejected")
        return f"{Path(self.path).name} ({self.format}): " + ", ".join(parts) + f" in {self.seconds:.1f} s"

    def to_json(self) -> dict:
        data = asdict(self)
        data["rejected"] = [str(r) for r in self.rejected]
        return data


def import_file(
    target: Project | Store,
    path: str | Path,
    *,
    format: str | None = None,
    mapping: dict[str, str] | None = None,
    annotator: str | None = None,
    skip_bad: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> ImportReport:
    """Import `path` into the project; returns what was added. Raises InputError on bad input."""
    store = target.store if isinstance(target, Project) else target
    path = Path(path)
    started = time.perf_counter()
    if mapping:
        fmt = get_format(format or "mapped")
        source = RowSource(path)
    elif format:
        fmt = get_format(format)
        source = RowSource(path)
    else:
        detection = detect(path)
        fmt, source = detection.format, detection.source
    if fmt.parse_row is None:
        raise InputError(f"the {fmt.name} format can be exported but not imported", path=path)
    options = ReadOptions(mapping=dict(mapping or {}), annotator=annotator)
    if fmt.name == "mapped" and not options.mapping:
        raise InputError("the mapped format needs --map, e.g. --map prompt=question,chosen=good,rejected=bad", path=path)

    if fmt.check is not None:
        try:
            fmt.check(options, source.sample())
        except FieldError as exc:
            raise InputError(exc.reason, path=path, field=exc.field) from None
        except ConfigError as exc:
            raise InputError(str(exc), path=path) from None

    report = ImportReport(path=str(path), format=fmt.name)
    try:
        with store.transaction(foreign_keys=False):  # BulkWriter assigns the ids it references
            import_id = store.conn.execute(
                "INSERT INTO imports(path, format, started_at) VALUES (?, ?, ?)",
                (str(path.absolute()), fmt.name, now_iso()),
            ).lastrowid
            writer = BulkWriter(store, import_id=import_id, source="dataset", source_name=path.name)
            _read_into(writer, fmt, source, options, report, skip_bad, progress, cancel)
            writer.flush()
            for name, value in asdict(writer.counts).items():
                setattr(report, name, value)
            report.import_id = import_id
            report.seconds = time.perf_counter() - started
            store.conn.execute(
                "UPDATE imports SET finished_at = ?, summary = ? WHERE id = ?",
                (now_iso(), json.dumps(_summary_json(report)), import_id),
            )
    except sqlite3.OperationalError as exc:
        # "database or disk is full", "database is locked": the transaction was rolled back.
        raise WorkbenchError(f"{path}: the import could not be saved ({exc}); nothing was imported") from exc
    if progress:
        progress(source.total_bytes, source.total_bytes)
    return report


def _read_into(
    writer: BulkWriter,
    fmt: Format,
    source: RowSource,
    options: ReadOptions,
    report: ImportReport,
    skip_bad: bool,
    progress: ProgressCallback | None,
    cancel: CancelCheck | None,
) -> None:
    default_annotator = options.annotator or fmt.annotator or f"dataset:{fmt.name}"

    def reject(line: int | None, field_name: str | None, reason: str) -> None:
        if not skip_bad:
            raise InputError(reason, path=source.path, line=line, field=field_name)
        report.rejected_count += 1
        if len(report.rejected) < _REJECTED_KEPT:
            report.rejected.append(Rejected(line, field_name, reason))

    for n, item in enumerate(source.rows()):
        if n % 2048 == 0:
            if cancel is not None and cancel():
                raise Cancelled(f"{source.path}: import cancelled; nothing was imported")
            if progress is not None:
                progress(source.bytes_read, source.total_bytes)
        if not isinstance(item, Row):
            reject(item.line, item.field, item.reason)
            continue
        report.rows += 1
        try:
            # A row's records are checked together, so a bad row adds none of them.
            records = list(fmt.parse_row(item.data, options))
            for record in records:
                _validate(record, options.max_chars)
        except FieldError as exc:
            reject(item.line, exc.field, exc.reason)
            continue
        for record in records:
            report.records += 1
            if isinstance(record, PairRecord):
                verdict_annotator = record.annotator or default_annotator if record.verdict else None
                if options.annotator and record.verdict:
                    verdict_annotator = options.annotator
                writer.add_pair(
                    record.prompt,
                    record.response_a,
                    record.response_b,
                    origin=record.origin or fmt.name,
                    margin=record.margin,
                    meta=record.meta,
                    verdict=record.verdict,
                    annotator=verdict_annotator,
                )
            else:
                writer.add_prompt(record.prompt)


def _validate(record: PairRecord | PromptRecord, max_chars: int) -> None:
    """What every record must satisfy, whatever format it came from."""
    if not isinstance(record.prompt, tuple):
        raise FieldError("prompt", "internal: a format produced a prompt that is not a tuple of messages")
    for message in record.prompt:
        if message.role not in ROLES:
            raise FieldError("prompt", f"has a message with role {message.role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(message.content, str):
            raise FieldError("prompt", "has a message whose content is not text")
        if len(message.content) > max_chars:
            raise FieldError("prompt", f"has a message of {len(message.content):,} characters; the limit is {max_chars:,}")
        # A lone surrogate ("\ud800" decoded by json, e.g. from a CSV cell holding JSON) cannot be
        # hashed or stored: refuse it here, naming the field, rather than fail while writing.
        surrogate = lone_surrogate(message.content)
        if surrogate is not None:
            raise FieldError("prompt", f"has a message that contains a lone surrogate ({surrogate}), which is not valid text")
    if isinstance(record, PromptRecord):
        if not record.prompt or not any(m.content.strip() for m in record.prompt):
            raise FieldError("prompt", "is empty")
        return
    for name, text in (("response_a", record.response_a), ("response_b", record.response_b)):
        if not isinstance(text, str):
            raise FieldError(name, "is not text")
        if len(text) > max_chars:
            raise FieldError(name, f"is {len(text):,} characters long; the limit is {max_chars:,}")
        surrogate = lone_surrogate(text)
        if surrogate is not None:
            raise FieldError(name, f"contains a lone surrogate ({surrogate}), which is not valid text")
    if record.response_a == record.response_b:
        raise FieldError(None, "the two responses are identical; a pair needs two different responses")
    if record.verdict is not None and record.verdict not in VERDICTS:
        raise FieldError("verdict", f"is {record.verdict!r}; expected one of {', '.join(VERDICTS)}")
    if record.annotator is not None:
        surrogate = lone_surrogate(record.annotator)
        if surrogate is not None:
            raise FieldError("annotator", f"contains a lone surrogate ({surrogate}), which is not valid text")
    if record.margin is not None and not math.isfinite(record.margin):
        raise FieldError("margin", f"is {record.margin}; expected a finite number")


def _summary_json(report: ImportReport) -> dict:
    data = report.to_json()
    data["rejected"] = data["rejected"][:50]
    return data
