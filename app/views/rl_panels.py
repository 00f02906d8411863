"""Parts of the RL tab: the samples table and the watchdogs' warning banner."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.events import Sample

from ..text import one_line
from ..widgets import TextPane, plain_label

# Rows the samples table keeps: the newest; older ones stay in the database (store.samples).
MAX_SAMPLE_ROWS = 200


def _number(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else ""


def _cell(text: str, sort_value: Any = None) -> QTableWidgetItem:
    item = QTableWidgetItem(text)  # table items are plain text
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if sort_value is not None:
        item.setData(Qt.ItemDataRole.UserRole, sort_value)
    return item


class SamplesPanel(QWidget):
    """The latest samples, newest first: prompt, response, score, KL and (RLOO, GRPO) the advantage
    its group gave it; a group's responses sit together, every other group shaded; the selected
    sample in full."""

    COLUMNS = ("Update", "Prompt", "Response", "Score", "KL", "Advantage")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.samples: list[Sample] = []  # as shown, newest first
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        for column in range(len(self.COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        # Prompt and response share what is left; ResizeToContents on long text would be slow.
        header.setSectionResizeMode(self.COLUMNS.index("Prompt"), QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(self.COLUMNS.index("Response"), QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._show_selected)
        self.prompt = TextPane("Prompt")
        self.response = TextPane("Response")
        self.empty = plain_label("No samples yet: every few updates a run shows what its policy writes here.")
        details = QSplitter(Qt.Orientation.Vertical)
        details.addWidget(self.prompt)
        details.addWidget(self.response)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(details)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.empty)
        layout.addWidget(split, 1)

    def clear(self) -> None:
        self.samples = []
        self.table.setRowCount(0)
        self.prompt.set_text("")
        self.response.set_text("")
        self.empty.show()

    def show_advantages(self, shown: bool) -> None:
        self.table.setColumnHidden(self.COLUMNS.index("Advantage"), not shown)

    def set_samples(self, samples: list[Sample]) -> None:
        """A run's stored samples, newest first."""
        self.clear()
        self.add_samples(list(reversed(samples[:MAX_SAMPLE_ROWS])))

    def add_samples(self, samples: list[Sample]) -> None:
        """New samples (oldest first, as they arrive) go on top; the oldest rows beyond the bound go."""
        if not samples:
            return
        selected = self._selected_row()
        table = self.table
        # Quiet while rows move: the selection must not jump to whatever row slides under it.
        table.setUpdatesEnabled(False)
        table.blockSignals(True)
        try:
            for sample in samples:
                self.samples.insert(0, sample)
                table.insertRow(0)
                for column, item in enumerate(self._cells(sample)):
                    table.setItem(0, column, item)
            if len(self.samples) > MAX_SAMPLE_ROWS:
                del self.samples[MAX_SAMPLE_ROWS:]
                table.setRowCount(MAX_SAMPLE_ROWS)
            table.clearSelection()
            if selected is not None and selected + len(samples) < len(self.samples):
                table.selectRow(selected + len(samples))  # the sample being read, moved down
        finally:
            table.blockSignals(False)
            table.setUpdatesEnabled(True)
        self.empty.hide()

    def _cells(self, sample: Sample) -> list[QTableWidgetItem]:
        advantage = sample.extra.get("advantage")
        cells = [
            _cell(f"{sample.step:,}", sample.step),
            _cell(one_line(sample.prompt, 160)),
            _cell(one_line(sample.response, 240)),
            _cell(_number(sample.score, "+.3f"), sample.score),
            _cell(_number(sample.extra.get("kl"), ".3f"), sample.extra.get("kl")),
            _cell(_number(advantage, "+.3f"), advantage),
        ]
        # Samples of one group share a shade, the next group the other: a group reads as one block.
        group = sample.extra.get("group")
        if group is not None and int(group) % 2:
            # A tint of the selection colour: AlternateBase is too close to Base in most themes.
            tint = QColor(self.palette().color(QPalette.ColorRole.Highlight))
            tint.setAlpha(40)
            shade = QBrush(tint)
            for item in cells:
                item.setBackground(shade)
        return cells

    def _selected_row(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows else None

    def _show_selected(self) -> None:
        row = self._selected_row()
        if row is None or row >= len(self.samples):
            return
        sample = self.samples[row]
        figures = [f"update {sample.step:,}"]
        if sample.score is not None:
            figures.append(f"score {sample.score:+.4f}")
        figures += [f"{name} {value:.4g}" for name, value in sample.extra.items() if isinstance(value, (int, float))]
        self.prompt.set_text(sample.prompt)
        self.response.set_text(sample.response, " · ".join(figures))


class WarningBanner(QFrame):
    """The watchdogs' warnings where they cannot be missed: the latest one and how many so far.

    Hidden until the first warning; Dismiss hides it until the next one. The full list is in the
    log, which "Show log" opens.
    """

    show_log_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ppoWarningBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        # Its own colours, text included, so that it reads the same in a light and a dark theme.
        self.setStyleSheet(
            "#ppoWarningBanner { background: #fff3cd; border: 1px solid #e0a800; border-radius: 4px; }"
            "#ppoWarningBanner QLabel { color: #533f03; }"
        )
        self.count = 0
        self.icon = plain_label("⚠")
        font = self.icon.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        self.icon.setFont(font)
        self.message = plain_label()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.counter = plain_label()
        self.log_button = QPushButton("Show log")
        self.log_button.clicked.connect(self.show_log_requested)
        self.dismiss_button = QPushButton("Dismiss")
        self.dismiss_button.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.icon)
        layout.addWidget(self.message, 1)
        layout.addWidget(self.counter)
        layout.addWidget(self.log_button)
        layout.addWidget(self.dismiss_button)
        self.hide()

    def add_warning(self, message: str, *, show: bool = True) -> None:
        self.count += 1
        self.message.setText(message)
        self.counter.setText("1 warning" if self.count == 1 else f"{self.count:,} warnings")
        if show:
            self.show()

    def clear(self) -> None:
        self.count = 0
        self.message.setText("")
        self.counter.setText("")
        self.hide()
