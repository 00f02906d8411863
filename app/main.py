"""Starting the app: `rlhf-workbench [PROJECT] [--annotator NAME] [--demo]`.

Also, for the installers (packaging/): `--selftest` (headless end-to-end check, one line, exit
status), `--gpu-runtime ACTION` (the packaged app's optional CUDA torch, core/gpu_runtime.py), and
two start-up probes: `--quit-when-shown` (prints "window shown" once the window has painted, then
quits) and `--screenshot PNG` (the same, saving the window first).

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

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

from rlhf_workbench.core import selftest as core_selftest
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.project import Project

from . import settings
from .application import configure_application
from .main_window import MainWindow


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
    parser.add_argument(
        "--selftest",
        action="store_true",
        help="check this installation without a display: demo project, import, a few training steps in a child "
        "process, scoring, the window drawn offscreen; prints one line, exits 0 or non-zero with the reason",
    )
    core_selftest.add_arguments(parser)
    parser.add_argument(
        "--gpu-runtime",
        metavar="ACTION",
        choices=("status", "install", "use-cpu", "use-gpu", "remove", "probe"),
        help="the packaged app's optional CUDA torch: status, install, use-cpu, use-gpu or remove",
    )
    parser.add_argument("--variant", help="--gpu-runtime install/use-gpu/remove: which CUDA build (e.g. cu126)")
    parser.add_argument("--quit-when-shown", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


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


class _ShownProbe(QObject):
    """For measuring start-up and taking the packaged app's screenshot: once the window has
    painted, print how long since the process started, save the window if asked, and quit."""

    def __init__(self, window: MainWindow, screenshot: Path | None):
        super().__init__(window)
        self.window, self.screenshot, self.done = window, screenshot, False
        window.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 -- Qt's name
        if not self.done and watched is self.window and event.type() == QEvent.Type.Paint:
            self.done = True
            QTimer.singleShot(0 if self.screenshot is None else 300, self._finish)
        return False

    def _finish(self) -> None:
        elapsed = _seconds_since_process_start()
        print(f"window shown {elapsed:.3f} s after the process started" if elapsed is not None else "window shown",
              flush=True)
        status = 0
        if self.screenshot is not None:
            ok = self.window.grab().save(str(self.screenshot))
            print(f"{'wrote' if ok else 'could not write'} {self.screenshot}", flush=True)
            status = 0 if ok else 1
        self.window.close()
        QApplication.instance().exit(status)


def _seconds_since_process_start() -> float | None:
    """Linux only (/proc): the process's age, counted from the exec of the program."""
    try:
        import os

        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.selftest:
        from . import selftest

        return selftest.run(args)
    if args.gpu_runtime:
        from rlhf_workbench.core import gpu_runtime

        return gpu_runtime.command_line(args.gpu_runtime, args.variant)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    configure_application(app)
    window = create_main_window(args)
    _install_excepthook(window)
    if args.quit_when_shown or args.screenshot:
        window._shown_probe = _ShownProbe(window, args.screenshot)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
