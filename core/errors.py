"""Errors a person can act on. Each names what was wrong and where (file, line, field, setting).

The CLI prints `str(error)` as its one-line reason and the GUI shows it in a dialog, so messages
are written for people: what was found, where, and what was expected instead.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class WorkbenchError(Exception):
    """Base of every error the core raises on purpose. Anything else is a bug.

    `hint` says what to try, where there is something to say; work that fails this way reaches
    the person as a Failed event with both (core/runs/work.py).
    """

    hint: str | None = None

    def __init__(self, *args: object, hint: str | None = None):
        super().__init__(*args)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self)


class ProjectError(WorkbenchError):
    """A folder is not a usable project: missing, not ours, too new, or corrupt."""


class InputError(WorkbenchError):
    """Bad outside data: names the file, the line or row, and the field."""

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ):
        self.reason = reason
        self.path = Path(path) if path is not None else None
        self.line = line
        self.field = field
        super().__init__(self._compose())

    def _compose(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class FieldError(WorkbenchError):
    """Raised by a format's row parser; the import pipeline adds the file and line."""

    def __init__(self, field: str | None, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"field '{field}': {reason}" if field else reason)


class ConfigError(WorkbenchError):
    """A setting outside its allowed values: names the setting and what is allowed."""


class JobFailed(WorkbenchError):
    """A training job could not go on (a NaN loss, out of memory, no data): the message says what
    happened, the hint what to try, `step` where."""

    def __init__(self, message: str, *, hint: str | None = None, step: int | None = None):
        super().__init__(message, hint=hint)
        self.step = step


class Stopped(WorkbenchError):
    """Work was asked to stop (its `stop()` turned true) and gave up before it finished. The
    message says what was kept: usually nothing, since an import or a generation rolls back
    ("import cancelled; nothing was imported"); scoring keeps the batches it wrote."""


def _project_of(path: str | Path) -> Path:
    path = Path(path)
    return path.parent if path.suffix == ".db" else path


class DatabaseBusy(WorkbenchError):
    """Another program (an import, another window) held the project's database for longer than
    this could wait. Nothing was changed; trying again later works."""

    def __init__(self, path: str | Path, *, waited_s: float | None = None):
        self.path = _project_of(path)
        waited = f" for over {waited_s:g} s" if waited_s else ""
        super().__init__(
            f"{self.path}: the project's database is busy: another program (an import, perhaps) has been "
            f"writing to it{waited}; nothing was changed",
            hint="Try again when the other program is done.",
        )


class ReadOnlyProject(WorkbenchError):
    """A project opened for reading only (its folder or database cannot be written)."""

    def __init__(self, path: str | Path):
        self.path = _project_of(path)
        super().__init__(
            f"{self.path}: the project is read-only (its folder cannot be written); it can be read but "
            f"not changed. Copy it to a folder you can write to, or make this one writable."
        )


class DiskFull(WorkbenchError):
    """The disk (or the file-size limit) ran out while writing."""


# What the system says when there is no room to write: ENOSPC, a quota, a file-size limit.
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if e)


def is_disk_full_os_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_error(path: str | Path, what: str | None = None, *, cause: BaseException | None = None) -> DiskFull:
    """"the disk is full (12.3 MB free on /mnt/data)", for a write at `path` that ran out of room.
    `cause`: the OSError, where there is one (a file-size limit is not a full disk)."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = f"{_size(shutil.disk_usage(where).free)} free on {_mount_point(where)}"
    except OSError:
        free = f"on {where}"
    tail = f"; {what}" if what else ""
    if getattr(cause, "errno", None) == errno.EFBIG:
        return DiskFull(
            f"{path}: a file reached the largest size this system lets the workbench write{tail}",
            hint="Raise the file-size limit (ulimit -f) or use a file system that takes larger files.",
        )
    return DiskFull(
        f"{path}: the disk is full ({free}){tail}",
        hint="Free some space on that disk (or move the project to a larger one) and try again.",
    )


def _mount_point(path: Path) -> Path:
    """The disk's own folder (where it is mounted): what a person frees space on."""
    path = path.absolute()
    device = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
