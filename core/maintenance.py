"""Checking a project for damage, and backing it up while it is in use.

    report = check_project(path)            # what is wrong, and what `repair=True` would fix
    report = check_project(path, repair=True)
    backup_project(path, out)               # a consistent copy of project.db, even mid-write

The check reads the database without changing it (SQLite's `integrity_check`, `foreign_key_check`)
and compares the run folders with the runs table. Repairs are only the safe ones: leftovers that
are never anyone's data (a half-written checkpoint folder of a run nobody is executing, a project
database that was being created). Damage inside the database is reported with what to do (restore
a backup), never "repaired" by dropping rows.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import ProjectError, WorkbenchError, disk_full_error, is_disk_full_os_error
from .project import DB_NAME, RUNS_DIR
from .runs.records import RunLock
from .store import APPLICATION_ID
from .store.connection import error_code, storage_error

# integrity_check stops after this many problems: enough to say how bad it is.
_MAX_ERRORS = 20
_CORRUPT = 11  # SQLITE_CORRUPT: "database disk image is malformed"


@dataclass
class Finding:
    """One thing wrong: `what` (a line), and `repair`, what --repair does about it (None: it cannot,
    and `advice` says what a person can do)."""

    what: str
    repair: str | None = None
    advice: str | None = None
    repaired: bool = False
    _fix: object = field(default=None, repr=False, compare=False)


@dataclass
class CheckReport:
    path: Path
    findings: list[Finding]
    checked: list[str]  # what was looked at, for the "nothing wrong" answer

    @property
    def ok(self) -> bool:
        """Nothing is wrong any more (nothing was, or every finding was repaired)."""
        return all(f.repaired for f in self.findings)

    def lines(self) -> list[str]:
        if not self.findings:
            return [f"{self.path}: no problems found ({'; '.join(self.checked)})"]
        out = []
        for f in self.findings:
            if f.repaired:
                out.append(f"repaired: {f.what} ({f.repair})")
            elif f.repair:
                out.append(f"problem: {f.what} (--repair: {f.repair})")
            else:
                out.append(f"problem: {f.what}" + (f" ({f.advice})" if f.advice else ""))
        return out


def check_project(path: str | Path, *, repair: bool = False) -> CheckReport:
    path = _project_folder(path)
    findings: list[Finding] = []
    checked = []
    conn = _open_for_reading(path / DB_NAME)
    try:
        findings += _check_database(path / DB_NAME, conn)
        checked.append("database pages and indexes intact")
        runs = _runs(conn)
        checked.append(f"{len(runs)} runs against their folders")
    finally:
        conn.close()
    if runs is not None:
        findings += _check_run_folders(path, runs)
    findings += _check_leftovers(path)
    checked.append("no leftover temporary files")
    if repair:
        for finding in findings:
            if finding._fix is not None:
                finding._fix()
                finding.repaired = True
    return CheckReport(path, findings, checked)


def _project_folder(path: str | Path) -> Path:
    path = Path(path).expanduser().absolute()
    if path.name == DB_NAME and path.is_file():
        path = path.parent
    if not (path / DB_NAME).is_file():
        raise ProjectError(f"{path}: is not an RLHF Workbench project (it has no {DB_NAME})")
    return path


def _open_for_reading(db: Path) -> sqlite3.Connection:
    # Read-only, and not immutable: a -wal beside it holds committed work the check must see.
    try:
        return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ProjectError(f"{db}: cannot be opened ({exc})") from exc


def _check_database(db: Path, conn: sqlite3.Connection) -> list[Finding]:
    advice = (f"restore {db.name} from a backup (`rlhf-workbench backup` makes one); what can still be read "
              f"can be exported first")
    try:
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            return [Finding(f"{db}: is not an RLHF Workbench database", advice=None)]
        problems = [row[0] for row in conn.execute(f"PRAGMA integrity_check({_MAX_ERRORS})")]
    except sqlite3.DatabaseError as exc:
        return [Finding(f"{db}: is damaged and cannot be checked ({exc})", advice=advice)]
    findings = []
    if problems != ["ok"]:
        more = " (and perhaps more)" if len(problems) >= _MAX_ERRORS else ""
        shown = "; ".join(problems[:3])
        findings.append(Finding(f"{db}: is damaged: {len(problems)} problems{more}, e.g. {shown}", advice=advice))
        return findings  # the rest of the checks would read damaged pages
    dangling = conn.execute("PRAGMA foreign_key_check").fetchall()
    if dangling:
        tables = sorted({row[0] for row in dangling})
        findings.append(Finding(
            f"{db}: {len(dangling)} rows refer to rows that are not there (in {', '.join(tables)})", advice=advice,
        ))
    return findings


def _runs(conn: sqlite3.Connection) -> list[tuple[str, str | None, str]] | None:
    try:
        return conn.execute("SELECT id, output_dir, status FROM runs").fetchall()
    except sqlite3.DatabaseError:
        return None


def _check_run_folders(project: Path, runs: list[tuple[str, str | None, str]]) -> list[Finding]:
    findings = []
    known = set()
    for run_id, output_dir, _status in runs:
        folder = project / (output_dir or f"{RUNS_DIR}/{run_id}")
        known.add(folder.resolve())
        if not folder.is_dir():
            findings.append(Finding(
                f"run {run_id}: its folder {folder} is missing (its checkpoints and log are gone)",
                advice=f"delete the run with `rlhf-workbench runs {project} --delete {run_id}` if it is not wanted",
            ))
    runs_dir = project / RUNS_DIR
    if runs_dir.is_dir():
        for folder in sorted(runs_dir.iterdir()):
            if folder.is_dir() and folder.resolve() not in known:
                findings.append(Finding(
                    f"{folder}: is a run folder the project has no run for",
                    advice="it may hold checkpoints someone wants; delete it by hand if not",
                ))
    return findings


def _check_leftovers(project: Path) -> list[Finding]:
    findings = []
    for partial in sorted(project.glob(f".{DB_NAME}.creating*")):
        findings.append(_removable(partial, "a project database that was being created when it stopped"))
    runs_dir = project / RUNS_DIR
    for run_dir in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else ():
        checkpoints = run_dir / "checkpoints"
        tmps = sorted(checkpoints.glob(".tmp-*")) if checkpoints.is_dir() else []
        if tmps and RunLock.held(run_dir):
            continue  # its run is executing: the temporary folder may be a checkpoint being written
        for tmp in tmps:
            findings.append(_removable(tmp, "a checkpoint that was being written when its run stopped"))
    return findings


def _removable(path: Path, what: str) -> Finding:
    size = _size_of(path)

    def fix() -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    return Finding(f"{path}: {what} ({size / 1e6:.1f} MB)", repair="remove it", _fix=fix)


def _size_of(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# -- backup ------------------------------------------------------------------------------------


def backup_path(project: Path, out: Path) -> Path:
    """Where a backup goes: `out` itself, or a dated file in it when it is a folder."""
    if out.is_dir():
        return out / f"{project.name}-{datetime.now():%Y%m%d-%H%M%S}.db"
    return out


def backup_project(path: str | Path, out: str | Path) -> Path:
    """A consistent copy of the project's database at `out` (a file, or a folder to put a dated
    file in), safe to take while the app or a training run writes: SQLite's backup API copies
    one snapshot. Written under a temporary name, checked, then renamed into place. Returns its
    path. The run folders (checkpoints) are not part of it."""
    project = _project_folder(path)
    target = backup_path(project, Path(out).expanduser().absolute())
    if target.exists():
        raise WorkbenchError(f"{target}: already exists; choose a new name for the backup")
    if not target.parent.is_dir():
        raise WorkbenchError(f"{target.parent}: no such folder")
    tmp = target.with_name(f".{target.name}.partial")
    source = _open_for_reading(project / DB_NAME)
    try:
        dest = sqlite3.connect(tmp)
        try:
            source.backup(dest)  # one step: one read transaction, so one consistent snapshot
            dest.execute("PRAGMA journal_mode = DELETE")  # a single file, openable anywhere
            check = dest.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            dest.close()
        if check != "ok":
            raise WorkbenchError(
                f"{project / DB_NAME}: is damaged ({check}); the backup would be too. "
                f"Run `rlhf-workbench check {project}`"
            )
        os.replace(tmp, target)
    except BaseException as exc:
        for leftover in tmp.parent.glob(f"{tmp.name}*"):
            leftover.unlink(missing_ok=True)
        if is_disk_full_os_error(exc):
            raise disk_full_error(target, "no backup was made", cause=exc) from exc
        if isinstance(exc, sqlite3.Error):
            error = storage_error(exc, target, "no backup was made")
            if error is not None:
                raise error from exc
            if error_code(exc) == _CORRUPT:
                raise WorkbenchError(f"{project / DB_NAME}: is damaged ({exc}); no backup was made. "
                                     f"Run `rlhf-workbench check {project}`") from exc
            raise WorkbenchError(f"{project / DB_NAME}: could not be backed up ({exc})") from exc
        raise
    finally:
        source.close()
    return target
