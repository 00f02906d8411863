"""The Data tab: what the project holds (counts), its pairs and prompts, and one pair in full.

    ┌ Contents ┐┌ Pairs by origin ┐┌ Verdicts by annotator ┐   overview strip
    ├──────────┴┴─────────────────┴┴───────────────────────┤
    │ [Import…] [Export…] [Generate…]  filters and search   │   toolbar (pair_filters.py)
    │ [Pairs] [Prompts]  lazy tables                        │
    ├───────────────────────────────────────────────────────┤   splitter
    │ Conversation │ Response A │ Response B                │   detail pane
    └───────────────────────────────────────────────────────┘

Everything is read through `Store` queries; this view runs no SQL of its own. What can take
long at 100,000 pairs runs in background tasks (app/tasks.py) on connections of their own: the
overview counts (~70-130 ms), the ids of the pairs a filter or search matches (25-500 ms), an
import, an export; generating responses runs in a child process (generate_dialog.py). The GUI
thread only reads the ~200 rows on screen, by id (~2 ms). Files dropped on the view are
imported (import_dialog.py). The panels are in data_panels.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.errors import Stopped
from rlhf_workbench.core.events import Sink, StopFlag
from rlhf_workbench.core.exporting import ExportReport
from rlhf_workbench.core.importing import ImportReport
from rlhf_workbench.core.progress import loop_progress
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.store import Store
from rlhf_workbench.core.store.pairs import PairFilter

from ..dialogs import error_box
from ..tasks import Task, run_store_task
from ..text import count
from .data_panels import DetailPane, OverviewPanel, table_view
from .export_dialog import ExportChoice, ExportDialog, export_summary, run_export
from .generate_dialog import GenerateControl
from .import_dialog import ImportChoice, ImportDialog, ImportSummary, run_import
from .next_steps import NextSteps
from .pair_filters import FilterBar
from .table_models import pairs_model, prompts_model

IMPORT_FILE_TYPES = (
    "Data files (*.jsonl *.ndjson *.json *.csv *.tsv *.txt *.parquet *.arrow *.gz *.bz2 *.xz *.zst);;All files (*)"
)


def read_overview(store: Store, sink: Sink, stop: StopFlag) -> dict[str, Any]:
    """The overview's numbers, read in a worker (~70-130 ms at 100,000 pairs)."""
    counts = store.counts()
    counts["unlabelled"] = store.unlabelled_pair_count()
    counts["heldout"] = len(store.heldout_prompt_ids())
    if stop():
        raise Stopped("stopped")
    return {
        "counts": counts,
        "by_origin": store.pairs_by_origin(),
        "by_annotator": store.judgments_by_annotator_and_verdict(),
        "progress": loop_progress(store),
    }


class DataView(QWidget):
    """The Data tab."""

    loaded = Signal()  # the counts and the pairs table are up to date (after a refresh or a filter)
    step_chosen = Signal(str)  # a step of the loop's button ("label", "reward", ...): the window shows its tab
    contents_changed = Signal()  # an import added to the project (the window's counts are stale)
    error_shown = Signal(str)  # the message of every error dialog this view opens

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.overview = OverviewPanel()
        self.overview_data: dict[str, Any] | None = None
        self.next_steps = NextSteps()
        self.next_steps.step_chosen.connect(self._step_chosen)

        self.import_button = QPushButton("&Import…")
        self.export_button = QPushButton("E&xport…")
        self.generator = GenerateControl(self)
        self.filters = FilterBar()
        toolbar = QHBoxLayout()
        toolbar.addWidget(self.import_button)
        toolbar.addWidget(self.export_button)
        toolbar.addWidget(self.generator.button)
        toolbar.addSpacing(12)
        toolbar.addWidget(self.filters, 1)

        self.pairs_model = pairs_model(self)
        self.prompts_model = prompts_model(self)
        self.pairs_table = table_view(self.pairs_model)
        self.prompts_table = table_view(self.prompts_model)
        self._set_pair_column_widths()
        self.tables = QTabWidget()
        self.tables.setDocumentMode(True)
        self.tables.addTab(self.pairs_table, "Pairs")
        self.tables.addTab(self.prompts_table, "Prompts")
        self.detail = DetailPane()

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.tables)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.addWidget(self.next_steps)
        layout.addWidget(self.overview)
        layout.addLayout(toolbar)
        layout.addWidget(splitter, 1)

        # Background work in flight; a newer request makes an older one's answer stale.
        self.overview_task: Task | None = None
        self.ids_task: Task | None = None
        self.import_task: Task | None = None
        self.export_task: Task | None = None
        self.import_dialog: ImportDialog | None = None
        self.last_import: ImportReport | None = None
        self.last_export: ExportReport | None = None
        self.last_filter_ms: float | None = None  # from a filter change to its rows on screen
        self._generation = 0
        self._ids_generation = 0
        self._filter: PairFilter | None = None  # the filter whose ids are shown or on their way
        self._pending_row: int | None = None
        self._queued_imports: list[Path] = []

        self.setAcceptDrops(True)
        find = QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self)
        find.activated.connect(self.filters.focus_search)
        self.filters.search.leave_down.connect(self._focus_table)
        self.filters.changed.connect(self.apply_filter)
        self.import_button.clicked.connect(lambda: self.start_import())
        self.export_button.clicked.connect(self.start_export)
        self.generator.added.connect(self._generated)
        self.generator.error_shown.connect(self.error_shown)
        self.pairs_table.selectionModel().currentRowChanged.connect(self._pair_selected)
        self.prompts_table.selectionModel().currentRowChanged.connect(self._prompt_selected)
        self.tables.currentChanged.connect(lambda _: self._show_current())
        self._enable_actions()

    def _set_pair_column_widths(self) -> None:
        for column, width in enumerate((60, 90, 300, 260, 260)):
            self.pairs_table.setColumnWidth(column, width)
        self.prompts_table.setColumnWidth(0, 60)
        self.prompts_table.setColumnWidth(1, 700)

    # -- project and refresh --------------------------------------------------------------------

    def set_project(self, project: Project | None) -> None:
        if project is not self.project:
            # Work for the previous project stops (an import rolls back) and its answers are dropped.
            for task in (self.overview_task, self.ids_task, self.import_task, self.export_task):
                if task is not None:
                    task.stop()
            self._queued_imports.clear()
            self.filters.reset()
            self.overview_data = None
        self.project = project
        self.generator.set_project(project)
        self.refresh()

    def refresh(self) -> None:
        """Re-read counts and start both tables over (after an import, say)."""
        self._generation += 1
        self._ids_generation += 1
        self.detail.clear()
        self._enable_actions()
        project = self.project
        if project is None:
            self.overview.clear()
            self.pairs_model.clear()
            self.prompts_model.set_fetcher(None)
            self._set_tab_titles(None, None)
            self.filters.status.setText("")
            return
        self.prompts_model.set_fetcher(project.store.prompts_page)
        self._set_pair_column_widths()
        generation = self._generation
        if self.overview_task is not None:
            self.overview_task.stop()
        self.overview_task = run_store_task(
            self, project, read_overview, on_done=lambda data: self._show_overview(generation, data), on_error=self._show_error
        )
        self.overview_task.ended.connect(self._maybe_loaded)
        self.apply_filter(again=True)

    def apply_filter(self, *, again: bool = False) -> None:
        """Read the ids of the pairs that match the filter bar, in the background. A filter
        already shown (or on its way) is not read again unless `again`."""
        project = self.project
        chosen = self.filters.filter()
        if project is None or (chosen == self._filter and not again):
            return
        self._filter = chosen
        self._ids_generation += 1
        generation, started = self._ids_generation, time.perf_counter()
        if self.ids_task is not None:
            self.ids_task.stop()  # interrupts its scan; its answer would be stale anyway
        self.filters.status.setText("Searching…" if chosen.text else "Reading…")

        def matching(store: Store, sink: Sink, stop: StopFlag):
            return store.matching_pair_ids(chosen, stop=stop)

        self.ids_task = run_store_task(
            self,
            project,
            matching,
            on_done=lambda ids: self._show_ids(generation, ids, started),
            on_error=self._show_error,
        )
        self.ids_task.ended.connect(self._maybe_loaded)

    def _step_chosen(self, key: str) -> None:
        # The first step is this tab's own: with data already in, Import… still adds more.
        if key == "data":
            self.start_import()
        else:
            self.step_chosen.emit(key)

    def is_loading(self) -> bool:
        return any(t is not None and t.is_running() for t in (self.overview_task, self.ids_task))

    def _show_overview(self, generation: int, data: dict[str, Any]) -> None:
        if self.project is None or generation != self._generation:
            return  # read for an earlier refresh or another project
        self.overview_data = data
        counts = data["counts"]
        self.overview.show_counts(counts, data["by_origin"], data["by_annotator"])
        self.next_steps.show_progress(data["progress"])
        self._set_tab_titles(counts["pairs"], counts["prompts"])
        self.filters.set_choices(list(data["by_origin"]), list(data["by_annotator"]))
        self._show_match_count()

    def _show_ids(self, generation: int, ids, started: float) -> None:
        if self.project is None or generation != self._ids_generation:
            return  # a newer filter is on its way
        self.detail.clear()
        self.pairs_model.set_ids(ids, self.project.store.pair_rows)
        self.last_filter_ms = (time.perf_counter() - started) * 1000
        self._show_match_count()
        if self._pending_row is not None and self._pending_row < len(ids):
            row, self._pending_row = self._pending_row, None
            self.select_pair_row(row)

    def _show_match_count(self) -> None:
        if self.ids_task is not None and self.ids_task.is_running():
            return
        shown = self.pairs_model.rowCount()
        total = self.overview_data["counts"]["pairs"] if self.overview_data else None
        if self._filter is None or self._filter.is_empty() or total is None:
            self.filters.status.setText(count(shown, "pair"))
        else:
            self.filters.status.setText(f"{shown:,} of {count(total, 'pair')}")

    def _maybe_loaded(self) -> None:
        if not self.is_loading():
            self.loaded.emit()

    def _set_tab_titles(self, pairs: int | None, prompts: int | None) -> None:
        self.tables.setTabText(0, "Pairs" if pairs is None else f"Pairs ({pairs:,})")
        self.tables.setTabText(1, "Prompts" if prompts is None else f"Prompts ({prompts:,})")

    def _show_error(self, message: str, title: str = "Something went wrong") -> None:
        self.error_shown.emit(message)
        error_box(self, message, title)

    def _enable_actions(self) -> None:
        has_project = self.project is not None
        importing = self.import_task is not None and self.import_task.is_running()
        self.import_button.setEnabled(has_project and not importing)
        self.export_button.setEnabled(has_project)
        self.filters.setEnabled(has_project)

    # -- import and export ----------------------------------------------------------------------

    def start_import(self, path: str | Path | None = None) -> ImportDialog | None:
        """Import a file: ask for one if `path` is None, then open the import dialog on it.
        Returns the dialog (already open), or None if nothing is to be imported."""
        if self.project is None:
            return None
        if self.import_task is not None and self.import_task.is_running():
            if path is not None:
                self._queued_imports.append(Path(path))  # its dialog opens once this import is done
            return None
        if path is None:
            chosen, _ = QFileDialog.getOpenFileName(self, "Import", str(Path.home()), IMPORT_FILE_TYPES)
            if not chosen:
                return None
            path = chosen
        dialog = ImportDialog(path, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._run_import(dialog.choice()))
        dialog.rejected.connect(self._next_import)
        self.import_dialog = dialog
        dialog.open()
        return dialog

    def import_files(self, paths: list[Path]) -> ImportDialog | None:
        """Import several files one after another (what a drop of several files does)."""
        if not paths or self.project is None:
            return None
        self._queued_imports.extend(paths[1:])
        return self.start_import(paths[0])

    def _run_import(self, choice: ImportChoice) -> None:
        if self.project is None:
            return
        self.import_task = run_import(
            self,
            self.project,
            choice,
            on_done=self._imported,
            on_stopped=self._import_stopped,
            on_error=lambda message: self._import_stopped(message, failed=True),
        )
        self.import_task.ended.connect(self._enable_actions)
        self._enable_actions()

    def _imported(self, report: ImportReport) -> None:
        self.last_import = report
        summary = ImportSummary(report, self)
        summary.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        summary.open()
        self.refresh()
        self.contents_changed.emit()
        self._next_import()

    def _import_stopped(self, message: str, failed: bool = False) -> None:
        if failed:
            self._show_error(message, "Import failed")
        else:
            self.filters.status.setText("Import cancelled")
        self._next_import()

    def _next_import(self) -> None:
        if self._queued_imports and self.project is not None:
            self.start_import(self._queued_imports.pop(0))

    def start_export(self) -> ExportDialog | None:
        """Open the export dialog; the export runs in the background once it is accepted."""
        if self.project is None:
            return None
        annotators = list(self.overview_data["by_annotator"]) if self.overview_data else []
        dialog = ExportDialog(annotators, Path.home(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._run_export(dialog.choice()))
        dialog.open()
        return dialog

    def _run_export(self, choice: ExportChoice) -> None:
        if self.project is None:
            return
        self.export_task = run_export(
            self,
            self.project,
            choice,
            on_done=self._exported,
            on_stopped=lambda message: self.filters.status.setText("Export cancelled"),
            on_error=lambda message: self._show_error(message, "Export failed"),
        )

    def _exported(self, report: ExportReport) -> None:
        self.last_export = report
        export_summary(self, report)

    def _generated(self, counts: dict[str, Any]) -> None:
        self.refresh()
        self.contents_changed.emit()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.project is not None and _local_files(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = _local_files(event)
        if self.project is not None and paths:
            event.acceptProposedAction()
            self.import_files(paths)

    # -- selection ------------------------------------------------------------------------------

    def select_pair_row(self, row: int) -> None:
        """Select a row of the pairs table; a row not read yet is selected once it is there."""
        self.tables.setCurrentWidget(self.pairs_table)
        if row >= self.pairs_model.rowCount():
            self._pending_row = row if self.is_loading() else None
            return
        index = self.pairs_model.index(row, 0)
        self.pairs_table.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        )

    def _focus_table(self) -> None:
        table = self.tables.currentWidget()
        table.setFocus(Qt.FocusReason.ShortcutFocusReason)
        if not table.currentIndex().isValid() and table.model().rowCount():
            table.selectRow(0)

    def _show_current(self) -> None:
        table = self.tables.currentWidget()
        if table is self.pairs_table:
            self._pair_selected(self.pairs_table.currentIndex())
        else:
            self._prompt_selected(self.prompts_table.currentIndex())

    def _pair_selected(self, index: QModelIndex) -> None:
        row = self.pairs_model.row(index.row()) if self.project is not None and index.isValid() else None
        pair = self.project.store.pair(row["id"]) if row is not None else None
        if pair is None:  # nothing chosen, or deleted since the ids were read
            self.detail.clear()
        else:
            self.detail.show_pair(pair)

    def _prompt_selected(self, index: QModelIndex) -> None:
        if self.project is None or not index.isValid():
            self.detail.clear()
            return
        row = self.prompts_model.row(index.row())
        self.detail.show_prompt(row["id"], row["prompt"], row["pairs"])


def _local_files(event: QDragEnterEvent | QDropEvent) -> list[Path]:
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile() and Path(url.toLocalFile()).is_file()]
