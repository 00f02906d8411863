"""The labelling keys, written down once: the buttons and the help overlay (`?`) both read KEYS."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QFrame, QGridLayout, QVBoxLayout, QWidget

from ..widgets import heading_label, plain_label

# (action, what it does, its keys). Actions that are verdicts use the core's choice names.
KEYS: tuple[tuple[str, str, str], ...] = (
    ("left", "Left is better", "1 or ←"),
    ("right", "Right is better", "2 or →"),
    ("tie", "Tie", "3 or T"),
    ("both_bad", "Both bad", "4 or X"),
    ("skip", "Skip", "S or Space"),
    ("undo", "Undo the last verdict", "Ctrl+Z"),
    ("rationale", "Write a rationale", "Tab"),
    ("back", "Back to the keys", "Esc"),
    ("diff", "Highlight differences", "D"),
    ("help", "Show or hide this help", "?"),
)


class KeyHelpOverlay(QWidget):
    """A dimmed layer over the labelling page with the keys in a card; any key closes it."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground)
        card = QFrame()
        card.setFrameShape(QFrame.Shape.StyledPanel)
        card.setAutoFillBackground(True)
        grid = QGridLayout(card)
        grid.addWidget(heading_label("Keys"), 0, 0, 1, 2)
        for row, (_, title, keys) in enumerate(KEYS, start=1):
            key_label = heading_label(keys)
            key_label.setAlignment(Qt.AlignmentFlag.AlignRight)
            grid.addWidget(key_label, row, 0)
            grid.addWidget(plain_label(title), row, 1)
        grid.addWidget(plain_label("Every verdict is saved before the next pair appears."), len(KEYS) + 1, 0, 1, 2)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(card, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(0, 0, 0, 110))

    def mousePressEvent(self, event) -> None:
        self.hide()
