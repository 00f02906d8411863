"""Download…, beside every model picker: a model from the Hugging Face hub, without a terminal.

    [ org/name                 ] [ revision (main) ] [Look up]
    Qwen/Qwen2.5-0.5B-Instruct (main, commit 7ae557604a)
      10 files, 988.1 MB · licence: apache-2.0 · into ~/.cache/huggingface/hub (120.4 GB free)
    [=========>               ] Downloading …: 412.0 MB of 988.1 MB
                                                  [Download] [Cancel]

Look up shows the size, the licence and the free space before anything is fetched; Download
fetches the safetensors weights and the files that go with them into the Hugging Face cache
(core/download.py). Both run in a spawned child (huggingface_hub's client, and never torch, in the
window's process); Cancel stops the child's download, which keeps the files it finished. When done,
`downloaded(repo_id, folder)` is emitted and the dialog accepts.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.download import DISK_MARGIN_BYTES, HubModel, human_size
from rlhf_workbench.core.events import Failed, Progress

from ..tasks import Task, run_in_child
from ..widgets import plain_label


class DownloadDialog(QDialog):
    downloaded = Signal(str, str)  # repo id, snapshot folder

    def __init__(self, parent: QWidget | None = None, repo_id: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Download a model")
        self.setMinimumWidth(620)
        self.model: HubModel | None = None
        self.task: Task | None = None
        self.folder: str | None = None

        self.repo = QLineEdit(repo_id)
        self.repo.setPlaceholderText("org/name on huggingface.co, e.g. Qwen/Qwen2.5-0.5B-Instruct")
        self.revision = QLineEdit()
        self.revision.setPlaceholderText("main")
        self.revision.setToolTip("A branch, tag or commit of the model (default: main)")
        self.revision.setMaximumWidth(140)
        self.look_up_button = QPushButton("Look up")
        self.look_up_button.setToolTip("Show the files' size, the licence and the free disk space; fetches nothing")
        row = QHBoxLayout()
        row.addWidget(self.repo, 1)
        row.addWidget(self.revision)
        row.addWidget(self.look_up_button)

        self.info = plain_label(
            "Type a model's name on the Hugging Face hub and press Look up. Only its safetensors weights, config and "
            "tokenizer are downloaded, into the Hugging Face cache, where every tool finds it."
        )
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)  # permille: byte counts overflow an int
        self.progress.setVisible(False)
        self.status = plain_label()
        self.status.setWordWrap(True)

        self.download_button = QPushButton("Download")
        self.download_button.setEnabled(False)
        self.download_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.info)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)
        layout.addLayout(buttons)

        self.look_up_button.clicked.connect(lambda _checked=False: self.look_up())
        self.repo.returnPressed.connect(self.look_up)
        self.download_button.clicked.connect(lambda _checked=False: self.download())
        self.cancel_button.clicked.connect(lambda _checked=False: self.reject())
        self.repo.textEdited.connect(self._forget)
        self.revision.textEdited.connect(self._forget)

    # -- look up ----------------------------------------------------------------------------------

    def look_up(self) -> None:
        if self.busy() or not self.repo.text().strip():
            return
        self._forget()
        self._set_busy(True)
        self.status.setText("Looking it up…")
        self.task = run_in_child(
            self, "rlhf_workbench.core.download:look_up_task", self.repo.text().strip(),
            self.revision.text().strip() or None, what="look-up", on_done=self._looked_up, on_error=lambda _m: None,
        )
        self.task.failed.connect(self._failed)
        self.task.ended.connect(lambda: self._set_busy(False))

    def _looked_up(self, model: HubModel) -> None:
        self.model = model
        self.info.setText(model.summary())
        if model.needed_bytes + DISK_MARGIN_BYTES > model.free_bytes:
            self._say(f"Not enough room: it needs {human_size(model.needed_bytes)} and {human_size(model.free_bytes)} is "
                      "free there. Free some space, or point HF_HOME at a bigger disk and restart.", error=True)
        elif model.needed_bytes == 0:
            self._say("Already downloaded: Download only selects it.")
        else:
            self._say(f"Download {human_size(model.needed_bytes)}?")

    # -- download ---------------------------------------------------------------------------------

    def download(self) -> None:
        model = self.model
        if model is None or self.busy():
            return
        self._set_busy(True)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self._say(f"Downloading {model.repo_id}…")
        self.task = run_in_child(
            self, "rlhf_workbench.core.download:download", model.repo_id, model.revision, info=model,
            what="download", on_done=self._done, on_error=lambda _m: None, on_stopped=self._stopped,
        )
        self.task.progress.connect(self._progress)
        self.task.failed.connect(self._failed)
        self.task.ended.connect(lambda: self._set_busy(False))

    def _progress(self, progress: Progress) -> None:
        if progress.total:
            self.progress.setValue(min(1000, int(progress.step * 1000 // progress.total)))
        if progress.message and not (self.task is not None and self.task.stopping):
            self.status.setText(progress.message)

    def _done(self, result: dict) -> None:
        self.folder = result["path"]
        self.progress.setValue(1000)
        self._say(f"Downloaded into {self.folder}")
        self.downloaded.emit(result["repo_id"], self.folder)
        self.accept()

    def _stopped(self, message: str) -> None:
        self.progress.setVisible(False)
        self._say(message[:1].upper() + message[1:] + ". Download again to fetch the rest.")

    def _failed(self, failed: Failed) -> None:
        self.progress.setVisible(False)
        self._say(failed.message + (f"\n{failed.hint}" if failed.hint else ""), error=True)

    # -- the rest ---------------------------------------------------------------------------------

    def busy(self) -> bool:
        return self.task is not None and self.task.is_running()

    def reject(self) -> None:
        """Cancel: stops a download under way (the dialog stays, to say what was kept), else closes."""
        if self.busy():
            self.task.stop()
            self.status.setText("Cancelling…")
            return
        super().reject()

    def _forget(self, *_args) -> None:
        if self.busy():
            return
        self.model = None
        self.download_button.setEnabled(False)

    def _set_busy(self, busy: bool) -> None:
        self.look_up_button.setEnabled(not busy)
        self.repo.setReadOnly(busy)
        self.revision.setReadOnly(busy)
        fits = self.model is not None and self.model.needed_bytes + DISK_MARGIN_BYTES <= self.model.free_bytes
        self.download_button.setEnabled(not busy and fits)

    def _say(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #c62828;" if error else "")
