"""Small widgets shared by the views."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget


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


def run_buttons(view, *, start_tip: str, resume_tip: str) -> QHBoxLayout:
    """Start (Ctrl+Return), Stop and Resume for a training tab: sets view.start_button,
    view.stop_button and view.resume_button, wired to view.start / stop / resume."""
    view.start_button = QPushButton("Start")
    view.stop_button = QPushButton("Stop")
    view.resume_button = QPushButton("Resume")
    view.start_button.setToolTip(f"{start_tip} (Ctrl+Return)")
    view.start_button.setShortcut("Ctrl+Return")
    view.stop_button.setToolTip("Save a checkpoint and stop; Resume continues from it")
    view.resume_button.setToolTip(resume_tip)
    view.start_button.clicked.connect(view.start)
    view.stop_button.clicked.connect(view.stop)
    view.resume_button.clicked.connect(view.resume)
    row = QHBoxLayout()
    for button in (view.start_button, view.stop_button, view.resume_button):
        row.addWidget(button)
    return row


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

