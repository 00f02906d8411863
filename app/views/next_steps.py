"""The loop's five steps along the top of the Data tab: how far the project has got, and a button
for each step, the next one marked (core/progress.py decides).

    ✓ 1 Import or generate   ✓ 2 Label   ▶ 3 Train a reward model   4 Train a policy   5 Evaluate
    Next, step 3 of 5: train a reward model on the labelled pairs (Reward model tab).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from rlhf_workbench.core.progress import STEPS, LoopProgress

from ..widgets import plain_label


class NextSteps(QWidget):
    """The strip; `step_chosen` says which step's button was pressed ("data", "label", ...)."""

    step_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.buttons: dict[str, QPushButton] = {}
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for number, (key, title, action) in enumerate(STEPS, start=1):
            button = QPushButton(f"{number} {title}")
            button.setFlat(True)
            button.setToolTip(action[0].upper() + action[1:])
            button.clicked.connect(lambda _=False, key=key: self.step_chosen.emit(key))
            self.buttons[key] = button
            row.addWidget(button)
        row.addStretch(1)
        self.summary = plain_label("")
        self.summary.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.summary)
        self.progress: LoopProgress | None = None

    def show_progress(self, progress: LoopProgress | None) -> None:
        self.progress = progress
        if progress is None:
            self.summary.setText("")
            for button in self.buttons.values():
                button.setEnabled(False)
            return
        upcoming = progress.next
        for number, step in enumerate(progress.steps, start=1):
            button = self.buttons[step.key]
            button.setEnabled(True)
            mark = "✓ " if step.done else ("▶ " if step is upcoming else "")
            button.setText(f"{mark}{number} {step.title}")
            font = QFont(button.font())
            font.setBold(step is upcoming)
            button.setFont(font)
            button.setFlat(step is not upcoming)
            button.setToolTip(f"{step.action[0].upper()}{step.action[1:]}. Now: {step.detail}.")
        self.summary.setText(progress.summary())
