"""The SFT / DPO tab: train a policy on fixed data, no reward model and no sampling. Pick a method
and a policy, set the knobs, Start / Stop / Resume, watch it learn.

    ┌ Method [DPO ▾]                    ┐┌ Run [dpo-… ▾]  Prompts [32]  [Compare with reference]      ┐
    │ Policy [demo ▾] [Browse…]         ││ people preferred the policy in 62% of 40 verdicts          │
    │                                   │├ curves, DPO: loss · implicit-reward accuracy · rewards     │
    │ settings (the method's own)       ││       log-probs · learning rate · pairs/s                   │
    │ [Start] [Stop] [Resume]           ││  SFT: loss · token accuracy · learning rate · sequences/s  │
    │ step 12 of 128 · ETA 1:20 · …     │├ Log ──────────────────────────────────────────────────────┤
    └───────────────────────────────────┘└────────────────────────────────────────────────────────────┘

Everything a training tab does (runs, Start / Stop / Resume, curves, log) is training_tab.py's;
this adds the method picker (the form then shows that method's settings alone: beta and the loss
for DPO, the data file for SFT), the policy picker (model_pickers.py: the demo policy, any model
folder, any policy the project trained), each method's curves and figures, and "Compare with
reference" (policy_compare.py), which samples the chosen run's policy and the one it started from and
puts the pairs in the Label queue. What a run leaves is a causal-LM checkpoint, offered wherever a
policy is picked (the RL tab, Generate, this tab).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QVBoxLayout, QWidget

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.events import Finished
from rlhf_workbench.core.offline.config import CHOSEN, METHOD_TITLES, METHODS, OfflineConfig
from rlhf_workbench.core.offline.method import OFFLINE
from rlhf_workbench.core.project import Project

from ..curves import DPO_GROUPS, GROUPS_BY_KIND
from ..jobs import JobController
from ..widgets import heading_label
from .model_pickers import PolicyPicker, policy_name
from .training_tab import MethodsTab

# Per method: the curves' columns (DPO's six plots in two rows of three, SFT's four in two of two)
# and the throughput the status line reads.
_COLUMNS = {"dpo": 3, "sft": 2}
_THROUGHPUT = {"dpo": ("perf/pairs_per_s", "pairs/s"), "sft": ("perf/sequences_per_s", "sequences/s")}


def _help(name: str) -> str:
    return OfflineConfig.__dataclass_fields__[name].metadata["help"]


class OfflineView(MethodsTab):
    method = OFFLINE
    methods = METHODS[::-1]  # DPO first: the one the project's labelled pairs are for
    method_titles = METHOD_TITLES
    curve_groups = DPO_GROUPS
    curve_columns = _COLUMNS["dpo"]
    throughput = _THROUGHPUT["dpo"]
    start_tip = "Train the chosen policy by the chosen method with these settings"

    def __init__(self, jobs: JobController, parent: QWidget | None = None):
        super().__init__(jobs, parent)
        self.add_comparison()
        self._method_chosen()
        self._update_buttons()

    # -- the method ----------------------------------------------------------------------------------

    def set_curve_groups(self, kind: str) -> None:
        kind = kind if kind in _COLUMNS else "dpo"
        self.throughput = _THROUGHPUT[kind]
        groups = GROUPS_BY_KIND[kind]
        if groups is not self.curves.groups:
            self.curves.columns = _COLUMNS[kind]
            self.curves.set_groups(groups)

    # -- what the base asks of a method --------------------------------------------------------------

    def picked_fields(self) -> tuple[str, ...]:
        return ("policy", "method")

    def build_choices(self) -> QWidget:
        self.method_picker()
        self.policy_picker = PolicyPicker(_help("policy"))
        self.policy_picker.failed.connect(self._log_line)
        self.policy_box = self.policy_picker.box
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(heading_label("Method"))
        layout.addWidget(self.method_box)
        layout.addWidget(self.policy_picker)
        return box

    def choice_widgets(self) -> list[QWidget]:
        return [self.method_box, self.policy_picker]

    def picked(self) -> dict[str, Any]:
        return {"policy": self.policy_picker.spec(), "method": self.chosen_method()}

    def set_choices_project(self, project: Project | None) -> None:
        self.policy_picker.set_project(project)

    def refresh_choices(self) -> None:
        self.policy_picker.refresh()

    def check_before_start(self, config: OfflineConfig) -> None:
        from_pairs = config.method == "dpo" or config.sft_data.strip() == CHOSEN
        if from_pairs and not self.project.store.counts()["judgments"]:
            raise WorkbenchError(
                f"{METHOD_TITLES[config.method]} learns from the project's labelled pairs, and it has none yet: label "
                "some in the Label tab, or import pairs that come with verdicts"
                + ("" if config.method == "dpo" else " (or give sft_data a file of prompts and responses)")
            )

    def run_name(self, config: OfflineConfig) -> str:
        return f"{METHOD_TITLES[config.method]} of {policy_name(config.policy)}"

    @property
    def starting_text(self) -> str:
        if self.chosen_method() == "dpo":
            return "Starting… (loading the policy and scoring the pairs with its reference in a background process)"
        return "Starting… (loading the policy in a background process)"

    def finished_text(self, finished: Finished) -> str:
        text = super().finished_text(finished)
        summary = finished.summary
        for key, what in (("eval/accuracy", "validation accuracy"),
                          ("eval/mean_token_accuracy", "validation token accuracy")):
            if isinstance(summary.get(key), (int, float)):
                return f"{text} · {what} {summary[key]:.1%}"
        return text
