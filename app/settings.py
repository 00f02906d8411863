"""What the app remembers between sessions: recent projects, the annotator, window geometry.

Settings live in one INI file in the workbench's own data folder (`core.project.user_data_dir()`),
not in the platform's registry or ~/.config, so that `RLHF_WORKBENCH_HOME` isolates them along
with everything else (the tests rely on this), and a person can read or delete them by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QSettings

from rlhf_workbench.core.project import user_data_dir

SETTINGS_FILE = "settings.ini"
MAX_RECENT = 10

_RECENT = "projects/recent"  # JSON list of absolute paths, newest first
_WELCOMED = "start/welcomed"  # the first-start dialog has been shown once
_ANNOTATOR = "labelling/annotator"
_GEOMETRY = "window/geometry"


def settings() -> QSettings:
    """A QSettings on the workbench's INI file. Cheap: make one where it is needed."""
    return QSettings(str(user_data_dir() / SETTINGS_FILE), QSettings.Format.IniFormat)


def recent_projects() -> list[Path]:
    # Stored as JSON rather than a QSettings list: INI lists of one item come back as a plain
    # string, which is the kind of surprise a settings file should not have.
    raw = settings().value(_RECENT, "[]")
    try:
        paths = json.loads(raw) if isinstance(raw, str) else []
    except json.JSONDecodeError:
        paths = []
    return [Path(p) for p in paths if isinstance(p, str)]


def _save_recent(paths: list[Path]) -> None:
    s = settings()
    s.setValue(_RECENT, json.dumps([str(p) for p in paths[:MAX_RECENT]]))
    s.sync()


def add_recent_project(path: Path) -> None:
    path = Path(path).absolute()
    _save_recent([path] + [p for p in recent_projects() if p != path])


def remove_recent_project(path: Path) -> None:
    path = Path(path).absolute()
    _save_recent([p for p in recent_projects() if p != path])


def clear_recent_projects() -> None:
    _save_recent([])


def last_project() -> Path | None:
    recent = recent_projects()
    return recent[0] if recent else None


def welcomed() -> bool:
    return settings().value(_WELCOMED, False, type=bool)


def set_welcomed() -> None:
    s = settings()
    s.setValue(_WELCOMED, True)
    s.sync()


def annotator() -> str:
    return str(settings().value(_ANNOTATOR, "") or "")


def set_annotator(name: str) -> None:
    s = settings()
    s.setValue(_ANNOTATOR, name)
    s.sync()


def window_geometry() -> bytes | None:
    value = settings().value(_GEOMETRY)
    return bytes(value) if value else None


def set_window_geometry(geometry: bytes) -> None:
    s = settings()
    s.setValue(_GEOMETRY, geometry)
    s.sync()


def advanced_open(form: str) -> bool:
    """Whether a settings form's Advanced section was left open (per form: "RewardConfig", ...)."""
    return settings().value(f"advanced_open/{form}", False, type=bool)


def set_advanced_open(form: str, is_open: bool) -> None:
    s = settings()
    s.setValue(f"advanced_open/{form}", is_open)
    s.sync()
