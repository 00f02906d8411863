"""What every training tab is: pick what to train, set the knobs, Start / Stop / Resume, and watch
one run at a time, live or from the database.

    ┌ (a banner a method may add)                                                               ┐
    ├ choices: the method's model pickers ┐┌ Run [rm-… ▾]  (the method's run controls)             ┐
    │ Settings          [Copy command]    │├ curves (the method's groups; they scroll)            │
    │ (a form from the config)            ││                                                       │
    │ [GPUs] [Start] [Stop] [Resume]      │├ Log │ (the method's panels) ─────────────────────────┤
    │ step 12 of 128 · ETA 1:20 · …       ││                                                       │
    └─────────────────────────────────────┘└───────────────────────────────────────────────────────┘

A subclass names its method (core.training.method.TrainingMethod) and adds what is its own: the
pickers (`choices` and `picked`), panels beside the log, how its figures and its end read. The
base does the rest, the same way for every method:

- **Start** validates the form (a bad field is named before anything starts), records a new run
  (core.runs.start_run) and starts it in a child process (app/jobs.py's JobController, shared
  by every tab: one training at a time).
- **Run** chooses which of the method's runs the right side shows: the live one while it runs,
  or any earlier one as the database has it (curves, samples, log, warnings).
- **Resume** continues the run chosen in Run, when it stopped early or failed and has a
  checkpoint, from its last checkpoint, with its own settings.
- **Stop** asks the run to write a checkpoint and stop; Resume continues from there.
- **Copy command** (Ctrl+Shift+C) puts on the clipboard the shell lines that train with the form's
  settings from a terminal: the `rlhf-workbench` command with `--set` for what differs from the
  defaults, and every setting as a TOML file for `--config` (core/runs/command.py).

torch is never imported here: the form reads the method's config, which does not need it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLayout,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core import __version__
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.events import Checkpoint, Failed, Finished, Log, Metric, Progress, Sample
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.runs.command import command_name, reproduce_script
from rlhf_workbench.core.runs.records import RESUMABLE, log_tail, resume_run, run_dir_of, shown_status, start_run
from rlhf_workbench.core.training.config import applies, load_config
from rlhf_workbench.core.training.method import TrainingMethod
from rlhf_workbench.core.training.presets import find_preset, presets
from rlhf_workbench.core.training.run_models import check_model_settings

from ..config_form import ConfigForm, label_for
from ..curves import CurvesPanel, Groups
from ..jobs import JobController
from ..widgets import heading_label, plain_label, run_buttons, run_processes
from .memory_line import MemoryLine
from .policy_compare import CompareControl

_WARNING_LINE = re.compile(r"^\S+ \S+ warning: (.*)$")  # how core.runs writes a warning to log.txt


def _setting_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "(none)"
    return f"{value:g}" if isinstance(value, float) else str(value)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TrainingTab(QWidget):
    """The base of the Reward model, SFT / DPO and RL tabs (and of every training method's tab to come)."""

    error = Signal(str)

    method: TrainingMethod  # set by each subclass
    curve_groups: Groups
    curve_columns = 2
    curve_split = [750, 250]  # the curves' and the panels' heights, to start with
    panels_before_log = False  # the method's panels come first under the curves (PPO's samples)
    throughput = ("perf/steps_per_s", "steps/s")  # (metric, how its unit reads) for the status line
    starting_text = "Starting… (loading the model in a background process)"
    start_tip = "Start a new run with these settings"

    def __init__(self, jobs: JobController, parent: QWidget | None = None):
        super().__init__(parent)
        self.jobs = jobs
        self.project: Project | None = None
        self.run_id: str | None = None  # the run the right side shows (live when the job runs it)
        self.live_run_id: str | None = None  # the run this tab started or resumed
        self._throughput: float | None = None
        self._loaded_steps: dict[str, int] = {}  # per metric, the last step read from the database
        self._loaded_sample_step = -1
        self._labels_stale = False

        # -- the left side: what to train, how, and the buttons --------------------------------
        self.form = ConfigForm(self.method.config(), hidden=self.picked_fields())
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)
        buttons = run_buttons(
            self,
            start_tip=self.start_tip,
            resume_tip="Continue the run chosen in Run, stopped or failed, from its last checkpoint",
        )
        self.status = plain_label("")
        self.status.setWordWrap(True)
        left = QWidget()
        self.left_layout = QVBoxLayout(left)
        choices = self.build_choices()
        if isinstance(choices, QLayout):
            self.left_layout.addLayout(choices)
        elif choices is not None:
            self.left_layout.addWidget(choices)
        settings_row = QHBoxLayout()
        settings_row.addWidget(heading_label("Settings"))
        settings_row.addStretch(1)
        self.preset_box = QComboBox()
        self.preset_box.addItem("Preset…", None)
        for preset in presets():
            self.preset_box.addItem(preset.name, preset.key)
            self.preset_box.setItemData(self.preset_box.count() - 1, preset.description, Qt.ItemDataRole.ToolTipRole)
        self.preset_box.setToolTip("Fill the form with settings for a kind of machine; edit any of them after")
        self.preset_box.activated.connect(lambda index: self.apply_preset(self.preset_box.itemData(index)))
        settings_row.addWidget(self.preset_box)
        self.copy_command_button = QPushButton("Copy command")
        self.copy_command_button.setToolTip(
            "Copy the terminal command and the TOML file that train with these settings (Ctrl+Shift+C)"
        )
        self.copy_command_button.setShortcut("Ctrl+Shift+C")
        self.copy_command_button.clicked.connect(self.copy_command)
        settings_row.addWidget(self.copy_command_button)
        self.left_layout.addLayout(settings_row)
        self.left_layout.addWidget(scroll, 1)
        self.left_layout.addLayout(buttons)
        # Will it fit? Re-estimated a moment after the settings change (reading a few config.json files).
        self.memory = MemoryLine()
        self.memory.change_requested.connect(self.apply_changes)
        self.left_layout.addWidget(self.memory)
        self._memory_timer = QTimer(self)
        self._memory_timer.setSingleShot(True)
        self._memory_timer.setInterval(200)
        self._memory_timer.timeout.connect(self.update_memory)
        self.form.changed.connect(self._memory_timer.start)
        self.left_layout.addWidget(self.status)

        # -- the right side: one run's figures, panels and log ---------------------------------
        self.run_box = QComboBox()
        self.run_box.setToolTip(f"The {self.method.title} run shown here: the one running, or any earlier one")
        self.run_box.currentIndexChanged.connect(self._run_chosen)
        self.run_row = QHBoxLayout()
        self.run_row.addWidget(plain_label("Run"))
        self.run_row.addWidget(self.run_box, 1)
        self.curves = CurvesPanel(self.curve_groups, columns=self.curve_columns, only_groups=True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.bottom = QTabWidget()
        self.bottom.setDocumentMode(True)
        if self.panels_before_log:
            self.add_panels(self.bottom)
            self.bottom.addTab(self.log, "Log")
        else:
            self.bottom.addTab(self.log, "Log")
            self.add_panels(self.bottom)
        self.bottom.setCurrentIndex(0)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.curves)
        split.addWidget(self.bottom)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes(self.curve_split)  # the curves' scroll area hints at a sliver; size them here
        right = QWidget()
        self.right_layout = QVBoxLayout(right)
        self.right_layout.setContentsMargins(0, 0, 0, 0)
        self.right_layout.addLayout(self.run_row)
        self.right_layout.addWidget(split, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([380, 900])
        self.outer_layout = QVBoxLayout(self)
        self.outer_layout.addWidget(splitter, 1)

        jobs.metrics.connect(self._metrics)
        jobs.sample.connect(self._sample)
        jobs.progress.connect(self._progress)
        jobs.log.connect(self._log)
        jobs.checkpoint.connect(self._checkpoint)
        jobs.finished.connect(self._finished)
        jobs.failed.connect(self._failed)
        jobs.running_changed.connect(self._running_changed)
        # A model picked, or the method, changes what memory the run needs too.
        for widget in self.choice_widgets():
            for box in [widget] if isinstance(widget, QComboBox) else widget.findChildren(QComboBox):
                box.currentTextChanged.connect(self._memory_timer.start)
        self._update_buttons()

    # -- memory ----------------------------------------------------------------------------------

    def update_memory(self) -> None:
        """The memory line for the settings as they are now (not validated: the line says what it cannot tell)."""
        try:
            config = dataclasses.replace(self.form.value(), **self.picked())
        except (ValueError, TypeError) as exc:
            self.memory.label.setText(f"Memory: no estimate ({exc})")
            return
        self.memory.refresh(self.method, config, self.project.path if self.project else None)

    def apply_changes(self, changes: dict[str, Any]) -> None:
        """A suggestion's settings, into the form (and the line then re-estimated)."""
        for name, value in changes.items():
            if name in self.form.widgets:
                self.form.set_field(name, value)
        self.status.setText("Changed " + ", ".join(f"{label_for(k)} to {_setting_text(v)}" for k, v in changes.items()) + ".")
        self.update_memory()

    # -- presets ---------------------------------------------------------------------------------

    def algorithm(self) -> str:
        """The algorithm the form is for ("reward", or the picker's: "dpo", "grpo", ...)."""
        return self.method.kinds[0]

    def apply_preset(self, key: str | None) -> list[str]:
        """Fill the form with the preset's settings for the chosen algorithm (the pickers' models
        stay); says in the status line what changed, and returns that, as "setting old → new"."""
        if key is None:
            return []
        preset = find_preset(key)
        try:
            before = self.form.value()
        except ValueError:
            before = None  # a field that does not parse: it gets the preset's value or stays as it is
        changes = []
        for name, value in preset.settings_for(self.method.config, self.algorithm()).items():
            if name not in self.form.widgets:
                continue  # a picked model, or a setting the form does not show
            old = getattr(before, name, None) if before is not None else None
            if old != value:
                changes.append(f"{label_for(name)} {_setting_text(old)} → {_setting_text(value)}")
            self.form.set_field(name, value)
        self.status.setText(f"Preset “{preset.name}”: " + ("; ".join(changes) if changes else "nothing to change") + ".")
        return changes

    # -- what a subclass says ----------------------------------------------------------------------

    def picked_fields(self) -> tuple[str, ...]:
        """The config's fields the method's pickers set (the form leaves them out)."""
        return ()

    def build_choices(self) -> QWidget | QLayout | None:
        """The pickers above the settings (models, prompts)."""
        return None

    def picked(self) -> dict[str, Any]:
        """The pickers' values, by config field."""
        return {}

    def add_panels(self, tabs: QTabWidget) -> None:
        """Tabs of the method's own, beside the Log."""

    def set_choices_project(self, project: Project | None) -> None:
        """Point the pickers at a project (or none)."""

    def refresh_choices(self) -> None:
        """Re-read what the pickers offer (a run finished or was deleted)."""

    def check_before_start(self, config: Any) -> None:
        """Refuse a start that cannot work, with a WorkbenchError saying why."""

    def run_name(self, config: Any) -> str:
        return self.method.title

    def finished_text(self, finished: Finished) -> str:
        verb = "Stopped" if finished.stopped else "Finished"
        return f"{verb} at {self.method.unit} {finished.summary.get('steps', '?')}"

    def load_run_extras(self, run_id: str) -> None:
        """Show what the method keeps besides the curves and the log (samples)."""

    def clear_extras(self) -> None:
        """Empty what load_run_extras shows."""

    def show_sample(self, sample: Sample) -> None:
        """A live sample of the shown run."""

    def show_warning(self, message: str) -> None:
        """A watchdog's warning (live, or read back from the run's log)."""

    def update_extras(self) -> None:
        """Enable what the method adds, for the run shown and whether a job runs."""

    # -- project ---------------------------------------------------------------------------------------

    def set_project(self, project: Project | None) -> None:
        self.project = project
        if not self.jobs.is_running or self.jobs.run_id != self.live_run_id:
            self.live_run_id = None
            self.status.setText("")
            self.show_run(None)  # empties the right side; refresh_runs then shows the newest run
        self.refresh_runs(select=self.run_id)
        self.set_choices_project(project)
        self._update_buttons()
        self._memory_timer.start()

    def showEvent(self, event) -> None:
        # Runs may have ended meanwhile (and judgments given in the Label tab change win rates).
        if self.project is not None:
            self.refresh_runs(select=self.run_id)
        super().showEvent(event)

    def forget_run(self, run_id: str) -> None:
        """A run was deleted (Runs tab): off the Run picker, and out of the model pickers."""
        if self.project is None:
            return
        self.refresh_runs(select=None if self.run_id == run_id else self.run_id)
        self.refresh_choices()

    # -- the runs shown --------------------------------------------------------------------------------

    def refresh_runs(self, select: str | None = None) -> None:
        """Re-read the method's runs into the Run picker and show `select` (else the newest)."""
        kinds = self.method.kinds
        runs = [r for r in self.project.store.runs(newest_first=True) if r["kind"] in kinds] if self.project else []
        self.run_box.blockSignals(True)
        self.run_box.clear()
        for run in runs:
            self.run_box.addItem(f"{run['name']} · {shown_status(self.project, run)} · {run['id']}", run["id"])
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
        self.log.clear()
        self.clear_extras()
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
        self.load_run_extras(run_id)
        run = store.run(run_id)
        text = log_tail(run_dir_of(self.project, run)) if run else ""
        self.log.setPlainText(text)
        for line in text.splitlines():
            match = _WARNING_LINE.match(line)
            if match:
                self.show_warning(match.group(1))

    # -- actions ---------------------------------------------------------------------------------------

    def config(self) -> Any:
        """The form's and pickers' settings as a validated config; raises ConfigError naming the field."""
        try:
            config = self.form.value()
        except ValueError as exc:
            raise WorkbenchError(str(exc)) from None
        return dataclasses.replace(config, **self.picked()).validate()

    def start(self) -> None:
        if self.project is None or self.jobs.is_running:
            return
        try:
            config = self.config()
            self.check_before_start(config)
            processes = run_processes(self)
            config.check_world(processes)  # before the run exists, not as the ranks' error after launch
            check_model_settings(config, self.project)  # a bad folder too, not a failed run left behind
            ctx = start_run(self.project, kind=self.method.run_kind(config), name=self.run_name(config), config=config)
        except WorkbenchError as exc:
            self._error(str(exc))
            return
        self.refresh_runs(select=ctx.run_id)
        self._launch(config, ctx, processes, f"run {ctx.run_id} started: {ctx.run_dir}", self.starting_text)

    def copy_command(self) -> str | None:
        """Puts the lines that train with the form's settings from a terminal on the clipboard
        (core/runs/command.py) and returns them; a bad setting is named instead, as Start names it."""
        try:
            config = self.config()
            project = self.project.path if self.project is not None else "PROJECT"
            text = reproduce_script(self.method, config, project, processes=run_processes(self),
                                    source=f"RLHF Workbench {__version__}")
        except WorkbenchError as exc:
            self._error(str(exc))
            return None
        QGuiApplication.clipboard().setText(text)
        command, _ = command_name(self.method, config)
        self.status.setText(f"Copied the {command} command and its {command}.toml: paste them into a terminal")
        return text

    def stop(self) -> None:
        if self.jobs.is_running and self.jobs.run_id == self.live_run_id:
            self.status.setText("Stopping: saving a checkpoint first…")
            self.jobs.stop()

    def resumable_run(self) -> dict | None:
        """The run chosen in Run, if it stopped early, failed or lost its process, with a checkpoint
        to go on from."""
        if self.project is None or self.run_id is None:
            return None
        run = self.project.store.run(self.run_id)
        if (run is None or shown_status(self.project, run) not in RESUMABLE
                or self.project.store.last_checkpoint(run["id"]) is None):
            return None
        return run

    def resume(self) -> None:
        run = self.resumable_run()
        if self.project is None or run is None or self.jobs.is_running:
            return
        try:
            config = load_config(self.method.config, run_dir_of(self.project, run) / "config.toml")
            processes = run_processes(self)
            config.check_world(processes)
            ctx = resume_run(self.project, run["id"])
        except WorkbenchError as exc:
            self._error(str(exc))
            return
        self.show_run(ctx.run_id)  # what was logged after the checkpoint is gone now
        self._launch(config, ctx, processes, f"run {ctx.run_id} resumed", "Resuming from the last checkpoint…")

    def _launch(self, config: Any, ctx, processes: int, logged: str, status: str) -> None:
        """Starts the run's job (shared by Start and Resume); the run shown becomes the live one."""
        self.live_run_id = ctx.run_id
        try:
            self.jobs.start(self.method.job, config, ctx, processes=processes, command=self.method.command)
        except WorkbenchError as exc:
            self._error(str(exc))
            return
        self._throughput = None
        self._log_line(logged)
        self.status.setText(status)

    def _update_buttons(self) -> None:
        running = self.jobs.is_running
        has_project = self.project is not None
        self.start_button.setEnabled(has_project and not running)
        self.stop_button.setEnabled(running and self.jobs.run_id == self.live_run_id)
        self.resume_button.setEnabled(has_project and not running and self.resumable_run() is not None)
        self.form.setEnabled(not running)
        for widget in self.choice_widgets():
            widget.setEnabled(not running)
        self.update_extras()

    def choice_widgets(self) -> list[QWidget]:
        """What is locked while a job runs, besides the form."""
        return []

    # -- events from the job ---------------------------------------------------------------------------

    def _running_changed(self, running: bool) -> None:
        # The picker names each run's status: the job marks its run running once it has started,
        # so the labels are read again at its first report too.
        self._labels_stale = running
        if self.project is not None:
            self.refresh_runs(select=self.run_id)
        self._update_buttons()

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
        name = self.throughput[0]
        for metric in metrics:
            if name in metric.values:
                self._throughput = metric.values[name]

    def _sample(self, sample: Sample) -> None:
        if self._ours() and sample.step > self._loaded_sample_step:
            self.show_sample(sample)

    def _progress(self, progress: Progress) -> None:
        if not self._ours():
            return
        if self._labels_stale and self.project is not None:
            self._labels_stale = False
            self.refresh_runs(select=self.run_id)
        total = f" of {progress.total:,}" if progress.total else ""
        parts = [f"{self.method.unit.capitalize()} {progress.step:,}{total}", f"ETA {duration_text(progress.eta_s)}"]
        if self._throughput is not None:
            parts.append(f"{self._throughput:,.1f} {self.throughput[1]}")
        self.status.setText(" · ".join(parts))

    def _log(self, log: Log) -> None:
        if not self._ours():
            return
        if log.level == "warning":
            self.show_warning(log.message)
            self._log_line("⚠ " + log.message)
        else:
            self._log_line(log.message)

    def _checkpoint(self, checkpoint: Checkpoint) -> None:
        if self._ours():
            best = " (best so far)" if checkpoint.best else ""
            self._log_line(f"checkpoint at {self.method.unit} {checkpoint.step:,}{best}: {checkpoint.path}")
            self.update_extras()

    def _finished(self, finished: Finished) -> None:
        if not self._ours():
            self.refresh_choices()  # another method's run may have made a model to pick
            return
        text = self.finished_text(finished)
        self.status.setText(text + (" · Resume continues from here" if finished.stopped else ""))
        self._log_line(text)
        self.refresh_runs(select=self.run_id)
        self.refresh_choices()  # its checkpoint can be picked now

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


class MethodsTab(TrainingTab):
    """A training tab whose method serves several algorithms, one of which its config's `method`
    field picks (RL: PPO, RLOO, GRPO; SFT / DPO): a picker above the form, which then shows the
    chosen algorithm's settings alone (`setting(..., methods=...)`), and curves that follow the
    algorithm of the run on show. A subclass lists its algorithms and says what their curves are."""

    pairs_added = Signal(int)  # "Compare with reference" added this many pairs to the project

    methods: tuple[str, ...]  # the algorithms, in the picker's order
    method_titles: dict[str, str]

    def add_comparison(self) -> None:
        """"Compare with reference" (policy_compare.py) beside the run picker, its line under it: the
        algorithms of both such tabs (SFT / DPO, RL) train a policy. The subclass calls it once built."""
        self.comparison = CompareControl(self)
        self.comparison.pairs_added.connect(self.pairs_added)
        self.comparison.logged.connect(self._log_line)
        self.comparison.failed_to_start.connect(self._error)
        self.compare_count, self.compare_button, self.compare_status = (
            self.comparison.count, self.comparison.button, self.comparison.status
        )
        self.run_row.addWidget(plain_label("Prompts"))
        self.run_row.addWidget(self.compare_count)
        self.run_row.addWidget(self.compare_button)
        self.right_layout.insertWidget(1, self.compare_status)

    def update_extras(self) -> None:
        if hasattr(self, "comparison"):  # the base updates once before the subclass adds it
            self.comparison.set_run(self.project, self.run_id)

    def method_picker(self) -> QComboBox:
        """The picker (self.method_box), for the subclass to place in build_choices."""
        self.method_box = QComboBox()
        for method in self.methods:
            self.method_box.addItem(self.method_titles[method], method)
        self.method_box.setToolTip(self.method.config.__dataclass_fields__["method"].metadata["help"])
        self.method_box.currentIndexChanged.connect(self._method_chosen)
        return self.method_box

    def set_curve_groups(self, kind: str) -> None:
        """Show the curves (and whatever else differs) of runs of this algorithm."""

    def chosen_method(self) -> str:
        return self.method_box.currentData()

    def algorithm(self) -> str:
        return self.chosen_method()

    def set_method(self, method: str) -> None:
        self.method_box.setCurrentIndex(self.method_box.findData(method))

    def _method_chosen(self) -> None:
        """The form shows the chosen algorithm's settings alone; the others keep their defaults."""
        method = self.chosen_method()
        self.form.show_only(lambda f: applies(f, method))
        # Its curves, unless a run of another algorithm is on show.
        if self.run_id is None or self.jobs.is_running:
            self.set_curve_groups(method)

    def show_run(self, run_id: str | None) -> None:
        # A run's curves are its algorithm's.
        run = self.project.store.run(run_id) if run_id is not None and self.project is not None else None
        if hasattr(self, "method_box"):  # the base shows an empty run before the subclass is built
            self.set_curve_groups(run["kind"] if run is not None else self.chosen_method())
        super().show_run(run_id)
