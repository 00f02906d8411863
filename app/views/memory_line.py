"""The memory estimate under Start: one line, red when the run does not fit, and one-click
suggestions that would make it fit.

    line = MemoryLine()
    line.change_requested.connect(form.apply)      # {field: value}, e.g. {"gradient_checkpointing": True}
    line.refresh(method, config, project_path)     # on every settings change (cheap: no torch, a few files)

The arithmetic is core/training/memory.py's `memory_check`; this only shows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from rlhf_workbench.app.widgets import plain_label
from rlhf_workbench.core.training.memory import MemoryCheck, memory_check

RED = "color: #c62828;"


class MemoryLine(QWidget):
    """"needs about 14.2 GB of 24 GB on NVIDIA RTX 4090", and a button per suggested change."""

    change_requested = Signal(dict)  # the settings change of the suggestion clicked: {field: value}

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.check: MemoryCheck | None = None
        self.label = plain_label("", self)
        self.label.setWordWrap(True)
        self.buttons: list[QPushButton] = []
        self._row = QHBoxLayout()
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addLayout(self._row)

    def refresh(self, method, config: Any, project_path: str | Path | None) -> MemoryCheck:
        """Estimates the run `config` would start and shows it (TrainingMethod, its settings, the project)."""
        check = memory_check(method, config, project_path)
        self.show_check(check)
        return check

    def show_check(self, check: MemoryCheck) -> None:
        self.check = check
        self.label.setText(f"Memory: {check.line}")
        self.label.setStyleSheet("" if check.fits else RED)
        self.label.setToolTip(_breakdown(check))
        for button in self.buttons:
            self._row.removeWidget(button)
            button.deleteLater()
        self.buttons = []
        for tip in check.suggestions:
            button = QPushButton(tip.label, self)
            button.setToolTip("Change these settings: " + ", ".join(f"{k} = {v}" for k, v in tip.changes.items()))
            button.clicked.connect(lambda _checked=False, changes=dict(tip.changes): self.change_requested.emit(changes))
            self._row.insertWidget(len(self.buttons), button)
            self.buttons.append(button)

    @property
    def fits(self) -> bool:
        return self.check is None or self.check.fits


def _breakdown(check: MemoryCheck) -> str:
    """Each model's share, for the tooltip."""
    found = check.estimate
    if found is None:
        return ""
    gb = 2**30
    rows = [f"{p.role} ({p.name}): weights {p.weights / gb:.2f} GB, gradients {p.gradients / gb:.2f}, "
            f"optimizer {p.optimizer / gb:.2f}, training pass {p.training / gb:.2f}, inference {p.inference / gb:.2f}"
            for p in found.parts]
    rows.append(f"runtime {found.runtime / gb:.2f} GB; the training step and the largest inference pass never "
                "overlap, so the larger of the two counts")
    return "\n".join(rows)
