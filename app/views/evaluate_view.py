"""The Evaluate tab: policies side by side on prompts no run trained on, and people's ranking.

    Held-out prompts: 36 that no run trains on (since 7 Dec 23:05).      [Hold out more…]
    ┌ Policies ──────────────┐ ┌ Evaluation [eval-… ▾]  gold: the demo's rules ───────────────┐
    │ ☑ grpo-… (GRPO, step 8)│ │ policy │ proxy │ gold │ KL │ tokens │ distinct-2 │ win rate   │
    │ ☐ dpo-…  (DPO, step 40)│ │ (the responses of the selected policy)                        │
    │ [Add model folder…]    │ ├ People's ranking ─────────────────────────────────────────────┤
    │ settings (form)        │ │ table: rating [95%]   │ plot: ratings with their intervals    │
    │ [Evaluate]  status     │ │ A [▾] against B [▾]  [32] prompts  [Compare two policies]     │
    └────────────────────────┘ └───────────────────────────────────────────────────────────────┘

Evaluating and comparing load models (torch), so they run in a spawned child (tasks.run_in_child),
as Compare with reference does: the window stays responsive and never imports torch. The figures
are core/evaluation.py's, saved in the project: the picker shows every evaluation made, newest
first. The ranking is computed here from the verdicts (pure Python, a few milliseconds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.evaluation import DEFAULT_HOLDOUT, EvaluateSettings, rank_policies, win_rates_now
from rlhf_workbench.core.policies import trained_policies
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.training.config import config_to_dict

from ..config_form import ConfigForm
from ..tasks import run_in_child, run_store_task
from ..text import kind_name
from ..widgets import heading_label, plain_label
from .model_pickers import SpecBox

RESULT_COLUMNS = ("Policy", "Proxy", "Gold", "KL", "Tokens", "Distinct-2", "People's win rate now (95%)")
RESPONSE_COLUMNS = ("Prompt", "Response", "Proxy", "Gold", "KL")
RANKING_COLUMNS = ("Policy", "Rating", "95% interval", "Verdicts", "Won", "Lost", "Tied")
COMPARE_PROMPTS = 32


def _figure(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _item(text: str, tooltip: str = "", *, number: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    if tooltip:
        item.setToolTip(tooltip)
    if number:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def _table(columns: tuple[str, ...]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.verticalHeader().setVisible(False)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


class EvaluateView(QWidget):
    error = Signal(str)
    pairs_added = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.task = None  # the evaluation or comparison running, if any
        self.ranking_task = None  # the ranking being computed, if any
        self._ranking_generation = 0  # a newer ranking's answer replaces an older one's
        self._evaluations: list[dict[str, Any]] = []

        self.heldout_label = plain_label("")
        self.heldout_label.setWordWrap(True)
        self.hold_out_button = QPushButton("Hold out more…")
        self.hold_out_button.setToolTip("Keep more of the project's prompts out of every run's training, for Evaluate")
        self.hold_out_button.clicked.connect(self.ask_hold_out)

        self.policy_list = QListWidget()
        self.policy_list.setToolTip("The policies to evaluate; the reference is always a row")
        self.add_folder_button = QPushButton("Add model folder…")
        self.add_folder_button.clicked.connect(self.choose_folder)
        self.form = ConfigForm(EvaluateSettings())
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setToolTip("Sample the checked policies and the reference on the held-out prompts (Ctrl+Return)")
        self.evaluate_button.setShortcut("Ctrl+Return")
        self.evaluate_button.clicked.connect(self.start)
        self.status = plain_label("")
        self.status.setWordWrap(True)

        self.evaluation_box = QComboBox()
        self.evaluation_box.setToolTip("Every evaluation of this project, newest first")
        self.evaluation_box.currentIndexChanged.connect(self._show_evaluation)
        self.about_label = plain_label("")
        self.about_label.setWordWrap(True)
        self.results = _table(RESULT_COLUMNS)
        self.results.itemSelectionChanged.connect(self._show_responses)
        self.responses = _table(RESPONSE_COLUMNS)
        self.responses.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.responses.horizontalHeader().setStretchLastSection(False)
        self.responses.setWordWrap(True)

        self.ranking_label = plain_label("")
        self.ranking_label.setWordWrap(True)
        self.ranking = _table(RANKING_COLUMNS)
        self.ranking.horizontalHeader().setStretchLastSection(False)  # the policy's name takes the room
        self.ranking.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.ranking_plot = pg.PlotWidget()
        self.ranking_plot.setMinimumHeight(160)
        self.ranking_plot.getPlotItem().setLabel("bottom", "rating (Elo scale)")
        self.ranking_plot.getPlotItem().showGrid(x=True, alpha=0.25)
        self.policy_a = SpecBox("Policy A: a run, the reference, or a model folder typed in")
        self.policy_b = SpecBox("Policy B: a run, the reference, or a model folder typed in")
        self.compare_count = QSpinBox()
        self.compare_count.setRange(1, 4096)
        self.compare_count.setValue(COMPARE_PROMPTS)
        self.compare_count.setToolTip("How many prompts to compare on (one pair each; the held-out ones when there are)")
        self.compare_button = QPushButton("Compare two policies")
        self.compare_button.setToolTip("Sample both on the same prompts and put the pairs into the Label tab's policies "
                                       "queue; people's verdicts rank them here")
        self.compare_button.clicked.connect(self.start_comparison)

        self._lay_out()
        self.set_project(None)

    def _lay_out(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.heldout_label, 1)
        top.addWidget(self.hold_out_button)

        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(heading_label("Policies"))
        column.addWidget(self.policy_list, 1)
        column.addWidget(self.add_folder_button)
        column.addWidget(heading_label("Settings"))
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)
        column.addWidget(scroll, 2)
        column.addWidget(self.evaluate_button)
        column.addWidget(self.status)

        right = QWidget()
        results = QVBoxLayout(right)
        results.setContentsMargins(0, 0, 0, 0)
        picker = QHBoxLayout()
        picker.addWidget(heading_label("Evaluation"))
        picker.addWidget(self.evaluation_box, 1)
        results.addLayout(picker)
        results.addWidget(self.about_label)
        results.addWidget(self.results, 2)
        results.addWidget(self.responses, 3)
        results.addWidget(heading_label("People's ranking"))
        results.addWidget(self.ranking_label)
        ranking = QHBoxLayout()
        ranking.addWidget(self.ranking, 3)
        ranking.addWidget(self.ranking_plot, 2)
        results.addLayout(ranking, 2)
        compare = QHBoxLayout()
        compare.addWidget(self.policy_a, 1)
        compare.addWidget(plain_label("against"))
        compare.addWidget(self.policy_b, 1)
        compare.addWidget(self.compare_count)
        compare.addWidget(plain_label("prompts"))
        compare.addWidget(self.compare_button)
        results.addLayout(compare)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        left.setMinimumWidth(340)
        splitter.setSizes([380, 900])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)

    # -- the project -----------------------------------------------------------------------------------

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.policy_list.clear()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the held-out prompts, the trained policies, the evaluations and the ranking."""
        enabled = self.project is not None and self.task is None
        for widget in (self.hold_out_button, self.evaluate_button, self.compare_button, self.add_folder_button):
            widget.setEnabled(enabled)
        if self.project is None:
            self._ranking_generation += 1  # an answer for the previous project is dropped
            self.heldout_label.setText("")
            self._evaluations = []
            self._fill_evaluations()
            self._show_ranking({"rows": [], "games": 0, "anchor": None})
            return
        store = self.project.store
        held = len(store.heldout_prompt_ids())
        if held:
            since = (store.heldout_since() or "")[:16].replace("T", " ")
            self.heldout_label.setText(f"Held-out prompts: {held:,} that no run trains on (held out since {since} UTC).")
        else:
            self.heldout_label.setText(
                "This project holds no prompts out yet. Evaluate samples policies on prompts no run trained on: "
                f"press “Hold out more…” to keep some ({DEFAULT_HOLDOUT} is a good start) out of training from now on."
            )
        self._fill_policies()
        self._evaluations = store.evaluations()
        self._fill_evaluations()
        self._fill_compare_boxes()
        self._rank()

    def _rank(self) -> None:
        """The ranking, computed in a worker: its bootstrap refits the ratings 200 times."""
        self._ranking_generation += 1
        generation, path = self._ranking_generation, self.project.path
        if self.ranking.rowCount() == 0:
            self.ranking_label.setText("Ranking the policies…")
        self.ranking_task = run_store_task(
            self, self.project, lambda store, sink, stop: rank_policies(store, path),
            on_done=lambda ranking: generation == self._ranking_generation and self._show_ranking(ranking),
            on_error=lambda message: generation == self._ranking_generation and self.ranking_label.setText(
                f"The ranking cannot be computed: {message}"),
        )

    def _fill_policies(self) -> None:
        checked = {self.policy_list.item(i).data(Qt.ItemDataRole.UserRole)
                   for i in range(self.policy_list.count())
                   if self.policy_list.item(i).checkState() == Qt.CheckState.Checked}
        folders = [self.policy_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.policy_list.count())
                   if self.policy_list.item(i).data(Qt.ItemDataRole.UserRole + 1) == "folder"]
        first = self.policy_list.count() == 0
        self.policy_list.clear()
        policies = trained_policies(self.project.store, self.project.path)
        for index, (run, step, _folder) in enumerate(policies):
            # At first the three newest policies are checked: a comparison, without a long wait.
            self._add_policy(f"{run['id']}  ({kind_name(run['kind'])}, step {step})", run["id"], "run",
                             checked=run["id"] in checked or (first and index < 3))
        for folder in folders:
            self._add_policy(folder, folder, "folder", checked=folder in checked)
        if not self.policy_list.count() and self.task is None:
            self.status.setText("No trained policy yet: train one in the RL or SFT / DPO tab (it is listed here "
                                "when it has a checkpoint), or add a model folder.")

    def _add_policy(self, text: str, spec: str, kind: str, *, checked: bool) -> None:
        item = QListWidgetItem(text)
        item.setData(Qt.ItemDataRole.UserRole, spec)
        item.setData(Qt.ItemDataRole.UserRole + 1, kind)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        item.setToolTip(spec)
        self.policy_list.addItem(item)

    def checked_policies(self) -> list[str]:
        return [self.policy_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.policy_list.count())
                if self.policy_list.item(i).checkState() == Qt.CheckState.Checked]

    def set_checked(self, specs: list[str]) -> None:
        for i in range(self.policy_list.count()):
            item = self.policy_list.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in specs
                               else Qt.CheckState.Unchecked)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a policy model folder")
        if folder:
            self._add_policy(folder, folder, "folder", checked=True)

    def _fill_compare_boxes(self) -> None:
        items = [(run["id"], run["id"]) for run, _step, _folder in trained_policies(self.project.store, self.project.path)]
        references = {r["spec"] for e in self._evaluations for r in e["results"]["rows"] if r["reference"]}
        items += [(f"{spec} (reference)", spec) for spec in sorted(references)]
        for box in (self.policy_a, self.policy_b):
            box.set_items(items)
        if self.policy_b.spec() == self.policy_a.spec() and self.policy_b.count() > 1:
            # A policy against its reference is the first comparison to make: B starts on the last item.
            self.policy_b.setCurrentIndex(self.policy_b.count() - 1)

    # -- evaluations -----------------------------------------------------------------------------------

    def _fill_evaluations(self, select: str | None = None) -> None:
        current = select or self.evaluation_box.currentData()
        self.evaluation_box.blockSignals(True)
        self.evaluation_box.clear()
        for evaluation in self._evaluations:
            results = evaluation["results"]
            when = evaluation["created_at"][:16].replace("T", " ")
            self.evaluation_box.addItem(
                f"{when}: {len(results['rows']) - 1} policies on {results['prompts']} prompts ({evaluation['id']})",
                evaluation["id"],
            )
        index = self.evaluation_box.findData(current)
        self.evaluation_box.setCurrentIndex(index if index >= 0 else (0 if self._evaluations else -1))
        self.evaluation_box.blockSignals(False)
        self._show_evaluation()

    def shown_evaluation(self) -> dict[str, Any] | None:
        wanted = self.evaluation_box.currentData()
        return next((e for e in self._evaluations if e["id"] == wanted), None)

    def _show_evaluation(self) -> None:
        evaluation = self.shown_evaluation()
        self.results.setRowCount(0)
        self.responses.setRowCount(0)
        if evaluation is None:
            self.about_label.setText("No evaluation yet: check policies on the left and press Evaluate."
                                     if self.project is not None else "")
            return
        results = evaluation["results"]
        sampling = results["sampling"]
        gold = results["gold"]["name"] or "none (pick a reward model as the judge in the settings' gold)"
        proxies = sorted({r["proxy_model"] for r in results["rows"] if r["proxy_model"]})
        lines = [
            f"{results['prompts']:,} held-out prompts × {results['samples_per_prompt']} (of {results['heldout_prompts']:,} "
            f"held out), temperature {sampling['temperature']:g}, up to {sampling['max_new_tokens']} tokens, "
            f"{results['seconds']:g} s.",
            f"Gold: {gold}. Proxy: {', '.join(proxies) if proxies else 'none (no reward model)'}.",
        ]
        if any(r["trained_before_heldout"] for r in results["rows"]):
            lines.append("* started before the prompts were held out: it may have trained on them.")
        self.about_label.setText("\n".join(lines))
        self.results.setRowCount(len(results["rows"]))
        live = win_rates_now(self.project, evaluation) if self.project is not None else {}
        for row, r in enumerate(results["rows"]):
            r = {**r, **live.get(r["run"], {})}  # people's verdicts as they stand now
            win = "–"
            if r["win_rate"] is not None:
                low, high = r["win_interval"]
                win = f"{r['win_rate']:.0%} [{low:.0%}, {high:.0%}] of {r['judged']}"
            elif r["run"]:
                win = "not judged yet"
            name = r["policy"] + (" *" if r["trained_before_heldout"] else "")
            cells = [
                _item(name, r["spec"]),
                _item(_figure(r["proxy"], "+.3f"), f"mean score under {r['proxy_model']}" if r["proxy_model"] else "", number=True),
                _item(_figure(r["gold"], ".3f"), results["gold"]["name"] or "", number=True),
                _item(_figure(r["kl"], ".3f"), "" if r["kl"] is not None else "another tokenizer than the reference's",
                      number=True),
                _item(_figure(r["length_tokens"], ".1f"), f"{_figure(r['length_words'], '.1f')} words", number=True),
                _item(_figure(r["distinct_2"], ".3f"), "distinct word pairs over all word pairs", number=True),
                _item(win, "people's verdicts on pairs of it and the reference, as they stand now (Wilson interval)"),
            ]
            for column, cell in enumerate(cells):
                self.results.setItem(row, column, cell)
        self.results.selectRow(min(1, len(results["rows"]) - 1))

    def _show_responses(self) -> None:
        evaluation = self.shown_evaluation()
        rows = self.results.selectionModel().selectedRows() if evaluation else []
        self.responses.setRowCount(0)
        if not rows:
            return
        responses = evaluation["results"]["rows"][rows[0].row()]["responses"]
        self.responses.setRowCount(len(responses))
        for row, r in enumerate(responses):
            for column, cell in enumerate((
                _item(r["prompt"] or "", r["prompt"] or ""),
                _item(r["response"], r["response"]),
                _item(_figure(r["proxy"], "+.3f"), number=True),
                _item(_figure(r["gold"], ".2f"), number=True),
                _item(_figure(r["kl"], ".3f"), number=True),
            )):
                self.responses.setItem(row, column, cell)

    # -- the ranking -----------------------------------------------------------------------------------

    def _show_ranking(self, ranking: dict[str, Any]) -> None:
        rows = ranking["rows"]
        self.ranking.setRowCount(len(rows))
        plot = self.ranking_plot.getPlotItem()
        plot.clear()
        # An empty plot is a black box with axes from 0 to 1: the table has the room until there are ratings.
        self.ranking_plot.setVisible(bool(rows))
        if not rows:
            self.ranking_label.setText(
                "No verdicts between policies yet. “Compare with reference” (in a policy's tab) or “Compare two "
                "policies” below put pairs into the Label tab's policies queue; people's verdicts rank the policies here."
                if self.project is not None else "")
            return
        anchor = f"{ranking['anchor']} at 1000" if ranking["anchor"] else "the average at 1000"
        self.ranking_label.setText(
            f"Bradley-Terry ratings from {ranking['games']:,} verdicts on the Elo scale ({anchor}; 400 points are "
            "10-to-1 odds), with 95% bootstrap intervals, as Chatbot Arena ranks models. Ties and “both bad” count half.")
        for row, r in enumerate(rows):
            for column, cell in enumerate((
                _item(r["policy"], r["policy"]),
                _item(f"{r['rating']:.0f}", number=True),
                _item(f"[{r['low']:.0f}, {r['high']:.0f}]", number=True),
                _item(str(r["games"]), number=True),
                _item(str(r["wins"]), number=True),
                _item(str(r["losses"]), number=True),
                _item(str(r["ties"]), number=True),
            )):
                self.ranking.setItem(row, column, cell)
        ys = np.arange(len(rows))[::-1].astype(float)
        ratings = np.array([r["rating"] for r in rows])
        plot.addItem(pg.ErrorBarItem(x=ratings, y=ys, left=ratings - np.array([r["low"] for r in rows]),
                                     right=np.array([r["high"] for r in rows]) - ratings, beam=0.2,
                                     pen=pg.mkPen("#8ab4f8", width=2)))
        plot.addItem(pg.ScatterPlotItem(x=ratings, y=ys, size=9, brush=pg.mkBrush("#8ab4f8")))
        plot.addItem(pg.InfiniteLine(pos=1000, angle=90, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine)))
        plot.getAxis("left").setTicks([[(y, r["policy"][:28]) for y, r in zip(ys, rows)]])
        plot.setYRange(-0.7, len(rows) - 0.3)

    # -- work ------------------------------------------------------------------------------------------

    def ask_hold_out(self) -> None:
        if self.project is None:
            return
        n, ok = QInputDialog.getInt(
            self, "Hold out prompts",
            "How many more prompts to keep out of every run's training from now on (prompts no labelled pair uses "
            "come first):", DEFAULT_HOLDOUT, 1, 1_000_000)
        if ok:
            self.hold_out(n)

    def hold_out(self, n: int) -> int:
        added = self.project.store.hold_out_prompts(n)
        self.status.setText(f"Held out {added:,} more prompts." if added else "Every prompt is held out already.")
        self.refresh()
        return added

    def start(self) -> None:
        if self.project is None or self.task is not None:
            return
        policies = self.checked_policies()
        if not policies:
            self.status.setText("Check at least one policy to evaluate (the reference is always a row).")
            return
        try:
            settings = self.form.value().validate()
        except (WorkbenchError, ValueError) as exc:
            self.status.setText(str(exc))
            return
        self._start_task(
            "rlhf_workbench.core.evaluation:evaluate_task", str(self.project.path), policies, config_to_dict(settings),
            what="evaluation", title="Evaluating policies on held-out prompts", on_done=self._evaluated,
            running=f"Evaluating {len(policies)} policies…",
        )

    def start_comparison(self) -> None:
        if self.project is None or self.task is not None:
            return
        a, b = self.policy_a.spec(), self.policy_b.spec()
        if not a or not b or a == b:
            self.status.setText("Pick two different policies to compare.")
            return
        self._start_task(
            "rlhf_workbench.core.compare:compare_policies", str(self.project.path), a, b,
            n_prompts=self.compare_count.value(), seed=self.project.store.counts()["pairs"],
            what="comparison", title=f"Comparing {a} with {b}", on_done=self._compared,
            running=f"Comparing {a} with {b}…",
        )

    def _start_task(self, target: str, *args: Any, what: str, title: str, on_done, running: str, **kwargs: Any) -> None:
        try:
            self.task = run_in_child(self, target, *args, what=what, on_done=on_done, on_error=self._ended,
                                     on_stopped=self._ended, progress_title=title, **kwargs)
        except (OSError, WorkbenchError) as exc:
            self.error.emit(f"Could not start the {what}: {exc}")
            return
        self.status.setText(running)
        self.task.progress.connect(lambda progress: progress.message and self.status.setText(progress.message))
        self.refresh()

    def _evaluated(self, evaluation: dict[str, Any]) -> None:
        self.task = None
        self.status.setText(f"Evaluation {evaluation['id']} saved.")
        self.refresh()
        self._fill_evaluations(select=evaluation["id"])

    def _compared(self, counts: dict[str, Any]) -> None:
        self.task = None
        where = "held-out prompts" if counts["heldout"] else "prompts (none are held out)"
        parts = [f"{counts['pairs_added']:,} pairs of {counts['a']} against {counts['b']} on {where} went into the "
                 "Label tab's policies queue"]
        if counts["identical"]:
            parts.append(f"{counts['identical']:,} prompts got the same response from both and were skipped")
        self.status.setText("; ".join(parts) + ".")
        self.refresh()
        self.pairs_added.emit(counts["pairs_added"])

    def _ended(self, message: str) -> None:
        self.task = None
        self.status.setText(message)
        self.refresh()
