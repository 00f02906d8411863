"""Dialogs: errors, the first-start welcome, a new project, About, GPU support (packaged app).

Dialogs are opened with `open()` (window-modal, non-blocking) rather than `exec()`, so that no
nested event loop hides in the call stack and tests can find and close them like any widget.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QProcess, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core import __version__, gpu_runtime
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


def compute_line() -> str:
    """Which torch training runs with, without importing it (the window never does)."""
    torch_version = gpu_runtime.bundled_torch_version() or "not installed"
    if not getattr(sys, "frozen", False):
        return f"Training uses this Python's torch {torch_version}."
    active = gpu_runtime.active_variant()
    if active and not os.environ.get(gpu_runtime.CPU_ONLY_ENV):
        return f"Training uses the GPU runtime (torch {gpu_runtime.base_version(torch_version)}, {active})."
    return f"Training uses the bundled CPU build of torch {torch_version}."


def about_box(parent: QWidget | None) -> QMessageBox:
    box = QMessageBox(parent)
    box.setWindowTitle(f"About {APP_TITLE}")
    box.setIconPixmap(app_icon().pixmap(96, 96))
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setText(f"{APP_TITLE} {__version__}")
    box.setInformativeText(
        "A desktop workbench for alignment experiments: collect pairwise preferences, train "
        "reward models on them and optimise policies against those (PPO, RLOO, GRPO) or straight from the "
        "labels (SFT, DPO) on your own GPU, "
        "watching it all live.\n\n"
        + compute_line()
    )
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    if getattr(sys, "frozen", False):
        gpu = box.addButton("GPU support…", QMessageBox.ButtonRole.ActionRole)
        gpu.clicked.connect(lambda: GpuRuntimeDialog(parent).open())
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


class GpuRuntimeDialog(QDialog):
    """The packaged app's GPU runtime (core/gpu_runtime.py): see what is there, install the CUDA
    build of torch with a progress bar, switch between it and the bundled CPU build, remove it.

    The work runs as this program's own `--gpu-runtime ...` command in a QProcess, so the window
    stays responsive and Cancel simply ends it (pip writes into a staging folder, so nothing half
    installed is ever used). A switch applies from the next run on: training runs in child
    processes, each of which picks its torch when it starts.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("GPU support")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setMinimumWidth(620)
        self.process: QProcess | None = None
        self.status_label = plain_label()
        self.status_label.setWordWrap(True)
        self.variant = QComboBox()
        self.variant.addItems([v for v, _ in gpu_runtime.VARIANTS])
        self.install_button = QPushButton("Install GPU runtime")
        self.gpu_button = QPushButton("Use GPU")
        self.cpu_button = QPushButton("Use CPU")
        self.remove_button = QPushButton("Remove")
        self.cancel_button = QPushButton("Cancel download")
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setVisible(False)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)

        row = QHBoxLayout()
        row.addWidget(self.variant)
        for button in (self.install_button, self.gpu_button, self.cpu_button, self.remove_button, self.cancel_button):
            row.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status_label)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.log, 1)
        layout.addWidget(close)

        recommended = gpu_runtime.choose_variant(gpu_runtime.detect_driver())
        if recommended:
            self.variant.setCurrentText(recommended)
        self.install_button.clicked.connect(self.install)
        self.variant.currentTextChanged.connect(lambda _: self.refresh())
        self.gpu_button.clicked.connect(lambda: self._switch(gpu_runtime.set_active, self.variant.currentText()))
        self.cpu_button.clicked.connect(lambda: self._switch(gpu_runtime.set_active, None))
        self.remove_button.clicked.connect(lambda: self._switch(gpu_runtime.remove))
        self.cancel_button.clicked.connect(self.cancel)
        self.refresh()

    def refresh(self) -> None:
        status = gpu_runtime.status()
        lines = [f"Bundled torch: {status['bundled_torch']} (CPU; works everywhere, no download)."]
        if status["driver"]:
            gpus = ", ".join(status["gpus"]) or "GPU details unknown"
            lines.append(f"NVIDIA driver {status['driver']} found ({gpus}).")
            if status["recommended_variant"]:
                lines.append(f"Recommended GPU runtime: {status['recommended_variant']} (about 2.5-3.5 GB to download).")
            else:
                lines.append("This driver is too old for the CUDA builds of this torch; update it first.")
        else:
            lines.append("No NVIDIA driver found: training runs on the CPU.")
        installed = ", ".join(status["installed"]) or "none"
        lines.append(f"Installed GPU runtimes: {installed}. In use for new runs: {status['active'] or 'CPU'}.")
        lines.append(f"Folder: {status['folder']}")
        self.status_label.setText("\n".join(lines))
        busy = self.process is not None
        frozen = bool(getattr(sys, "frozen", False))
        self.install_button.setEnabled(not busy and frozen)
        self.gpu_button.setEnabled(not busy and self.variant.currentText() in status["installed"]
                                   and status["active"] != self.variant.currentText())
        self.cpu_button.setEnabled(not busy and status["active"] is not None)
        self.remove_button.setEnabled(not busy and bool(status["installed"]))
        self.cancel_button.setVisible(busy)
        if not frozen:
            self.install_button.setToolTip("From a source install, install the CUDA build of torch with pip instead.")

    def command(self, *args: str) -> tuple[str, list[str]]:
        """This program's own `--gpu-runtime ...` command (frozen: the app itself)."""
        if getattr(sys, "frozen", False):
            return sys.executable, ["--gpu-runtime", *args]
        return sys.executable, ["-m", "rlhf_workbench.app.main", "--gpu-runtime", *args]

    def install(self) -> None:
        self.log.clear()
        self.log.setVisible(True)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self._run("install", "--variant", self.variant.currentText())

    def _switch(self, action, *args) -> None:
        try:
            action(*args)
        except (RuntimeError, OSError) as exc:
            error_box(self, str(exc))
        self.refresh()

    def cancel(self) -> None:
        if self.process is not None:
            self.log.appendPlainText("cancelled")
            self.process.kill()

    def _run(self, *args: str) -> None:
        if self.process is not None:
            return
        program, arguments = self.command(*args)
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.process.start(program, arguments)
        self.refresh()

    def _read(self) -> None:
        if self.process is None:
            return
        data = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        for line in data.splitlines():
            if line.startswith("progress "):
                _, done, total, *message = line.split(" ", 3)
                if int(total) > 0:
                    self.progress.setRange(0, int(total))
                    self.progress.setValue(int(done))
                else:
                    self.progress.setRange(0, 0)
                if message:
                    self.progress.setFormat(f"{message[0]}  %p%")
            elif line.strip():
                self.log.appendPlainText(line)

    def _finished(self, code: int, _status=None) -> None:
        self._read()
        self.process.deleteLater()
        self.process = None
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if code == 0 else 0)
        self.progress.setFormat("done" if code == 0 else f"failed (exit code {code})")
        if code != 0:
            self.log.setVisible(True)
        self.refresh()

    def reject(self) -> None:
        self.cancel()
        super().reject()


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
