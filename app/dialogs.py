"""Dialogs: errors, the first-start welcome, a new project, About.

Dialogs are opened with `open()` (window-modal, non-blocking) rather than `exec()`, so that no
nested event loop hides in the call stack and tests can find and close them like any widget.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core import __version__
from rlhf_workbench.core.project import default_projects_dir

from .resources import app_icon
from .widgets import heading_label, plain_label

APP_TITLE = "RLHF Workbench"


def error_box(parent: QWidget | None, message: str, title: str = "Something went wrong") -> QMessageBox:
    """A warning dialog showing the core's message as plain text (never a traceback), opened."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)  # messages quote paths and data, which may look like HTML
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def about_box(parent: QWidget | None) -> QMessageBox:
    box = QMessageBox(parent)
    box.setWindowTitle(f"About {APP_TITLE}")
    box.setIconPixmap(app_icon().pixmap(96, 96))
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setText(f"{APP_TITLE} {__version__}")
    box.setInformativeText(
        "A desktop workbench for alignment experiments: collect pairwise preferences, train "
        "reward models on them and run PPO against those on your own GPU, watching it all live."
    )
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


class StartPanel(QWidget):
    """Open the demo, open a project, or make a new one. Shown when no project is open, and in
    the first-start welcome dialog."""

    demo_requested = Signal()
    open_requested = Signal()
    new_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = heading_label(f"Welcome to {APP_TITLE}")
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        self.title.setFont(font)
        self.text = plain_label(
            "A project holds prompts, pairs of responses, your verdicts on them, and training runs. "
            "The demo project is a few hundred ready-made pairs to label and train on; it needs "
            "no download."
        )
        self.text.setWordWrap(True)
        self.demo_button = QPushButton("Open the demo project")
        self.demo_button.setDefault(True)
        self.open_button = QPushButton("Open…")
        self.new_button = QPushButton("New…")
        self.demo_button.clicked.connect(self.demo_requested)
        self.open_button.clicked.connect(self.open_requested)
        self.new_button.clicked.connect(self.new_requested)

        buttons = QHBoxLayout()
        buttons.addWidget(self.demo_button)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.new_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.text)
        layout.addSpacing(8)
        layout.addLayout(buttons)


class WelcomeDialog(QDialog):
    """The first start: offer the demo project. Emits the panel's signals after closing itself."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(app_icon())
        self.panel = StartPanel(self)
        layout = QVBoxLayout(self)
        layout.addWidget(self.panel)
        self.setMinimumWidth(480)
        # Close first, then act: an error dialog from the action must not sit under this one.
        for signal in (self.panel.demo_requested, self.panel.open_requested, self.panel.new_requested):
            signal.connect(self.accept)


class NewProjectDialog(QDialog):
    """A name and a parent folder; the project is made in a new folder `parent/name`."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("New Project")
        self.name = QLineEdit()
        self.name.setPlaceholderText("my-preferences")
        self.location = QLineEdit(str(default_projects_dir()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        location_row = QHBoxLayout()
        location_row.addWidget(self.location, 1)
        location_row.addWidget(browse)
        self.result_path = plain_label()
        self.result_path.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Create in", location_row)
        form.addRow("", self.result_path)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(520)

        self.name.textChanged.connect(self._update)
        self.location.textChanged.connect(self._update)
        self._update()

    def project_path(self) -> Path | None:
        name, location = self.name.text().strip(), self.location.text().strip()
        if not name or not location:
            return None
        return Path(location).expanduser() / name

    def _update(self) -> None:
        path = self.project_path()
        self.result_path.setText(f"The project will be the folder {path}" if path else "")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(path is not None)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Create the project in", self.location.text())
        if folder:
            self.location.setText(folder)
