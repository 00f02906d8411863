"""Small widgets shared by the views."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget


def plain_label(text: str = "", parent: QWidget | None = None) -> QLabel:
    """A QLabel that never interprets its text as HTML (QLabel's default guesses)."""
    label = QLabel(parent)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setText(text)
    return label


def heading_label(text: str, parent: QWidget | None = None) -> QLabel:
    label = plain_label(text, parent)
    font = QFont(label.font())
    font.setBold(True)
    label.setFont(font)
    return label


class TextPane(QWidget):
    """A title over a read-only, wrapping plain-text box. Used for prompts and responses.

    QPlainTextEdit is plain text by construction and lays out lazily, so a 200,000-character
    response stays responsive.
    """

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = heading_label(title)
        self.subtitle = plain_label()
        self.subtitle.setWordWrap(True)
        self.subtitle.hide()
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.text.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.title)
        layout.addWidget(self.subtitle)
        layout.addWidget(self.text, 1)

    def set_text(self, text: str, subtitle: str | None = None) -> None:
        self.text.setPlainText(text)
        self.subtitle.setText(subtitle or "")
        self.subtitle.setVisible(bool(subtitle))

    def set_placeholder(self, text: str) -> None:
        self.text.clear()
        self.text.setPlaceholderText(text)
        self.subtitle.hide()

