"""Compare with reference, in the policy tabs (SFT / DPO, RL): the button, its progress, and the
run's human win rate.

    Prompts [32]  [Compare with reference]
    People preferred this policy to its reference in 62% of 40 verdicts.

The comparison (core/compare.py) loads two causal LMs (torch, transformers) in a spawned child
(tasks.run_in_child), as the reward tab's score panels do and for the same reasons: the GUI process
never imports torch (importing it on a worker thread of a Qt process was seen to deadlock), the
window stays responsive, and the models' memory goes when the child ends. Its progress goes to a
progress dialog (with Cancel) and to the line under the button.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QPushButton, QSpinBox, QWidget

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.project import Project

from ..tasks import run_in_child
from ..widgets import plain_label

COMPARE_PROMPTS = 32


def win_rate_text(rate: dict[str, Any] | None) -> str:
    """A run's human win rate against its reference in a few words: "62% of 40", or why there is none."""
    if not rate:
        return ""
    if rate["win_rate"] is None:
        return f"not judged yet ({rate['pairs']:,} pairs)" if not rate["judged"] else f"no preference ({rate['both_bad']:,} both bad)"
    return f"{rate['win_rate']:.0%} of {rate['wins'] + rate['losses'] + rate['ties']:,}"


def win_rate_details(rate: dict[str, Any] | None) -> str:
    if not rate:
        return "Not compared with its reference yet: “Compare with reference” in its tab makes pairs for people to judge."
    return (
        f"People preferred the policy {rate['wins']:,} times and its reference {rate['losses']:,} times, "
        f"called {rate['ties']:,} ties and {rate['both_bad']:,} both bad, on {rate['judged_pairs']:,} of "
        f"{rate['pairs']:,} pairs. Win rate = (wins + ties / 2) / (wins + losses + ties)."
    )


class CompareControl(QObject):
    """The comparison's widgets (laid out by the tab) and what they do, for the run the tab shows."""

    pairs_added = Signal(int)  # this many new pairs are in the project
    logged = Signal(str)  # a line for the tab's log
    failed_to_start = Signal(str)

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.parent_widget = parent
        self.project: Project | None = None
        self.run_id: str | None = None
        self.running_for: str | None = None  # the run being compared, while it is
        self.task = None  # its Task, while it runs
        self.count = QSpinBox()
        self.count.setRange(1, 4096)
        self.count.setValue(COMPARE_PROMPTS)
        self.count.setToolTip("How many prompts to compare on (one pair each)")
        self.button = QPushButton("Compare with reference")
        self.button.setToolTip(
            "Sample the run's latest policy and its reference on the same prompts and put the pairs into "
            "the Label queue, so that people can judge whether the policy really got better (Ctrl+Shift+Return)"
        )
        self.button.setShortcut("Ctrl+Shift+Return")
        self.button.clicked.connect(self.start)
        self.status = plain_label("")
        self.status.setWordWrap(True)
        self.refresh()

    def set_run(self, project: Project | None, run_id: str | None) -> None:
        self.project, self.run_id = project, run_id
        self.refresh()

    def refresh(self) -> None:
        """Re-read whether the run can be compared (it has a checkpoint) and its win rate."""
        self.button.setEnabled(self.running_for is None and self._has_checkpoint())
        if self.running_for is not None and self.running_for == self.run_id:
            return  # the line shows the comparison's progress
        rate = self.project.store.policy_win_rates().get(self.run_id) if self.project and self.run_id else None
        if rate and rate["win_rate"] is not None:
            text = f"People preferred this policy to its reference in {win_rate_text(rate)} verdicts."
        elif rate:
            text = f"{rate['pairs']:,} policy-vs-reference pairs wait in the Label queue."
        else:
            text = ""
        self.status.setText(text)
        self.status.setToolTip(win_rate_details(rate) if self.run_id else "")

    def _has_checkpoint(self) -> bool:
        return bool(self.project and self.run_id and self.project.store.last_checkpoint(self.run_id) is not None)

    def start(self) -> None:
        if self.project is None or self.run_id is None or self.running_for is not None or not self._has_checkpoint():
            return
        run_id, n = self.run_id, self.count.value()
        # A new seed each time: asking again samples new responses, not the same ones.
        rate = self.project.store.policy_win_rates().get(run_id)
        try:
            task = run_in_child(
                self.parent_widget, "rlhf_workbench.core.compare:compare_with_reference", str(self.project.path), run_id,
                n_prompts=n, seed=rate["pairs"] if rate else 0, what="comparison",
                on_done=lambda counts: self._done(run_id, counts),
                on_error=lambda message: self._ended(run_id, message),
                on_stopped=lambda message: self._ended(run_id, message),
                progress_title=f"Comparing run {run_id} with its reference",
            )
        except (OSError, WorkbenchError) as exc:
            self.failed_to_start.emit(f"Could not start the comparison: {exc}")
            return
        self.running_for, self.task = run_id, task
        self.status.setText(f"Comparing {n:,} prompts: loading the policy…")
        self.refresh()
        task.progress.connect(self._progressed)

    def _progressed(self, progress) -> None:
        if progress.message and self.running_for == self.run_id:
            self.status.setText(progress.message)

    def _done(self, run_id: str, counts: dict[str, Any]) -> None:
        added = counts["pairs_added"]
        parts = [f"{added:,} policy-vs-reference pairs went into the Label queue (origin {counts['origin']})"]
        if counts.get("heldout"):
            parts.append(f"{counts['heldout']:,} of the {counts['prompts']:,} prompts are held out from training")
        if counts.get("pairs_existing"):
            parts.append(f"{counts['pairs_existing']:,} were there already")
        if counts.get("identical"):
            parts.append(f"{counts['identical']:,} prompts got the same response from both and were skipped")
        text = "; ".join(parts) + "."
        self.logged.emit(f"compare with reference (update {counts.get('step')}): {text}")
        self._ended(run_id, text)
        self.pairs_added.emit(added)

    def _ended(self, run_id: str, message: str) -> None:
        self.running_for, self.task = None, None
        self.refresh()
        if run_id == self.run_id:
            self.status.setText(message)
