"""The PPO tab: pick a policy, a reward model and prompts, set the knobs, Start / Stop / Resume,
watch reward, KL and what the policy writes; then ask people whether it really got better.

    ┌ ⚠ the latest watchdog warning · 3 warnings                      [Show log] [Dismiss] ┐
    ├ Policy [demo ▾] [Browse…]         ┐┌ Run [ppo-… ▾]  Prompts [32]  [Compare with reference] ┐
    │ Reward model [latest ▾] [Browse…] ││ people preferred the policy in 62% of 40 verdicts          │
    │ Prompts [all ▾]                   │├ curves: reward · KL · entropy · clip fraction · value loss │
    │ settings form (from PPOConfig)    ││          response length · episodes/s (smoothing)          │
    │ [Start] [Stop] [Resume]           │├ Samples │ Log ─────────────────────────────────────────────┤
    │ update 12 of 128 · ETA 1:20 · …   ││ update · prompt · response · score · KL (newest first)     │
    └───────────────────────────────────┘└────────────────────────────────────────────────────────────┘

Training runs in a child process (app/jobs.py's JobController, shared with the window and the
Reward model tab); this view starts it with the core's run records (core.jobs.start_run /
resume_run) and only displays what comes back. The Run picker chooses which PPO run the right side
shows: the live one while it runs, or any earlier one from the database (its curves, samples, log
and warnings). "Compare with reference" samples the selected run's latest policy and its reference
in a child process (ppo_compare.py) and adds the pairs to the Label queue.
torch is never imported here: the form reads core.ppo.config, which does not need it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QPlainTextEdit,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from rlhf_workbench.core.config import load_config
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.events import (
    Checkpoint,
    Failed,
    Finished,
    Log,
    Metric,
    Progress,
    Sample,
)
from rlhf_workbench.core.jobs import LOG_NAME, resume_run, run_dir_of, start_run
from rlhf_workbench.core.ppo.config import LATEST_REWARD_MODEL, PPOConfig
from rlhf_workbench.core.project import Project

from ..config_form import ConfigForm
from ..curves import PPO_GROUPS, CurvesPanel
from ..jobs import JobController
from ..widgets import heading_label, plain_label, run_buttons, run_processes
from .ppo_compare import CompareControl
from .ppo_panels import SamplesPanel, WarningBanner
from .ppo_pickers import PICKED, ModelChoices
from .reward_view import _duration

JOB_PATH = "rlhf_workbench.core.ppo.train:run"
RESUMABLE = ("cancelled", "failed")
_LOG_TAIL_BYTES = 200_000
_WARNING_LINE = re.compile(r"^\S+ \S+ warning: (.*)$")  # how core.jobs writes a warning to log.txt


class PPOView(QWidget):
    error = Signal(str)
    pairs_added = Signal(int)  # "Compare with reference" added this many pairs to the project

    def __init__(self, jobs: JobController, parent: QWidget | None = None):
        super().__init__(parent)
        self.jobs = jobs
        self.project: Project | None = None
        self.run_id: str | None = None  # the run the right side shows (live when the job runs it)
        self.live_run_id: str | None = None  # the run this view started or resumed
        self._throughput: float | None = None
        self._loaded_steps: dict[str, int] = {}  # per metric, the last step read from the database
        self._loaded_sample_step = -1
        self._labels_stale = False

        # -- the left side: what to train, how, and the buttons --------------------------------
        self.choices = ModelChoices()
        self.choices.failed.connect(self._log_line)
        self.policy_box, self.reward_box, self.prompts_box = (
            self.choices.policy_box, self.choices.reward_box, self.choices.prompts_box
        )
        self.form = ConfigForm(PPOConfig(), hidden=PICKED)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)

        buttons = run_buttons(
            self,
            start_tip="Start a new PPO run with these settings",
            resume_tip="Continue the selected run, stopped or failed, from its last checkpoint",
        )
        self.status = plain_label("")
        self.status.setWordWrap(True)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.choices)
        left_layout.addWidget(heading_label("Settings"))
        left_layout.addWidget(scroll, 1)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.status)

        # -- the right side: one run's figures, samples and log --------------------------------
        self.run_box = QComboBox()
        self.run_box.setToolTip("The PPO run shown here: the one running, or any earlier one")
        self.run_box.currentIndexChanged.connect(self._run_chosen)
        self.comparison = CompareControl(self)
        self.comparison.pairs_added.connect(self.pairs_added)
        self.comparison.logged.connect(self._log_line)
        self.comparison.failed_to_start.connect(self._error)
        self.compare_count, self.compare_button, self.compare_status = (
            self.comparison.count, self.comparison.button, self.comparison.status
        )
        run_row = QHBoxLayout()
        run_row.addWidget(plain_label("Run"))
        run_row.addWidget(self.run_box, 1)
        run_row.addWidget(plain_label("Prompts"))
        run_row.addWidget(self.compare_count)
        run_row.addWidget(self.compare_button)

        # Seven plots: three to a row, a little lower than the reward tab's (the panel scrolls them,
        # so the tab fits a laptop screen).
        self.curves = CurvesPanel(PPO_GROUPS, columns=3, only_groups=True)
        for card in self.curves.cards:
            card.setMinimumHeight(160)
        self.samples = SamplesPanel()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.bottom = QTabWidget()
        self.bottom.setDocumentMode(True)
        self.bottom.addTab(self.samples, "Samples")
        self.bottom.addTab(self.log, "Log")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.curves)
        split.addWidget(self.bottom)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([600, 400])  # the panel's scroll area's own size hint would leave the curves a sliver
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(run_row)
        right_layout.addWidget(self.compare_status)
        right_layout.addWidget(split, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([380, 900])
        self.banner = WarningBanner()
        self.banner.show_log_requested.connect(lambda: self.bottom.setCurrentWidget(self.log))
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(splitter, 1)

        jobs.metrics.connect(self._metrics)
        jobs.sample.connect(self._sample)
        jobs.progress.connect(self._progress)
        jobs.log.connect(self._log)
        jobs.checkpoint.connect(self._checkpoint)
        jobs.finished.connect(self._finished)
        jobs.failed.connect(self._failed)
        jobs.running_changed.connect(self._running_changed)
        self._update_buttons()

    # -- project -------------------------------------------------------------------------

    def set_project(self, project: Project | None) -> None:
        self.project = project
        if not self.jobs.is_running or self.jobs.run_id != self.live_run_id:
            self.live_run_id = None
            self.status.setText("")
            self.show_run(None)  # empties the right side; refresh_runs then shows the newest run
        self.refresh_runs(select=self.run_id)
        self.choices.set_project(project)
        self._update_buttons()

    def showEvent(self, event) -> None:
        # Judgments given in the Label tab change the win rate; runs may have ended meanwhile.
        if self.project is not None:
            self.refresh_runs(select=self.run_id)
        super().showEvent(event)

    def forget_run(self, run_id: str) -> None:
        """A run was deleted (Runs tab): off the Run picker, and out of the model pickers."""
        if self.project is None:
            return
        self.refresh_runs(select=None if self.run_id == run_id else self.run_id)
        self.choices.refresh()

    # -- the runs shown ------------------------------------------------------------------

    def refresh_runs(self, select: str | None = None) -> None:
        """Re-read the PPO runs into the Run picker and show `select` (else the newest)."""
        runs = [r for r in self.project.store.runs(newest_first=True) if r["kind"] == "ppo"] if self.project else []
        self.run_box.blockSignals(True)
        self.run_box.clear()
        for run in runs:
            self.run_box.addItem(f"{run['name']} · {run['status']} · {run['id']}", run["id"])
        index = self.run_box.findData(select) if select else -1
        self.run_box.setCurrentIndex(index if index >= 0 else (0 if runs else -1))
        self.run_box.blockSignals(False)
        chosen = self.run_box.currentData()
        if chosen != self.run_id:
            self.show_run(chosen)
        else:
            self._update_buttons()

    def _run_chosen(self) -> None:
        self.show_run(self.run_box.currentData())

    def show_run(self, run_id: str | None) -> None:
        """Show a run's figures, samples, log and warnings as the database has them; the live
        run's new ones follow as they come."""
        self.run_id = run_id
        self.curves.clear()
        self.samples.clear()
        self.log.clear()
        self.banner.clear()
        self._loaded_steps, self._loaded_sample_step = {}, -1
        if run_id is not None and self.project is not None:
            self._load_run(run_id)
        self._update_buttons()

    def _load_run(self, run_id: str) -> None:
        store = self.project.store
        for name in store.metric_names(run_id):
            if not self.curves.shows(name):
                continue
            series = store.metric_series(run_id, name)
            self.curves.set_series(name, [s for s, _ in series], [v for _, v in series])
            if series:
                self._loaded_steps[name] = series[-1][0]
        self.curves.flush()
        stored = store.samples(run_id, limit=200)
        self.samples.set_samples(
            [Sample(r["step"], r["prompt"], r["response"], r["score"], r["extra"]) for r in stored]
        )
        self._loaded_sample_step = stored[0]["step"] if stored else -1
        run = store.run(run_id)
        text = self._log_tail(run_dir_of(self.project, run) / LOG_NAME) if run else ""
        self.log.setPlainText(text)
        for line in text.splitlines():
            match = _WARNING_LINE.match(line)
            if match:
                self.banner.add_warning(match.group(1))

    @staticmethod
    def _log_tail(path: Path) -> str:
        try:
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    # -- actions -------------------------------------------------------------------------

    def config(self) -> PPOConfig:
        """The form's and pickers' settings as a validated config; raises ConfigError naming the field."""
        try:
            config = self.form.value()
        except ValueError as exc:
            raise WorkbenchError(str(exc)) from None
        return dataclasses.replace(config, **self.choices.values()).validate()

    def start(self) -> None:
        if self.project is None or self.jobs.is_running:
            return
        try:
            config = self.config()
            if config.reward_model == LATEST_REWARD_MODEL and not self._has_finished_reward_run():
                raise WorkbenchError(
                    "There is no finished reward model in this project yet: train one in the Reward model tab "
                    "first, or pick a reward-model folder"
                )
            processes = run_processes(self)
            config.check_world(processes)  # before the run exists, not as the ranks' error after launch
            name = f"PPO of {Path(config.policy).name or config.policy}"
            ctx = start_run(self.project, kind="ppo", name=name, config=config)
            self.refresh_runs(select=ctx.run_id)
            self.live_run_id = ctx.run_id
            self.jobs.start(JOB_PATH, config, ctx, processes=processes)
        except WorkbenchError as exc:
            self._error(str(exc))
            return
        self._throughput = None
        self._log_line(f"run {ctx.run_id} started: {ctx.run_dir}")
        self.status.setText("Starting… (loading four models in a background process)")

    def _has_finished_reward_run(self) -> bool:
        return any(r["kind"] == "reward" and r["status"] == "finished" for r in self.project.store.runs())

    def stop(self) -> None:
        if self.jobs.is_running:
            self.status.setText("Stopping: saving a checkpoint first…")
            self.jobs.stop()

    def resumable_run(self) -> dict | None:
        """The selected run, if it stopped early or failed with a checkpoint to go on from."""
        if self.project is None or self.run_id is None:
            return None
        run = self.project.store.run(self.run_id)
        if run is None or run["status"] not in RESUMABLE or self.project.store.last_checkpoint(run["id"]) is None:
            return None
        return run

    def resume(self) -> None:
        run = self.resumable_run()
        if self.project is None or run is None or self.jobs.is_running:
            return
        try:
            config = load_config(PPOConfig, run_dir_of(self.project, run) / "config.toml")
            processes = run_processes(self)
            config.check_world(processes)
            ctx = resume_run(self.project, run["id"])
            self.show_run(ctx.run_id)  # what was logged after the checkpoint is gone now
            self.live_run_id = ctx.run_id
            self.jobs.start(JOB_PATH, config, ctx, processes=processes)
        except WorkbenchError as exc:
            self._error(str(exc))
            return
        self._throughput = None
        self._log_line(f"run {ctx.run_id} resumed")
        self.status.setText("Resuming from the last checkpoint…")

    def _update_buttons(self) -> None:
        running = self.jobs.is_running
        has_project = self.project is not None
        self.start_button.setEnabled(has_project and not running)
        self.stop_button.setEnabled(running and self.jobs.run_id == self.live_run_id)
        self.resume_button.setEnabled(has_project and not running and self.resumable_run() is not None)
        self.comparison.set_run(self.project, self.run_id)
        self.form.setEnabled(not running)
        self.choices.setEnabled(not running)

    # -- events from the job -------------------------------------------------------------

    def _running_changed(self, running: bool) -> None:
        # The picker names each run's status: the job marks its run running once it has started,
        # so the labels are read again at its first report too.
        self._labels_stale = running
        if self.project is not None:
            self.refresh_runs(select=self.run_id)
        self._update_buttons()

    def _first_report(self) -> None:
        if self._labels_stale and self.project is not None:
            self._labels_stale = False
            self.refresh_runs(select=self.run_id)

    def _ours(self) -> bool:
        return self.run_id is not None and self.jobs.run_id == self.run_id

    def _metrics(self, metrics: list[Metric]) -> None:
        if not self._ours():
            return
        loaded = self._loaded_steps
        if loaded:  # drawn from the database already (it lags the events by up to a second)
            metrics = [
                Metric(m.step, {k: v for k, v in m.values.items() if m.step > loaded.get(k, -1)}, m.time)
                for m in metrics
            ]
        self.curves.append(metrics)
        for metric in metrics:
            if "perf/episodes_per_s" in metric.values:
                self._throughput = metric.values["perf/episodes_per_s"]

    def _sample(self, sample: Sample) -> None:
        if self._ours() and sample.step > self._loaded_sample_step:
            self.samples.add_samples([sample])

    def _progress(self, progress: Progress) -> None:
        if not self._ours():
            return
        self._first_report()
        total = f" of {progress.total:,}" if progress.total else ""
        parts = [f"Update {progress.step:,}{total}", f"ETA {_duration(progress.eta_s)}"]
        if self._throughput is not None:
            parts.append(f"{self._throughput:,.1f} episodes/s")
        self.status.setText(" · ".join(parts))

    def _log(self, log: Log) -> None:
        if not self._ours():
            return
        if log.level == "warning":
            self.banner.add_warning(log.message)
            self._log_line("⚠ " + log.message)
        else:
            self._log_line(log.message)

    def _checkpoint(self, checkpoint: Checkpoint) -> None:
        if self._ours():
            self._log_line(f"checkpoint at update {checkpoint.step:,}: {checkpoint.path}")
            self._update_buttons()  # Compare with reference needs one

    def _finished(self, finished: Finished) -> None:
        if not self._ours():
            self.choices.refresh()  # a reward model may have just finished
            return
        verb = "Stopped" if finished.stopped else "Finished"
        text = f"{verb} at update {finished.summary.get('updates', finished.summary.get('steps', '?'))}"
        reward = finished.summary.get("rlhf_reward", finished.summary.get("objective/rlhf_reward"))
        if isinstance(reward, (int, float)):
            text += f" · reward {reward:+.3f}"
        self.status.setText(text + (" · Resume continues from here" if finished.stopped else ""))
        self._log_line(text)
        self.refresh_runs(select=self.run_id)
        self.choices.refresh()  # its checkpoint can be a policy now

    def _failed(self, failed: Failed) -> None:
        if not self._ours():
            return
        self.status.setText("Failed: " + failed.message)
        self._log_line("failed: " + failed.message + (f" ({failed.hint})" if failed.hint else ""))
        self.refresh_runs(select=self.run_id)

    def _log_line(self, text: str) -> None:
        self.log.appendPlainText(text)

    def _error(self, message: str) -> None:
        self.status.setText(message)
        self.error.emit(message)

