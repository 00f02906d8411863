"""The filter row above the pairs table: origin, annotator, verdict, "not yet judged", and search.

It only gathers the person's choices into a `PairFilter` (the store turns that into SQL) and
says when they change. Typing in the search field waits for a pause before it says so, so that
a search over 100,000 pairs starts once per word, not once per key.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLineEdit, QWidget

from rlhf_workbench.core.records import VERDICTS
from rlhf_workbench.core.store.pairs import PairFilter

from ..text import VERDICT_NAMES
from ..widgets import plain_label

SEARCH_PAUSE_MS = 250


class SearchField(QLineEdit):
    """Escape clears the search; Down moves on to the table (`leave_down`)."""

    leave_down = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self.text():
            self.clear()
            return
        if event.key() == Qt.Key.Key_Down:
            self.leave_down.emit()
            return
        super().keyPressEvent(event)


def _combo(everything: str) -> QComboBox:
    combo = QComboBox()
    combo.addItem(everything, None)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
    return combo


class FilterBar(QWidget):
    changed = Signal()  # the filter is different now (for text: after a pause in typing)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.origin = _combo("All origins")
        self.annotator = _combo("All annotators")
        self.verdict = _combo("Any verdict")
        for verdict in VERDICTS:
            self.verdict.addItem(VERDICT_NAMES[verdict], verdict)
        self.unlabelled = QCheckBox("&Not yet judged")
        self.search = SearchField()
        self.search.setPlaceholderText("Search prompts and responses (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(220)
        self.search.setAcceptDrops(False)  # a file dropped here is meant for the view: an import
        self.status = plain_label()
        self.status.setMinimumWidth(150)
        self.status.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        self._pause = QTimer(self)
        self._pause.setSingleShot(True)
        self._pause.setInterval(SEARCH_PAUSE_MS)
        self._pause.timeout.connect(self._text_settled)
        self.search.textChanged.connect(lambda _: self._pause.start())
        self.search.returnPressed.connect(self._text_settled)
        for combo in (self.origin, self.annotator, self.verdict):
            combo.currentIndexChanged.connect(lambda _: self.changed.emit())
        self.unlabelled.toggled.connect(lambda _: self.changed.emit())

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.origin, self.annotator, self.verdict, self.unlabelled):
            layout.addWidget(widget)
        layout.addWidget(self.search, 1)
        layout.addWidget(self.status)

    def filter(self) -> PairFilter:
        return PairFilter(
            origin=self.origin.currentData(),
            annotator=self.annotator.currentData(),
            verdict=self.verdict.currentData(),
            unlabelled=self.unlabelled.isChecked(),
            text=self.search.text().strip(),
        )

    def set_choices(self, origins: list[str], annotators: list[str]) -> None:
        """The origins and annotators the project has; a choice still there stays chosen."""
        for combo, values in ((self.origin, origins), (self.annotator, annotators)):
            current = combo.currentData()
            combo.blockSignals(True)
            while combo.count() > 1:
                combo.removeItem(1)
            for value in values:
                combo.addItem(value, value)  # combo items are plain text
            index = combo.findData(current) if current is not None else 0
            combo.setCurrentIndex(max(0, index))
            combo.blockSignals(False)
            if current is not None and index < 0:
                self.changed.emit()  # the chosen one is gone: the filter widened

    def reset(self) -> None:
        """Everything back to "all" (for a newly opened project), without emitting `changed`."""
        for widget in (self.origin, self.annotator, self.verdict, self.unlabelled, self.search):
            widget.blockSignals(True)
        self.origin.setCurrentIndex(0)
        self.annotator.setCurrentIndex(0)
        self.verdict.setCurrentIndex(0)
        self.unlabelled.setChecked(False)
        self.search.clear()
        self._pause.stop()
        for widget in (self.origin, self.annotator, self.verdict, self.unlabelled, self.search):
            widget.blockSignals(False)

    def focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def _text_settled(self) -> None:
        self._pause.stop()
        self.changed.emit()  # the view ignores a filter it already shows (Enter pressed twice)
