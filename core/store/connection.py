"""Opening a project database, and the one connection every query group shares.

One SQLite file per project, in WAL mode (readers never block the labeller's writes), with
foreign keys on and a busy timeout so that a training child process and the GUI can share it.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ProjectError, WorkbenchError


def _import_sqlite_utils():
    # sqlite-utils imports pandas whenever it is installed (0.3 s, most of what opening a
    # project costs a new process: the window, every training child) only to map pandas
    # Timestamps to TEXT, which the store never writes. It is hidden for that one import; any
    # code may import pandas afterwards.
    if "pandas" in sys.modules:
        import sqlite_utils
    else:
        sys.modules["pandas"] = None  # an import of it now raises ImportError
        try:
            import sqlite_utils
        finally:
            if sys.modules.get("pandas", 0) is None:
                del sys.modules["pandas"]
    return sqlite_utils


sqlite_utils = _import_sqlite_utils()

# "RLHW" in the SQLite header, so that a stray database is never mistaken for a project.
APPLICATION_ID = 0x524C4857
BUSY_TIMEOUT_MS = 10_000
PAGE_SIZE = 16_384


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

def configure(conn: sqlite3.Connection) -> None:
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



class Connection:
    """A project's connection and its transactions; the query groups build on it."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path
        self.db = sqlite_utils.Database(conn)

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
