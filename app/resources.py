"""Finding the files in `rlhf_workbench.resources` wherever the app runs from.

`importlib.resources` resolves the package the same way from a source tree, an editable install
and a wheel. A frozen PyInstaller app unpacks data under `sys._MEIPASS`; PyInstaller's importer
also answers `importlib.resources`, but the explicit look there keeps a mis-collected package
from failing in a way that only shows on a user's machine.
"""

from __future__ import annotations

import atexit
import sys
from contextlib import ExitStack
from functools import cache
from importlib import resources as _resources
from pathlib import Path

from PySide6.QtGui import QIcon

RESOURCES_PACKAGE = "rlhf_workbench.resources"
ICON_NAME = "rlhf-workbench.svg"

# Files that had to be extracted (a zipped install) stay extracted until the process ends.
_extracted = ExitStack()
atexit.register(_extracted.close)


def resource_path(name: str) -> Path:
    """The path of a resource file by name, e.g. `resource_path("rlhf-workbench.svg")`."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        candidate = Path(frozen_root, *RESOURCES_PACKAGE.split("."), name)
        if candidate.is_file():
            return candidate
    traversable = _resources.files(RESOURCES_PACKAGE) / name
    if not traversable.is_file():
        raise FileNotFoundError(f"resource {name!r} is missing from {RESOURCES_PACKAGE}")
    if isinstance(traversable, Path):
        return traversable
    return Path(_extracted.enter_context(_resources.as_file(traversable)))


@cache
def app_icon() -> QIcon:
    return QIcon(str(resource_path(ICON_NAME)))
