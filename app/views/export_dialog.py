"""Exporting pairs from the Data tab: the choices, the run in the background, the summary.

    ExportDialog   a format with a writer, a file to write, and optionally whose verdicts count
                   (by default every annotator's, settled by majority: `store.settle_verdict`)
    run_export     `core.exporting.export_file` in a task; Cancel interrupts the database read
                   and the core removes its temporary file, so no half-written file is left
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.events import Progress, Sink, StopFlag
from rlhf_workbench.core.exporting import ExportReport, export_file
from rlhf_workbench.core.formats import get_format, writable_formats
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.store import Store

from ..tasks import Task, run_store_task
from ..widgets import plain_label


@dataclass
class ExportChoice:
    path: Path
    format: str
    annotators: list[str] | None = None  # None: every annotator's verdicts


class ExportDialog(QDialog):
    def __init__(self, annotators: list[str], folder: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export Pairs")
        self.setMinimumWidth(560)
        self.format = QComboBox()
        for fmt in sorted(writable_formats(), key=lambda f: f.name):
            self.format.addItem(fmt.name, fmt.name)
        self.description = plain_label()
        self.description.setWordWrap(True)
        self.path = QLineEdit(str(folder / f"pairs{get_format(self.format.currentData()).write_suffix}"))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path, 1)
        path_row.addWidget(browse)
        self.annotators = QListWidget()
        self.annotators.setMaximumHeight(140)
        for name in annotators:
            item = QListWidgetItem(name)  # list items are plain text
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.annotators.addItem(item)
        self.annotators_hint = plain_label(
            "Check annotators to export only their verdicts; with none checked, every annotator's "
            "verdicts count and a pair's verdict is their majority."
        )
        self.annotators_hint.setWordWrap(True)
        self.problem = plain_label()
        self.problem.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("", self.description)
        form.addRow("File", path_row)
        form.addRow("Verdicts of", self.annotators)
        form.addRow("", self.annotators_hint)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.export_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.export_button.setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)

        self._suffix = get_format(self.format.currentData()).write_suffix
        self.format.currentIndexChanged.connect(self._format_changed)
        self.path.textChanged.connect(self._update)
        self._format_changed()

    def choice(self) -> ExportChoice:
        checked = [
            self.annotators.item(i).text()
            for i in range(self.annotators.count())
            if self.annotators.item(i).checkState() == Qt.CheckState.Checked
        ]
        return ExportChoice(Path(self.path.text().strip()).expanduser(), self.format.currentData(), checked or None)

    def set_annotators(self, names: list[str]) -> None:
        for i in range(self.annotators.count()):
            item = self.annotators.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in names else Qt.CheckState.Unchecked)

    def problem_text(self) -> str | None:
        text = self.path.text().strip()
        if not text:
            return "Give a file to export to."
        path = Path(text).expanduser()
        if path.is_dir():
            return f"{path} is a folder; give a file name."
        if not path.parent.is_dir():
            return f"{path.parent}: no such folder."
        return None

    def accept(self) -> None:
        if self.problem_text() is None:
            super().accept()

    def _format_changed(self) -> None:
        fmt = get_format(self.format.currentData())
        self.description.setText(fmt.description)
        # Follow the format's usual suffix unless the person typed another one.
        text = self.path.text()
        if text.endswith(self._suffix) and fmt.write_suffix != self._suffix:
            self.path.setText(text[: -len(self._suffix)] + fmt.write_suffix)
        self._suffix = fmt.write_suffix
        self._update()

    def _update(self) -> None:
        problem = self.problem_text()
        path = Path(self.path.text().strip()).expanduser()
        note = "The file exists and will be replaced." if problem is None and path.is_file() else ""
        self.problem.setText(problem or note)
        self.export_button.setEnabled(problem is None)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path.text())
        if path:
            self.path.setText(path)


def run_export(
    parent: QWidget,
    project: Project,
    choice: ExportChoice,
    *,
    on_done: Callable[[ExportReport], None],
    on_stopped: Callable[[str], None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> Task:
    def work(store: Store, sink: Sink, stop: StopFlag) -> ExportReport:
        sink(Progress(0, 0, f"Exporting to {choice.path.name}…"))
        with store.stoppable(stop, f"the export to {choice.path}"):
            return export_file(store, choice.path, format=choice.format, annotators=choice.annotators)

    return run_store_task(
        parent,
        project,
        work,
        on_done=on_done,
        on_error=on_error,
        on_stopped=on_stopped,
        progress_title=f"Exporting to {choice.path.name}…",
    )


def export_summary(parent: QWidget | None, report: ExportReport) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Information, "Export finished", report.summary(), QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)  # paths may look like HTML
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
