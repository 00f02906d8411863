"""What an RL run starts from: the policy, the reward model and the prompts, picked from what this
machine and this project have.

    Policy        'demo' · the project's trained policies (SFT, DPO, RL) · causal LMs in the HF cache · [Browse…]
    Reward model  'latest' · the project's finished reward-model runs · classifiers in the HF cache · [Browse…]
    Prompts       all prompts · the prompts of pairs of one origin

The two model boxes are editable: a folder or a cached model's name may be typed or pasted, and a
typed spec survives a refresh. Lists are read on a worker (scanning the Hugging Face cache and
counting pairs by origin take a while on a big machine or project); nothing here imports torch.
The policy box and what it lists are model_pickers.py's, shared with the SFT / DPO tab and Generate.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QVBoxLayout, QWidget

from rlhf_workbench.core.policies import trained_policies
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.store.model_pairs import POLICY_VS_REFERENCE
from rlhf_workbench.core.training.run_models import LATEST_REWARD_MODEL

from ..tasks import run_store_task
from ..widgets import heading_label
from .model_pickers import SpecBox, outside_models, policy_items

PICKED = ("policy", "reward_model", "prompt_origin")  # the RLConfig fields chosen here


def _help(name: str) -> str:
    return RLConfig.__dataclass_fields__[name].metadata["help"]


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
                "policies": trained_policies(store, project_path, runs),
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
        for entry in outside_models(found["models"]):
            if entry.architecture and "SequenceClassification" in entry.architecture:
                rewards.append((f"{entry.name}  ({entry.source})", str(entry.path)))
        self.policy_box.set_items(policy_items(found["policies"], found["models"]))
        self.reward_box.set_items(rewards)

        current = self.prompts_box.currentData()
        self.prompts_box.clear()
        self.prompts_box.addItem("All prompts of the project", None)
        for origin, n in found["origins"].items():
            if not origin.startswith(POLICY_VS_REFERENCE):  # the same prompts again, under another name
                self.prompts_box.addItem(f"{origin}  ({n:,} pairs)", origin)
        index = self.prompts_box.findData(current) if current is not None else 0
        self.prompts_box.setCurrentIndex(max(index, 0))
