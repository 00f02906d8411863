"""The application's identity, set once on the QApplication: name, version, icon, desktop file.
Shared by the app's start (main.py), the selftest's window check and the screenshots."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication

from rlhf_workbench.core import __version__

from .dialogs import APP_TITLE
from .resources import app_icon


def configure_application(app: QApplication) -> None:
    app.setApplicationName(APP_TITLE)
    app.setOrganizationName(APP_TITLE)
    app.setApplicationVersion(__version__)
    app.setWindowIcon(app_icon())
    # Matches resources/rlhf-workbench.desktop, so Wayland shells find the icon and name.
    app.setDesktopFileName("rlhf-workbench")
