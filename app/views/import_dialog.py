"""Importing a file from the Data tab: the choices, the run in the background, the summary.

    ImportDialog      the detected format (or another one forced), a column mapping for any
                      CSV/JSONL, the annotator for the file's own verdicts, "skip bad rows";
                      the file's first rows are read in a task, so a huge JSON array never
                      freezes the window while the dialog opens
    run_import        `core.importing.import_file` in a task, with progress and Cancel
    ImportSummary     what was added, what was already there, which rows were rejected and why

The core decides everything about the data (what a format is, what a row must hold); this
module only collects the person's choices and shows the core's answers as plain text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLineEdit,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.errors import ConfigError, WorkbenchError
from rlhf_workbench.core.events import Sink, StopFlag
from rlhf_workbench.core.formats import detect, get_format, readable_formats
from rlhf_workbench.core.formats.mapped import TARGETS, mapping_problem, parse_verdict_values
from rlhf_workbench.core.formats.rows import RowSource
from rlhf_workbench.core.importing import ImportReport, import_file
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.store import Store

from ..tasks import Task, run_store_task, run_task
from ..text import count, one_line
from ..widgets import heading_label, plain_label

MAPPED = "mapped"
PREVIEW_ROWS = 5
PREVIEW_COLUMNS = 12
# Rejected rows listed in the summary; the count is always exact, and `--skip-bad` on the
# command line lists them all.
REJECTED_LISTED = 200

# Column names that usually hold each mapping target, tried in order (compared lower-cased).
_COLUMN_GUESSES: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt", "question", "instruction", "input", "query", "context"),
    "chosen": ("chosen", "preferred", "better", "good", "winner_response"),
    "rejected": ("rejected", "dispreferred", "worse", "bad", "loser_response"),
    "response_a": ("response_a", "answer_a", "completion_a", "output_a", "a"),
    "response_b": ("response_b", "answer_b", "completion_b", "output_b", "b"),
    "verdict": ("verdict", "winner", "preference", "label", "choice"),
    "margin": ("margin",),
    "system": ("system", "system_prompt"),
}


@dataclass
class FileLook:
    """What the file's first rows say: the detected format (or why none), columns and rows."""

    path: Path
    detected: str | None = None
    problem: str | None = None  # the core's message when the format could not be detected
    readable: bool = True  # False: not even rows could be read (empty, binary, no such file)
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


def look_at_file(path: Path) -> FileLook:
    """Runs in a worker: detection reads rows, and a JSON array is read whole to get them."""
    look = FileLook(path)
    try:
        detection = detect(path)
        look.detected, sample = detection.format.name, detection.sample
    except WorkbenchError as exc:
        look.problem = str(exc)
        try:
            sample = RowSource(path).sample()
        except WorkbenchError as again:
            look.problem, look.readable = str(again), False
            return look
    look.columns = [str(c) for c in sample.columns]
    look.rows = sample.rows[:PREVIEW_ROWS]
    return look


def guess_mapping(columns: list[str]) -> dict[str, str]:
    """A starting mapping from column names; the person checks and corrects it."""
    by_name = {c.lower(): c for c in columns}
    guess = {}
    for target, names in _COLUMN_GUESSES.items():
        column = next((by_name[n] for n in names if n in by_name), None)
        if column is not None and column not in guess.values():
            guess[target] = column
    # chosen + rejected and response_a + response_b exclude each other; keep the complete pair.
    if {"chosen", "rejected"} <= guess.keys():
        for target in ("response_a", "response_b", "verdict"):
            guess.pop(target, None)
    else:
        guess.pop("chosen", None)
        guess.pop("rejected", None)
    return guess


@dataclass
class ImportChoice:
    path: Path
    format: str
    mapping: dict[str, str] | None = None
    annotator: str | None = None
    skip_bad: bool = False
    verdict_values: dict[str, str] | None = None  # what the verdict column's values mean (mapped)


class MappingForm(QGroupBox):
    """One column per mapping target (what `--map target=column` says on the command line)."""

    changed = Signal()
    NOT_USED = "(not used)"

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Column mapping", parent)
        self.combos: dict[str, QComboBox] = {}
        form = QFormLayout(self)
        hint = plain_label(
            "Map prompt, and either chosen + rejected (a labelled pair) or response_a + response_b "
            "(optionally with a verdict column)."
        )
        hint.setWordWrap(True)
        form.addRow(hint)
        for target in TARGETS:
            combo = QComboBox()
            combo.currentIndexChanged.connect(self.changed)
            self.combos[target] = combo
            form.addRow(target, combo)
        # What the command line says with verdict=COL1+COL2 and --verdict-values.
        self.more_verdicts = QLineEdit()
        self.more_verdicts.setPlaceholderText("other annotators' verdict columns, e.g. annotator2+annotator3")
        self.more_verdicts.textChanged.connect(self.changed)
        form.addRow("more verdicts", self.more_verdicts)
        self.verdict_values = QLineEdit()
        self.verdict_values.setPlaceholderText("what the verdicts' values mean, e.g. 0=tie,1=a,2=b (empty: a/b/tie, 1/2, model_a…)")
        self.verdict_values.textChanged.connect(self.changed)
        form.addRow("verdict values", self.verdict_values)

    def set_columns(self, columns: list[str], mapping: dict[str, str]) -> None:
        for target, combo in self.combos.items():
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(self.NOT_USED, None)
            for column in columns:
                combo.addItem(column, column)
            combo.setCurrentIndex(max(0, combo.findData(mapping.get(target))) if target in mapping else 0)
            combo.blockSignals(False)
        self.changed.emit()

    def set_target(self, target: str, column: str | None) -> None:
        combo = self.combos[target]
        combo.setCurrentIndex(max(0, combo.findData(column)) if column is not None else 0)

    def mapping(self) -> dict[str, str]:
        mapping = {t: c.currentData() for t, c in self.combos.items() if c.currentData() is not None}
        more = [c.strip() for c in self.more_verdicts.text().split("+") if c.strip()]
        if more:
            mapping["verdict"] = "+".join([mapping["verdict"], *more] if "verdict" in mapping else more)
        return mapping

    def values(self) -> dict[str, str]:
        """The verdict values typed, {} for none; ConfigError naming the item when unusable."""
        text = self.verdict_values.text().strip()
        return parse_verdict_values(text) if text else {}

    def problem(self) -> str | None:
        try:
            values = self.values()
        except ConfigError as exc:
            return str(exc).replace("--verdict-values", "verdict values")
        problem = mapping_problem(self.mapping(), values)
        return problem.replace("--verdict-values", "verdict values") if problem else None


def _cell_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return one_line(text, 80)


class ImportDialog(QDialog):
    """How to import one file. Opens at once; the file is looked at in the background."""

    looked = Signal()  # the first rows have been read (or could not be)

    def __init__(self, path: str | Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.path = Path(path)
        self.look: FileLook | None = None
        self.setWindowTitle(f"Import {self.path.name}")
        self.setMinimumWidth(640)

        self.file_label = plain_label(str(self.path))
        self.file_label.setWordWrap(True)
        self.format = QComboBox()
        self.format.setEnabled(False)
        for fmt in sorted(readable_formats(), key=lambda f: f.name):
            self.format.addItem(fmt.name, fmt.name)
        self.description = plain_label()
        self.description.setWordWrap(True)
        self.detection = plain_label("Reading the first rows…")
        self.detection.setWordWrap(True)
        self.mapping = MappingForm()
        self.annotator = QLineEdit()
        self.skip_bad = QCheckBox("Skip bad rows: import the good ones and list the rest")
        self.preview = QTableWidget(0, 0)
        self.preview.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.preview.setMaximumHeight(160)
        self.problem = plain_label()
        self.problem.setWordWrap(True)

        form = QFormLayout()
        form.addRow("File", self.file_label)
        form.addRow("Format", self.format)
        form.addRow("", self.description)
        form.addRow("", self.detection)
        form.addRow("Verdicts by", self.annotator)
        form.addRow("", self.skip_bad)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.import_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.import_button.setText("Import")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.mapping)
        layout.addWidget(heading_label("First rows"))
        layout.addWidget(self.preview)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)

        self.format.currentIndexChanged.connect(self._update)
        self.mapping.changed.connect(self._update)
        self._update()
        self.task: Task = run_task(
            self, lambda sink, stop: look_at_file(self.path), on_done=self._show_look, on_error=self._look_failed
        )

    # -- what the person chose ----------------------------------------------------------------

    def choice(self) -> ImportChoice:
        name = self.format.currentData()
        fmt = get_format(name)
        return ImportChoice(
            path=self.path,
            format=name,
            mapping=self.mapping.mapping() if name == MAPPED else None,
            annotator=(self.annotator.text().strip() or None) if fmt.annotator else None,
            skip_bad=self.skip_bad.isChecked(),
            verdict_values=(self.mapping.values() or None) if name == MAPPED else None,
        )

    def set_format(self, name: str) -> None:
        self.format.setCurrentIndex(self.format.findData(name))

    def problem_text(self) -> str | None:
        """Why the import cannot start yet, or None."""
        if self.look is None:
            return "Reading the first rows…"
        if not self.look.readable:
            return self.look.problem
        if self.format.currentData() == MAPPED:
            return self.mapping.problem()
        return None

    def accept(self) -> None:
        if self.problem_text() is None:  # the button is disabled too; this guards Enter and tests
            super().accept()

    # -- showing ------------------------------------------------------------------------------

    def _show_look(self, look: FileLook) -> None:
        self.look = look
        if look.detected is not None:
            self.set_format(look.detected)
            self.format.setItemText(self.format.currentIndex(), f"{look.detected} (detected)")
            self.detection.setText(f"Detected from the first rows as {look.detected}; choose another to force it.")
        elif look.readable:
            self.set_format(MAPPED)
            self.detection.setText(f"The format could not be detected: {look.problem}\nMap the columns, or choose a format.")
        else:
            self.detection.setText("")
        self.format.setEnabled(look.readable)
        self.mapping.set_columns(look.columns, guess_mapping(look.columns))
        self._fill_preview(look)
        self.looked.emit()
        self._update()

    def _look_failed(self, message: str) -> None:
        self._show_look(FileLook(self.path, problem=message, readable=False))

    def _fill_preview(self, look: FileLook) -> None:
        columns = look.columns[:PREVIEW_COLUMNS]
        self.preview.setColumnCount(len(columns))
        self.preview.setHorizontalHeaderLabels(columns)
        self.preview.setRowCount(len(look.rows))
        for r, row in enumerate(look.rows):
            for c, column in enumerate(columns):
                self.preview.setItem(r, c, QTableWidgetItem(_cell_text(row.get(column, ""))))  # plain text

    def _update(self) -> None:
        name = self.format.currentData()
        fmt = get_format(name)
        self.description.setText(fmt.description)
        self.mapping.setVisible(name == MAPPED and self.look is not None and self.look.readable)
        self.annotator.setEnabled(fmt.annotator is not None)
        self.annotator.setPlaceholderText(
            f"{fmt.annotator} (leave empty to keep the data's own name)" if fmt.annotator else "this format has no verdicts"
        )
        problem = self.problem_text()
        self.problem.setText("" if problem is None or self.look is None else f"Cannot import yet: {problem}")
        self.import_button.setEnabled(problem is None)


def run_import(
    parent: QWidget,
    project: Project,
    choice: ImportChoice,
    *,
    on_done: Callable[[ImportReport], None],
    on_stopped: Callable[[str], None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> Task:
    """The import in a task on its own connection: progress by bytes read, Cancel rolls back."""
    name = choice.path.name

    def work(store: Store, sink: Sink, stop: StopFlag) -> ImportReport:
        return import_file(
            store,
            choice.path,
            format=choice.format,
            mapping=choice.mapping,
            annotator=choice.annotator,
            verdict_values=choice.verdict_values,
            skip_bad=choice.skip_bad,
            sink=sink,
            stop=stop,
        )

    return run_store_task(
        parent,
        project,
        work,
        on_done=on_done,
        on_error=on_error,
        on_stopped=on_stopped,
        progress_title=f"Importing {name}…",
    )


class ImportSummary(QDialog):
    """The report of a finished import, rejected rows included, as plain text."""

    def __init__(self, report: ImportReport, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import finished")
        self.setMinimumWidth(560)
        self.report = report
        self.headline = plain_label(report.summary())
        self.headline.setWordWrap(True)
        form = QFormLayout()
        self.values: dict[str, str] = {
            "Rows read": f"{report.rows:,}",
            "Pairs added": f"{report.pairs_added:,}",
            "Pairs already in the project": f"{report.pairs_existing:,}",
            "Verdicts added": f"{report.judgments_added:,}",
            "Prompts added": f"{report.prompts_added:,}",
            "Rows rejected": f"{report.rejected_count:,}",
        }
        if report.skipped:
            self.values["Rows skipped"] = f"{sum(report.skipped.values()):,}"
        if report.ignored_columns:
            self.values["Columns not read"] = ", ".join(report.ignored_columns)
        for title, value in self.values.items():
            label = plain_label(value)
            label.setAlignment(Qt.AlignmentFlag.AlignRight)
            form.addRow(title, label)
        self.rejected = QPlainTextEdit()
        self.rejected.setReadOnly(True)
        self.rejected.setPlainText(rejected_text(report))
        self.rejected.setVisible(report.rejected_count > 0)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(self.headline)
        layout.addLayout(form)
        layout.addWidget(self.rejected, 1)
        layout.addWidget(buttons)


def rejected_text(report: ImportReport) -> str:
    """The first rejected rows, one a line ("line 7, field 'chosen': is missing"), and how many more."""
    lines = [f"Rejected {r!s}" for r in report.rejected[:REJECTED_LISTED]]
    more = report.rejected_count - len(lines)
    if more > 0:
        lines.append(f"… and {count(more, 'more row')} (the command line's --skip-bad lists every one)")
    return "\n".join(lines)
