"""A project is a folder: `project.db` (the store) and `runs/<run-id>/` (configs, checkpoints).

Projects live wherever the person puts them; the app remembers recent ones. When no place is
given, new projects go under the user's data folder (see `default_projects_dir`), and the demo
project is made there on first start.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .errors import DiskFull, ProjectError, WorkbenchError, disk_full_error, is_disk_full_os_error
from .store import Store

APP_NAME = "rlhf-workbench"
DB_NAME = "project.db"
RUNS_DIR = "runs"


def user_data_dir() -> Path:
    """Where the workbench keeps its own things; RLHF_WORKBENCH_HOME overrides it (tests use that)."""
    override = os.environ.get("RLHF_WORKBENCH_HOME")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_projects_dir() -> Path:
    return user_data_dir() / "projects"


def demo_project_path() -> Path:
    return user_data_dir() / "demo"


class Project:
    """An open project. `store` is this thread's connection; other threads call `open_store()`."""

    def __init__(self, path: Path, store: Store):
        self.path = path
        self.store = store

    @property
    def db_path(self) -> Path:
        return self.path / DB_NAME

    @property
    def runs_dir(self) -> Path:
        return self.path / RUNS_DIR

    @property
    def name(self) -> str:
        return self.store.project_info().get("name", self.path.name)

    @staticmethod
    def is_project(path: str | Path) -> bool:
        return (Path(path) / DB_NAME).is_file()

    @classmethod
    def create(cls, path: str | Path, *, name: str | None = None) -> "Project":
        path = Path(path).expanduser().absolute()
        if path.exists() and not path.is_dir():
            raise ProjectError(f"{path}: is a file, not a folder; choose a folder for the project")
        if (path / DB_NAME).exists():
            raise ProjectError(f"{path}: is already a project; open it instead")
        # Built under a temporary name and renamed into place, so an interrupted creation never
        # leaves a project.db that looks real but is not.
        staging = path / f".{DB_NAME}.creating"
        made_folder = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / RUNS_DIR).mkdir(exist_ok=True)
            for leftover in path.glob(f".{DB_NAME}.creating*"):
                leftover.unlink()
            Store.create(staging, name=name or path.name).close()
            os.replace(staging, path / DB_NAME)
        except BaseException as exc:
            # A full disk (or a cancel) leaves nothing half-made behind: the -wal and -shm too.
            for partial in path.glob(f".{DB_NAME}.creating*"):
                partial.unlink(missing_ok=True)
            for folder in ((path / RUNS_DIR, path) if made_folder else ()):
                try:
                    folder.rmdir()  # only if still empty: nothing of anyone else's goes
                except OSError:
                    pass
            if is_disk_full_os_error(exc) or isinstance(exc, DiskFull):
                raise disk_full_error(path, "the project was not created") from exc
            if isinstance(exc, WorkbenchError):  # named after the project, not its staging file
                raise ProjectError(f"{path}: the project was not created: {exc}".replace(f"{staging}: ", "")) from exc
            if isinstance(exc, PermissionError):
                raise ProjectError(f"{path}: cannot be written to ({exc.strerror}); choose another folder") from exc
            raise
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path) -> "Project":
        path = Path(path).expanduser().absolute()
        if path.name == DB_NAME and path.is_file():
            path = path.parent
        if not path.exists():
            raise ProjectError(f"{path}: does not exist")
        if not path.is_dir():
            raise ProjectError(f"{path}: is a file, not a project folder")
        if not (path / DB_NAME).is_file():
            raise ProjectError(
                f"{path}: is not an RLHF Workbench project (it has no {DB_NAME}); "
                f"create one with `rlhf-workbench init {path}`"
            )
        store = Store.open(path / DB_NAME)
        if not store.read_only:
            try:
                (path / RUNS_DIR).mkdir(exist_ok=True)
            except OSError:
                pass  # the runs need it, and say so when they cannot make it; reading does not
        return cls(path, store)

    @property
    def read_only(self) -> bool:
        """Opened for reading only (a read-only disk or folder): every change is refused."""
        return self.store.read_only

    def open_store(self) -> Store:
        """A new connection for another thread (SQLite connections are not shared across threads)."""
        return Store.open(self.db_path)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"
