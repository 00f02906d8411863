"""The schema and its migrations.

The schema is versioned with `PRAGMA user_version` and migrated forward one step at a time; a
file whose version is newer than this code knows is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

from ..records import DATASET_ANNOTATOR_PREFIX, VERDICTS


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


def _add_run_summaries_and_checkpoints(conn: sqlite3.Connection) -> None:
    # The summary a job returns (JSON), and every complete checkpoint a run reported: a resumed
    # run continues from its last one and drops the metrics logged after it.
    conn.execute("ALTER TABLE runs ADD COLUMN summary TEXT")
    conn.execute(
        """CREATE TABLE checkpoints (
               run_id TEXT NOT NULL REFERENCES runs(id),
               step   INTEGER NOT NULL,
               path   TEXT NOT NULL,
               best   INTEGER NOT NULL DEFAULT 0 CHECK (best IN (0, 1)),
               time   REAL NOT NULL
           )"""
    )
    conn.execute("CREATE INDEX checkpoints_run_step ON checkpoints(run_id, step)")


def _add_pair_scores(conn: sqlite3.Connection) -> None:
    # What a reward model thought of a pair before people judged it: p = sigmoid(r_a - r_b), its
    # probability that response A is the better one. Keyed by run, so a newer model's scores sit
    # beside an older one's rather than overwriting them. The expression index is the "least sure"
    # queue's walk: |p - 0.5| ascending within one run, without sorting every scored pair per look-up.
    conn.execute(
        """CREATE TABLE pair_scores (
               pair_id   INTEGER NOT NULL REFERENCES pairs(id),
               run_id    TEXT NOT NULL REFERENCES runs(id),
               p         REAL NOT NULL CHECK (p >= 0 AND p <= 1),
               scored_at TEXT NOT NULL,
               PRIMARY KEY (pair_id, run_id)
           )"""
    )
    conn.execute("CREATE INDEX pair_scores_unsure ON pair_scores(run_id, abs(p - 0.5), pair_id)")


def _lead_hash_indexes_with_the_parent_id(conn: sqlite3.Connection) -> None:
    # Responses, pairs and imported judgments stay unique by content hash, but through indexes
    # that lead with the id of the row they belong to: (prompt_id, hash) for responses and pairs
    # (whose hashes include their prompt's), (pair_id, import_key) for judgments (whose import
    # keys include their pair's). Unique on those exactly where unique on the hash alone, since a
    # hash determines its prompt or pair. What changes is the order of the keys: rows added
    # together have growing parent ids, so these indexes are appended to, cheaply, while a large
    # import writes, where indexes on the hash alone (random order) had to be dropped and rebuilt
    # after the last row (0.3 s at 100,000 records, with only one process working). They also
    # serve the look-ups by prompt (`pairs_prompt` and `responses_prompt` did) and BulkWriter's
    # look-ups of what a re-import already has: all of a prompt's responses and pairs at once.
    for statement in (
        "DROP INDEX responses_hash",
        "DROP INDEX responses_prompt",
        "CREATE UNIQUE INDEX responses_prompt_hash ON responses(prompt_id, hash)",
        "DROP INDEX pairs_hash",
        "DROP INDEX pairs_prompt",
        "CREATE UNIQUE INDEX pairs_prompt_hash ON pairs(prompt_id, hash)",
        "DROP INDEX judgments_import_key",
        "CREATE UNIQUE INDEX judgments_pair_import_key ON judgments(pair_id, import_key) WHERE import_key IS NOT NULL",
    ):
        conn.execute(statement)


def _add_heldout_prompts_and_evaluations(conn: sqlite3.Connection) -> None:
    # Prompts kept out of every run's training, for Evaluate to sample on (core/evaluation.py), with
    # when each was held out: a run started before that may have trained on it, and Evaluate says so.
    # An evaluation's figures and responses are one JSON document: read whole, never queried inside.
    conn.execute(
        """CREATE TABLE heldout_prompts (
               prompt_id INTEGER PRIMARY KEY REFERENCES prompts(id),
               held_at   TEXT NOT NULL
           )"""
    )
    conn.execute(
        """CREATE TABLE evaluations (
               id         TEXT PRIMARY KEY,
               created_at TEXT NOT NULL,
               config     TEXT NOT NULL,
               results    TEXT NOT NULL
           )"""
    )


# MIGRATIONS[i] takes a database from version i to version i + 1. Append, never edit.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_0_to_1,
    _add_run_summaries_and_checkpoints,
    _add_pair_scores,
    _lead_hash_indexes_with_the_parent_id,
    _add_heldout_prompts_and_evaluations,
]
SCHEMA_VERSION = len(MIGRATIONS)
