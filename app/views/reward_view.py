"""The Reward model tab: pick a base model, set the knobs, Start / Stop / Resume, watch it learn;
then ask the model what it thinks of a text, and where it disagrees with people.

    ┌ Base model [demo ▾] [Browse…]   ┐┌ Run [rm-… ▾]                                             ┐
    │ settings form (from RewardConfig)│├ curves: loss · accuracy · margin · learning rate ─────────┤
    │ [Start] [Stop] [Resume]          │├ Log │ Score a text │ Most wrong validation pairs ────────┤
    │ step 120 of 400 · ETA 1:20 · …   ││                                                           │
    └──────────────────────────────────┘└───────────────────────────────────────────────────────────┘

Everything a training tab does (runs, Start / Stop / Resume, curves, log) is training_tab.py's;
this adds the base-model picker and the two panels that load a checkpoint in a child process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QTabWidget, QVBoxLayout, QWidget

from rlhf_workbench.core.events import Finished
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.reward.method import REWARD_MODEL

from ..curves import REWARD_GROUPS
from ..tasks import run_task
from ..widgets import heading_label
from .model_pickers import download_button
from .reward_panels import MostWrongPanel, ScorePanel
from .training_tab import TrainingTab


def length_text(summary: dict) -> str:
    """The length check beside the accuracy: did the model learn length rather than quality?"""
    baseline = summary.get("eval/length_baseline_accuracy")
    if not isinstance(baseline, (int, float)):
        return ""
    text = f" · “the longer answer wins” {baseline:.1%}"
    similar = summary.get("eval/accuracy_similar_length")
    if isinstance(similar, (int, float)):
        text += f" · on answers of similar length {similar:.1%}"
    correlation = summary.get("eval/length_correlation")
    if isinstance(correlation, (int, float)):
        text += f" · reward-length r {correlation:+.2f}"
    return text


class RewardView(TrainingTab):
    method = REWARD_MODEL
    curve_groups = REWARD_GROUPS
    throughput = ("perf/pairs_per_s", "pairs/s")
    start_tip = "Train a new reward model with these settings"

    def picked_fields(self) -> tuple[str, ...]:
        return ("base_model",)

    def build_choices(self) -> QWidget:
        self.model_box = QComboBox()
        self.model_box.setEditable(True)  # a folder path may be typed or pasted
        self.model_box.setToolTip(self.method.config.__dataclass_fields__["base_model"].metadata["help"])
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.choose_model_folder)
        row = QHBoxLayout()
        row.addWidget(self.model_box, 1)
        row.addWidget(browse)
        row.addWidget(download_button(self.model_box))
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(heading_label("Base model"))
        layout.addLayout(row)
        return box

    def choice_widgets(self) -> list[QWidget]:
        return [self.model_box]

    def add_panels(self, tabs: QTabWidget) -> None:
        self.score_panel = ScorePanel()
        self.most_wrong = MostWrongPanel()
        tabs.addTab(self.score_panel, "Score a text")
        tabs.addTab(self.most_wrong, "Most wrong validation pairs")

    def set_choices_project(self, project: Project | None) -> None:
        self.score_panel.set_project(project)
        self.most_wrong.set_project(project)
        self.refresh_choices()

    def refresh_choices(self) -> None:
        """Fill the model picker on a worker: scanning the Hugging Face cache can take a while."""
        project_path = self.project.path if self.project is not None else None

        def find(sink, stop):
            from rlhf_workbench.core.models import discover_models

            return discover_models(project_path)

        run_task(self, find, on_done=self._show_models, on_error=self._log_line)

    def _show_models(self, entries) -> None:
        typed = self.model_box.currentText()
        self.model_box.clear()
        for entry in entries:
            spec = "demo" if entry.source == "demo" else str(entry.path)
            self.model_box.addItem(f"{entry.name}  ({entry.source})", spec)
        index = self.model_box.findText(typed) if typed else -1
        self.model_box.setCurrentIndex(index if index >= 0 else 0)
        self.score_panel.set_models(entries)
        self.most_wrong.set_models(entries)

    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder (with config.json)")
        if folder:
            self.model_box.addItem(folder, folder)
            self.model_box.setCurrentIndex(self.model_box.count() - 1)

    def model_spec(self) -> str:
        index = self.model_box.currentIndex()
        text = self.model_box.currentText().strip()
        if index >= 0 and self.model_box.itemText(index) == text:
            return self.model_box.itemData(index) or text
        return text  # typed by hand

    def picked(self) -> dict[str, Any]:
        return {"base_model": self.model_spec()}

    def run_name(self, config) -> str:
        return f"reward model on {Path(config.base_model).name or config.base_model}"

    def finished_text(self, finished: Finished) -> str:
        text = super().finished_text(finished)
        summary = finished.summary
        accuracy = summary.get("eval/accuracy")
        if isinstance(accuracy, (int, float)):
            text += f" · validation accuracy {accuracy:.1%}"
        return text + length_text(summary)
