"""The Label tab's "Reward model least sure" queue: scoring the unjudged pairs with a reward model.

    Queue [Reward model least sure ▾]  [Score unlabelled pairs with the latest reward model]  Scored 360 pairs …

Scoring loads a checkpoint (torch, transformers) in a spawned child, as the reward tab's panels and
the RL tab's comparison do and for the same reasons: the GUI process never imports torch
(importing it on a worker thread of a Qt process was seen to deadlock), the window stays
responsive, and the model's memory goes when the child ends. Its progress goes to a progress
dialog with Cancel; a cancel keeps the pairs scored so far.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QPushButton, QWidget

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.project import Project

from ..tasks import run_in_child
from ..widgets import plain_label

SCORE_BUTTON = "Score unlabelled pairs with the latest reward model"
_NO_RUN = "No finished reward-model run yet."
_STALE_START = "This queue is ordered by the scores of an older reward model,"


def latest_reward_run(project: Project) -> dict[str, Any] | None:
    """The newest finished reward-model run on record (the child checks it has a checkpoint)."""
    return next(
        (r for r in project.store.runs(newest_first=True) if r["kind"] == "reward" and r["status"] == "finished"), None
    )


class ScorePairsControl(QObject):
    """The scoring button and its status line (laid out by the Label tab), and what they do."""

    scored = Signal()  # scores were written (all, or some before a cancel): the queue changed

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.parent_widget = parent
        self.project: Project | None = None
        self.task = None  # the scoring task while it runs
        self.button = QPushButton(SCORE_BUTTON)
        self.status = plain_label("")
        self.status.setWordWrap(True)
        for widget in (self.button, self.status):
            widget.hide()
        self.button.clicked.connect(self.start)

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.status.setText("")
        self.refresh()

    def set_visible(self, visible: bool) -> None:
        self.button.setVisible(visible)
        self.status.setVisible(visible)
        if visible:
            self.refresh()

    def refresh(self) -> None:
        run = latest_reward_run(self.project) if self.project is not None else None
        self.button.setEnabled(self.task is None and run is not None)
        self.button.setToolTip(
            f"Score every pair nobody has judged yet with reward-model run “{run['name']}” ({run['id']}), "
            "in a separate process; the pairs it is least sure of (p near 0.5) come first in this queue"
            if run is not None
            else "Train a reward model in the Reward model tab first: its latest finished run scores the pairs"
        )
        if run is None and self.task is None and not self.status.text():
            self.status.setText(_NO_RUN)
        elif run is not None and self.status.text() == _NO_RUN:
            self.status.setText("")
        # The queue keeps the newest scores it has; when a newer model has finished since, say so
        # (its scores would order the pairs differently) rather than let the old order pass as new.
        stale = self._stale_text(run)
        if stale and self.task is None:
            self.status.setText(stale)
        elif not stale and self.status.text().startswith(_STALE_START):
            self.status.setText("")

    def _stale_text(self, newest: dict[str, Any] | None) -> str:
        if newest is None or self.project is None:
            return ""
        following = self.project.store.least_sure_run()
        if following is None or following == newest["id"]:
            return ""
        old = self.project.store.run(following)
        return (
            f"{_STALE_START} “{old['name'] if old else following}” ({following}). Reward-model run "
            f"“{newest['name']}” ({newest['id']}) has finished since: press the button to score with it."
        )

    def start(self) -> None:
        if self.project is None or self.task is not None:
            return
        try:
            self.task = run_in_child(
                self.parent_widget, "rlhf_workbench.core.reward.remote:score_pairs", str(self.project.path),
                what="pair scoring", on_done=self._done, on_error=self._ended, on_stopped=self._cancelled,
                progress_title="Scoring unlabelled pairs with the latest reward model",
            )
        except (OSError, WorkbenchError) as exc:
            self.status.setText(f"Could not start scoring: {exc}")
            return
        self.status.setText("Scoring: loading the reward model…")
        self.task.progress.connect(self._progressed)
        self.refresh()

    def _progressed(self, progress) -> None:
        if progress.message:
            self.status.setText(progress.message)

    def _done(self, result: dict[str, Any]) -> None:
        self._ended(
            f"Scored {result['scored']:,} pairs with run “{result['run_name']}”; "
            f"{result['total']:,} pairs have its scores."
        )
        self.scored.emit()

    def _cancelled(self, message: str) -> None:
        self._ended(message)
        self.scored.emit()

    def _ended(self, message: str) -> None:
        self.task = None
        self.status.setText(message)
        self.refresh()


def empty_queue_text(project: Project | None, queue_name: str) -> str:
    """What an empty queue says: for the two queues fed by other tabs, how to fill them."""
    if queue_name == "least_sure" and (project is None or project.store.least_sure_run() is None):
        return (
            "No pair has a reward-model score yet.\n\n"
            f"Press “{SCORE_BUTTON}” above: the pairs it is least sure of (p near 0.5) come first here."
        )
    if queue_name == "least_sure":
        return (
            "Nothing left in this queue: you have judged every scored pair.\n\n"
            "Score again after importing more pairs, or pick another queue above."
        )
    if queue_name == "generated":
        return (
            "No generated pairs left for you.\n\n"
            "“Generate…” in the Data tab samples two responses per prompt from a local model and puts the pairs here."
        )
    if queue_name == "policy_vs_reference":
        return (
            "No pairs of policies left for you.\n\n"
            "“Compare with reference” in a policy's tab, and “Compare two policies” in the Evaluate tab, make them."
        )
    return "Nothing left in this queue.\n\nPick another queue above, or import more pairs in the Data tab."

