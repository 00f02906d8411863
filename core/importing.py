"""Importing a file into a project: detect, read, validate, write, all in one transaction.

Bad input never half-imports. Without `skip_bad`, the first bad row stops the import with an
error naming the file, line and field, and the transaction is rolled back. With `skip_bad`,
good rows are imported and every rejected row is reported with its reason. Importing the same
file twice adds nothing the second time (content hashes; see bulk.py).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import Cancelled, ConfigError, FieldError, InputError, WorkbenchError
from .formats import Format, ReadOptions, detect, get_format
from .formats.rows import Row, RowSource, lone_surrogate
from .import_pipeline import READER_NAME, Batch, PipelineReader, ReadTask, spawn_is_safe
from .records import ROLES, VERDICTS, PairRecord, PromptRecord, Rejected
from .bulk import BulkWriter

if TYPE_CHECKING:
    from .project import Project
    from .store import Store

# This module is also what the import's reading process loads (for `_prepared_batches`), so the
# project and the store (sqlite-utils, which imports pandas where that is installed: ~0.4 s) are
# imported where they are used, not here: the reading process never needs them, and its start
# is time during which only this process works. tests/test_import_pipeline.py checks it.

ProgressCallback = Callable[[int, int], None]  # (bytes done, bytes total)
CancelCheck = Callable[[], bool]

# How many rejected rows a report keeps in full; the count is always exact.
_REJECTED_KEPT = 1000

# Rows per prepared batch: how often progress and cancel are checked, and what one message from
# the reading process carries (a few MB of text).
BATCH_ROWS = 2048
# Files at least this big are read in a second process while this one writes (see
# import_pipeline.py): a machine has a spare core during an import. Below this size the second
# process's start (a fresh interpreter importing the core: 0.2-0.4 s) costs more than it saves.
PIPELINE_MIN_BYTES = 4 * 1024 * 1024
# Forces the choice, for tests and for diagnosing: "1" always reads in a second process, "0"
# never; unset or "auto" decides by size. The `pipeline` argument of import_file wins over it.
PIPELINE_ENV = "RLHF_WORKBENCH_IMPORT_PIPELINE"


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
    pipeline: bool | None = None,
) -> ImportReport:
    """Import `path` into the project; returns what was added. Raises InputError on bad input.

    `pipeline`: True reads and prepares the rows in a second process while this one writes them
    (see import_pipeline.py), False does everything here, None (the default) decides by the file's
    size unless the RLHF_WORKBENCH_IMPORT_PIPELINE environment variable says otherwise. Both give
    the same rows, reports and errors.
    """
    if multiprocessing.current_process().name == READER_NAME:
        # The reading process is importing the main module of the program that started it, and
        # that module imports at its top level instead of under `if __name__ == "__main__":`.
        raise WorkbenchError(
            "an import's reading process was asked to import a file itself: the script that imports "
            "must keep its top-level code under `if __name__ == '__main__':`"
        )
    from .project import Project
    from .store import now_iso

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
    # Started before the transaction, so that its start-up overlaps with ours.
    mode = _pipeline_mode(pipeline, source)
    reader = _start_reader(mode, fmt, source, options, skip_bad) if mode else None
    try:
        with store.transaction(foreign_keys=False):  # BulkWriter assigns the ids it references
            import_id = store.conn.execute(
                "INSERT INTO imports(path, format, started_at) VALUES (?, ?, ?)",
                (str(path.absolute()), fmt.name, now_iso()),
            ).lastrowid
            writer = BulkWriter(store, import_id=import_id, source="dataset", source_name=path.name)
            batches = _prepared_batches(fmt, source, options, skip_bad)
            if reader is not None:
                # Chosen by size: rows are read here until the reading process has started, and it
                # goes on from there. Forced: it reads every row.
                batches = reader.batches(batches if mode == "by size" else None, cancel)
            _read_into(writer, batches, source, report, progress, cancel)
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
    finally:
        if reader is not None:
            reader.close()  # stops it if it is still reading (an error, a cancel)
    if progress:
        progress(source.total_bytes, source.total_bytes)
    return report


def _pipeline_mode(pipeline: bool | None, source: RowSource) -> str | None:
    """None (read here), "forced" (a reading process reads every row) or "by size"."""
    if pipeline is not None:
        return "forced" if pipeline else None
    setting = os.environ.get(PIPELINE_ENV, "auto").strip().lower()
    if setting in ("1", "on", "yes", "true"):
        return "forced"
    if setting in ("0", "off", "no", "false"):
        return None
    if setting not in ("", "auto"):
        raise ConfigError(f"{PIPELINE_ENV}={setting!r}: expected 1 (always), 0 (never) or auto")
    chosen = (
        source.total_bytes >= PIPELINE_MIN_BYTES
        and (os.cpu_count() or 1) > 1
        # A daemonic process (some job runners) may not start processes of its own.
        and not multiprocessing.current_process().daemon
        and spawn_is_safe()
    )
    return "by size" if chosen else None


def _start_reader(
    mode: str, fmt: Format, source: RowSource, options: ReadOptions, skip_bad: bool
) -> PipelineReader | None:
    """The second process that reads and prepares the rows, or None to do that here."""
    task = ReadTask(
        path=str(source.path),
        container=source.container,
        format=fmt.name,
        mapping=dict(options.mapping),
        annotator=options.annotator,
        max_chars=options.max_chars,
        skip_bad=skip_bad,
        batch_rows=BATCH_ROWS,  # read at each call, so that tests can make batches small
    )
    try:
        return PipelineReader(task)
    except (OSError, RuntimeError, AssertionError) as exc:
        if mode == "forced":
            raise WorkbenchError(f"{source.path}: could not start a process to read the file ({exc})") from exc
        return None  # chosen by size only: reading here is slower, not wrong


def _prepared_batches(
    fmt: Format,
    source: RowSource,
    options: ReadOptions,
    skip_bad: bool,
    batch_rows: int | None = None,
    *,
    skip: int = 0,
    hash_here: Callable[[], bool] | None = None,
) -> Iterator[Batch]:
    """Everything an import does that needs no database: rows read, parsed, validated, and
    prepared for `BulkWriter.write_prepared` (canonical JSON, content hashes).

    Yields batches `(items, rejected, rows, records, bytes_read)`: prepared items, rejected rows
    as (line, field, reason), how many good rows and records the batch holds, and how far into
    the file reading has got. Without `skip_bad`, the first bad row raises InputError naming the
    file, line and field. `skip` rows (good or bad) are passed over first: the reading process
    starts where this process stopped. `hash_here`, asked before each batch, says whether to
    compute the content hashes (True without it) or leave them to `BulkWriter.write_prepared`.
    This runs here for small files and in the reading process for large ones
    (import_pipeline.py), so both ways give the same items in the same order.
    """
    batch_rows = batch_rows or BATCH_ROWS
    default_annotator = options.annotator or fmt.annotator or f"dataset:{fmt.name}"
    parse_row, max_chars, format_name = fmt.parse_row, options.max_chars, fmt.name
    prepare_pair, prepare_prompt = BulkWriter.prepare_pair, BulkWriter.prepare_prompt
    # The format's fast path for its usual rows (Format.pair_row); other rows take the general one.
    pair_row, hash_pair = fmt.pair_row, BulkWriter.hash_pair
    fast_verdict = fmt.pair_row_verdict
    # What the general path gives a record whose verdict is by the format's own annotator.
    fast_annotator = default_annotator if fast_verdict is not None else None
    items: list[tuple] = []
    append = items.append
    rejected: list[tuple] = []
    rows = records = seen = 0
    hashed = hash_here() if hash_here is not None else True
    for item in source.rows(skip):
        seen += 1
        if pair_row is not None and type(item) is Row and (fast := pair_row(item.data, max_chars)) is not None:
            rows += 1
            records += 1
            # What BulkWriter.prepare_json_pair makes, without the cost of its keyword arguments.
            prompt_json, response_a, response_b = fast
            prepared = (
                None, prompt_json, None, response_a, None, response_b, None, format_name, None, None,
                fast_verdict, fast_annotator, None,
            )
            append(hash_pair(prepared) if hashed else prepared)
        elif not isinstance(item, Row):
            if not skip_bad:
                raise InputError(item.reason, path=source.path, line=item.line, field=item.field)
            rejected.append((item.line, item.field, item.reason))
        else:
            rows += 1
            try:
                # A row's records are checked together, so a bad row adds none of them.
                parsed = list(parse_row(item.data, options))
                for record in parsed:
                    _validate(record, max_chars)
            except FieldError as exc:
                if not skip_bad:
                    raise InputError(exc.reason, path=source.path, line=item.line, field=exc.field) from None
                rejected.append((item.line, exc.field, exc.reason))
                parsed = ()
            for record in parsed:
                records += 1
                if isinstance(record, PairRecord):
                    verdict_annotator = record.annotator or default_annotator if record.verdict else None
                    if options.annotator and record.verdict:
                        verdict_annotator = options.annotator
                    items.append(
                        prepare_pair(
                            record.prompt,
                            record.response_a,
                            record.response_b,
                            origin=record.origin or format_name,
                            margin=record.margin,
                            meta=record.meta,
                            verdict=record.verdict,
                            annotator=verdict_annotator,
                            hashed=hashed,
                        )
                    )
                else:
                    items.append(prepare_prompt(record.prompt, hashed=hashed))
        if seen >= batch_rows:
            yield items, rejected, rows, records, source.bytes_read
            items, rejected, rows, records, seen = [], [], 0, 0, 0
            append = items.append
            if hash_here is not None:
                hashed = hash_here()
    if seen:
        yield items, rejected, rows, records, source.bytes_read


def _read_into(
    writer: BulkWriter,
    batches: Iterable[Batch],
    source: RowSource,
    report: ImportReport,
    progress: ProgressCallback | None,
    cancel: CancelCheck | None,
) -> None:
    """Write prepared batches (from `_prepared_batches`, here or in the reading process)."""
    total = source.total_bytes
    cancelled = Cancelled(f"{source.path}: import cancelled; nothing was imported")
    if cancel is not None and cancel():
        raise cancelled
    if progress is not None:
        progress(0, total)
    for items, rejected, rows, records, bytes_read in batches:
        if cancel is not None and cancel():
            raise cancelled
        if progress is not None:
            progress(bytes_read, total)
        writer.write_prepared(items)
        report.rows += rows
        report.records += records
        if rejected:
            report.rejected_count += len(rejected)
            room = _REJECTED_KEPT - len(report.rejected)
            if room > 0:
                report.rejected.extend(Rejected(line, field_name, reason) for line, field_name, reason in rejected[:room])


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
