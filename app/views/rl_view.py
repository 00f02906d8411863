"""The RL tab: pick a method (PPO, RLOO, GRPO), a policy, a reward model and prompts, set the knobs,
Start / Stop / Resume, watch reward, KL and what the policy writes; then ask people whether it
really got better.

    ┌ ⚠ the latest watchdog warning · 3 warnings                      [Show log] [Dismiss] ┐
    ├ Method [GRPO ▾]                   ┐┌ Run [grpo-… ▾]  Prompts [32]  [Compare with reference]┐
    │ Policy [demo ▾] [Browse…]         ││ people preferred the policy in 62% of 40 verdicts          │
    │ Reward model [latest ▾] [Browse…] ││ people preferred the policy in 62% of 40 verdicts          │
    │ Prompts [all ▾]                   │├ curves: reward · KL · entropy · clip fraction · value loss │
    │ settings (the method's own)       ││          response length · episodes/s (smoothing)          │
    │ [Start] [Stop] [Resume]           │├ Samples │ Log ─────────────────────────────────────────────┤
    │ update 12 of 128 · ETA 1:20 · …   ││ update · prompt · response · score · KL · advantage        │
    └───────────────────────────────────┘└────────────────────────────────────────────────────────────┘

Everything a training tab does (runs, Start / Stop / Resume, curves, log) is training_tab.py's;
this adds the method picker (the form then shows that method's settings alone), the model
pickers, the watchdogs' banner, the samples table (RLOO's and GRPO's groups together, with the
advantage each response got) and "Compare with reference", which samples the chosen run's latest
policy and its reference in a child process (policy_compare.py) and adds the pairs to the Label queue.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.events import Finished, Sample
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.rl.config import METHOD_TITLES, METHODS
from rlhf_workbench.core.rl.method import RL
from rlhf_workbench.core.training.run_models import LATEST_REWARD_MODEL

from ..curves import GROUPS_BY_KIND, PPO_GROUPS
from ..jobs import JobController
from ..widgets import heading_label
from .model_pickers import policy_name
from .rl_panels import SamplesPanel, WarningBanner
from .rl_pickers import PICKED, ModelChoices
from .training_tab import MethodsTab


class RLView(MethodsTab):
    method = RL
    methods = METHODS
    method_titles = METHOD_TITLES
    curve_groups = PPO_GROUPS
    curve_columns = 3  # seven plots, three to a row: the tab fits a laptop screen
    curve_split = [600, 400]
    panels_before_log = True  # the samples say more than the log while a run learns
    throughput = ("perf/episodes_per_s", "episodes/s")
    start_tip = "Start a new run of the chosen method with these settings"

    def __init__(self, jobs: JobController, parent: QWidget | None = None):
        super().__init__(jobs, parent)
        for card in self.curves.cards:
            card.setMinimumHeight(160)
        self.add_comparison()
        self.banner = WarningBanner()
        self.banner.show_log_requested.connect(lambda: self.bottom.setCurrentWidget(self.log))
        self.outer_layout.insertWidget(0, self.banner)
        self._method_chosen()
        self._update_buttons()

    # -- the method ----------------------------------------------------------------------------------

    def set_curve_groups(self, kind: str) -> None:
        # PPO's advantages are per token: its samples have none to show.
        self.samples.show_advantages(kind != "ppo")
        groups = GROUPS_BY_KIND.get(kind, PPO_GROUPS)
        if groups is not self.curves.groups:
            self.curves.set_groups(groups)
            for card in self.curves.cards:
                card.setMinimumHeight(160)

    # -- what the base asks of a method --------------------------------------------------------------

    def picked_fields(self) -> tuple[str, ...]:
        return (*PICKED, "method")

    def build_choices(self) -> QWidget:
        self.method_picker()
        self.choices = ModelChoices()
        self.choices.failed.connect(self._log_line)
        self.policy_box, self.reward_box, self.prompts_box = (
            self.choices.policy_box, self.choices.reward_box, self.choices.prompts_box
        )
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(heading_label("Method"))
        layout.addWidget(self.method_box)
        layout.addWidget(self.choices)
        return box

    def choice_widgets(self) -> list[QWidget]:
        return [self.method_box, self.choices]

    def picked(self) -> dict[str, Any]:
        return {**self.choices.values(), "method": self.chosen_method()}

    def add_panels(self, tabs: QTabWidget) -> None:
        self.samples = SamplesPanel()
        tabs.addTab(self.samples, "Samples")

    def set_choices_project(self, project: Project | None) -> None:
        self.choices.set_project(project)

    def refresh_choices(self) -> None:
        self.choices.refresh()

    def check_before_start(self, config) -> None:
        if config.reward_model == LATEST_REWARD_MODEL and not any(
            r["kind"] == "reward" and r["status"] == "finished" for r in self.project.store.runs()
        ):
            raise WorkbenchError(
                "There is no finished reward model in this project yet: train one in the Reward model tab "
                "first, or pick a reward-model folder"
            )

    def run_name(self, config) -> str:
        return f"{METHOD_TITLES[config.method]} of {policy_name(config.policy)}"

    @property
    def starting_text(self) -> str:
        method = self.chosen_method()
        # Policy and reward model, PPO's value model and reference, the others' reference when beta > 0.
        models = "four models" if method == "ppo" else "three models" if self.form.value().beta else "two models"
        return f"Starting… (loading {models} in a background process)"

    def finished_text(self, finished: Finished) -> str:
        verb = "Stopped" if finished.stopped else "Finished"
        text = f"{verb} at update {finished.summary.get('updates', finished.summary.get('steps', '?'))}"
        reward = finished.summary.get("rlhf_reward", finished.summary.get("objective/rlhf_reward"))
        if isinstance(reward, (int, float)):
            text += f" · reward {reward:+.3f}"
        return text

    def load_run_extras(self, run_id: str) -> None:
        stored = self.project.store.samples(run_id, limit=200)
        self.samples.set_samples(
            [Sample(r["step"], r["prompt"], r["response"], r["score"], r["extra"]) for r in stored]
        )
        self._loaded_sample_step = stored[0]["step"] if stored else -1

    def clear_extras(self) -> None:
        self.samples.clear()
        if hasattr(self, "banner"):
            self.banner.clear()

    def show_sample(self, sample: Sample) -> None:
        self.samples.add_samples([sample])

    def show_warning(self, message: str) -> None:
        self.banner.add_warning(message)
