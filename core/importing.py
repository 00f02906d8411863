"""Importing a file into a project: detect, read, validate, write, all in one transaction.

Bad input never half-imports. Without `skip_bad`, the first bad row stops the import with an
error naming the file, line and field, and the transaction is rolled back. With `skip_bad`,
good rows are imported and every rejected row is reported with its reason. Importing the same
file twice adds nothing the second time (content hashes; see bulk.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import import_rows
from .bulk import BulkWriter
from .errors import ConfigError, FieldError, InputError, Stopped, WorkbenchError
from .events import Progress, Sink, StopFlag
from .formats import Format, ReadOptions, detect, get_format, ignored_columns
from .formats.rows import RowSource
from .import_pipeline import READER_NAME, PipelineReader, ReadTask, spawn_is_safe
from .import_rows import Batch, prepared_batches
from .records import Rejected

if TYPE_CHECKING:
    from .project import Project
    from .store import Store

# The project and the store (sqlite-utils, which imports pandas where that is installed: ~0.4 s)
# are imported where they are used, not here: the import's reading process loads import_rows.py,
# and its start is time during which only this process works. tests/test_import_pipeline.py checks it.

# How many rejected rows a report keeps in full; the count is always exact.
_REJECTED_KEPT = 1000

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
    # Records that gave their row's pair again, with another annotator's verdict (not in the summary).
    repeated_pairs: int = 0
    # Rows that were fine but held nothing to import, by reason (an Arena tie of identical answers).
    skipped: dict[str, int] = field(default_factory=dict)
    # Columns of the file (seen in its first rows) that the format does not read.
    ignored_columns: list[str] = field(default_factory=list)
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
        parts.extend(f"{n:,} rows skipped ({reason})" for reason, n in self.skipped.items())
        text = f"{Path(self.path).name} ({self.format}): " + ", ".join(parts) + f" in {self.seconds:.1f} s"
        if self.ignored_columns:
            names = ", ".join(self.ignored_columns[:12]) + (", …" if len(self.ignored_columns) > 12 else "")
            text += f"; columns not read by the {self.format} format: {names}"
        return text

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
    verdict_values: dict[str, str] | None = None,
    skip_bad: bool = False,
    sink: Sink | None = None,
    stop: StopFlag | None = None,
    pipeline: bool | None = None,
) -> ImportReport:
    """Import `path` into the project; returns what was added. Raises InputError on bad input,
    and Stopped (nothing imported) when `stop()` turns true. Reports Progress (bytes read of the
    file's bytes) into `sink`.

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
    options = ReadOptions(mapping=dict(mapping or {}), annotator=annotator, verdict_values=dict(verdict_values or {}))
    if options.verdict_values and fmt.name != "mapped":
        raise InputError(
            f"--verdict-values is for the mapped format (--map ...,verdict=COLUMN); the {fmt.name} format "
            "knows what its verdicts mean", path=path,
        )
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
    report.ignored_columns = ignored_columns(fmt, options, source.sample().columns)
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
            batches = prepared_batches(fmt, source, options, skip_bad)
            if reader is not None:
                # Chosen by size: rows are read here until the reading process has started, and it
                # goes on from there. Forced: it reads every row.
                batches = reader.batches(batches if mode == "by size" else None, stop)
            _read_into(writer, batches, source, report, sink, stop)
            writer.flush()
            for name, value in asdict(writer.counts).items():
                setattr(report, name, value)
            # A pair judged by several annotators of the file is one pair, not one already there.
            report.pairs_existing -= report.repeated_pairs
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
            reader.close()  # stops it if it is still reading (an error, a stop)
    if sink is not None:
        sink(Progress(source.total_bytes, source.total_bytes, _reading(path)))
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
        batch_rows=import_rows.BATCH_ROWS,  # read at each call, so that tests can make batches small
        verdict_values=dict(options.verdict_values),
    )
    try:
        return PipelineReader(task)
    except (OSError, RuntimeError, AssertionError) as exc:
        if mode == "forced":
            raise WorkbenchError(f"{source.path}: could not start a process to read the file ({exc})") from exc
        return None  # chosen by size only: reading here is slower, not wrong


def _read_into(
    writer: BulkWriter,
    batches: Iterable[Batch],
    source: RowSource,
    report: ImportReport,
    sink: Sink | None,
    stop: StopFlag | None,
) -> None:
    """Write prepared batches (from `prepared_batches`, here or in the reading process)."""
    total = source.total_bytes
    stopped = Stopped(f"{source.path}: import cancelled; nothing was imported")
    message = _reading(source.path)
    if stop is not None and stop():
        raise stopped
    if sink is not None:
        sink(Progress(0, total, message))
    for items, rejected, rows, records, bytes_read, skipped, repeats in batches:
        if stop is not None and stop():
            raise stopped
        if sink is not None:
            sink(Progress(bytes_read, total, message))
        writer.write_prepared(items)
        report.rows += rows
        report.records += records
        report.repeated_pairs += repeats
        for reason, n in skipped.items():
            report.skipped[reason] = report.skipped.get(reason, 0) + n
        if rejected:
            report.rejected_count += len(rejected)
            room = _REJECTED_KEPT - len(report.rejected)
            if room > 0:
                report.rejected.extend(Rejected(line, field_name, reason) for line, field_name, reason in rejected[:room])


def _summary_json(report: ImportReport) -> dict:
    data = report.to_json()
    data["rejected"] = data["rejected"][:50]
    return data


def _reading(path: Path) -> str:
    return f"Importing {Path(path).name}…"
