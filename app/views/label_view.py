"""The Label tab: judge pairs at the speed of a keyboard, and see how people agree.

    ┌ Queue [Unlabelled pairs first ▾]   You: 12 · Left in queue: 344 · Total: 360 · 85/h  [Diff] [?] ┐
    │ Prompt: the conversation, turn by turn                                                        │
    ├──────────────────────────────────────┬────────────────────────────────────────────────────────┤
    │ Left response                        │ Right response                                         │
    ├──────────────────────────────────────┴────────────────────────────────────────────────────────┤
    │ Rationale (Tab)                                                                               │
    │ [← 1 Left better] [2 → Right better] [3 T Tie] [4 X Both bad] [Space S Skip]   [Ctrl+Z Undo]  │
    └───────────────────────────────────────────────────────────────────────────────────────────────┘

Two queues are fed from other tabs: "Policies compared" (pairs that "Compare with reference" and
the Evaluate tab's "Compare two policies" made) and "Reward model least sure", which a button beside the queue fills by scoring
the unjudged pairs with the latest reward model in a child process (label_queues.py).

The keys live on the view itself (its keyPressEvent), not in global shortcuts, so that typing a
rationale never casts a verdict: while the rationale has focus only Esc (back to the keys) and
Enter are ours. The core's LabelSession does the work: which side is shown left (random per pair,
recorded), timing, committing each verdict before the next pair is shown, and undo.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.errors import DatabaseBusy, WorkbenchError
from rlhf_workbench.core.labeling import (
    QUEUE_TITLES,
    QUEUES,
    LabelSession,
    QueueProgress,
    queue_progress,
)
from rlhf_workbench.core.project import Project

from ..tasks import run_store_task
from ..text import conversation_text
from ..widgets import TextPane, heading_label, plain_label
from .agreement_view import AgreementView
from .diff_highlight import differing_spans, paint_spans
from .key_help import KEYS, KeyHelpOverlay
from .label_queues import ScorePairsControl, empty_queue_text

# key → choice. Letters are matched case-insensitively through Qt's key codes.
# A verdict first waits this long (seconds) in the window's thread for a database another program
# holds; then "saving…" shows and it is tried again every SAVE_RETRY_MS, with keys held meanwhile.
FIRST_SAVE_WAIT_S = 0.25
SAVE_RETRY_MS = 500
LAST_SAVE_WAIT_S = 30.0  # when the project closes with a verdict still waiting
SAVING_TEXT = "Saving your verdict… the project's database is busy (another program, an import perhaps, is writing to it)."

_CHOICE_KEYS: dict[int, str] = {
    Qt.Key.Key_1: "left",
    Qt.Key.Key_Left: "left",
    Qt.Key.Key_2: "right",
    Qt.Key.Key_Right: "right",
    Qt.Key.Key_3: "tie",
    Qt.Key.Key_T: "tie",
    Qt.Key.Key_4: "both_bad",
    Qt.Key.Key_X: "both_bad",
    Qt.Key.Key_S: "skip",
    Qt.Key.Key_Space: "skip",
}


class JudgePage(QWidget):
    """The labelling surface. All keyboard handling for verdicts happens here."""

    verdict_recorded = Signal(int)  # judgment id, after it is committed
    pair_shown = Signal(object)  # the pair id now on screen, or None when the queue is empty
    error = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.session: LabelSession | None = None
        self.project: Project | None = None
        self._progress_task = None
        self._progress_again = False
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        self.queue_box = QComboBox()
        for queue in QUEUES:
            self.queue_box.addItem(QUEUE_TITLES[queue], queue)
        self.queue_box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.queue_box.currentIndexChanged.connect(self._queue_chosen)
        self.progress_label = plain_label()
        self.scoring = ScorePairsControl(self)
        self.scoring.button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.scoring.scored.connect(self._scores_arrived)
        self.diff_box = QCheckBox("Highlight differences (D)")
        self.diff_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.diff_box.toggled.connect(lambda _: self._paint_differences())
        self.help_button = QPushButton("Keys (?)")
        self.help_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.help_button.clicked.connect(self.toggle_help)
        top = QHBoxLayout()
        top.addWidget(plain_label("Queue:"))
        top.addWidget(self.queue_box)
        top.addWidget(self.scoring.button)
        top.addSpacing(12)
        top.addWidget(self.progress_label, 1)
        top.addWidget(self.diff_box)
        top.addWidget(self.help_button)

        self.prompt = TextPane("Prompt")
        self.left = TextPane("Left response")
        self.right = TextPane("Right response")
        for pane in (self.prompt, self.left, self.right):
            # Focus stays on the page so that ← and → always mean verdicts; the panes still
            # scroll with the mouse wheel.
            pane.text.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        responses = QSplitter(Qt.Orientation.Horizontal)
        responses.addWidget(self.left)
        responses.addWidget(self.right)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.prompt)
        self.splitter.addWidget(responses)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 3)

        self.rationale = QLineEdit()
        self.rationale.setPlaceholderText("Why? (optional) — Tab to write, Esc to go back to the keys")
        self.rationale.setClearButtonEnabled(True)
        self.rationale.returnPressed.connect(self.setFocus)

        self.buttons: dict[str, QPushButton] = {}
        buttons = QHBoxLayout()
        for action, title, keys in KEYS:
            if action in ("help", "rationale", "back", "diff"):
                continue
            button = QPushButton(f"{title}   [{keys}]")
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(self._button_action(action))
            self.buttons[action] = button
            if action == "undo":
                buttons.addStretch(1)
            buttons.addWidget(button)

        self.saving_label = plain_label(SAVING_TEXT)
        self.saving_label.setWordWrap(True)
        self.saving_label.hide()
        # (session, choice, rationale, decided at) of a verdict waiting for the database.
        self._saving: tuple[LabelSession, str, str | None, float] | None = None
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_RETRY_MS)
        self._save_timer.timeout.connect(self._retry_save)

        self.message = heading_label("")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.body = QStackedWidget()
        self.body.addWidget(self.splitter)
        self.body.addWidget(self.message)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.scoring.status)
        layout.addWidget(self.saving_label)
        layout.addWidget(self.body, 1)
        layout.addWidget(self.rationale)
        layout.addLayout(buttons)

        self.help = KeyHelpOverlay(self)
        self.help.hide()
        # Progress counts run a moment after the next pair is painted, not before: the labeller
        # sees the pair at once and the numbers when their hands pause. (A zero timeout would
        # run before the paint.)
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
        self._progress_timer.setInterval(250)
        self._progress_timer.timeout.connect(self.update_progress)
        self._per_hour_timer = QTimer(self)
        self._per_hour_timer.setInterval(30_000)
        self._per_hour_timer.timeout.connect(self.update_progress)

    # -- session ---------------------------------------------------------------------------

    def start(self, session: LabelSession | None, project: Project | None = None) -> None:
        self.session = session
        self.project = project
        self.rationale.clear()
        if project is not self.scoring.project:
            self.scoring.set_project(project)
        self.scoring.set_visible(session is not None and session.queue == "least_sure")
        if session is None:
            self._per_hour_timer.stop()
            self._show_message("Open a project to label its pairs.")
            self.progress_label.setText("")
            return
        index = self.queue_box.findData(session.queue)
        self.queue_box.blockSignals(True)
        self.queue_box.setCurrentIndex(max(index, 0))
        self.queue_box.blockSignals(False)
        self._per_hour_timer.start()
        self._guard(session.next)
        self.show_current()
        self.update_progress()

    def _queue_chosen(self, index: int) -> None:
        if self.session is None:
            return
        self._guard(lambda: self.session.set_queue(self.queue_box.itemData(index)))
        self.scoring.set_visible(self.session.queue == "least_sure")
        self.show_current()
        self.update_progress()
        self.setFocus()

    def _scores_arrived(self) -> None:
        """New scores reorder the least-sure queue: start it again from the least sure pair,
        unless a pair of it is on screen (the labeller is mid-way; new scores join as it wraps)."""
        session = self.session
        if session is None or session.queue != "least_sure":
            return
        if session.current is None:
            self._guard(lambda: session.set_queue("least_sure"))
            self.show_current()
        self.update_progress()

    # -- actions ---------------------------------------------------------------------------

    @property
    def saving(self) -> bool:
        """A verdict is waiting for the database (another program holds it); keys wait too."""
        return self._saving is not None

    def judge(self, choice: str) -> None:
        session = self.session
        if session is None or session.current is None or self.saving:
            return
        rationale = self.rationale.text().strip() or None
        self._save(session, choice, rationale, session.clock())

    def _save(self, session: LabelSession, choice: str, rationale: str | None, decided_at: float) -> None:
        try:
            judgment_id = session.judge(choice, rationale=rationale, wait_s=FIRST_SAVE_WAIT_S, decided_at=decided_at)
        except DatabaseBusy:
            # Never lost and never a dialog: the pair stays, "saving…" shows, and it is tried
            # again until the other program lets go; the window stays responsive meanwhile.
            self._saving = (session, choice, rationale, decided_at)
            self.saving_label.show()
            self.queue_box.setEnabled(False)  # the verdict is for the pair on screen
            for button in self.buttons.values():
                button.setEnabled(False)
            self._save_timer.start()
            return
        except WorkbenchError as exc:
            self._end_saving()
            self.error.emit(str(exc))
            return  # not saved: the same pair stays on screen, with its rationale
        self._end_saving()
        if session is not self.session:
            return  # saved for a session the tab has since left (another project was opened)
        self.rationale.clear()
        self.show_current()
        self.verdict_recorded.emit(judgment_id)
        self._progress_timer.start()

    def _retry_save(self) -> None:
        if self._saving is not None:
            self._save(*self._saving)

    def finish_saving(self, wait_s: float = LAST_SAVE_WAIT_S) -> None:
        """Before the project closes: a verdict still waiting gets one last, longer wait, and if
        the database is still held, the person is told which verdict was not saved."""
        if self._saving is None:
            return
        session, choice, rationale, decided_at = self._saving
        self._end_saving()
        try:
            session.judge(choice, rationale=rationale, wait_s=wait_s, decided_at=decided_at)
        except WorkbenchError as exc:
            pair = session.current.pair_id if session.current is not None else "?"
            self.error.emit(f"Your verdict on pair {pair} ({choice}) was not saved: {exc}")

    def _end_saving(self) -> None:
        was_saving = self._saving is not None
        self._saving = None
        self._save_timer.stop()
        self.saving_label.hide()
        self.queue_box.setEnabled(True)
        if was_saving and self.session is not None:
            self.show_current()

    def undo(self) -> None:
        if self.session is None or self.saving:
            return
        self._guard(self.session.undo)
        self.show_current()
        self._progress_timer.start()

    def toggle_help(self) -> None:
        self.help.setVisible(not self.help.isVisible())
        if self.help.isVisible():
            self.help.setGeometry(self.rect())
            self.help.raise_()

    def _button_action(self, action: str) -> Callable[[], None]:
        if action == "undo":
            return self.undo
        return lambda: self.judge(action)

    def _guard(self, work: Callable):
        try:
            return work()
        except WorkbenchError as exc:
            self.error.emit(str(exc))
            return None

    # -- showing ---------------------------------------------------------------------------

    def show_current(self) -> None:
        current = self.session.current if self.session is not None else None
        has_pair = current is not None
        for action, button in self.buttons.items():
            button.setEnabled(has_pair or (action == "undo" and self.session is not None))
        if current is None:
            self._show_message(empty_queue_text(self.project, self.session.queue if self.session else ""))
            self.pair_shown.emit(None)
            return
        pair = current.pair
        left, right = (pair.response_a, pair.response_b) if current.shown_left == "a" else (pair.response_b, pair.response_a)
        self.prompt.set_text(conversation_text(pair.prompt), f"Pair {pair.pair_id} · {pair.origin}")
        self.left.set_text(left)
        self.right.set_text(right)
        self.body.setCurrentWidget(self.splitter)
        self._paint_differences()
        self.pair_shown.emit(pair.pair_id)

    def _paint_differences(self) -> None:
        spans = None
        if self.diff_box.isChecked():
            spans = differing_spans(self.left.text.toPlainText(), self.right.text.toPlainText())
        paint_spans(self.left.text, spans[0] if spans else [])
        paint_spans(self.right.text, spans[1] if spans else [])
        if self.diff_box.isChecked() and spans is None:
            self.diff_box.setToolTip("These responses are too long to compare.")
        else:
            self.diff_box.setToolTip("")

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.body.setCurrentWidget(self.message)

    def update_progress(self) -> None:
        """Recount on a worker (tens of ms on a large project); at most one count in flight."""
        session, project = self.session, self.project
        if session is None or project is None:
            return
        if self._progress_task is not None:
            self._progress_again = True
            return
        annotator, queue = session.annotator, session.queue
        self._progress_task = run_store_task(
            self,
            project,
            lambda store, sink, stop: queue_progress(store, annotator, queue),
            on_done=lambda progress: self._progress_arrived(session, progress),
            on_error=lambda message: self._progress_arrived(session, message),
        )

    def _progress_arrived(self, session: LabelSession, progress: QueueProgress | str) -> None:
        self._progress_task = None
        if self._progress_again:
            self._progress_again = False
            self.update_progress()
            return
        if session is not self.session:
            return
        if isinstance(progress, str):
            self.progress_label.setText(progress)
            return
        parts = [
            f"Labelled by you: {progress.labelled_by_me:,}",
            f"Left in this queue: {progress.remaining:,}",
            f"Total: {progress.total:,}",
        ]
        if progress.overlap_percent is not None:
            parts.append(f"Overlap with others: {progress.overlap_percent:.0f}%")
        per_hour = session.labels_per_hour()
        if per_hour is not None:
            parts.append(f"{per_hour:,.0f} labels/hour")
        self.progress_label.setText(" · ".join(parts))

    # -- keys ------------------------------------------------------------------------------

    def event(self, event: QEvent) -> bool:
        # Tab would otherwise walk the focus chain; here it means "write a rationale".
        if event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Tab and not self.rationale.hasFocus():
            self.rationale.setFocus()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if self.help.isVisible():
            # Any key closes the overlay; Esc and ? do nothing else.
            self.help.hide()
            if key in (Qt.Key.Key_Escape, Qt.Key.Key_Question):
                return
        if self.rationale.hasFocus():
            # Keys the line edit did not want reach us; only "back to the keys" is ours.
            if key == Qt.Key.Key_Escape:
                self.setFocus()
            return
        modifiers = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if event.matches(QKeySequence.StandardKey.Undo):
            self.undo()
        elif key == Qt.Key.Key_Question:
            self.toggle_help()
        elif key in _CHOICE_KEYS and modifiers in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ShiftModifier):
            if not event.isAutoRepeat():  # holding a key must not judge a run of pairs
                self.judge(_CHOICE_KEYS[key])
        elif key == Qt.Key.Key_D and modifiers == Qt.KeyboardModifier.NoModifier:
            self.diff_box.toggle()
        elif key == Qt.Key.Key_Escape:
            self.setFocus()
        else:
            super().keyPressEvent(event)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.help.setGeometry(self.rect())


class LabelView(QWidget):
    """The Label tab: the judging page and the agreement page of the open project."""

    error = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.annotator = ""
        self.ask_annotator: Callable[[], str | None] | None = None  # set by the main window
        self.judge_page = JudgePage()
        self.agreement = AgreementView()
        self.pages = QTabWidget()
        self.pages.setDocumentMode(True)
        self.pages.addTab(self.judge_page, "Judge pairs")
        self.pages.addTab(self.agreement, "Agreement and quality")
        self.pages.currentChanged.connect(self._page_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.pages)
        self.judge_page.error.connect(self.error)
        self.agreement.error.connect(self.error)

    @property
    def session(self) -> LabelSession | None:
        return self.judge_page.session

    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.agreement.set_project(project)
        self._start_session()

    def set_annotator(self, name: str) -> None:
        if name != self.annotator:
            self.annotator = name
            self._start_session()

    def _start_session(self) -> None:
        if self.project is None or not self.annotator:
            self.judge_page.start(None)
            if self.project is not None:
                self.judge_page._show_message("Who is labelling? Your name is asked when you open this tab.")
            return
        queue = self.session.queue if self.session is not None else "unlabelled"
        self.judge_page.start(LabelSession(self.project.store, self.annotator, queue), self.project)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.project is not None and not self.annotator and self.ask_annotator is not None:
            # Deferred: a dialog opened from inside showEvent would nest in the tab switch.
            QTimer.singleShot(0, self._ask_annotator)
        if self.pages.currentWidget() is self.judge_page:
            self.judge_page.setFocus()
        self.judge_page.scoring.refresh()  # a reward model may have finished training meanwhile

    def _ask_annotator(self) -> None:
        if self.annotator or self.ask_annotator is None or not self.isVisible():
            return
        name = self.ask_annotator()
        if name:
            self.set_annotator(name)

    def _page_changed(self, index: int) -> None:
        if self.pages.widget(index) is self.agreement:
            self.agreement.refresh()
        else:
            self.judge_page.setFocus()
