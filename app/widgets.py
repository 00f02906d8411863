"""Small widgets shared by the views."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget


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


def run_buttons(view, *, start_tip: str, resume_tip: str, gpu_count: int | None = None) -> QHBoxLayout:
    """Start (Ctrl+Return), Stop and Resume for a training tab: sets view.start_button,
    view.stop_button and view.resume_button, wired to view.start / stop / resume.

    On a machine with several GPUs (`gpu_count`, by default the ones this process may use) a
    "GPUs" box comes first: more than one runs the job under torchrun, one rank per GPU.
    `view.gpus_box` is None where there is no choice to make, and `run_processes(view)` says
    how many to start.
    """
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
    view.gpus_box = _gpus_box(gpu_count)
    if view.gpus_box is not None:
        row.addWidget(plain_label("GPUs"))
        row.addWidget(view.gpus_box)
    for button in (view.start_button, view.stop_button, view.resume_button):
        row.addWidget(button)
    return row


def run_processes(view) -> int:
    """How many processes (GPUs) the view's run should use: its GPUs box, else one."""
    box = getattr(view, "gpus_box", None)
    return box.value() if box is not None else 1


def _gpus_box(gpu_count: int | None) -> QSpinBox | None:
    from rlhf_workbench.core.runs.torchrun import can_launch, visible_gpu_count

    count = visible_gpu_count() if gpu_count is None else gpu_count
    if count < 2 or not can_launch():
        return None  # one GPU, or none: nothing to choose
    box = QSpinBox()
    box.setRange(1, count)
    box.setValue(1)
    box.setToolTip(
        f"How many of this machine's {count} GPUs to train on. More than one starts the run under torchrun, "
        "one process per GPU; the batch size stays the global batch (see the README's 'Several GPUs')."
    )
    return box


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

