"""The project database: its schema, its migrations, and every SQL statement the workbench runs.

Split by what the statements are about: `schema` (tables and migrations), `connection` (opening,
transactions), `pairs` (reading pairs and prompts), `labeling` (verdicts and queues), `model_pairs`
(pairs models made: compare with reference, generate), `runs`
(runs, metrics, samples), `evaluations` (held-out prompts, evaluations, policies judged by people). `Store` is all of them on one connection.

Every import is idempotent through content hashes (computed in bulk.py, kept unique here).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import DiskFull, ProjectError, ReadOnlyProject, WorkbenchError
from .connection import (
    APPLICATION_ID,
    BUSY_TIMEOUT_MS,
    PAGE_SIZE,
    VERDICT_WAIT_S,
    configure,
    inspect_database,
    is_busy,
    now_iso,
    storage_error,
)
from .evaluations import POLICY_VS_POLICY, EvaluationQueries
from .labeling import LabelQueries
from .model_pairs import ModelPairQueries
from .pairs import PairQueries, settle_verdict
from .runs import RunQueries
from .schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT_MS",
    "POLICY_VS_POLICY",
    "SCHEMA_VERSION",
    "VERDICT_WAIT_S",
    "is_busy",
    "Store",
    "inspect_database",
    "now_iso",
    "settle_verdict",
    "storage_error",
]


class Store(PairQueries, LabelQueries, ModelPairQueries, RunQueries, EvaluationQueries):
    """One connection to a project's database. Use one Store per thread."""

    @classmethod
    def create(cls, path: Path, *, name: str) -> "Store":
        if path.exists():
            raise ProjectError(f"{path}: already exists")
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        store = cls(conn, path)
        try:
            # Must precede WAL mode and the first table. 16 KiB pages suit rows of a few hundred bytes
            # to a few KB (conversations); measured ~15% faster bulk imports than 4 KiB.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            configure(conn, path)
            with store.transaction():
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                store._migrate(0)
                conn.executemany(
                    "INSERT INTO project(key, value) VALUES (?, ?)",
                    [("name", name), ("created_at", now_iso())],
                )
        except BaseException:
            conn.close()
            raise
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
        try:
            if _read_only_place(path):
                raise ReadOnlyProject(path)
            store = cls._open_writable(path)
        except (ReadOnlyProject, DiskFull) as refusal:
            # Reading needs no room and no right to write: `stats`, `export`, the app all work.
            store = cls._open_read_only(path, refusal)
        if version < SCHEMA_VERSION:
            if store.read_only:
                store.close()
                raise ProjectError(
                    f"{path.parent}: was made by an older RLHF Workbench and must be upgraded before it is "
                    f"opened, but it is read-only; copy it to a folder you can write to"
                )
            with store.transaction():
                store._migrate(version)
        return store

    @classmethod
    def _open_writable(cls, path: Path) -> "Store":
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ProjectError(f"{path}: cannot be opened ({exc})") from exc
        try:
            configure(conn, path)
        except WorkbenchError:
            conn.close()
            raise
        return cls(conn, path)

    @classmethod
    def _open_read_only(cls, path: Path, refusal: WorkbenchError) -> "Store":
        """For a project on a read-only disk, in a folder this user cannot write, or on a disk too
        full to open it for writing: reading works, every transaction raises `refusal`."""
        uri = path.resolve().as_uri()
        # mode=ro needs the -shm file beside a WAL database, or the right to make one; where
        # neither is there, nobody can be writing it either, so it is read as immutable.
        for query in ("mode=ro", "mode=ro&immutable=1"):
            conn = sqlite3.connect(f"{uri}?{query}", uri=True, isolation_level=None, check_same_thread=False)
            try:
                configure(conn, path, read_only=True)
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except (sqlite3.Error, WorkbenchError) as exc:
                conn.close()
                last = exc
                continue
            return cls(conn, path, refusal=refusal)
        raise ProjectError(f"{path}: cannot be opened, even for reading ({last})") from last

    def _migrate(self, from_version: int) -> None:
        for version in range(from_version, SCHEMA_VERSION):
            MIGRATIONS[version](self.conn)
        self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- project metadata ----------------------------------------------------------------------

    def project_info(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM project"))


def _read_only_place(db_path: Path) -> bool:
    """Whether SQLite could not write here: a WAL database needs its folder (for -wal and -shm)
    and the file itself. os.access also says no for a read-only mount, even to root."""
    return not (os.access(db_path, os.W_OK) and os.access(db_path.parent, os.W_OK))
