"""Opening a project database, and the one connection every query group shares.

One SQLite file per project, in WAL mode (readers never block the labeller's writes), with
foreign keys on and a busy timeout so that a training child process and the GUI can share it.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ..errors import DatabaseBusy, ProjectError, ReadOnlyProject, WorkbenchError, disk_full_error


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
# A verdict is what a person just did: it waits this long for a database another program holds
# (a long import) before it is refused, and the app keeps retrying after that (label_view.py).
VERDICT_WAIT_S = 300.0

# SQLite's primary result codes (the low byte of sqlite_errorcode).
_BUSY, _LOCKED, _READONLY, _IOERR, _FULL = 5, 6, 8, 10, 13
# Below this much free space, an I/O error is taken for a full disk: SQLite reports a -shm file it
# cannot extend, or a write the disk took only in part, as "disk I/O error".
_NEARLY_FULL = 1 << 20


def error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_busy(exc: BaseException) -> bool:
    """Whether `exc` says another connection holds the database (try again later)."""
    if error_code(exc) in (_BUSY, _LOCKED):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "database is locked" in str(exc)


def is_disk_full(exc: BaseException) -> bool:
    return error_code(exc) == _FULL or "database or disk is full" in str(exc)


def storage_error(exc: sqlite3.Error, path: Path, what: str) -> WorkbenchError | None:
    """The error a person can act on for an SQLite failure the disk or another program caused,
    or None when it is something else. `what` says what was not done ("nothing was changed")."""
    if is_busy(exc):
        return DatabaseBusy(path)
    if is_disk_full(exc) or (error_code(exc) == _IOERR and _free_bytes(path) < _NEARLY_FULL):
        return disk_full_error(path, what)
    if error_code(exc) == _READONLY:
        return ReadOnlyProject(path)
    return None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return _NEARLY_FULL


def configure(conn: sqlite3.Connection, path: Path | None = None, *, read_only: bool = False) -> None:
    """The connection settings every project connection has. `path` names the file in errors."""
    path = path if path is not None else Path(conn.execute("PRAGMA database_list").fetchone()[2] or "project.db")
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if read_only:
            return  # the journal mode is the file's, already WAL; setting it would write
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a verdict acknowledged to the labeller survives a power cut, not only a crash.
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as exc:
        # Opening writes the -wal and -shm files beside the database: a full disk shows here first.
        error = storage_error(exc, path, "nothing was changed")
        if error is None:
            raise ProjectError(f"{path}: cannot be opened ({exc})") from exc
        raise error from exc


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

    def __init__(self, conn: sqlite3.Connection, path: Path, *, refusal: WorkbenchError | None = None):
        self.conn = conn
        self.path = path
        # Why this connection was opened for reading only (ReadOnlyProject, DiskFull): what every
        # transaction raises. None for a writable one.
        self.refusal = refusal
        self.db = sqlite_utils.Database(conn)

    @property
    def read_only(self) -> bool:
        return self.refusal is not None

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self, *, foreign_keys: bool = True, wait_s: float | None = None) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (a cancel included).

        While another connection writes, it waits up to `wait_s` seconds (default: the busy
        timeout) for its turn, then raises DatabaseBusy, having changed nothing. A full disk
        raises the disk's error, not SQLite's.

        `foreign_keys=False` is for BulkWriter, which assigns every id it references itself;
        checking each reference cost ~10% of a large import. (SQLite only lets the setting
        change outside a transaction, hence here.)
        """
        if self.refusal is not None:
            raise self.refusal
        if not foreign_keys:
            self.conn.execute("PRAGMA foreign_keys = OFF")
        try:
            self._begin(BUSY_TIMEOUT_MS / 1000 if wait_s is None else wait_s)
            try:
                yield self.conn
            except BaseException as exc:
                # A failed statement may have ended the transaction already (SQLITE_FULL rolls
                # back by itself): a second ROLLBACK would hide the cause behind "cannot rollback".
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                error = storage_error(exc, self.path, "nothing was changed") if isinstance(exc, sqlite3.Error) else None
                if error is not None:
                    raise error from exc
                raise
            else:
                try:
                    self.conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    error = storage_error(exc, self.path, "nothing was changed")
                    if error is not None:
                        raise error from exc
                    raise WorkbenchError(f"{self.path}: could not save ({exc}); nothing was changed") from exc
        finally:
            if not foreign_keys:
                self.conn.execute("PRAGMA foreign_keys = ON")

    def _begin(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        try:
            while True:
                # Each try waits in SQLite (the busy handler) for at most what is left.
                left_ms = max(int((deadline - time.monotonic()) * 1000), 0)
                self.conn.execute(f"PRAGMA busy_timeout = {min(left_ms, BUSY_TIMEOUT_MS)}")
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.Error as exc:
                    if not is_busy(exc):
                        error = storage_error(exc, self.path, "nothing was changed")
                        if error is None:
                            raise
                        raise error from exc
                    if time.monotonic() >= deadline:
                        raise DatabaseBusy(self.path, waited_s=wait_s) from exc
                    time.sleep(0.02)
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
