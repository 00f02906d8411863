"""The Data tab's panels: the overview counts, one pair in full, and the tables' common setup."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.records import VERDICTS, Conversation, ExportPair

from ..text import VERDICT_NAMES, conversation_text, count, judgments_text
from ..widgets import TextPane, plain_label


def _item(text: str, numeric: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if numeric:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def _small_table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setAlternatingRowColors(True)
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 8)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    return table


class OverviewPanel(QWidget):
    """Counts at a glance: contents, pairs by origin, verdicts by annotator."""

    FIELDS = (
        ("prompts", "Prompts"),
        ("responses", "Responses"),
        ("pairs", "Pairs"),
        ("judgments", "Judgments"),
        # Pairs on held-out prompts are left out: their verdicts would train nothing (core/labeling.py).
        ("unlabelled", "Left for people to judge"),
        ("heldout", "Prompts held out to evaluate"),
    )

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.values = {key: plain_label("–") for key, _ in self.FIELDS}
        contents = QGroupBox("Contents")
        form = QFormLayout(contents)
        for key, title in self.FIELDS:
            self.values[key].setAlignment(Qt.AlignmentFlag.AlignRight)
            form.addRow(title, self.values[key])

        self.origins = _small_table(["Origin", "Pairs"])
        origins_box = QGroupBox("Pairs by origin")
        QVBoxLayout(origins_box).addWidget(self.origins)

        self.verdicts = _small_table(["Annotator", *(VERDICT_NAMES[v] for v in VERDICTS), "Total"])
        verdicts_box = QGroupBox("Verdicts by annotator")
        QVBoxLayout(verdicts_box).addWidget(self.verdicts)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(contents, 2)
        layout.addWidget(origins_box, 2)
        layout.addWidget(verdicts_box, 5)
        self.setMaximumHeight(150)

    def show_counts(
        self,
        counts: dict[str, int],
        by_origin: dict[str, int],
        by_annotator: dict[str, dict[str, int]],
    ) -> None:
        for key, _ in self.FIELDS:
            self.values[key].setText(f"{counts.get(key, 0):,}")
        self.origins.setRowCount(len(by_origin))
        for row, (origin, n) in enumerate(by_origin.items()):
            self.origins.setItem(row, 0, _item(origin))
            self.origins.setItem(row, 1, _item(f"{n:,}", numeric=True))
        self.verdicts.setRowCount(len(by_annotator))
        for row, (annotator, verdicts) in enumerate(by_annotator.items()):
            self.verdicts.setItem(row, 0, _item(annotator))
            for col, verdict in enumerate(VERDICTS, start=1):
                self.verdicts.setItem(row, col, _item(f"{verdicts.get(verdict, 0):,}", numeric=True))
            self.verdicts.setItem(row, len(VERDICTS) + 1, _item(f"{sum(verdicts.values()):,}", numeric=True))

    def clear(self) -> None:
        self.show_counts({}, {}, {})
        for label in self.values.values():
            label.setText("–")


class DetailPane(QWidget):
    """One pair in full: its conversation and both responses, side by side, as plain text."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.header = plain_label()
        self.header.setWordWrap(True)
        self.conversation = TextPane("Conversation")
        self.response_a = TextPane("Response A")
        self.response_b = TextPane("Response B")
        splitter = QSplitter(Qt.Orientation.Horizontal)
        for pane in (self.conversation, self.response_a, self.response_b):
            splitter.addWidget(pane)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.header)
        layout.addWidget(splitter, 1)
        self.clear()

    def show_pair(self, pair: ExportPair) -> None:
        self.header.setText(f"Pair {pair.pair_id} · origin {pair.origin} · {judgments_text(pair.judgments)}")
        self.conversation.set_text(conversation_text(pair.prompt))
        self.response_a.set_text(pair.response_a, count(len(pair.response_a), "character"))
        self.response_b.set_text(pair.response_b, count(len(pair.response_b), "character"))

    def show_prompt(self, prompt_id: int, conversation: Conversation, pairs: int) -> None:
        self.header.setText(f"Prompt {prompt_id} · {count(pairs, 'pair')}")
        self.conversation.set_text(conversation_text(conversation))
        for pane in (self.response_a, self.response_b):
            pane.set_placeholder("Select a pair to see its responses.")

    def clear(self) -> None:
        self.header.setText("Select a pair or a prompt to see it in full.")
        self.conversation.set_placeholder("")
        self.response_a.set_placeholder("")
        self.response_b.set_placeholder("")


def table_view(model) -> QTableView:
    view = QTableView()
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    view.verticalHeader().hide()
    # Fixed row heights let the view skip measuring rows it never shows (fast on large tables).
    view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    view.verticalHeader().setDefaultSectionSize(view.fontMetrics().height() + 10)
    view.horizontalHeader().setStretchLastSection(True)
    view.horizontalHeader().setHighlightSections(False)
    return view
