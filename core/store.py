"""The project database: its schema, its migrations, and every SQL statement the workbench runs.

One SQLite file per project, in WAL mode (readers never block the labeller's writes), with
foreign keys on and a busy timeout so that a training child process and the GUI can share it.
The schema is versioned with `PRAGMA user_version` and migrated forward one step at a time; a
file whose version is newer than this code knows is refused rather than guessed at.

Every import is idempotent through content hashes: a prompt is identified by its messages, a
response by its prompt and text, a pair by its prompt and the *unordered* set of its two
responses (so the same two responses shown the other way round are the same pair), and a
judgment that came with data by its pair, annotator and verdict.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import ProjectError, WorkbenchError
from .records import (
    DATASET_ANNOTATOR_PREFIX,
    SWAPPED_VERDICT,
    VERDICTS,
    Conversation,
    ExportPair,
    conversation_from_json,
    conversation_to_json,
)

# "RLHW" in the SQLite header, so that a stray database is never mistaken for a project.
APPLICATION_ID = 0x524C4857
BUSY_TIMEOUT_MS = 10_000
PAGE_SIZE = 16_384
# SQLite's default limit on bound parameters is 999 on old builds; stay under it.
_IN_CHUNK = 500


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


_blake2b = hashlib.blake2b
_length = struct.Struct("<Q").pack  # len(data).to_bytes(8, "little"), faster
_PROMPT_TAG = _length(6) + b"prompt"
_RESPONSE_TAG = _length(8) + b"response"
_PAIR_TAG = _length(4) + b"pair"
_JUDGMENT_TAG = _length(8) + b"judgment"
_DIGEST_LENGTH = _length(16)


def content_hash(*parts: str | bytes) -> bytes:
    """16-byte digest of the parts, unambiguous about where one part ends and the next begins.

    Each part is fed to BLAKE2b as its length (8 bytes, little-endian) followed by its bytes
    (text as UTF-8). The helpers below compute exactly this, with the constant parts prepared
    once, because an import hashes five times per record.
    """
    chunks = []
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        chunks.append(_length(len(data)))
        chunks.append(data)
    return _blake2b(b"".join(chunks), digest_size=16).digest()


def prompt_hash(messages_json: str) -> bytes:
    data = messages_json.encode("utf-8")
    return _blake2b(_PROMPT_TAG + _length(len(data)) + data, digest_size=16).digest()


def response_hash(prompt_digest: bytes, text: str) -> bytes:
    data = text.encode("utf-8")
    return _blake2b(
        b"".join((_RESPONSE_TAG, _length(len(prompt_digest)), prompt_digest, _length(len(data)), data)), digest_size=16
    ).digest()


def pair_hash(prompt_digest: bytes, response_digest_1: bytes, response_digest_2: bytes) -> bytes:
    low, high = (response_digest_1, response_digest_2) if response_digest_1 <= response_digest_2 else (response_digest_2, response_digest_1)
    if len(prompt_digest) == len(low) == len(high) == 16:
        data = b"".join((_PAIR_TAG, _DIGEST_LENGTH, prompt_digest, _DIGEST_LENGTH, low, _DIGEST_LENGTH, high))
        return _blake2b(data, digest_size=16).digest()
    return content_hash(b"pair", prompt_digest, low, high)


def judgment_import_key(pair_digest: bytes, annotator: str, verdict: str) -> bytes:
    return _blake2b(_JUDGMENT_TAG + _length(len(pair_digest)) + pair_digest + _judgment_tail(annotator, verdict), digest_size=16).digest()


@functools.lru_cache(maxsize=256)
def _judgment_tail(annotator: str, verdict: str) -> bytes:
    a, v = annotator.encode("utf-8"), verdict.encode("utf-8")
    return _length(len(a)) + a + _length(len(v)) + v


# --------------------------------------------------------------------------------------------
# Schema and migrations
# --------------------------------------------------------------------------------------------

def _one_of(column: str, values: Iterable[str]) -> str:
    # `x = 'a' OR x = 'b' ...` rather than `x IN ('a', 'b', ...)`: SQLite evaluates an IN list in
    # a CHECK by building a small temporary table for every row, which cost ~0.6 s per 100,000
    # imported records.
    return " OR ".join(f"{column} = '{v}'" for v in values)


_RESPONSE_SOURCES = ("dataset", "model", "checkpoint", "human", "demo")

_SCHEMA_V1 = f"""
CREATE TABLE project (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE imports (
    id          INTEGER PRIMARY KEY,
    path        TEXT NOT NULL,
    format      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    summary     TEXT            -- JSON: counts added, duplicates, rejected rows
);
-- Uniqueness is declared as named indexes (not inline UNIQUE) so that BulkWriter can drop them
-- while it fills empty tables and build them once at the end, which is several times faster
-- than keeping random-order hash indexes up to date row by row.
CREATE TABLE prompts (
    id         INTEGER PRIMARY KEY,
    hash       BLOB NOT NULL,
    messages   TEXT NOT NULL,   -- JSON list of {{role, content}}
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX prompts_hash ON prompts(hash);
CREATE TABLE responses (
    id          INTEGER PRIMARY KEY,
    hash        BLOB NOT NULL,
    prompt_id   INTEGER NOT NULL REFERENCES prompts(id),
    text        TEXT NOT NULL,
    source      TEXT NOT NULL CHECK ({_one_of("source", _RESPONSE_SOURCES)}),
    source_name TEXT,           -- dataset file, model folder or run that wrote it
    created_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX responses_hash ON responses(hash);
CREATE INDEX responses_prompt ON responses(prompt_id);
CREATE TABLE pairs (
    id            INTEGER PRIMARY KEY,
    hash          BLOB NOT NULL,
    prompt_id     INTEGER NOT NULL REFERENCES prompts(id),
    response_a_id INTEGER NOT NULL REFERENCES responses(id),
    response_b_id INTEGER NOT NULL REFERENCES responses(id),
    origin        TEXT NOT NULL,  -- hh-rlhf, trl, oasst, arena, demo, policy-vs-reference, ...
    margin        REAL,
    meta          TEXT,           -- JSON: ids from the source, for traceability
    import_id     INTEGER REFERENCES imports(id),
    created_at    TEXT NOT NULL,
    -- Active judgments by people (not `dataset:` labels), kept by the triggers below, so that
    -- "the next pair nobody has judged" is an index look-up however many pairs are judged.
    human_verdicts INTEGER NOT NULL DEFAULT 0,
    CHECK (response_a_id != response_b_id)
);
CREATE UNIQUE INDEX pairs_hash ON pairs(hash);
CREATE INDEX pairs_prompt ON pairs(prompt_id);
CREATE INDEX pairs_origin ON pairs(origin);
CREATE INDEX pairs_unlabelled ON pairs(id) WHERE human_verdicts = 0;
CREATE TABLE judgments (
    id         INTEGER PRIMARY KEY,
    pair_id    INTEGER NOT NULL REFERENCES pairs(id),
    annotator  TEXT NOT NULL,
    verdict    TEXT NOT NULL CHECK ({_one_of("verdict", VERDICTS)}),
    shown_left TEXT CHECK (shown_left IN ('a', 'b')),  -- which response was on the left; NULL for imports
    rationale  TEXT,
    seconds    REAL,
    created_at TEXT NOT NULL,
    undone     INTEGER NOT NULL DEFAULT 0 CHECK (undone IN (0, 1)),
    undone_at  TEXT,
    import_key BLOB,            -- set for judgments that came with data: makes re-imports no-ops
    import_id  INTEGER REFERENCES imports(id)
);
CREATE UNIQUE INDEX judgments_import_key ON judgments(import_key);
CREATE INDEX judgments_pair ON judgments(pair_id, undone);
CREATE INDEX judgments_annotator ON judgments(annotator);
CREATE TRIGGER judgments_count_people AFTER INSERT ON judgments
    WHEN NEW.undone = 0 AND NEW.annotator NOT LIKE '{DATASET_ANNOTATOR_PREFIX}%'
    BEGIN UPDATE pairs SET human_verdicts = human_verdicts + 1 WHERE id = NEW.pair_id; END;
CREATE TRIGGER judgments_uncount_undone AFTER UPDATE OF undone ON judgments
    WHEN OLD.undone = 0 AND NEW.undone = 1 AND NEW.annotator NOT LIKE '{DATASET_ANNOTATOR_PREFIX}%'
    BEGIN UPDATE pairs SET human_verdicts = human_verdicts - 1 WHERE id = NEW.pair_id; END;
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,  -- reward, ppo, generate, ...
    name        TEXT NOT NULL,
    config      TEXT NOT NULL,  -- JSON of the job's config dataclass
    status      TEXT NOT NULL CHECK (status IN ('created', 'running', 'finished', 'failed', 'cancelled')),
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    error       TEXT,
    output_dir  TEXT
);
CREATE TABLE metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step   INTEGER NOT NULL,
    name   TEXT NOT NULL,
    value  REAL NOT NULL,
    time   REAL NOT NULL
);
CREATE INDEX metrics_run_name_step ON metrics(run_id, name, step);
CREATE TABLE samples (
    id       INTEGER PRIMARY KEY,
    run_id   TEXT NOT NULL REFERENCES runs(id),
    step     INTEGER NOT NULL,
    prompt   TEXT NOT NULL,
    response TEXT NOT NULL,
    score    REAL,
    time     REAL NOT NULL,
    extra    TEXT
);
CREATE INDEX samples_run_step ON samples(run_id, step);
"""


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    for statement in _split_sql(_SCHEMA_V1):
        conn.execute(statement)


def _split_sql(script: str) -> list[str]:
    """executescript() would COMMIT our transaction; run the statements one by one instead."""
    statements, current = [], []
    for line in script.splitlines():
        current.append(line)
        if sqlite3.complete_statement("\n".join(current)):
            statements.append("\n".join(current))
            current = []
    return [s for s in statements if s.strip()]


# MIGRATIONS[i] takes a database from version i to version i + 1. Append, never edit.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_0_to_1]
SCHEMA_VERSION = len(MIGRATIONS)


# --------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a verdict acknowledged to the labeller survives a power cut, not only a crash.
    conn.execute("PRAGMA synchronous = FULL")


def inspect_database(path: Path) -> tuple[int, int]:
    """(application_id, user_version) of an existing file, read without changing anything.

    Raises ProjectError for a file that is not an SQLite database or whose schema is damaged.
    """
    try:
        # immutable=1: no lock, no -wal/-shm files created; looking must not change the folder.
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise ProjectError(f"{path}: cannot be opened: {exc}") from exc
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        # Reading the schema touches the first pages, where damage makes a project unopenable.
        # (A full integrity_check would read the whole file on every open.)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        reason = "is damaged" if "malformed" in str(exc) else "is not a readable project database"
        raise ProjectError(f"{path}: {reason} ({exc}); restore it from a backup") from exc
    finally:
        conn.close()
    return app_id, version


class Store:
    """One connection to a project's database. Use one Store per thread."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path
        self.db = sqlite_utils.Database(conn)

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, *, name: str) -> "Store":
        if path.exists():
            raise ProjectError(f"{path}: already exists")
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        store = cls(conn, path)
        # Must precede WAL mode and the first table. 16 KiB pages suit rows of a few hundred bytes
        # to a few KB (conversations); measured ~15% faster bulk imports than 4 KiB.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        _configure(conn)
        with store.transaction():
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            store._migrate(0)
            conn.executemany(
                "INSERT INTO project(key, value) VALUES (?, ?)",
                [("name", name), ("created_at", now_iso())],
            )
        return store

    @classmethod
    def open(cls, path: Path) -> "Store":
        app_id, version = inspect_database(path)
        if app_id != APPLICATION_ID:
            raise ProjectError(f"{path}: is an SQLite database, but not an RLHF Workbench project")
        if version > SCHEMA_VERSION:
            raise ProjectError(
                f"{path}: was written by a newer RLHF Workbench (schema {version}; this version "
                f"reads up to {SCHEMA_VERSION}). Update the workbench to open it."
            )
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        store = cls(conn, path)
        _configure(conn)
        if version < SCHEMA_VERSION:
            with store.transaction():
                store._migrate(version)
        return store

    def _migrate(self, from_version: int) -> None:
        for version in range(from_version, SCHEMA_VERSION):
            MIGRATIONS[version](self.conn)
        self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self, *, foreign_keys: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (a cancel included).

        `foreign_keys=False` is for BulkWriter, which assigns every id it references itself;
        checking each reference cost ~10% of a large import. (SQLite only lets the setting
        change outside a transaction, hence here.)
        """
        if not foreign_keys:
            self.conn.execute("PRAGMA foreign_keys = OFF")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                try:
                    self.conn.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    self.conn.execute("ROLLBACK")
                    raise WorkbenchError(f"{self.path}: could not save ({exc}); nothing was changed") from exc
        finally:
            if not foreign_keys:
                self.conn.execute("PRAGMA foreign_keys = ON")

    # -- project metadata ----------------------------------------------------------------------

    def project_info(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM project"))

    # -- counts and statistics -----------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        row = self.conn.execute(
            """SELECT (SELECT count(*) FROM prompts), (SELECT count(*) FROM responses),
                      (SELECT count(*) FROM pairs), (SELECT count(*) FROM judgments WHERE undone = 0),
                      (SELECT count(*) FROM runs)"""
        ).fetchone()
        return dict(zip(("prompts", "responses", "pairs", "judgments", "runs"), row))

    def pairs_by_origin(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT origin, count(*) FROM pairs GROUP BY origin ORDER BY origin"))

    def judgments_by_annotator_and_verdict(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for annotator, verdict, n in self.conn.execute(
            """SELECT annotator, verdict, count(*) FROM judgments WHERE undone = 0
               GROUP BY annotator, verdict ORDER BY annotator, verdict"""
        ):
            result.setdefault(annotator, {})[verdict] = n
        return result

    def unlabelled_pair_count(self) -> int:
        """Pairs that no person has judged yet (labels that came with data do not count)."""
        return self.conn.execute("SELECT count(*) FROM pairs WHERE human_verdicts = 0").fetchone()[0]

    # -- labelling -----------------------------------------------------------------------------

    def next_unlabelled_pair_id(self, after_id: int = 0) -> int | None:
        """The next pair (in id order) that no person has judged yet, or None."""
        row = self.conn.execute(
            "SELECT id FROM pairs WHERE human_verdicts = 0 AND id > ? ORDER BY id LIMIT 1", (after_id,)
        ).fetchone()
        return row[0] if row else None

    def add_judgment(
        self,
        pair_id: int,
        annotator: str,
        verdict: str,
        *,
        shown_left: str | None = None,
        rationale: str | None = None,
        seconds: float | None = None,
    ) -> int:
        """Record a verdict and commit it before returning (it is acknowledged once this returns)."""
        if verdict not in VERDICTS:
            raise WorkbenchError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        with self.transaction():
            cur = self.conn.execute(
                """INSERT INTO judgments(pair_id, annotator, verdict, shown_left, rationale, seconds, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (pair_id, annotator, verdict, shown_left, rationale, seconds, now_iso()),
            )
        return cur.lastrowid

    def undo_judgment(self, judgment_id: int) -> None:
        """Marks a verdict undone. Nothing is deleted, so history and agreement stay computable."""
        with self.transaction():
            self.conn.execute(
                "UPDATE judgments SET undone = 1, undone_at = ? WHERE id = ? AND undone = 0",
                (now_iso(), judgment_id),
            )

    # -- reading pairs -------------------------------------------------------------------------

    _PAIR_SELECT = """
        SELECT p.id, pr.messages, ra.text, rb.text, p.origin, p.margin
        FROM pairs p
        JOIN prompts pr ON pr.id = p.prompt_id
        JOIN responses ra ON ra.id = p.response_a_id
        JOIN responses rb ON rb.id = p.response_b_id
    """

    def pair(self, pair_id: int) -> ExportPair | None:
        row = self.conn.execute(self._PAIR_SELECT + " WHERE p.id = ?", (pair_id,)).fetchone()
        if row is None:
            return None
        pair = _export_pair(row)
        pair.judgments = self.active_judgments(pair_id)
        return pair

    def active_judgments(self, pair_id: int) -> list[tuple[str, str]]:
        return list(
            self.conn.execute(
                "SELECT annotator, verdict FROM judgments WHERE pair_id = ? AND undone = 0 ORDER BY id",
                (pair_id,),
            )
        )

    def pair_ids(self, *, origin: str | None = None) -> list[int]:
        if origin is None:
            return [r[0] for r in self.conn.execute("SELECT id FROM pairs ORDER BY id")]
        return [r[0] for r in self.conn.execute("SELECT id FROM pairs WHERE origin = ? ORDER BY id", (origin,))]

    def pairs_page(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """The next `limit` pairs with id > after_id, for a table view: short texts and the
        active verdicts as (annotator, verdict) pairs.

        Pages by id rather than OFFSET: SQLite walks an offset row by row, which made the last
        page of 100,000 pairs ~50x slower than the first.
        """
        rows = self.conn.execute(
            """SELECT p.id, p.origin, pr.messages, substr(ra.text, 1, 300), substr(rb.text, 1, 300)
               FROM pairs p
               JOIN prompts pr ON pr.id = p.prompt_id
               JOIN responses ra ON ra.id = p.response_a_id
               JOIN responses rb ON rb.id = p.response_b_id
               WHERE p.id > ? ORDER BY p.id LIMIT ?""",
            (after_id, limit),
        ).fetchall()
        judgments: dict[int, list[tuple[str, str]]] = {}
        if rows:
            for pair_id, annotator, verdict in self.conn.execute(
                """SELECT pair_id, annotator, verdict FROM judgments
                   WHERE pair_id BETWEEN ? AND ? AND undone = 0 ORDER BY id""",
                (rows[0][0], rows[-1][0]),
            ):
                judgments.setdefault(pair_id, []).append((annotator, verdict))
        return [
            {
                "id": pid,
                "origin": origin,
                "prompt": conversation_from_json(messages),
                "response_a": a,
                "response_b": b,
                "judgments": judgments.get(pid, []),
            }
            for pid, origin, messages, a, b in rows
        ]

    def prompts_page(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """The next `limit` prompts with id > after_id, with how many pairs each has."""
        rows = self.conn.execute(
            """SELECT pr.id, pr.messages, (SELECT count(*) FROM pairs p WHERE p.prompt_id = pr.id)
               FROM prompts pr WHERE pr.id > ? ORDER BY pr.id LIMIT ?""",
            (after_id, limit),
        ).fetchall()
        return [{"id": i, "prompt": conversation_from_json(m), "pairs": n} for i, m, n in rows]

    def iter_export_pairs(self, *, annotators: Sequence[str] | None = None) -> Iterator[ExportPair]:
        """Every pair with its active judgments (optionally only those of some annotators).

        The verdict each exporter writes is settled by `settle_verdict`, not here, so that every
        format applies the same rule.
        """
        judgments: dict[int, list[tuple[str, str]]] = {}
        sql = "SELECT pair_id, annotator, verdict FROM judgments WHERE undone = 0"
        params: list[Any] = []
        if annotators is not None:
            sql += f" AND annotator IN ({', '.join('?' * len(annotators))})"
            params = list(annotators)
        for pair_id, annotator, verdict in self.conn.execute(sql + " ORDER BY id", params):
            judgments.setdefault(pair_id, []).append((annotator, verdict))
        for row in self.conn.execute(self._PAIR_SELECT + " ORDER BY p.id"):
            pair = _export_pair(row)
            pair.judgments = judgments.get(pair.pair_id, [])
            pair.verdict, pair.annotator = settle_verdict(pair.judgments)
            yield pair

    # -- runs, metrics and samples -------------------------------------------------------------

    def create_run(self, run_id: str, *, kind: str, name: str, config: dict[str, Any], output_dir: str) -> None:
        with self.transaction():
            self.conn.execute(
                """INSERT INTO runs(id, kind, name, config, status, created_at, output_dir)
                   VALUES (?, ?, ?, ?, 'created', ?, ?)""",
                (run_id, kind, name, json.dumps(config), now_iso(), output_dir),
            )

    def set_run_status(self, run_id: str, status: str, *, error: str | None = None) -> None:
        column = {"running": "started_at"}.get(status, "finished_at")
        with self.transaction():
            self.conn.execute(
                f"UPDATE runs SET status = ?, error = ?, {column} = ? WHERE id = ?",
                (status, error, now_iso(), run_id),
            )

    def runs(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM runs ORDER BY created_at"))

    def add_metrics(self, run_id: str, step: int, values: dict[str, float]) -> None:
        t = time.time()
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO metrics(run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                [(run_id, step, name, float(value), t) for name, value in values.items()],
            )

    def metric_series(self, run_id: str, name: str) -> list[tuple[int, float]]:
        return list(
            self.conn.execute(
                "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? ORDER BY step", (run_id, name)
            )
        )

    def add_samples(self, run_id: str, step: int, samples: Iterable[tuple[str, str, float | None]]) -> None:
        t = time.time()
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO samples(run_id, step, prompt, response, score, time) VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, step, p, r, s, t) for p, r, s in samples],
            )


def settle_verdict(judgments: Sequence[tuple[str, str]]) -> tuple[str | None, str | None]:
    """The verdict a pair carries into exports and training, and who gave it.

    Skips say nothing about the pair and are ignored. One judgment: its verdict and annotator.
    Several: the strict majority verdict, attributed to "consensus"; no strict majority means
    people disagree and the pair has no settled verdict (None).
    """
    votes = [(a, v) for a, v in judgments if v != "skip"]
    if not votes:
        return None, None
    if len(votes) == 1:
        return votes[0][1], votes[0][0]
    tally: dict[str, int] = {}
    for _, v in votes:
        tally[v] = tally.get(v, 0) + 1
    verdict, n = max(tally.items(), key=lambda kv: kv[1])
    if n * 2 <= len(votes):
        return None, None
    annotators = {a for a, v in votes if v == verdict}
    return verdict, annotators.pop() if len(annotators) == 1 else "consensus"


def _export_pair(row: tuple) -> ExportPair:
    pair_id, messages, a, b, origin, margin = row
    return ExportPair(
        pair_id=pair_id,
        prompt=conversation_from_json(messages),
        response_a=a,
        response_b=b,
        origin=origin,
        margin=margin,
    )


# --------------------------------------------------------------------------------------------
# Bulk writing for imports
# --------------------------------------------------------------------------------------------


@dataclass
class BulkCounts:
    prompts_added: int = 0
    responses_added: int = 0
    pairs_added: int = 0
    pairs_existing: int = 0
    judgments_added: int = 0
    judgments_existing: int = 0


class BulkWriter:
    """Adds many prompts, responses, pairs and judgments inside the caller's transaction.

    It works in two halves. The first is pure (no database): `prepare_pair` and `prepare_prompt`
    build the canonical prompt JSON and compute every content hash, and return a plain tuple, a
    *prepared item*. The second, `write_prepared`, takes a list of prepared items and does what
    needs the database: it resolves hashes to ids, assigns the new ids and inserts the rows.
    `add_pair` and `add_prompt` do both. A large import prepares its items in a second process
    (core/import_pipeline.py) and hands them to `write_prepared`: one hashing code, one writing
    code, so both ways store identical rows. Items are written in the order given and ids are
    assigned in that order, so the result does not depend on how items are split into batches.

    Rows are buffered and resolved against the database a batch at a time: one `hash IN (...)`
    query per few hundred rows instead of one SELECT per row, and ids assigned here so that the
    inserts are plain executemany calls. A table that was empty when the writer started needs no
    look-ups at all: every row in it was written by this writer and is in its cache (the caller's
    transaction keeps other connections out). When all of them were empty (a first import), the
    writer also sets their unique hash indexes aside and builds them once in `flush()`: sorting
    100,000 keys once is much cheaper than keeping random-order hash indexes current row by row.
    (The other indexes stay: their keys arrive in order, ids and a handful of origins, so keeping
    them current costs little, and in a two-process import that happens while the other process
    is still reading rather than at the end.) This is what keeps a 100,000-record import within a
    small multiple of the time it takes merely to parse the file; bench/import_bench.py measures it.

    Call `flush()` once at the end: it writes what is buffered and restores the indexes. Use inside
    `store.transaction(foreign_keys=False)`: every id the writer references, it assigned itself.
    One writer at a time per transaction: ids are assigned here, from the tables' maxima at start.
    """

    _TABLES = ("prompts", "responses", "pairs", "judgments")

    BATCH = 4096
    # The page cache (KiB) the connection gets for an import: the hash indexes are written in
    # random order, and with SQLite's default 2 MB cache their pages are evicted and re-read over
    # and over. A limit, not an allocation; it stays set on the connection (pages are freed when
    # the connection closes).
    CACHE_KIB = 64 * 1024

    def __init__(self, store: Store, *, import_id: int | None, source: str, source_name: str | None):
        self.conn = store.conn
        if not self.conn.in_transaction:
            raise WorkbenchError("internal: BulkWriter must be used inside store.transaction()")
        self.import_id = import_id
        self.source = source
        self.source_name = source_name
        self.created_at = now_iso()
        self.counts = BulkCounts()
        self._pending: list[tuple] = []  # prepared items not yet written
        self._prompt_ids: dict[bytes, int] = {}
        self._response_ids: dict[bytes, int] = {}
        self._pair_ids: dict[bytes, tuple[int, bytes]] = {}  # hash -> (id, digest of stored response A)
        self._next_id = {
            table: (self.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0] + 1)
            for table in ("prompts", "responses", "pairs")
        }
        # Tables that were empty at the start: the caches above hold every row, no look-ups needed.
        self._complete = {table: next_id == 1 for table, next_id in self._next_id.items()}
        self._fresh = all(self._complete.values())  # no pairs means no judgments either (foreign key)
        self._set_aside_indexes: list[str] = []  # CREATE INDEX statements to run in flush()
        # While the judgments' unique index is set aside, duplicates are caught here instead.
        self._judgment_keys: set[bytes] = set()
        cache = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        cache_kib = -cache if cache < 0 else cache * self.conn.execute("PRAGMA page_size").fetchone()[0] // 1024
        if cache_kib < self.CACHE_KIB:
            self.conn.execute(f"PRAGMA cache_size = -{self.CACHE_KIB}")

    # -- the pure half: canonical JSON and content hashes, no database ----------------------------
    #
    # A prepared pair is the tuple
    #   (prompt digest, prompt JSON, response A digest, response A, response B digest, response B,
    #    pair digest, origin, margin, meta JSON or None, verdict or None, annotator or None,
    #    judgment import key for the verdict as given, or None)
    # and a prepared prompt the tuple (prompt digest, prompt JSON): both start with the prompt.
    # Plain tuples of str, bytes, float and None, so that they cross a process boundary cheaply.
    # Prepared with `hashed=False`, the five digests are None, and `write_prepared` computes them
    # (with `hash_items`, the same code): a two-process import hands the hashing to whichever
    # process has time for it.

    @staticmethod
    def prepare_pair(
        prompt: Conversation,
        response_a: str,
        response_b: str,
        *,
        origin: str,
        margin: float | None = None,
        meta: dict[str, Any] | None = None,
        verdict: str | None = None,
        annotator: str | None = None,
        hashed: bool = True,
    ) -> tuple:
        item = (
            None, conversation_to_json(prompt), None, response_a, None, response_b, None, origin, margin,
            json.dumps(meta, ensure_ascii=False) if meta else None,
            verdict, annotator, None,
        )
        return BulkWriter._hash_pair(item) if hashed else item

    @staticmethod
    def prepare_prompt(prompt: Conversation, *, hashed: bool = True) -> tuple:
        messages = conversation_to_json(prompt)
        return (prompt_hash(messages) if hashed else None, messages)

    @staticmethod
    def hash_items(items: list[tuple]) -> list[tuple]:
        """The items with the digests of those prepared with `hashed=False` filled in."""
        return [
            item if item[0] is not None
            else BulkWriter._hash_pair(item) if len(item) > 2
            else (prompt_hash(item[1]), item[1])
            for item in items
        ]

    @staticmethod
    def _hash_pair(item: tuple) -> tuple:
        """A prepared pair with its five digests computed from its texts."""
        p = prompt_hash(item[1])
        a = response_hash(p, item[3])
        b = response_hash(p, item[5])
        pair = pair_hash(p, a, b)
        verdict = item[10]
        return (
            p, item[1], a, item[3], b, item[5], pair, item[7], item[8], item[9], verdict, item[11],
            judgment_import_key(pair, item[11] or "", verdict) if verdict is not None else None,
        )

    # -- both halves -----------------------------------------------------------------------------

    def add_pair(
        self,
        prompt: Conversation,
        response_a: str,
        response_b: str,
        *,
        origin: str,
        margin: float | None = None,
        meta: dict[str, Any] | None = None,
        verdict: str | None = None,
        annotator: str | None = None,
    ) -> None:
        self._pending.append(
            self.prepare_pair(
                prompt, response_a, response_b,
                origin=origin, margin=margin, meta=meta, verdict=verdict, annotator=annotator,
            )
        )
        if len(self._pending) >= self.BATCH:
            self._write_batch()

    def add_prompt(self, prompt: Conversation) -> None:
        self._pending.append(self.prepare_prompt(prompt))
        if len(self._pending) >= self.BATCH:
            self._write_batch()

    def flush(self) -> None:
        """Write everything added so far and rebuild the indexes set aside (see the class doc)."""
        self._write_batch()
        for create_index in self._set_aside_indexes:
            self.conn.execute(create_index)
        self._set_aside_indexes = []

    def _write_batch(self) -> None:
        pending, self._pending = self._pending, []
        self.write_prepared(pending)

    def _set_indexes_aside(self) -> None:
        tables = ", ".join(f"'{t}'" for t in self._TABLES)
        # Read from the database rather than listed here, so that a later migration's indexes are
        # restored exactly as that migration made them. (sql IS NULL: a primary key's own index.)
        # Only the unique ones: on hashes, written in random order (see the class doc).
        for name, sql in self.conn.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({tables})"
            " AND sql LIKE 'CREATE UNIQUE INDEX%'"
        ).fetchall():
            self.conn.execute(f'DROP INDEX "{name}"')
            self._set_aside_indexes.append(sql)

    # -- the database half -----------------------------------------------------------------------

    # Rows per INSERT statement. One statement inserting many rows costs SQLite and the sqlite3
    # module much less per row than one row per statement (~40% less for an import's rows).
    ROWS_PER_INSERT = 64

    def write_prepared(self, items: list[tuple]) -> None:
        """Write prepared items (see `prepare_pair`), in order. Call `flush()` once at the end."""
        if not items:
            return
        if self._fresh and not self._set_aside_indexes:
            self._set_indexes_aside()
        if any(item[0] is None for item in items):
            items = self.hash_items(items)
        counts = self.counts
        created_at = self.created_at

        # Prompts: every item's own (prompt lists) or its pair's, new ones in order of appearance.
        prompt_ids = self._prompt_ids
        self._resolve("prompts", prompt_ids, items)
        values: list = []
        add = values.extend
        next_id = first_id = self._next_id["prompts"]
        for item in items:
            digest = item[0]
            if digest not in prompt_ids:
                prompt_ids[digest] = next_id
                add((next_id, digest, item[1]))
                next_id += 1
        if values:
            self._next_id["prompts"] = next_id
            self._insert("prompts", ("id", "hash", "messages"), (("created_at", created_at),), values)
            counts.prompts_added += next_id - first_id
        pairs = [item for item in items if len(item) > 2]
        if not pairs:
            return

        # Responses: A and B of each pair, in order.
        response_ids = self._response_ids
        self._resolve("responses", response_ids, pairs, 2, 4)
        values = []
        add = values.extend
        next_id = first_id = self._next_id["responses"]
        for item in pairs:
            digest = item[2]
            if digest not in response_ids:
                response_ids[digest] = next_id
                add((next_id, digest, prompt_ids[item[0]], item[3]))
                next_id += 1
            digest = item[4]
            if digest not in response_ids:
                response_ids[digest] = next_id
                add((next_id, digest, prompt_ids[item[0]], item[5]))
                next_id += 1
        if values:
            self._next_id["responses"] = next_id
            self._insert(
                "responses",
                ("id", "hash", "prompt_id", "text"),
                (("source", self.source), ("source_name", self.source_name), ("created_at", created_at)),
                values,
            )
            counts.responses_added += next_id - first_id

        # Pairs, and the verdicts that came with them.
        self._lookup_pairs(pairs)
        pair_ids = self._pair_ids
        values = []
        add = values.extend
        judgments: list = []
        judge = judgments.extend
        next_id = first_id = self._next_id["pairs"]
        for item in pairs:
            digest = item[6]
            known = pair_ids.get(digest)
            if known is None:
                pair_id = next_id
                next_id += 1
                a_digest = item[2]
                pair_ids[digest] = (pair_id, a_digest)
                add((pair_id, digest, prompt_ids[item[0]], response_ids[a_digest], response_ids[item[4]], item[7], item[8], item[9]))
                if item[10] is not None:
                    judge((pair_id, item[11], item[10], item[12]))
            else:
                pair_id, stored_a = known
                counts.pairs_existing += 1
                verdict = item[10]
                if verdict is not None:
                    key = item[12]
                    if stored_a != item[2]:
                        # The verdict was given relative to this record's order; store it relative to the pair's.
                        verdict = SWAPPED_VERDICT[verdict]
                        key = judgment_import_key(digest, item[11] or "", verdict)
                    judge((pair_id, item[11], verdict, key))
        if values:
            self._next_id["pairs"] = next_id
            self._insert(
                "pairs",
                ("id", "hash", "prompt_id", "response_a_id", "response_b_id", "origin", "margin", "meta"),
                (("import_id", self.import_id), ("created_at", created_at)),
                values,
            )
            counts.pairs_added += next_id - first_id
        if not judgments:
            return
        n = len(judgments) // 4
        constants = (("created_at", created_at), ("import_id", self.import_id))
        columns = ("pair_id", "annotator", "verdict", "import_key")
        if self._set_aside_indexes:
            # While the unique index is set aside, duplicate keys are caught here instead.
            keys = self._judgment_keys
            unique: list = []
            for i in range(3, len(judgments), 4):
                if judgments[i] not in keys:
                    keys.add(judgments[i])
                    unique.extend(judgments[i - 3:i + 1])
            added = len(unique) // 4
            self._insert("judgments", columns, constants, unique)
        else:
            added = self._insert("judgments", columns, constants, judgments, or_ignore=True)
        counts.judgments_added += added
        counts.judgments_existing += n - added

    def _insert(
        self,
        table: str,
        columns: tuple[str, ...],
        constants: tuple[tuple[str, Any], ...],
        values: list,
        *,
        or_ignore: bool = False,
    ) -> int:
        """Insert rows whose values lie one after another in `values` (len(columns) per row), with
        the same `constants` in every row, ROWS_PER_INSERT rows per statement. Returns the number
        of rows inserted (rows that OR IGNORE skipped not counted; triggers' changes neither)."""
        width = len(columns)
        per = self.ROWS_PER_INSERT
        step = width * per
        whole = len(values) // step * step
        fixed = [value for _, value in constants]  # bound once per statement, as ?1, ?2, ...
        added = 0
        if whole:
            added += self.conn.executemany(
                self._insert_sql(table, columns, tuple(c for c, _ in constants), per, or_ignore),
                [fixed + values[i:i + step] for i in range(0, whole, step)],
            ).rowcount
        if whole < len(values):
            added += self.conn.executemany(
                self._insert_sql(table, columns, tuple(c for c, _ in constants), 1, or_ignore),
                [fixed + values[i:i + width] for i in range(whole, len(values), width)],
            ).rowcount
        return added

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _insert_sql(table: str, columns: tuple[str, ...], constants: tuple[str, ...], rows: int, or_ignore: bool) -> str:
        # INSERT INTO t(a, b, c) VALUES (?3, ?4, ?1), (?5, ?6, ?1), ...: numbered parameters, so that
        # each constant is bound once however many rows the statement inserts.
        fixed = [f"?{i + 1}" for i in range(len(constants))]
        width = len(columns)
        groups = []
        for r in range(rows):
            first = len(constants) + 1 + r * width
            groups.append("(" + ", ".join([f"?{first + i}" for i in range(width)] + fixed) + ")")
        verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
        return f"{verb} INTO {table}({', '.join(columns + constants)}) VALUES {', '.join(groups)}"

    def _resolve(self, table: str, cache: dict[bytes, int], items: list[tuple], *positions: int) -> None:
        """Put the ids of rows already in `table` with the items' hashes (at `positions`) into `cache`."""
        if self._complete[table]:
            return
        unknown = list({item[i] for item in items for i in positions or (0,)} - cache.keys())
        for start in range(0, len(unknown), _IN_CHUNK):
            chunk = unknown[start:start + _IN_CHUNK]
            cache.update(
                self.conn.execute(f"SELECT hash, id FROM {table} WHERE hash IN ({', '.join('?' * len(chunk))})", chunk)
            )

    def _lookup_pairs(self, items: list[tuple]) -> None:
        if self._complete["pairs"]:
            return
        unknown = list({item[6] for item in items} - self._pair_ids.keys())
        for start in range(0, len(unknown), _IN_CHUNK):
            chunk = unknown[start:start + _IN_CHUNK]
            for h, pair_id, a_digest in self.conn.execute(
                f"""SELECT p.hash, p.id, r.hash FROM pairs p JOIN responses r ON r.id = p.response_a_id
                    WHERE p.hash IN ({', '.join('?' * len(chunk))})""",
                chunk,
            ):
                self._pair_ids[h] = (pair_id, a_digest)
