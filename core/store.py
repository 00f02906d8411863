"""The project database: its schema, its migrations, and every SQL statement the workbench runs.

One SQLite file per project, in WAL mode (readers never block the labeller's writes), with
foreign keys on and a busy timeout so that a training child process and the GUI can share it.
The schema is versioned with `PRAGMA user_version` and migrated forward one step at a time; a
file whose version is newer than this code knows is refused rather than guessed at.

Every import is idempotent through content hashes (computed in bulk.py, kept unique here).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import ProjectError, WorkbenchError
from .records import (
    DATASET_ANNOTATOR_PREFIX,
    VERDICTS,
    ExportPair,
    conversation_from_json,
)

# "RLHW" in the SQLite header, so that a stray database is never mistaken for a project.
APPLICATION_ID = 0x524C4857
BUSY_TIMEOUT_MS = 10_000
PAGE_SIZE = 16_384


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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
