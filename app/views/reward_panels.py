"""What a trained reward model says: score a text, and the validation pairs it gets most wrong.

Both load a checkpoint (torch, transformers) in a short-lived child process (tasks.run_in_child):
the window stays responsive, the GUI process never imports torch (importing it on a worker thread
of a Qt process was seen to deadlock), the model's memory goes when the child ends, and a child
that dies (out of memory) is reported within a second.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.project import Project

from ..tasks import run_in_child
from ..text import one_line
from ..widgets import TextPane, plain_label


class _CheckpointPicker(QComboBox):
    """The project's reward-model checkpoints, newest run first."""

    def set_models(self, entries) -> None:
        current = self.currentData()
        self.clear()
        for entry in reversed([e for e in entries if e.source == "checkpoint"]):
            self.addItem(entry.name, str(entry.path))
        index = self.findData(current)
        self.setCurrentIndex(index if index >= 0 else 0)


class ScorePanel(QWidget):
    """Type or paste a text (or a "User: …\\n\\nAssistant: …" transcript) and see its reward."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.task = None  # the scoring under way, if any
        self.model = _CheckpointPicker()
        self.text = QPlainTextEdit()
        self.text.setPlaceholderText(
            "User: What is 2 + 2?\n\nAssistant: 2 + 2 = 4.\n\n(One text, or a transcript like this one.)"
        )
        self.button = QPushButton("Score")
        self.button.setShortcut("Ctrl+Return")
        self.button.clicked.connect(self.score)
        self.result = plain_label("")
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.addWidget(plain_label("Model:"))
        row.addWidget(self.model, 1)
        row.addWidget(self.button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.result)

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.result.setText("")

    def set_models(self, entries) -> None:
        self.model.set_models(entries)
        self.button.setEnabled(self.model.count() > 0)
        if self.model.count() == 0:
            self.result.setText("Train a reward model first: its checkpoints appear here.")

    def score(self) -> None:
        model_path, text = self.model.currentData(), self.text.toPlainText()
        if not model_path or not text.strip():
            return
        self.button.setEnabled(False)
        self.result.setText("Scoring…")

        self.task = run_in_child(self, "rlhf_workbench.core.reward.remote:score_texts", model_path, [text],
                                 what="scoring", on_done=self._scored, on_error=self._failed)

    def _scored(self, rewards: list[float]) -> None:
        reward = rewards[0]
        self.button.setEnabled(True)
        self.result.setText(f"Reward: {reward:+.4f}   (higher is better; compare texts with each other)")

    def _failed(self, message: str) -> None:
        self.button.setEnabled(True)
        self.result.setText(message)


class MostWrongPanel(QWidget):
    """Validation pairs with the lowest r(chosen) - r(rejected): where the model and people differ."""

    COLUMNS = ["Pair", "Margin", "r(chosen)", "r(rejected)", "Prompt"]

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.task = None  # the scoring under way, if any
        self.rows: list[dict] = []
        self.model = _CheckpointPicker()
        self.button = QPushButton("Find")
        self.button.clicked.connect(self.find)
        self.status = plain_label("")
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._show_selected)
        self.chosen = TextPane("Chosen (by people)")
        self.rejected = TextPane("Rejected")
        row = QHBoxLayout()
        row.addWidget(plain_label("Model:"))
        row.addWidget(self.model, 1)
        row.addWidget(self.button)
        details = QSplitter(Qt.Orientation.Horizontal)
        details.addWidget(self.chosen)
        details.addWidget(self.rejected)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(details)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.rows = []
        self.table.setRowCount(0)
        self.status.setText("")

    def set_models(self, entries) -> None:
        self.model.set_models(entries)
        self.button.setEnabled(self.model.count() > 0)

    def find(self) -> None:
        checkpoint = self.model.currentData()
        if self.project is None or not checkpoint:
            return
        path = self.project.path
        self.button.setEnabled(False)
        self.status.setText("Scoring the validation pairs…")

        self.task = run_in_child(self, "rlhf_workbench.core.reward.remote:most_wrong_validation_pairs", checkpoint,
                                 str(path), k=50, what="scoring", on_done=self._show, on_error=self._failed)

    def _show(self, rows: list[dict]) -> None:
        self.button.setEnabled(True)
        self.rows = rows
        wrong = sum(1 for r in rows if r["margin"] < 0)
        self.status.setText(f"{wrong} of these {len(rows)} pairs are ranked the wrong way round.")
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            prompt = next((m["content"] for m in reversed(row["prompt"]) if m["role"] == "user"), "")
            cells = [
                str(row["pair_id"]),
                f"{row['margin']:+.3f}",
                f"{row['reward_chosen']:+.3f}",
                f"{row['reward_rejected']:+.3f}",
                one_line(prompt, 120),
            ]
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))

    def _show_selected(self) -> None:
        selected = self.table.selectionModel().selectedRows()
        if not selected:
            return
        row = self.rows[selected[0].row()]
        self.chosen.set_text(row["chosen"], f"reward {row['reward_chosen']:+.3f}")
        self.rejected.set_text(row["rejected"], f"reward {row['reward_rejected']:+.3f}")

    def _failed(self, message: str) -> None:
        self.button.setEnabled(True)
        self.status.setText(message)
