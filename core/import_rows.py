"""The part of an import that needs no database: a file's rows read, parsed, validated and
prepared for `BulkWriter.write_prepared`. It runs in the importing process for small files and in
the reading process for large ones (import_pipeline.py), so both ways give the same items in the
same order. It imports neither the project nor the store, so that the reading process starts fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from .bulk import BulkWriter
from .errors import FieldError, InputError
from .formats import Format, ReadOptions, SkipRow
from .formats.rows import Row, RowSource, lone_surrogate
from .records import MAX_MARGIN, ROLES, VERDICTS, PairRecord, PromptRecord

# Rows per prepared batch: how often progress is reported and stop() looked at, and what one message from
# the reading process carries (a few MB of text).
BATCH_ROWS = 2048
# (prepared items, rejected rows as (line, field, reason), good rows, records, bytes read so far,
# rows skipped by reason (counted in the good rows too: SkipRow), records that repeat their row's
# pair with another annotator's verdict (the mapped format's several verdict columns))
Batch = tuple[list[tuple], list[tuple], int, int, int, dict[str, int], int]


def prepared_batches(
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

    Yields batches `(items, rejected, rows, records, bytes_read, skipped, repeats)`: prepared items,
    rejected rows as (line, field, reason), how many good rows and records the batch holds, how far
    into the file reading has got, how many of its rows the format skipped (SkipRow), by reason,
    and how many records repeat their row's pair (one pair judged by several annotators: the
    writer counts each repeat as a pair already there, which the report takes back). Without `skip_bad`, the first bad row raises InputError naming the
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
    names_annotators = fmt.names_annotators
    # What the general path gives a record whose verdict is by the format's own annotator.
    fast_annotator = default_annotator if fast_verdict is not None else None
    items: list[tuple] = []
    append = items.append
    rejected: list[tuple] = []
    skipped: dict[str, int] = {}
    rows = records = seen = repeats = 0
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
                    validate_record(record, max_chars)
            except FieldError as exc:
                if not skip_bad:
                    raise InputError(exc.reason, path=source.path, line=item.line, field=exc.field) from None
                rejected.append((item.line, exc.field, exc.reason))
                parsed = ()
            except SkipRow as exc:
                skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
                parsed = ()
            if len(parsed) > 1 and isinstance(parsed[0], PairRecord):
                first = parsed[0]
                repeats += sum(
                    1 for r in parsed[1:]
                    if (r.prompt, r.response_a, r.response_b) == (first.prompt, first.response_a, first.response_b)
                )
            for record in parsed:
                records += 1
                if isinstance(record, PairRecord):
                    verdict_annotator = record.annotator or default_annotator if record.verdict else None
                    if options.annotator and record.verdict and not names_annotators:
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
            yield items, rejected, rows, records, source.progress(), skipped, repeats
            items, rejected, rows, records, seen, skipped, repeats = [], [], 0, 0, 0, {}, 0
            append = items.append
            if hash_here is not None:
                hashed = hash_here()
    if seen:
        yield items, rejected, rows, records, source.progress(), skipped, repeats


def validate_record(record: PairRecord | PromptRecord, max_chars: int) -> None:
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
    if not record.prompt:
        # A pair is an answer to something: an empty prompt is a column the format did not find.
        raise FieldError("prompt", "is empty; a pair needs the prompt its two responses answer")
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
    if record.margin is not None and abs(record.margin) > MAX_MARGIN:
        raise FieldError(
            "margin", f"is {record.margin:g}; a margin beyond ±{MAX_MARGIN:g} is almost certainly a mistake in the data"
        )
