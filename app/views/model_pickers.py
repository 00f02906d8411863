"""Picking a policy (a causal LM), wherever one is picked: the SFT / DPO tab, the RL tab, Generate.

    Policy  'demo' · the project's trained policies (SFT, DPO, RL runs) · causal LMs in the HF cache · [Browse…]
            [Download…] (a model from the Hugging Face hub, into its cache: download_dialog.py; the
            Reward model tab's base model picker has the same button, `download_button`)

A policy trained in the project is offered as its run (core/policies.py: an SFT or DPO run's best
checkpoint, an RL run's latest checkpoint's `policy/` folder, beside the value model). The boxes are editable: a folder
or a cached model's name may be typed or pasted, and a typed spec survives a refresh. Lists are
read on a worker (scanning the Hugging Face cache takes a while on a big machine); nothing here
imports torch.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from rlhf_workbench.core.offline.config import METHOD_TITLES as OFFLINE_TITLES
from rlhf_workbench.core.offline.config import METHODS as OFFLINE_KINDS
from rlhf_workbench.core.policies import trained_policies
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.rl.config import METHOD_TITLES as RL_TITLES
from rlhf_workbench.core.rl.config import METHODS as RL_KINDS

from ..tasks import run_store_task
from ..widgets import heading_label

# The runs that train a policy, by kind: how the kind reads, and what one step of it is called.
POLICY_KINDS: dict[str, tuple[str, str]] = {
    **{kind: (OFFLINE_TITLES[kind], "step") for kind in OFFLINE_KINDS},
    **{kind: (RL_TITLES[kind], "update") for kind in RL_KINDS},
}


def is_causal_lm(architecture: str | None) -> bool:
    """Whether a model folder's architecture can be a policy (unknown: let the person try)."""
    return architecture is None or any(k in architecture for k in ("CausalLM", "LMHead", "ConditionalGeneration"))


def outside_models(models) -> list:
    """Models of `discover_models` that are not the project's: the demo model is a reward model's
    untrained base, not the demo policy ('demo'), and the project's checkpoints are offered as their runs."""
    return [entry for entry in models if entry.source not in ("demo", "checkpoint")]


def policy_items(policies, models) -> list[tuple[str, str]]:
    """(label, spec) of every causal LM that can be a policy: the demo policy, the project's trained
    policies (from `trained_policies`), and the causal LMs of `discover_models`."""
    items = [("demo  (the built-in demo policy)", "demo")]
    for run, step, folder in policies:
        title, unit = POLICY_KINDS[run["kind"]]
        items.append((f"{run['name']}  ({title} {run['id']}, {unit} {step:,})", str(folder)))
    for entry in outside_models(models):
        if is_causal_lm(entry.architecture):
            items.append((f"{entry.name}  ({entry.source})", str(entry.path)))
    return items


def policy_name(spec: str) -> str:
    """A short name for a policy spec, for run names: a project checkpoint is named by its run's id
    (`runs/<id>/checkpoints/step-N[/policy]`), a folder by its name, 'demo' as itself."""
    path = Path(str(spec).strip())
    parts = path.parts
    if "checkpoints" in parts[1:]:
        return parts[parts.index("checkpoints", 1) - 1]
    return path.name or str(spec)


def download_button(box: QComboBox) -> QPushButton:
    """Download… for a model picker: a model from the Hugging Face hub, downloaded into its cache
    (download_dialog.py), then added to `box` as a refresh would list it, and selected."""
    button = QPushButton("Download…")
    button.setToolTip("Download a model from the Hugging Face hub (its safetensors weights, config and tokenizer) "
                      "into the Hugging Face cache, and pick it here")
    button.clicked.connect(lambda _checked=False: open_download(box))
    return button


def open_download(box: QComboBox) -> None:
    """The Download… dialog for `box` (not blocking the window), kept as `box.download_dialog`."""
    from .download_dialog import DownloadDialog

    index, typed = box.currentIndex(), box.currentText().strip()
    picked = index >= 0 and box.itemText(index) == typed
    # A hub name typed into the box (one resolve_model did not find) fills the dialog.
    hub_name = not picked and typed.count("/") == 1 and not typed.startswith((".", "/", "~"))
    dialog = DownloadDialog(box.window(), typed if hub_name else "")
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.downloaded.connect(lambda repo_id, folder: select_downloaded(box, repo_id, folder))
    box.download_dialog = dialog
    dialog.open()


def select_downloaded(box: QComboBox, repo_id: str, folder: str) -> None:
    """Selects a model just downloaded into the Hugging Face cache, labelled as discovery labels it."""
    index = box.findData(folder)
    if index < 0:
        box.addItem(f"{repo_id}  (hf-cache)", folder)
        index = box.count() - 1
    box.setCurrentIndex(index)


class SpecBox(QComboBox):
    """An editable picker of model specs: items show a name and carry the spec; text may be typed."""

    def __init__(self, tooltip: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setEditable(True)
        self.setToolTip(tooltip)
        # An editable box keeps its cursor at the end of the text, which scrolls a long label's
        # start out of sight; a picked item should read from its name.
        self.currentIndexChanged.connect(lambda _index: self.lineEdit().setCursorPosition(0))

    def set_items(self, items: list[tuple[str, str]]) -> None:
        current = self.spec()
        self.clear()
        for label, spec in items:
            self.addItem(label, spec)
        index = self.findData(current)
        if index >= 0:
            self.setCurrentIndex(index)
        elif current and self.count():
            self.setEditText(current)  # typed by hand: kept
        else:
            self.setCurrentIndex(0 if self.count() else -1)

    def spec(self) -> str:
        index = self.currentIndex()
        text = self.currentText().strip()
        if index >= 0 and self.itemText(index) == text:
            data = self.itemData(index)
            return text if data is None else data
        return text

    def add_folder(self, folder: str) -> None:
        self.addItem(folder, folder)
        self.setCurrentIndex(self.count() - 1)

    def with_browse(self, what: str) -> QHBoxLayout:
        """This box beside a Browse… button that adds a chosen `what` (a model folder) to it, and a
        Download… button that fetches a model from the Hugging Face hub and selects it."""
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda _checked=False: self._choose_folder(what))
        row = QHBoxLayout()
        row.addWidget(self, 1)
        row.addWidget(browse)
        row.addWidget(download_button(self))
        return row

    def _choose_folder(self, what: str) -> None:
        folder = QFileDialog.getExistingDirectory(self.window(), f"Choose a {what} (with config.json)")
        if folder:
            self.add_folder(folder)


class PolicyPicker(QWidget):
    """"Policy" over a SpecBox of every policy this machine and project have, with Browse…; the
    list is read on a worker by `refresh()`."""

    failed = Signal(str)  # the list could not be read

    def __init__(self, tooltip: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.box = SpecBox(tooltip)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(heading_label("Policy"))
        layout.addLayout(self.box.with_browse("policy folder"))

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.refresh()

    def spec(self) -> str:
        return self.box.spec()

    def refresh(self) -> None:
        """Re-read what can be picked (on a worker); the current choice stays where it still can."""
        if self.project is None:
            self.box.clear()
            return
        project, project_path = self.project, self.project.path

        def find(store, sink, stop) -> list[tuple[str, str]]:
            from rlhf_workbench.core.models import discover_models

            return policy_items(trained_policies(store, project_path), discover_models(project_path))

        run_store_task(
            self, project, find,
            on_done=lambda items, project=project: self.box.set_items(items) if project is self.project else None,
            on_error=self.failed.emit,
        )
