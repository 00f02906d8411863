"""The main window: a project at a time, tabs that follow the user's loop, menus, a status bar.

    no project open → the start page (demo / open / new / recent)
    a project open  → tabs: Data, Label, Reward model, SFT / DPO, RL, Evaluate, Runs   (Ctrl+1 … Ctrl+7)

Every view has `set_project(project | None)`; the window owns the open `Project` and hands it to
the views whenever it changes. Errors the core raises on purpose (`WorkbenchError`) end up in
`show_error`, a dialog with the core's message, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.project import Project, default_projects_dir, demo_project_path

from . import settings, tasks
from .dialogs import APP_TITLE, NewProjectDialog, StartPanel, WelcomeDialog, about_box, error_box
from .jobs import JobController
from .resources import app_icon
from .text import count, display_path
from .views.data_view import DataView
from .views.evaluate_view import EvaluateView
from .views.label_view import LabelView
from .views.offline_view import OfflineView
from .views.reward_view import RewardView
from .views.rl_view import RLView
from .views.runs_view import RunsView
from .widgets import heading_label, plain_label


@contextmanager
def wait_cursor() -> Iterator[None]:
    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        yield
    finally:
        QApplication.restoreOverrideCursor()


class StartPage(QWidget):
    """What the window shows with no project open: the start panel and the recent projects."""

    recent_chosen = Signal(Path)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.icon = QLabel()
        self.icon.setPixmap(app_icon().pixmap(96, 96))
        self.panel = StartPanel()
        self.recent_title = heading_label("Recent projects")
        self.recent = QListWidget()
        self.recent.setMaximumHeight(180)
        self.recent.itemActivated.connect(lambda item: self.recent_chosen.emit(Path(item.text())))
        # A fixed width: wrapped labels in a column of flexible width get clipped heights.
        column = QWidget()
        column.setFixedWidth(600)
        inner = QVBoxLayout(column)
        inner.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignLeft)
        inner.addWidget(self.panel)
        inner.addSpacing(12)
        inner.addWidget(self.recent_title)
        inner.addWidget(self.recent)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(column, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(2)

    def show_recent(self, paths: list[Path]) -> None:
        self.recent.clear()
        for path in paths:
            self.recent.addItem(QListWidgetItem(str(path)))  # list items are plain text
        self.recent_title.setVisible(bool(paths))
        self.recent.setVisible(bool(paths))


class MainWindow(QMainWindow):
    project_changed = Signal(object)  # the new Project, or None
    error_shown = Signal(str)  # the message of every error dialog, for tests and logging

    TAB_TITLES = ("Data", "Label", "Reward model", "SFT / DPO", "RL", "Evaluate", "Runs")

    def __init__(self, annotator: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.annotator = annotator or settings.annotator()
        self.setWindowIcon(app_icon())
        self.resize(1280, 820)

        self.data_view = DataView()
        self.data_view.contents_changed.connect(self._show_project_state)
        self.data_view.step_chosen.connect(self._show_step)
        self.label_view = LabelView()
        self.label_view.annotator = self.annotator
        self.label_view.ask_annotator = self.ask_annotator
        self.label_view.error.connect(self.show_error)
        # The status bar's counts follow the labeller, at most every two seconds: recounting a
        # large project after every key press would compete with showing the next pair.
        self._counts_timer = QTimer(self)
        self._counts_timer.setSingleShot(True)
        self._counts_timer.setInterval(2000)
        self._counts_timer.timeout.connect(self._show_project_state)
        self.label_view.judge_page.verdict_recorded.connect(lambda _: self._counts_timer.start())
        # One training job at a time, in a child process; the views start it and watch it.
        self.jobs = JobController(self)
        self.reward_view = RewardView(self.jobs)
        self.reward_view.error.connect(self.show_error)
        self.offline_view = OfflineView(self.jobs)
        self.offline_view.error.connect(self.show_error)
        self.offline_view.pairs_added.connect(lambda _: self.refresh())
        self.rl_view = RLView(self.jobs)
        self.rl_view.error.connect(self.show_error)
        self.rl_view.pairs_added.connect(lambda _: self.refresh())
        self.evaluate_view = EvaluateView()
        self.evaluate_view.error.connect(self.show_error)
        self.evaluate_view.pairs_added.connect(lambda _: self.refresh())
        self.runs_view = RunsView()
        self.runs_view.follow(self.jobs)
        self.jobs.finished.connect(lambda _: self.runs_view.refresh())
        self.jobs.finished.connect(lambda _: self.evaluate_view.refresh())  # a new policy to evaluate
        self.jobs.finished.connect(lambda _: self.data_view.refresh())  # the loop's steps move on
        self.runs_view.run_deleted.connect(self._run_deleted)
        self.runs_view.resume_requested.connect(self.resume_run)
        self.jobs.failed.connect(self._job_failed)
        self.views = [self.data_view, self.label_view, self.reward_view, self.offline_view, self.rl_view,
                      self.evaluate_view, self.runs_view]
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for view, title in zip(self.views, self.TAB_TITLES):
            self.tabs.addTab(view, title)
        # The ranking counts verdicts given in the Label tab: read again whenever the tab is shown.
        self.tabs.currentChanged.connect(
            lambda index: self.evaluate_view.refresh() if self.tabs.widget(index) is self.evaluate_view else None)

        self.start_page = StartPage()
        self.start_page.panel.demo_requested.connect(self.open_demo_project)
        self.start_page.panel.open_requested.connect(self.choose_project_to_open)
        self.start_page.panel.new_requested.connect(self.choose_project_to_create)
        self.start_page.recent_chosen.connect(self.open_project)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.start_page)
        self.stack.addWidget(self.tabs)
        self.setCentralWidget(self.stack)

        self._build_menus()
        self._build_status_bar()
        self._show_project_state()

    # -- building ---------------------------------------------------------------------------

    def _action(self, text: str, slot, shortcut: str | QKeySequence | None = None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.new_action = self._action("&New Project…", self.choose_project_to_create, "Ctrl+N")
        self.open_action = self._action("&Open Project…", self.choose_project_to_open, "Ctrl+O")
        self.recent_menu = QMenu("Open &Recent", self)
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.demo_action = self._action("Open &Demo Project", self.open_demo_project)
        self.import_action = self._action("&Import Pairs…", lambda: self._in_data_tab(self.data_view.start_import), "Ctrl+I")
        self.export_action = self._action("&Export Pairs…", lambda: self._in_data_tab(self.data_view.start_export), "Ctrl+E")
        self.check_action = self._action("Chec&k Project…", self.check_project)
        self.backup_action = self._action("&Back Up Project…", self.choose_backup)
        self.close_action = self._action("&Close Project", self.close_project, "Ctrl+W")
        # Ctrl+Q spelled out: QKeySequence.Quit is empty on Windows.
        self.quit_action = self._action("&Quit", self.close, "Ctrl+Q")
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        file_menu.addAction(self.new_action)
        file_menu.addAction(self.open_action)
        file_menu.addMenu(self.recent_menu)
        file_menu.addAction(self.demo_action)
        file_menu.addSeparator()
        file_menu.addAction(self.import_action)
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self.check_action)
        file_menu.addAction(self.backup_action)
        file_menu.addSeparator()
        file_menu.addAction(self.close_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        view_menu = bar.addMenu("&View")
        self.tab_actions: list[QAction] = []
        for n, title in enumerate(self.TAB_TITLES):
            action = self._action(title, lambda _=False, n=n: self.show_tab(n), f"Ctrl+{n + 1}")
            view_menu.addAction(action)
            self.tab_actions.append(action)
        view_menu.addSeparator()
        self.refresh_action = self._action("&Refresh", self.refresh, QKeySequence.StandardKey.Refresh)
        view_menu.addAction(self.refresh_action)

        help_menu = bar.addMenu("&Help")
        self.about_action = self._action(f"&About {APP_TITLE}", self.show_about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        help_menu.addAction(self.about_action)

    def _build_status_bar(self) -> None:
        self.path_label = plain_label()
        self.counts_label = plain_label()
        self.annotator_label = plain_label()
        for label in (self.path_label, self.counts_label, self.annotator_label):
            label.setContentsMargins(6, 0, 6, 0)
        bar = self.statusBar()
        bar.addWidget(self.path_label, 1)
        bar.addPermanentWidget(self.counts_label)
        bar.addPermanentWidget(self.annotator_label)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = settings.recent_projects()
        for path in recent:
            self.recent_menu.addAction(self._action(str(path), lambda _=False, p=path: self.open_project(p)))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction(self._action("Clear Recent Projects", self._clear_recent))
        else:
            self.recent_menu.addAction("No recent projects").setEnabled(False)

    def _clear_recent(self) -> None:
        settings.clear_recent_projects()
        self._show_project_state()

    # -- projects ---------------------------------------------------------------------------

    def open_project(self, path: str | Path) -> bool:
        """Open the project at `path`; on failure show why and keep the current state."""
        try:
            with wait_cursor():
                project = Project.open(path)
        except WorkbenchError as exc:
            self.show_error(str(exc), "Could not open the project")
            return False
        return self.set_project(project)

    def create_project(self, path: str | Path) -> bool:
        try:
            with wait_cursor():
                project = Project.create(path)
        except WorkbenchError as exc:
            self.show_error(str(exc), "Could not create the project")
            return False
        return self.set_project(project)

    def open_demo_project(self) -> bool:
        """Open the demo project, making it first if it is not there yet."""
        path = demo_project_path()
        if Project.is_project(path):
            return self.open_project(path)
        try:
            # Imported here: the generator is only needed once, and start-up stays lean.
            from rlhf_workbench.core.demo import create_demo_project
        except ModuleNotFoundError as exc:
            if exc.name != "rlhf_workbench.core.demo":
                raise
            self.show_error("This installation has no demo generator (rlhf_workbench.core.demo is missing).")
            return False
        try:
            with wait_cursor():
                project = create_demo_project(path)
        except WorkbenchError as exc:
            self.show_error(str(exc), "Could not create the demo project")
            return False
        return self.set_project(project)

    def set_project(self, project: Project | None) -> bool:
        """Make `project` the open one (closing the previous), and show it in every view."""
        if self.project is not None and self.project is not project:
            with wait_cursor():
                self.label_view.judge_page.finish_saving()  # a verdict waiting for a busy database
        previous, self.project = self.project, project
        if previous is not None and previous is not project:
            previous.close()
        try:
            with wait_cursor():
                for view in self.views:
                    view.set_project(project)
        except WorkbenchError as exc:
            self.show_error(str(exc), "Could not show the project")
            if project is not None:
                self.set_project(None)
            return False
        if project is not None:
            settings.add_recent_project(project.path)
        self._show_project_state()
        self.project_changed.emit(project)
        return True

    def close_project(self) -> None:
        self.set_project(None)

    def resume_run(self, run_id: str) -> None:
        """Resume… in the Runs tab: the run's method's tab shows it and continues it."""
        run = self.project.store.run(run_id) if self.project is not None else None
        view = next((v for v in (self.reward_view, self.offline_view, self.rl_view)
                     if run is not None and run["kind"] in v.method.kinds), None)
        if view is None:
            return
        self.tabs.setCurrentWidget(view)
        view.refresh_runs(select=run_id)
        view.resume()

    def _run_deleted(self, run_id: str) -> None:
        for view in (self.reward_view, self.offline_view, self.rl_view):
            view.forget_run(run_id)
        self._show_project_state()

    def _show_step(self, key: str) -> None:
        """A step of the loop chosen on the Data tab: its tab (a policy: RL, where the reward model is used)."""
        view = {"label": self.label_view, "reward": self.reward_view, "policy": self.rl_view,
                "check": self.evaluate_view}.get(key)
        if view is not None:
            self.show_tab(self.tabs.indexOf(view))

    def refresh(self) -> None:
        if self.project is None:
            return
        try:
            self.data_view.refresh()
        except WorkbenchError as exc:
            self.show_error(str(exc))
        self._show_project_state()

    def set_annotator(self, name: str) -> None:
        self.annotator = name
        settings.set_annotator(name)
        self.label_view.set_annotator(name)
        self._show_project_state()

    def ask_annotator(self) -> str | None:
        """Who is labelling: asked once, then remembered (`--annotator NAME` also sets it)."""
        name, ok = QInputDialog.getText(
            self,
            "Who is labelling?",
            "Your name or handle. Every verdict you give is recorded under it, so that agreement\n"
            "between people can be measured. It is remembered for next time.",
        )
        name = name.strip()
        if not ok or not name:
            return None
        if name.startswith("dataset:"):
            self.show_error("Names starting with “dataset:” are reserved for labels that came with imported data.")
            return None
        self.set_annotator(name)
        return name

    # -- choosing with dialogs ------------------------------------------------------------

    def choose_project_to_open(self) -> None:
        start = settings.last_project()
        folder = QFileDialog.getExistingDirectory(
            self, "Open Project", str(start.parent if start else default_projects_dir())
        )
        if folder:
            self.open_project(folder)

    def choose_project_to_create(self) -> None:
        dialog = NewProjectDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.create_project(dialog.project_path()))
        dialog.open()

    def offer_demo(self) -> WelcomeDialog:
        """The first start: a dialog offering the demo project (or open / new)."""
        dialog = WelcomeDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.panel.demo_requested.connect(self.open_demo_project)
        dialog.panel.open_requested.connect(self.choose_project_to_open)
        dialog.panel.new_requested.connect(self.choose_project_to_create)
        settings.set_welcomed()
        dialog.open()
        return dialog

    # -- showing --------------------------------------------------------------------------

    def show_tab(self, n: int) -> None:
        if self.project is not None:
            self.tabs.setCurrentIndex(n)

    def show_error(self, message: str, title: str = "Something went wrong") -> QMessageBox:
        self.error_shown.emit(message)
        return error_box(self, message, title)

    # -- check and backup --------------------------------------------------------------------

    def check_project(self, *, repair: bool = False) -> None:
        """File ▸ Check Project: on a worker (integrity_check reads the whole file), then a report."""
        if self.project is None:
            return
        from rlhf_workbench.core.maintenance import check_project

        path = self.project.path
        tasks.run_task(self, lambda sink, stop: check_project(path, repair=repair), on_done=self._show_check_report,
                       progress_title="Repairing the project" if repair else "Checking the project")

    def _show_check_report(self, report) -> QMessageBox:
        repairable = [f for f in report.findings if f.repair and not f.repaired]
        if report.ok:
            icon, text = QMessageBox.Icon.Information, "\n".join(report.lines())
        else:
            icon, text = QMessageBox.Icon.Warning, "\n\n".join(report.lines())
        box = QMessageBox(icon, "Check project", text, QMessageBox.StandardButton.Close, self)
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        if repairable:
            button = box.addButton(f"Repair ({len(repairable)})", QMessageBox.ButtonRole.AcceptRole)
            button.setToolTip("Makes only the safe repairs: " + "; ".join(sorted({f.repair for f in repairable})))
            button.clicked.connect(lambda: self.check_project(repair=True))
        self.last_check_box = box
        box.open()
        return box

    def choose_backup(self) -> None:
        if self.project is None:
            return
        from rlhf_workbench.core.maintenance import backup_path

        suggested = backup_path(self.project.path, self.project.path.parent)
        path, _ = QFileDialog.getSaveFileName(self, "Back up project", str(suggested), "Project database (*.db)")
        if path:
            self.back_up_to(Path(path))

    def back_up_to(self, out: Path) -> None:
        """A consistent copy of the database, taken on a worker while the window (and runs) go on."""
        if self.project is None:
            return
        from rlhf_workbench.core.maintenance import backup_project

        path = self.project.path
        tasks.run_task(
            self,
            lambda sink, stop: backup_project(path, out),
            on_done=lambda target: self.statusBar().showMessage(
                f"Backed up to {display_path(target)} (run folders not included)", 15_000),
            progress_title="Backing up the project",
        )

    def show_about(self) -> QMessageBox:
        return about_box(self)

    def _show_project_state(self) -> None:
        project = self.project
        has_project = project is not None
        self.stack.setCurrentWidget(self.tabs if has_project else self.start_page)
        for action in (*self.tab_actions, self.close_action, self.refresh_action, self.import_action, self.export_action,
                       self.check_action, self.backup_action):
            action.setEnabled(has_project)
        self.annotator_label.setText(f"Annotator: {self.annotator}" if self.annotator else "")
        if project is None:
            self.setWindowTitle(APP_TITLE)
            self.path_label.setText("No project open")
            self.counts_label.setText("")
            self.start_page.show_recent(settings.recent_projects())
            return
        if project.read_only:
            # Said where it is always in sight: every change would be refused, one dialog each.
            self.setWindowTitle(f"{project.name} (read-only) — {APP_TITLE}")
            self.path_label.setText(f"{display_path(project.path)} — read-only: it can be read but not changed")
            self.path_label.setToolTip(str(project.store.refusal))
            self.import_action.setEnabled(False)
        else:
            self.setWindowTitle(f"{project.name} — {APP_TITLE}")
            self.path_label.setText(display_path(project.path))
            self.path_label.setToolTip("")
        # Counting a large project takes tens of milliseconds: done on a worker, shown when ready.
        tasks.run_store_task(
            self,
            project,
            lambda store, sink, stop: store.counts(),
            on_done=lambda c, project=project: self._show_counts(project, c),
            on_error=lambda message: self.counts_label.setText(""),
        )

    def _show_counts(self, project: Project, c: dict[str, int]) -> None:
        if project is self.project:
            self.counts_label.setText(
                f"{count(c['prompts'], 'prompt')} · {count(c['pairs'], 'pair')} · {count(c['judgments'], 'judgment')}"
            )

    # -- closing --------------------------------------------------------------------------

    def _in_data_tab(self, start) -> None:
        if self.project is not None:
            self.show_tab(0)
            start()

    def _job_failed(self, failed) -> None:
        self.runs_view.refresh()
        self.show_error(failed.message + (f"\n\n{failed.hint}" if failed.hint else ""), "The run stopped")

    def closeEvent(self, event: QCloseEvent) -> None:
        settings.set_window_geometry(bytes(self.saveGeometry()))
        # A running job is asked to checkpoint and stop; after the wait it is ended. Background
        # reads and imports are cancelled (an import rolls back) before the project closes.
        self.jobs.shutdown(5.0)
        tasks.stop_all()
        tasks.wait_for_all(5.0)
        self.set_project(None)
        super().closeEvent(event)

