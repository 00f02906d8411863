"""The Reward model tab: pick a base model, set the knobs, Start / Stop / Resume, watch it learn.

    ┌ Base model [demo ▾] [Browse…]  ┐┌ curves: loss · accuracy · margin · learning rate ──────┐
    │ settings form (from RewardConfig│                                                         │
    │ fields: defaults, ranges, help) │                                                         │
    │ [Start] [Stop] [Resume]         │├ Log │ Score │ Most wrong ─────────────────────────────┤
    │ step 120 of 400 · ETA 1:20 · …  ││                                                         │
    └─────────────────────────────────┘└─────────────────────────────────────────────────────────┘

Training runs in a child process (app/jobs.py's JobController, shared with the window); this view
starts it with the core's run records (core.jobs.start_run / resume_run) and only displays what
comes back. torch is never imported here: the form reads core.config, which does not need it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.config import RewardConfig, load_config
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.events import Checkpoint, Failed, Finished, Log, Progress
from rlhf_workbench.core.jobs import resume_run, run_dir_of, start_run
from rlhf_workbench.core.project import Project

from ..config_form import ConfigForm
from ..curves import REWARD_GROUPS, CurvesPanel
from ..jobs import JobController
from ..tasks import run_task
from ..widgets import heading_label, plain_label, run_buttons, run_processes
from .reward_panels import MostWrongPanel, ScorePanel

JOB_PATH = "rlhf_workbench.core.reward.train:run"
RESUMABLE = ("cancelled", "failed")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class RewardView(QWidget):
    error = Signal(str)

    def __init__(self, jobs: JobController, parent: QWidget | None = None):
        super().__init__(parent)
        self.jobs = jobs
        self.project: Project | None = None
        self.run_id: str | None = None  # the run this view started or resumed
        self._throughput: float | None = None

        self.model_box = QComboBox()
        self.model_box.setEditable(True)  # a folder path may be typed or pasted
        self.model_box.setToolTip(RewardConfig.__dataclass_fields__["base_model"].metadata["help"])
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.choose_model_folder)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_box, 1)
        model_row.addWidget(browse)

        self.form = ConfigForm(RewardConfig(), hidden=("base_model",))
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)

        buttons = run_buttons(
            self,
            start_tip="Train a new reward model with these settings",
            resume_tip="Continue the last stopped or failed run from its last checkpoint",
        )
        self.status = plain_label("")
        self.status.setWordWrap(True)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(heading_label("Base model"))
        left_layout.addLayout(model_row)
        left_layout.addWidget(heading_label("Settings"))
        left_layout.addWidget(scroll, 1)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.status)

        self.curves = CurvesPanel(REWARD_GROUPS, only_groups=True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.score_panel = ScorePanel()
        self.most_wrong = MostWrongPanel()
        self.bottom = QTabWidget()
        self.bottom.setDocumentMode(True)
        self.bottom.addTab(self.log, "Log")
        self.bottom.addTab(self.score_panel, "Score a text")
        self.bottom.addTab(self.most_wrong, "Most wrong validation pairs")
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.curves)
        right.addWidget(self.bottom)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 1)
        right.setSizes([750, 250])  # the curves' scroll area hints at a sliver; start them at 3/4

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([380, 900])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        jobs.metrics.connect(self._metrics)
        jobs.progress.connect(self._progress)
        jobs.log.connect(self._log)
        jobs.checkpoint.connect(self._checkpoint)
        jobs.finished.connect(self._finished)
        jobs.failed.connect(self._failed)
        jobs.running_changed.connect(lambda _: self._update_buttons())
        self._update_buttons()

    # -- project -------------------------------------------------------------------------

    def forget_run(self, run_id: str) -> None:
        """A run was deleted (Runs tab): its curves and log go, and the pickers are re-read."""
        if self.project is None:
            return
        if self.run_id == run_id and not self.jobs.is_running:
            self.run_id = None
            self.curves.clear()
            self.log.clear()
            self.status.setText("")
        self.score_panel.set_project(self.project)
        self.most_wrong.set_project(self.project)
        self.refresh_models()
        self._update_buttons()

    def set_project(self, project: Project | None) -> None:
        self.project = project
        if not self.jobs.is_running:
            self.run_id = None
            self.curves.clear()
            self.log.clear()
            self.status.setText("")
        self.score_panel.set_project(project)
        self.most_wrong.set_project(project)
        self.refresh_models()
        self._update_buttons()

    def refresh_models(self) -> None:
        """Fill the model picker on a worker: scanning the Hugging Face cache can take a while."""
        project_path = self.project.path if self.project is not None else None

        def find(_state):
            from rlhf_workbench.core.models import discover_models

            return discover_models(project_path)

        run_task(self, find, on_done=self._show_models, on_error=lambda message: self._log_line(message))

    def _show_models(self, entries) -> None:
        typed = self.model_box.currentText()
        self.model_box.clear()
        for entry in entries:
            spec = "demo" if entry.source == "demo" else str(entry.path)
            self.model_box.addItem(f"{entry.name}  ({entry.source})", spec)
        self.model_box.setProperty("entries", entries)
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

    # -- actions -------------------------------------------------------------------------

    def config(self) -> RewardConfig:
        """The form's settings as a validated config; raises ConfigError naming the field."""
        try:
            config = self.form.value()
        except ValueError as exc:
            raise WorkbenchError(str(exc)) from None
        return dataclasses.replace(config, base_model=self.model_spec()).validate()

    def start(self) -> None:
        if self.project is None or self.jobs.is_running:
            return
        try:
            config = self.config()
            processes = run_processes(self)
            config.check_world(processes)  # before the run exists, not as the ranks' error after launch
            name = f"reward model on {Path(config.base_model).name or config.base_model}"
            ctx = start_run(self.project, kind="reward", name=name, config=config)
            self.curves.clear()
            self.log.clear()
            self.run_id = ctx.run_id
            self.jobs.start(JOB_PATH, config, ctx, processes=processes)
        except WorkbenchError as exc:
            self._error(str(exc))
            return
        self._log_line(f"run {ctx.run_id} started: {ctx.run_dir}")
        self.status.setText("Starting… (loading the model in a background process)")

    def stop(self) -> None:
        if self.jobs.is_running:
            self.status.setText("Stopping: saving a checkpoint first…")
            self.jobs.stop()

    def resumable_run(self) -> dict | None:
        """The newest reward run that stopped early or failed, if it has a checkpoint to go on from."""
        if self.project is None:
            return None
        for run in self.project.store.runs(newest_first=True):
            if run["kind"] != "reward":
                continue
            if run["status"] in RESUMABLE and self.project.store.last_checkpoint(run["id"]) is not None:
                return run
            if run["status"] in ("finished", "running"):
                return None
        return None

    def resume(self) -> None:
        run = self.resumable_run()
        if self.project is None or run is None or self.jobs.is_running:
            return
        try:
            config = load_config(RewardConfig, run_dir_of(self.project, run) / "config.toml")
            processes = run_processes(self)
            config.check_world(processes)
            ctx = resume_run(self.project, run["id"])
            self.run_id = ctx.run_id
            self._load_curves(ctx.run_id)
            self.jobs.start(JOB_PATH, config, ctx, processes=processes)
        except WorkbenchError as exc:
            self._error(str(exc))
            return
        self._log_line(f"run {ctx.run_id} resumed")
        self.status.setText("Resuming from the last checkpoint…")

    def _load_curves(self, run_id: str) -> None:
        store = self.project.store
        self.curves.clear()
        for name in store.metric_names(run_id):
            if not self.curves.shows(name):
                continue
            series = store.metric_series(run_id, name)
            self.curves.set_series(name, [s for s, _ in series], [v for _, v in series])

    def _update_buttons(self) -> None:
        running = self.jobs.is_running
        has_project = self.project is not None
        self.start_button.setEnabled(has_project and not running)
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(has_project and not running and self.resumable_run() is not None)
        self.form.setEnabled(not running)
        self.model_box.setEnabled(not running)

    # -- events from the job -------------------------------------------------------------

    def _ours(self) -> bool:
        return self.run_id is not None and self.jobs.run_id == self.run_id

    def _metrics(self, metrics) -> None:
        if not self._ours():
            return
        self.curves.append(metrics)
        for metric in metrics:
            if "perf/pairs_per_s" in metric.values:
                self._throughput = metric.values["perf/pairs_per_s"]

    def _progress(self, progress: Progress) -> None:
        if not self._ours():
            return
        total = f" of {progress.total:,}" if progress.total else ""
        parts = [f"Step {progress.step:,}{total}", f"ETA {_duration(progress.eta_s)}"]
        if self._throughput is not None:
            parts.append(f"{self._throughput:,.1f} pairs/s")
        self.status.setText(" · ".join(parts))

    def _log(self, log: Log) -> None:
        if self._ours():
            self._log_line(("⚠ " if log.level == "warning" else "") + log.message)

    def _checkpoint(self, checkpoint: Checkpoint) -> None:
        if self._ours():
            self._log_line(f"checkpoint at step {checkpoint.step:,}{' (best so far)' if checkpoint.best else ''}: {checkpoint.path}")

    def _finished(self, finished: Finished) -> None:
        if not self._ours():
            return
        summary = finished.summary
        accuracy = summary.get("eval/accuracy")
        verb = "Stopped" if finished.stopped else "Finished"
        text = f"{verb} at step {summary.get('steps', '?')}"
        if isinstance(accuracy, (int, float)):
            text += f" · validation accuracy {accuracy:.1%}"
        self.status.setText(text + (" · Resume continues from here" if finished.stopped else ""))
        self._log_line(text)
        self.refresh_models()
        self._update_buttons()

    def _failed(self, failed: Failed) -> None:
        if not self._ours():
            return
        self.status.setText("Failed: " + failed.message)
        self._log_line("failed: " + failed.message + (f" ({failed.hint})" if failed.hint else ""))
        self._update_buttons()

    def _log_line(self, text: str) -> None:
        self.log.appendPlainText(text)

    def _error(self, message: str) -> None:
        self.status.setText(message)
        self.error.emit(message)
