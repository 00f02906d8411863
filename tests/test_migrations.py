"""Schema migrations applied to projects that older versions of the workbench wrote.

(Version 2 -> 3, pair scores, is checked in tests/test_label_queues.py.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.project import DB_NAME, Project
from rlhf_workbench.core.store import APPLICATION_ID, SCHEMA_VERSION, Store
from rlhf_workbench.core.store.connection import configure
from rlhf_workbench.core.store.schema import MIGRATIONS

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless" / "pairs.jsonl"

_OLD_HASH_INDEXES = {"responses_hash", "responses_prompt", "pairs_hash", "pairs_prompt", "judgments_import_key"}
_NEW_HASH_INDEXES = {"responses_prompt_hash", "pairs_prompt_hash", "judgments_pair_import_key"}


def _indexes(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}


def _old_project(folder: Path, version: int) -> sqlite3.Connection:
    """A project database exactly as a workbench of schema `version` created it (open, empty)."""
    folder.mkdir()
    conn = sqlite3.connect(folder / DB_NAME, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    configure(conn)
    conn.execute("BEGIN")
    for migrate in MIGRATIONS[:version]:
        migrate(conn)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("INSERT INTO project(key, value) VALUES ('name', 'old'), ('created_at', '2024-01-01')")
    conn.execute("COMMIT")
    return conn


@pytest.mark.skipif(not HH.is_file(), reason="the shared sample data is missing")
def test_a_version_3_project_gets_prompt_led_hash_indexes_and_a_re_import_adds_nothing(tmp_path):
    folder = tmp_path / "old"
    conn = _old_project(folder, 3)
    assert _indexes(conn) >= _OLD_HASH_INDEXES
    # Its data, written through the store on that schema (the hashes are those every version
    # computes: tests/test_store_bulk.py pins them), and a person's verdict.
    old = Store(conn, folder / DB_NAME)
    first = import_file(old, HH, pipeline=False)
    old.add_judgment(1, "ada", "b")
    before = {table: conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in ("prompts", "responses", "pairs", "judgments")}
    conn.close()
    assert first.pairs_added == 1812

    with Project.open(folder) as project:
        conn = project.store.conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = _indexes(conn)
        assert indexes >= _NEW_HASH_INDEXES and not (_OLD_HASH_INDEXES & indexes)
        after = {table: conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in before}
        assert after == before, "the migration changes indexes only"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # The same file again: every prompt, response, pair and verdict is found through the new indexes.
        again = import_file(project, HH, pipeline=False)
        assert (again.prompts_added, again.responses_added, again.pairs_added, again.judgments_added) == (0, 0, 0, 0)
        assert again.pairs_existing == 1812 and again.judgments_existing == 1812
        assert project.store.next_unlabelled_pair_id() == 2  # pair 1 has the person's verdict
        # The uniqueness the old indexes kept holds: a duplicate response hash is refused.
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute(
                "INSERT INTO responses(hash, prompt_id, text, source, created_at)"
                " SELECT hash, prompt_id, 'x', source, created_at FROM responses WHERE id = 1"
            )
    with Project.open(folder) as project:  # opening again migrates nothing
        assert _indexes(project.store.conn) >= _NEW_HASH_INDEXES


def test_a_version_3_project_with_nothing_in_it_migrates_too(tmp_path):
    _old_project(tmp_path / "empty", 3).close()
    with Project.open(tmp_path / "empty") as project:
        assert project.store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert _indexes(project.store.conn) >= _NEW_HASH_INDEXES
