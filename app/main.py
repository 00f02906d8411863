"""Starting the app: `rlhf-workbench [PROJECT] [--annotator NAME] [--demo]`.

Which project the window opens on, in order: `--demo` (made if missing), PROJECT, the last
project used. With none of these, the window shows its start page, and on the very first start
a welcome dialog offers the demo project.

Only Qt and the light parts of the core are imported here; torch and transformers load when a
job or a model needs them, so the window opens fast.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from PySide6.QtWidgets import QApplication

from rlhf_workbench.core import __version__
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.project import Project

from . import settings
from .dialogs import APP_TITLE
from .main_window import MainWindow
from .resources import app_icon


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rlhf-workbench",
        description="Open the RLHF Workbench window, on a project if one is given.",
    )
    parser.add_argument("project", nargs="?", type=Path, help="a project folder to open")
    parser.add_argument("--annotator", metavar="NAME", help="who is labelling (remembered for next time)")
    parser.add_argument(
        "--demo", action="store_true", help="open the demo project, creating it first if it is missing"
    )
    return parser.parse_args(argv)


def configure_application(app: QApplication) -> None:
    app.setApplicationName(APP_TITLE)
    app.setOrganizationName(APP_TITLE)
    app.setApplicationVersion(__version__)
    app.setWindowIcon(app_icon())
    # Matches resources/rlhf-workbench.desktop, so Wayland shells find the icon and name.
    app.setDesktopFileName("rlhf-workbench")


def create_main_window(args: argparse.Namespace) -> MainWindow:
    """Build and show the window, then open the project the arguments and settings call for.

    Shown before opening, so that an error dialog sits on top of a visible window.
    """
    if args.annotator:
        settings.set_annotator(args.annotator)
    window = MainWindow(annotator=args.annotator)
    geometry = settings.window_geometry()
    if geometry:
        window.restoreGeometry(geometry)
    window.show()
    if args.demo:
        window.open_demo_project()
    elif args.project is not None:
        window.open_project(args.project)
    else:
        last = settings.last_project()
        if last is not None and Project.is_project(last):
            window.open_project(last)
        elif not settings.welcomed():
            window.offer_demo()
    return window


def _install_excepthook(window: MainWindow) -> None:
    """An exception that escapes a slot becomes a dialog instead of vanishing into the terminal.

    A WorkbenchError shows its message; anything else is a bug: its traceback goes to stderr
    (where a bug report can quote it) and the dialog says what happened in one line.
    """
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if isinstance(exc, WorkbenchError):
            window.show_error(str(exc))
            return
        traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
        window.show_error(
            f"An unexpected error occurred: {exc_type.__name__}: {exc}\n\n"
            "The details were written to the terminal; please include them in a bug report.",
            "Unexpected error",
        )

    sys.excepthook = hook
    window.destroyed.connect(lambda: setattr(sys, "excepthook", previous))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    configure_application(app)
    window = create_main_window(args)
    _install_excepthook(window)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
