"""The Runs tab: every run of the project, newest first, and one run in detail.

    Runs  3 runs                              [Compare…] [Export…] [Delete…] [Refresh]
    ┌ Created │ Kind │ Name │ Status │ Duration │ Result │ Human win rate │ Error ───────┐
    ├──────────────────────────────────────────────────────────────────────┤  splitter
    │ id, status, times          │ curves (CurvesPanel, from the database)  │
    │ folder [Open folder]       │                                          │
    │ [Config│Summary│Error│Log] │                                          │
    └──────────────────────────────────────────────────────────────────────┘

Read through Store queries only; the list is re-read on refresh(), which the window calls when a
job ends, and whenever the tab is shown (verdicts given in the Label tab change win rates). An RL
run's human win rate is how often people preferred its policy to its reference on the pairs
"Compare with reference" made (store.policy_win_rates). Everything is shown as plain text: a run's
name or error may hold anything.

Several runs can be selected (Ctrl- and Shift-click); the detail area shows the current one (the
row last clicked). Compare… (Alt+C), with two or more selected, opens a window that shows them side
by side (compare_runs.py): curves overlaid on a chosen x axis, final figures, settings that differ.

Export… (Alt+X) writes the selected runs' figures into a folder the person picks, one folder per
run: TensorBoard event files and a CSV (core/run_export.py), in a worker; a message says where.

Delete… (the Delete key) says what deleting the current run removes and which runs started from
it (core/run_deletion.py), and deletes it, folder and all, in a worker once confirmed; a running
run cannot be deleted. It deletes that one run, however many are selected.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.events import Metric
from rlhf_workbench.core.policies import POLICY_RUN_KINDS, trained_model
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.run_deletion import delete_run, plan_deletion
from rlhf_workbench.core.run_export import ExportReport, export_runs
from rlhf_workbench.core.runs.records import (
    INTERRUPTED,
    INTERRUPTED_HELP,
    RESUMABLE,
    config_toml,
    log_tail,
    run_dir_of,
    shown_status,
)
from rlhf_workbench.core.training.dependents import kept_checkpoints_text

from ..curves import CurvesPanel, groups_for_kind
from ..dialogs import error_box
from ..tasks import run_in_child, run_task
from ..text import count, display_path, kind_name, one_line
from ..widgets import heading_label, plain_label
from .compare_runs import CompareRunsWindow, open_compare
from .policy_compare import win_rate_details, win_rate_text

COLUMNS = ("Created", "Kind", "Name", "Status", "Duration", "Result", "Human win rate", "Error")
# The figure that says how a run came out, shown first in Result when its summary has it: the
# validation accuracy of a reward model or a DPO policy, an SFT policy's token accuracy.
_HEADLINES = ("eval/accuracy", "eval/mean_token_accuracy")
EMPTY_TEXT = (
    "No runs in this project yet.\n\n"
    "Train a reward model in the Reward model tab, then PPO, RLOO or GRPO against it in the RL tab; or train a policy "
    "on the labelled pairs directly by DPO (or SFT) in the SFT / DPO tab (or from a terminal: rlhf-workbench train-rm / "
    "rl / dpo / sft). Every run appears here with its status, settings, "
    "figures and log, and can be resumed from its tab if it stopped."
)
_RESUME_TIP = "Continue the run shown below from its last checkpoint, in its method's tab"
_DELETE_TIP = "Delete the run shown below: its folder (checkpoints, log) and figures (Delete)"
_COMPARE_TIP = (
    "Show the selected runs side by side: their curves overlaid on step, samples seen, wall time or KL, their "
    "final figures, and the settings that differ (Alt+C)"
)
_COMPARE_NEEDS = "Select two or more runs to compare them (Ctrl- or Shift-click in the list)"
_EXPORT_TIP = (
    "Write the selected runs' figures into a folder: TensorBoard event files (tensorboard --logdir FOLDER shows "
    "them side by side) and a CSV per run (Alt+X)"
)


def _time(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def local_time(iso: str | None) -> str:
    t = _time(iso)
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else ""


def duration_text(run: dict[str, Any]) -> str:
    """How long it ran (so far, while it runs)."""
    start = _time(run.get("started_at"))
    if start is None:
        return ""
    if run.get("status") == INTERRUPTED:
        return ""  # its process left no end time: "so far" would grow for ever
    end = _time(run.get("finished_at")) if run.get("status") != "running" else None
    seconds = int(((end or datetime.now(start.tzinfo)) - start).total_seconds())
    h, rest = divmod(max(seconds, 0), 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


def _figure(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def summary_line(summary: dict[str, Any] | None, limit: int = 3) -> str:
    """The final figures for a table cell: the first few (the headline figure first), without the bookkeeping."""
    items = [(k, v) for k, v in (summary or {}).items() if k != "stopped"]
    items.sort(key=lambda item: item[0] not in _HEADLINES)  # stable: the rest keep their order
    return " · ".join(f"{k} {_figure(v)}" for k, v in items[:limit])


def _item(text: str, run_id: str | None = None) -> QTableWidgetItem:
    item = QTableWidgetItem(text)  # table items are plain text
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if run_id is not None:
        item.setData(Qt.ItemDataRole.UserRole, run_id)
    return item


def _text_box() -> QPlainTextEdit:
    box = QPlainTextEdit()
    box.setReadOnly(True)
    box.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
    return box


class RunsView(QWidget):
    run_deleted = Signal(str)  # the run's id, once its records and folder are gone
    resume_requested = Signal(str)  # the run's id: Resume… asks its method's tab to continue it
    runs_exported = Signal(object)  # the ExportReport, once an export is in place
    model_exported = Signal(object)  # export_model's result, once the folder is in place

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self._runs: list[dict[str, Any]] = []
        self._win_rates: dict[str, dict[str, Any]] = {}
        self._shown: tuple | None = None  # (id, status, finished_at) of the run in the detail area
        self._live_run_id: str | None = None
        self._live_last_step: dict[str, int] = {}

        self.count_label = plain_label()
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(heading_label("Runs"))
        top.addWidget(self.count_label)
        top.addStretch(1)
        self.compare_button = QPushButton("&Compare…")
        self.compare_button.setToolTip(_COMPARE_NEEDS)
        self.compare_button.setEnabled(False)
        self.compare_button.clicked.connect(self.compare_selected)
        self.compare_windows: list[CompareRunsWindow] = []
        top.addWidget(self.compare_button)
        self.export_button = QPushButton("E&xport…")
        self.export_button.setToolTip(_EXPORT_TIP)
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self.export_selected)
        self._exporting = False
        self._export_folder: str | None = None  # where the last export went: the dialog starts there
        top.addWidget(self.export_button)
        self.delete_button = QPushButton("&Delete…")
        self.delete_button.setToolTip(_DELETE_TIP)
        self.delete_button.clicked.connect(self.delete_selected)
        top.addWidget(self.delete_button)
        self.resume_button = QPushButton("&Resume…")
        self.resume_button.setToolTip(_RESUME_TIP)
        self.resume_button.setEnabled(False)
        self.resume_button.clicked.connect(self.resume_selected)
        top.addWidget(self.resume_button)
        top.addWidget(self.refresh_button)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Error"), QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        delete_key = QShortcut(QKeySequence.StandardKey.Delete, self.table)
        delete_key.setContext(Qt.ShortcutContext.WidgetShortcut)
        delete_key.activated.connect(self.delete_selected)
        self._deleting: str | None = None

        self.fields = {
            key: plain_label() for key in ("id", "status", "started", "finished", "duration", "win_rate", "folder", "kept")
        }
        for label in self.fields.values():
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.clicked.connect(self.open_folder)
        self.export_model_button = QPushButton("Export model…")
        self.export_model_button.setToolTip(
            "Write what this run trained (its policy, or its best reward model) as a plain transformers folder, "
            "a LoRA adapter merged into its base, for vLLM, Ollama or from_pretrained"
        )
        self.export_model_button.clicked.connect(self.export_model)
        self._exporting_model = False
        form = self.info_form = QFormLayout()
        for key, title in (("id", "Run"), ("status", "Status"), ("started", "Started"),
                           ("finished", "Ended"), ("duration", "Duration"), ("win_rate", "Human win rate"),
                           ("folder", "Folder"), ("kept", "Kept checkpoints")):
            form.addRow(title, self.fields[key])
        self.fields["kept"].setToolTip("Checkpoints older than keep_last that stay because another run started from "
                                       "them: that run loads them again whenever it is resumed")
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_folder_button)
        buttons.addWidget(self.export_model_button)
        buttons.addStretch(1)
        form.addRow("", buttons)
        self.config_text, self.summary_text, self.error_text, self.log_text = (_text_box() for _ in range(4))
        self.texts = QTabWidget()
        for box, title in ((self.config_text, "Config"), (self.summary_text, "Summary"),
                           (self.error_text, "Error"), (self.log_text, "Log")):
            self.texts.addTab(box, title)
        info = QWidget()
        info_layout = QVBoxLayout(info)
        info_layout.setContentsMargins(0, 0, 0, 0)
        info_layout.addLayout(form)
        info_layout.addWidget(self.texts, 1)
        self.curves = CurvesPanel()
        self._curves_kind: str | None = None

        detail = QSplitter(Qt.Orientation.Horizontal)
        detail.addWidget(info)
        detail.addWidget(self.curves)
        detail.setStretchFactor(1, 2)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(detail)
        self.splitter.setStretchFactor(1, 2)
        # A project without runs shows how to make one instead of an empty table and blank details.
        self.empty_label = plain_label(EMPTY_TEXT)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setMaximumWidth(640)  # a readable line length, centred
        self.empty_page = QWidget()
        centred = QHBoxLayout(self.empty_page)
        centred.addWidget(self.empty_label)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.splitter)
        self.stack.addWidget(self.empty_page)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.stack, 1)
        self._show_run(None)

    # -- the project ---------------------------------------------------------------------------

    def set_project(self, project: Project | None) -> None:
        for window in list(self.compare_windows):
            window.close()  # they show the project that goes
        self.project = project
        self._show_run(None)
        self.refresh()

    def follow(self, controller) -> None:
        """Show a JobController's live figures when its run is the selected one, and re-read
        the list when it starts or ends."""
        controller.running_changed.connect(lambda running: self._live_started(controller.run_id, running))
        controller.metrics.connect(self.show_live_metrics)

    def refresh(self) -> None:
        """Re-read the runs, keeping the selected ones and the current one (its detail is re-read if it changed)."""
        current, selected = self.selected_run_id, self.selected_run_ids
        # As a person should read it: a run whose process was killed shows as interrupted.
        self._runs = [{**run, "status": shown_status(self.project, run)}
                      for run in self.project.store.runs(newest_first=True, decode=True)] if self.project else []
        self._win_rates = self.project.store.policy_win_rates() if self.project else {}
        self.count_label.setText(count(len(self._runs), "run") if self.project else "")
        self.stack.setCurrentWidget(self.splitter if self._runs else self.empty_page)
        self.table.blockSignals(True)
        self.table.setRowCount(len(self._runs))
        for row, run in enumerate(self._runs):
            error = (run.get("error") or "").splitlines()
            cells = (
                local_time(run["created_at"]),
                kind_name(run["kind"]),
                run["name"],
                run["status"].capitalize(),
                duration_text(run),
                summary_line(run.get("summary")),
                win_rate_text(self._win_rates.get(run["id"])),
                one_line(error[0]) if error else "",
            )
            for col, text in enumerate(cells):
                self.table.setItem(row, col, _item(text, run["id"] if col == 0 else None))
            if run["status"] == INTERRUPTED:
                self.table.item(row, COLUMNS.index("Status")).setToolTip(INTERRUPTED_HELP)
            if run["kind"] in POLICY_RUN_KINDS:
                self.table.item(row, COLUMNS.index("Human win rate")).setToolTip(
                    win_rate_details(self._win_rates.get(run["id"]))
                )
        self.table.blockSignals(False)
        if not self.select_runs(selected, current=current) and self._runs:
            self.select_run(self._runs[0]["id"])
        self._selection_changed()
        self._show_win_rate(next((r for r in self._runs if r["id"] == self.selected_run_id), None))

    # -- selection -----------------------------------------------------------------------------

    @property
    def selected_run_id(self) -> str | None:
        """The current run: the one the detail shows, Delete deletes and Open folder opens. The
        row last clicked when it is selected, else the first selected row."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        if not rows:
            return None
        current = self.table.currentRow()
        return self._run_id_at(current if current in rows else rows[0])

    @property
    def selected_run_ids(self) -> list[str]:
        """Every selected run, in the list's order (newest first): what Compare compares."""
        return [self._run_id_at(index.row()) for index in
                sorted(self.table.selectionModel().selectedRows(), key=lambda index: index.row())]

    def _run_id_at(self, row: int) -> str:
        return self.table.item(row, 0).data(Qt.ItemDataRole.UserRole)

    def select_run(self, run_id: str | None) -> bool:
        """Select this run alone and make it the current one."""
        return self.select_runs([run_id] if run_id is not None else [], current=run_id)

    def select_runs(self, run_ids: list[str], *, current: str | None = None) -> bool:
        """Select these runs (those still listed) and nothing else, `current` (or the first) the
        current one; False, leaving the selection as it was, if none of them is listed."""
        rows = {run["id"]: row for row, run in enumerate(self._runs)}
        wanted = [rows[run_id] for run_id in run_ids if run_id in rows]
        if not wanted:
            return False
        model, flags = self.table.selectionModel(), QItemSelectionModel.SelectionFlag
        self.table.blockSignals(True)  # one selection change for the detail, not one per row
        try:
            model.clearSelection()
            for row in wanted:
                model.select(self.table.model().index(row, 0), flags.Select | flags.Rows)
            focus = rows[current] if current in rows and rows[current] in wanted else wanted[0]
            model.setCurrentIndex(self.table.model().index(focus, 0), flags.NoUpdate)
        finally:
            self.table.blockSignals(False)
        self._selection_changed()
        return True

    def _selection_changed(self) -> None:
        run_id = self.selected_run_id
        run = next((r for r in self._runs if r["id"] == run_id), None)
        key = (run["id"], run["status"], run["finished_at"]) if run else None
        if key != self._shown:
            self._show_run(run)
        self._update_resume_button(run)  # the live run may have changed while the row stayed
        several = len(self.selected_run_ids) >= 2
        self.compare_button.setEnabled(several and self.project is not None)
        self.compare_button.setToolTip(_COMPARE_TIP if several else _COMPARE_NEEDS)
        self._update_export_button()

    def _show_run(self, run: dict[str, Any] | None) -> None:
        self._shown = (run["id"], run["status"], run["finished_at"]) if run else None
        has_run = run is not None and self.project is not None
        folder = run_dir_of(self.project, run) if has_run else None
        self.fields["id"].setText(run["id"] if run else "")
        self.fields["status"].setText(run["status"].capitalize() if run else "")
        self.fields["started"].setText(local_time(run["started_at"]) if run else "")
        self.fields["finished"].setText(local_time(run["finished_at"]) if run else "")
        self.fields["duration"].setText(duration_text(run) if run else "")
        self._show_win_rate(run)
        self.fields["folder"].setText(display_path(folder) if folder else "")
        kept = kept_checkpoints_text(folder) if folder else ""
        self.fields["kept"].setText(kept)
        self.info_form.setRowVisible(self.fields["kept"], bool(kept))
        self.open_folder_button.setEnabled(bool(folder and folder.is_dir()))
        self._model = trained_model(self.project.store, self.project.path, run) if has_run else None
        self.export_model_button.setEnabled(self._model is not None and not self._exporting_model)
        self._update_delete_button(run)
        self._update_resume_button(run)
        self.fields["status"].setToolTip(INTERRUPTED_HELP if run and run["status"] == INTERRUPTED else "")
        self.config_text.setPlainText(config_toml(run["config"]) if run else "")
        summary = (run or {}).get("summary") or {}
        self.summary_text.setPlainText("\n".join(f"{k}: {_figure(v)}" for k, v in summary.items()))
        self.error_text.setPlainText((run or {}).get("error") or "")
        self.log_text.setPlainText(log_tail(folder) if folder else "")
        self._load_curves(run if has_run else None)

    def _show_win_rate(self, run: dict[str, Any] | None) -> None:
        label = self.fields["win_rate"]
        is_policy = run is not None and run["kind"] in POLICY_RUN_KINDS
        rate = self._win_rates.get(run["id"]) if is_policy else None
        label.setText(win_rate_details(rate) if is_policy else "")
        label.setToolTip(win_rate_text(rate))
        self.info_form.setRowVisible(label, is_policy)

    def showEvent(self, event) -> None:
        if self.project is not None:
            self.refresh()
        super().showEvent(event)

    def _load_curves(self, run: dict[str, Any] | None) -> None:
        if run is not None and run["kind"] != self._curves_kind:
            self._curves_kind = run["kind"]
            self.curves.set_groups(groups_for_kind(run["kind"]))
        else:
            self.curves.clear()
        self._live_last_step = {}
        if run is None:
            return
        store = self.project.store
        for name in store.metric_names(run["id"]):
            series = store.metric_series(run["id"], name)
            self.curves.set_series(name, [s for s, _ in series], [v for _, v in series])
            self._live_last_step[name] = series[-1][0] if series else -1
        self.curves.flush()

    # -- actions -------------------------------------------------------------------------------

    def open_folder(self) -> bool:
        run_id = self.selected_run_id
        run = next((r for r in self._runs if r["id"] == run_id), None)
        if run is None or self.project is None:
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(run_dir_of(self.project, run))))

    def compare_selected(self) -> CompareRunsWindow | None:
        """Open a window with the selected runs side by side (two or more)."""
        run_ids = self.selected_run_ids
        if self.project is None or len(run_ids) < 2:
            return None
        window = open_compare(self, self.project, run_ids)
        if window is not None:
            self.compare_windows.append(window)
            window.destroyed.connect(lambda _=None, w=window: self._forget_compare(w))
        return window

    def _forget_compare(self, window: CompareRunsWindow) -> None:
        if window in self.compare_windows:
            self.compare_windows.remove(window)

    def delete_selected(self) -> QMessageBox | None:
        """Asks, with what would go and which runs depend on it, before deleting the current run."""
        run_id = self.selected_run_id
        if self.project is None or run_id is None or self._deleting is not None:
            return None
        try:
            plan = plan_deletion(self.project, run_id)
        except WorkbenchError as exc:
            return error_box(self, str(exc), "Cannot delete the run")
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete run", plan.describe(), QMessageBox.StandardButton.NoButton, self)
        box.setTextFormat(Qt.TextFormat.PlainText)  # names and paths may look like HTML
        box.setInformativeText("This cannot be undone.")
        delete_button = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.buttonClicked.connect(lambda button: self._delete(run_id) if button is delete_button else None)
        box.open()
        return box

    def _delete(self, run_id: str) -> None:
        if self.project is None:
            return
        project_path = self.project.path
        self._deleting = run_id
        self._update_delete_button(None)

        def work(sink, stop):
            # Its own connection: the worker must not use the GUI thread's.
            with Project.open(project_path) as project:
                return delete_run(project, run_id)

        def ended(message: str | None = None) -> None:
            self._deleting = None
            self.refresh()
            self.run_deleted.emit(run_id)
            if message:
                error_box(self, message, "Deleting the run failed")

        run_task(self, work, on_done=lambda _plan: ended(), on_error=ended,
                 progress_title=f"Deleting run {run_id}", cancellable=False)

    def export_model(self) -> None:
        """Asks where, then writes the current run's model there as a plain folder, in a child
        process (torch stays out of the window's process)."""
        run_id, found = self.selected_run_id, self._model
        if self.project is None or run_id is None or found is None or self._exporting_model:
            return
        step, folder = found
        parent = QFileDialog.getExistingDirectory(
            self, f"Export the model of run {run_id} into", self._export_folder or str(Path.home())
        )
        if not parent:
            return
        self._export_folder = parent
        out = Path(parent) / f"{run_id}-step-{step}"
        self._exporting_model = True
        self.export_model_button.setEnabled(False)

        def ended(result: dict[str, Any] | None = None, message: str | None = None) -> None:
            self._exporting_model = False
            self._show_run(next((r for r in self._runs if r["id"] == self.selected_run_id), None))
            if message:
                error_box(self, message, "Exporting the model failed")
            if result is not None:
                merged = "its LoRA adapter merged, " if result["merged"] else ""
                box = QMessageBox(QMessageBox.Icon.Information, "Model exported",
                                  f"Wrote {display_path(Path(result['out']))}: a {result['kind']} model, {merged}"
                                  f"{result['parameters']:,} parameters in {result['dtype']}.",
                                  QMessageBox.StandardButton.Ok, self)
                box.setTextFormat(Qt.TextFormat.PlainText)
                box.setInformativeText("Its outputs were checked against the checkpoint's before it was kept.")
                box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                box.open()
                self.export_box = box
                self.model_exported.emit(result)

        try:
            run_in_child(self, "rlhf_workbench.core.model_export:export_model", str(folder), str(out),
                         what="model export", on_done=ended, on_error=lambda message: ended(message=message),
                         on_stopped=lambda _message: ended(), progress_title=f"Exporting the model of run {run_id}")
        except (OSError, WorkbenchError) as exc:
            ended(message=f"Could not start the export: {exc}")

    def export_selected(self) -> None:
        """Asks for a folder, then writes the selected runs' figures into it in a worker."""
        run_ids = self.selected_run_ids
        if self.project is None or not run_ids or self._exporting:
            return
        what = f"run {run_ids[0]}" if len(run_ids) == 1 else count(len(run_ids), "run")
        folder = QFileDialog.getExistingDirectory(
            self, f"Export the figures of {what} into", self._export_folder or str(Path.home())
        )
        if not folder:
            return
        self._export_folder = folder
        project_path = self.project.path
        self._exporting = True
        self._update_export_button()

        def work(sink, stop):
            with Project.open(project_path) as project:  # the worker's own connection
                return export_runs(project, run_ids, Path(folder), sink=sink, stop=stop)

        def ended(report: ExportReport | None = None, message: str | None = None) -> None:
            self._exporting = False
            self._update_export_button()
            if message:
                error_box(self, message, "Exporting the runs failed")
            if report is None:
                return
            box = QMessageBox(QMessageBox.Icon.Information, "Runs exported",
                              f"Exported {what} to {display_path(report.folder)}", QMessageBox.StandardButton.Ok, self)
            box.setTextFormat(Qt.TextFormat.PlainText)  # paths may look like HTML
            box.setInformativeText(
                "\n".join(report.lines()) + f"\n\nTensorBoard shows them with: tensorboard --logdir {report.folder}"
            )
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()
            self.export_box = box
            self.runs_exported.emit(report)

        run_task(self, work, on_done=ended, on_error=lambda message: ended(message=message),
                 on_stopped=lambda _message: ended(), progress_title=f"Exporting the figures of {what}")

    def _update_export_button(self) -> None:
        self.export_button.setEnabled(self.project is not None and bool(self.selected_run_ids) and not self._exporting)

    def resumable(self, run: dict[str, Any] | None) -> bool:
        """Whether Resume… can continue this run: stopped, failed or interrupted, with a checkpoint."""
        return (run is not None and self.project is not None and run["id"] != self._live_run_id
                and run["status"] in RESUMABLE and self.project.store.last_checkpoint(run["id"]) is not None)

    def resume_selected(self) -> None:
        run = next((r for r in self._runs if r["id"] == self.selected_run_id), None)
        if self.resumable(run):
            self.resume_requested.emit(run["id"])

    def _update_resume_button(self, run: dict[str, Any] | None) -> None:
        can = self.resumable(run)
        self.resume_button.setEnabled(can)
        self.resume_button.setToolTip(
            (INTERRUPTED_HELP + " " + _RESUME_TIP) if can and run["status"] == INTERRUPTED else _RESUME_TIP)

    def _update_delete_button(self, run: dict[str, Any] | None) -> None:
        live = run is not None and run["id"] == self._live_run_id
        self.delete_button.setEnabled(run is not None and not live and self._deleting is None)
        self.delete_button.setToolTip(
            "A running run cannot be deleted; stop it first" if live
            else _DELETE_TIP
        )

    def show_live_metrics(self, metrics: list[Metric]) -> None:
        """Figures of the live run; shown if it is the selected run. What the database already
        gave the curves (it lags the events by up to a second) is not drawn twice."""
        if self._live_run_id is None or self._live_run_id != self.selected_run_id:
            return
        fresh = []
        for metric in metrics:
            values = {k: v for k, v in metric.values.items() if metric.step > self._live_last_step.get(k, -1)}
            if values:
                fresh.append(Metric(metric.step, values, metric.time))
                self._live_last_step.update(dict.fromkeys(values, metric.step))
        self.curves.append(fresh)

    def _live_started(self, run_id: str | None, running: bool) -> None:
        self._live_run_id = run_id if running else None
        self.refresh()
        if running:
            self.select_run(run_id)
