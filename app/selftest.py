"""`rlhf-workbench --selftest`: the core's end-to-end check (core/selftest.py), then the window's.

The window's part needs no display: Qt's offscreen platform. It builds the real main window on
an empty data folder and checks what a frozen app most often loses: Qt's plugins (the platform,
the SVG icon engine), the app's resources (found through resources.resource_path), pyqtgraph.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from rlhf_workbench.core import selftest as core_selftest


class WindowCheckFailed(core_selftest.SelftestFailed):
    def __init__(self, message: str):
        super().__init__("window", message)


def check_window(result: core_selftest.SelftestResult) -> None:
    home = tempfile.mkdtemp(prefix="rlhf-workbench-selftest-window-")
    saved = {name: os.environ.get(name) for name in ("RLHF_WORKBENCH_HOME", "QT_QPA_PLATFORM")}
    os.environ["RLHF_WORKBENCH_HOME"] = home  # the window's settings land here, not in the person's
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    try:
        _check_window(result)
    except core_selftest.SelftestFailed:
        raise
    except Exception as exc:  # noqa: BLE001
        raise WindowCheckFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(home, ignore_errors=True)


def _check_window(result: core_selftest.SelftestResult) -> None:
    import pyqtgraph  # noqa: F401 -- the curves need it; a bundle that lost it fails here
    from PySide6.QtCore import qInstallMessageHandler

    # The offscreen platform warns that it cannot propagate size hints: true, and no failure.
    previous = qInstallMessageHandler(
        lambda mode, context, message: None if "propagateSizeHints" in message else print(message, file=sys.stderr)
    )
    try:
        _draw_window(result)
    finally:
        qInstallMessageHandler(previous)


def _draw_window(result: core_selftest.SelftestResult) -> None:
    from PySide6.QtWidgets import QApplication

    from .application import configure_application
    from .main_window import MainWindow
    from .resources import ICON_NAME, app_icon, resource_path

    existing = QApplication.instance()
    app = existing or QApplication(["rlhf-workbench"])
    if existing is None and app.platformName() != "offscreen":
        raise WindowCheckFailed(f"Qt started the {app.platformName()!r} platform, not 'offscreen'")
    configure_application(app)
    if not resource_path(ICON_NAME).is_file():
        raise WindowCheckFailed(f"the icon {ICON_NAME} was not found")
    if app_icon().pixmap(64, 64).isNull():
        raise WindowCheckFailed("the SVG icon does not render (Qt's SVG plugins are missing)")
    window = MainWindow()
    try:
        window.resize(1024, 700)
        window.show()
        app.processEvents()
        shot = window.grab()
        if shot.isNull() or shot.width() < 100:
            raise WindowCheckFailed("the main window could not be drawn")
        result.figures["window"] = f"{shot.width()}x{shot.height()} on {app.platformName()}"
    finally:
        window.close()
        window.deleteLater()
        app.processEvents()


def run(args) -> int:
    return core_selftest.run_and_report(args, extra=check_window)
