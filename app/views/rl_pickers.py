"""What a PPO run starts from: the policy, the reward model and the prompts, picked from what this
machine and this project have.

    Policy        'demo' · the project's PPO runs' latest policies · causal LMs in the HF cache · [Browse…]
    Reward model  'latest' · the project's finished reward-model runs · classifiers in the HF cache · [Browse…]
    Prompts       all prompts · the prompts of pairs of one origin

The two model boxes are editable: a folder or a cached model's name may be typed or pasted, and a
typed spec survives a refresh. Lists are read on a worker (scanning the Hugging Face cache and
counting pairs by origin take a while on a big machine or project); nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.project import Project
from rlhf_workbench.core.rl.config import METHOD_TITLES, RLConfig
from rlhf_workbench.core.rl.config import METHODS as RL_KINDS
from rlhf_workbench.core.store.model_pairs import POLICY_VS_REFERENCE
from rlhf_workbench.core.training.run_models import LATEST_REWARD_MODEL

from ..tasks import run_store_task
from ..widgets import heading_label

PICKED = ("policy", "reward_model", "prompt_origin")  # the RLConfig fields chosen here


def _help(name: str) -> str:
    return RLConfig.__dataclass_fields__[name].metadata["help"]


def is_causal_lm(architecture: str | None) -> bool:
    """Whether a model folder's architecture can be a policy (unknown: let the person try)."""
    return architecture is None or any(k in architecture for k in ("CausalLM", "LMHead", "ConditionalGeneration"))


def rl_policies(store, project_path, runs=None) -> list[tuple[dict[str, Any], int, Path]]:
    """(run, update, policy folder) of the latest checkpoint of each RL run of the project, newest first."""
    policies = []
    for run in runs if runs is not None else store.runs(newest_first=True, decode=True):
        last = store.last_checkpoint(run["id"]) if run["kind"] in RL_KINDS else None
        if last is not None:
            folder = Path(project_path) / last["path"] / "policy"  # relative, or absolute outside
            if folder.is_dir():  # pruned checkpoints are gone
                policies.append((run, last["step"], folder))
    return policies


def _outside_models(models) -> list:
    # The demo model is a reward model's untrained base, not the demo policy ('demo'); the
    # project's checkpoints are offered as their runs.
    return [entry for entry in models if entry.source not in ("demo", "checkpoint")]


def policy_items(policies, models) -> list[tuple[str, str]]:
    """(label, spec) of every causal LM that can be a policy: the demo policy, the project's RL
    policies (from `rl_policies`), and the causal LMs of `discover_models`."""
    items = [("demo  (the built-in demo policy)", "demo")]
    for run, step, folder in policies:
        items.append((f"{run['name']}  ({METHOD_TITLES[run['kind']]} {run['id']}, update {step:,})", str(folder)))
    for entry in _outside_models(models):
        if is_causal_lm(entry.architecture):
            items.append((f"{entry.name}  ({entry.source})", str(entry.path)))
    return items


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
        """This box beside a Browse… button that adds a chosen `what` (a model folder) to it."""
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda _checked=False: self._choose_folder(what))
        row = QHBoxLayout()
        row.addWidget(self, 1)
        row.addWidget(browse)
        return row

    def _choose_folder(self, what: str) -> None:
        folder = QFileDialog.getExistingDirectory(self.window(), f"Choose a {what} (with config.json)")
        if folder:
            self.add_folder(folder)


class ModelChoices(QWidget):
    """The three pickers, under their headings. `values()` gives the RLConfig fields they set."""

    failed = Signal(str)  # the lists could not be read

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.policy_box = SpecBox(_help("policy"))
        self.reward_box = SpecBox(_help("reward_model"))
        self.prompts_box = QComboBox()
        self.prompts_box.setToolTip(_help("prompt_origin"))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for box, title, what in ((self.policy_box, "Policy", "policy folder"),
                                 (self.reward_box, "Reward model", "reward model folder")):
            layout.addWidget(heading_label(title))
            layout.addLayout(box.with_browse(what))
        layout.addWidget(heading_label("Prompts"))
        layout.addWidget(self.prompts_box)

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.refresh()

    def values(self) -> dict[str, Any]:
        return {
            "policy": self.policy_box.spec(),
            "reward_model": self.reward_box.spec(),
            "prompt_origin": self.prompts_box.currentData(),
        }

    def refresh(self) -> None:
        """Re-read what can be picked (on a worker); the current choices stay where they still can."""
        if self.project is None:
            for box in (self.policy_box, self.reward_box, self.prompts_box):
                box.clear()
            return
        project, project_path = self.project, self.project.path

        def find(store, sink, stop) -> dict[str, Any]:
            from rlhf_workbench.core.models import discover_models

            runs = store.runs(newest_first=True, decode=True)
            return {
                "models": discover_models(project_path),
                "reward_runs": [r for r in runs if r["kind"] == "reward" and r["status"] == "finished"],
                "rl_policies": rl_policies(store, project_path, runs),
                "origins": store.pairs_by_origin(),
            }

        run_store_task(
            self, project, find,
            on_done=lambda found, project=project: self._show(project, found),
            on_error=self.failed.emit,
        )

    def _show(self, project: Project, found: dict[str, Any]) -> None:
        if project is not self.project:
            return
        rewards = [("latest  (newest finished reward model)", LATEST_REWARD_MODEL)]
        for run in found["reward_runs"]:
            accuracy = (run.get("summary") or {}).get("eval/accuracy")
            figure = f", accuracy {accuracy:.0%}" if isinstance(accuracy, (int, float)) else ""
            rewards.append((f"{run['name']}  ({run['id']}{figure})", run["id"]))
        for entry in _outside_models(found["models"]):
            if entry.architecture and "SequenceClassification" in entry.architecture:
                rewards.append((f"{entry.name}  ({entry.source})", str(entry.path)))
        self.policy_box.set_items(policy_items(found["rl_policies"], found["models"]))
        self.reward_box.set_items(rewards)

        current = self.prompts_box.currentData()
        self.prompts_box.clear()
        self.prompts_box.addItem("All prompts of the project", None)
        for origin, n in found["origins"].items():
            if not origin.startswith(POLICY_VS_REFERENCE):  # the same prompts again, under another name
                self.prompts_box.addItem(f"{origin}  ({n:,} pairs)", origin)
        index = self.prompts_box.findData(current) if current is not None else 0
        self.prompts_box.setCurrentIndex(max(index, 0))
