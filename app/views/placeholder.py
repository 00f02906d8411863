"""A tab whose view is still to come: it says what will be there, so the loop reads whole."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from rlhf_workbench.core.project import Project

from ..widgets import heading_label, plain_label


class PlaceholderView(QWidget):
    def __init__(self, title: str, description: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = heading_label(title)
        self.description = plain_label(description)
        self.description.setWordWrap(True)
        self.description.setMaximumWidth(560)
        for label in (self.title, self.description):
            label.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(self.title, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.description, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(2)

    def set_project(self, project: Project | None) -> None:
        pass


LABEL = (
    "Labelling comes next",
    "Here you will judge pairs with the keyboard: 1 or ← if the left response is better, "
    "2 or → if the right one is, T for a tie, X if both are bad, Space to skip, Ctrl+Z to undo. "
    "Every verdict is saved before the next pair appears.",
)
REWARD = (
    "Reward model training is coming",
    "Here you will train a Bradley-Terry reward model on the labelled pairs and watch its loss "
    "and accuracy live; checkpoints load with transformers.",
)
PPO = (
    "PPO is coming",
    "Here you will optimise a policy against a reward model with a KL leash to a reference "
    "model, watching reward, KL and entropy curves and a stream of sample generations.",
)
RUNS = (
    "Runs are coming",
    "Here every reward-model and PPO run of this project will be listed with its settings, "
    "status and curves, to compare, resume or open.",
)
