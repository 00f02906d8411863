"""The Label tab, driven through the real window with key presses, checked against the database."""

import sqlite3

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from rlhf_workbench.app.main import configure_application, create_main_window, parse_args
from rlhf_workbench.app.views.diff_highlight import differing_spans
from rlhf_workbench.core.demo import create_demo_project

pytestmark = pytest.mark.usefixtures("workbench_home")

ANNOTATOR = "ada"


@pytest.fixture
def demo_path(tmp_path):
    create_demo_project(tmp_path / "demo").close()
    return tmp_path / "demo"


@pytest.fixture
def window(qtbot, demo_path):
    configure_application(QApplication.instance())
    window = create_main_window(parse_args([str(demo_path), "--annotator", ANNOTATOR]))
    qtbot.addWidget(window)
    qtbot.waitExposed(window)
    window.show_tab(1)
    page = window.label_view.judge_page
    qtbot.waitUntil(lambda: page.hasFocus())
    return window


def rows(path, annotator=ANNOTATOR):
    """Every judgment by `annotator`, straight from the file, through a connection of our own."""
    conn = sqlite3.connect(path / "project.db")
    try:
        return conn.execute(
            "SELECT pair_id, verdict, shown_left, undone, seconds, rationale FROM judgments "
            "WHERE annotator = ? ORDER BY id",
            (annotator,),
        ).fetchall()
    finally:
        conn.close()


def expected_verdict(choice, shown_left):
    if choice == "left":
        return shown_left
    if choice == "right":
        return "b" if shown_left == "a" else "a"
    return choice


KEYS = [
    (Qt.Key.Key_1, "left"),
    (Qt.Key.Key_Left, "left"),
    (Qt.Key.Key_2, "right"),
    (Qt.Key.Key_Right, "right"),
    (Qt.Key.Key_3, "tie"),
    (Qt.Key.Key_T, "tie"),
    (Qt.Key.Key_4, "both_bad"),
    (Qt.Key.Key_X, "both_bad"),
    (Qt.Key.Key_S, "skip"),
    (Qt.Key.Key_Space, "skip"),
]


@pytest.mark.slow
def test_label_20_pairs_with_every_key_undo_3_and_relabel(window, qtbot, demo_path):
    page = window.label_view.judge_page
    expected = []  # (pair_id, verdict, shown_left, undone)
    for n in range(20):
        key, choice = KEYS[n % len(KEYS)]
        current = page.session.current
        assert current is not None
        # What is on screen is the pair the session says, with the side it says on the left.
        shown = current.pair.response_a if current.shown_left == "a" else current.pair.response_b
        assert page.left.text.toPlainText() == shown
        qtbot.keyClick(page, key)
        expected.append([current.pair_id, expected_verdict(choice, current.shown_left), current.shown_left, 0])
        assert page.session.current is None or page.session.current.pair_id != current.pair_id

    for _ in range(3):
        qtbot.keyClick(page, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    for row in expected[-3:]:
        row[3] = 1
    # Undo brings the first undone pair back... the last of the three undone is the 18th pair.
    assert page.session.current.pair_id == expected[17][0]

    # Relabel those three with a rationale for the first.
    qtbot.keyClick(page, Qt.Key.Key_Tab)
    assert page.rationale.hasFocus()
    qtbot.keyClicks(page.rationale, "1 is clearer; T")  # digits and letters typed, not verdicts
    qtbot.keyClick(page.rationale, Qt.Key.Key_Escape)
    assert page.hasFocus()
    for key, choice in [(Qt.Key.Key_2, "right"), (Qt.Key.Key_3, "tie"), (Qt.Key.Key_1, "left")]:
        current = page.session.current
        qtbot.keyClick(page, key)
        expected.append([current.pair_id, expected_verdict(choice, current.shown_left), current.shown_left, 0])
    assert {r[0] for r in expected[-3:]} == {r[0] for r in expected[17:20]}

    got = rows(demo_path)
    assert [[p, v, s, u] for p, v, s, u, _, _ in got] == expected
    assert all(seconds is not None and seconds >= 0 for *_, seconds, _ in got)
    rationales = [r for *_, r in got if r is not None]
    assert rationales == ["1 is clearer; T"]
    # Of the first 20, pairs 9, 10, 19 and 20 were skipped and 18 to 20 undone: 15 labelled, then
    # 3 relabelled. Counted off the GUI thread.
    qtbot.waitUntil(lambda: "Labelled by you: 18 ·" in page.progress_label.text(), timeout=5000)
    assert "Total: 360" in page.progress_label.text()
    # Nothing else was written by anyone.
    assert len(rows(demo_path, "dataset:demo")) == 216


def test_buttons_show_their_keys_and_do_the_same(window, qtbot, demo_path):
    page = window.label_view.judge_page
    assert "[1 or ←]" in page.buttons["left"].text()
    assert "[Ctrl+Z]" in page.buttons["undo"].text()
    current = page.session.current
    qtbot.mouseClick(page.buttons["both_bad"], Qt.MouseButton.LeftButton)
    assert rows(demo_path)[-1][:2] == (current.pair_id, "both_bad")
    qtbot.mouseClick(page.buttons["undo"], Qt.MouseButton.LeftButton)
    assert rows(demo_path)[-1][3] == 1


def test_side_shown_left_varies_between_pairs(window, qtbot, demo_path):
    page = window.label_view.judge_page
    for _ in range(40):
        qtbot.keyClick(page, Qt.Key.Key_1)
    sides = {shown for _, _, shown, *_ in rows(demo_path)}
    assert sides == {"a", "b"}


def test_help_overlay_opens_with_question_mark_and_any_key_closes_it(window, qtbot, demo_path):
    page = window.label_view.judge_page
    qtbot.keyClick(page, Qt.Key.Key_Question, Qt.KeyboardModifier.ShiftModifier)
    assert page.help.isVisible()
    qtbot.keyClick(page, Qt.Key.Key_Escape)
    assert not page.help.isVisible()
    assert rows(demo_path) == []


def test_markup_in_responses_is_shown_literally(tmp_path, qtbot, make_project):
    markup = '<img src="x.png"> <a href="http://example.com">link</a> <b>bold</b>'
    long_text = "<b>" + "word " * 40_000  # 200,000 characters
    path = make_project("markup", [("Show me markup.", markup, long_text, "test", None, None)])
    configure_application(QApplication.instance())
    window = create_main_window(parse_args([str(path), "--annotator", ANNOTATOR]))
    qtbot.addWidget(window)
    window.show_tab(1)
    page = window.label_view.judge_page
    texts = {page.left.text.toPlainText(), page.right.text.toPlainText()}
    assert texts == {markup, long_text}
    page.diff_box.setChecked(True)  # too long to compare: nothing painted, nothing frozen
    qtbot.keyClick(page, Qt.Key.Key_2)
    assert page.session.current is None
    assert "Nothing left" in page.message.text()


def test_name_is_asked_once_and_remembered(qtbot, demo_path, monkeypatch):
    from rlhf_workbench.app import settings
    from rlhf_workbench.app.main_window import MainWindow

    asked = []
    monkeypatch.setattr(MainWindow, "ask_annotator", lambda self: asked.append(1) or self.set_annotator("grace") or "grace")
    configure_application(QApplication.instance())
    window = create_main_window(parse_args([str(demo_path)]))
    qtbot.addWidget(window)
    window.show_tab(1)
    qtbot.waitUntil(lambda: window.label_view.session is not None)
    assert asked == [1] and settings.annotator() == "grace"
    window.show_tab(0)
    window.show_tab(1)
    assert asked == [1]


def test_differing_spans_mark_only_the_changed_words():
    a = "Sure. The answer is 4. Have a nice day!"
    b = "Sure. The answer is 5."
    spans_a, spans_b = differing_spans(a, b)
    assert [a[s:e] for s, e in spans_a] == ["4. Have a nice day!"]
    assert [b[s:e] for s, e in spans_b] == ["5."]
    assert differing_spans("x " * 7000, "y") is None


def test_verdicts_and_agreement_are_there_after_closing_and_reopening(window, qtbot, demo_path):
    page = window.label_view.judge_page
    for key in (Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_1, Qt.Key.Key_T, Qt.Key.Key_X):
        qtbot.keyClick(page, key)
    window.close()

    reopened = create_main_window(parse_args([]))  # the last project, the remembered annotator
    qtbot.addWidget(reopened)
    assert reopened.project is not None and reopened.project.path == demo_path
    assert reopened.annotator == ANNOTATOR
    reopened.show_tab(1)
    label_view = reopened.label_view
    with qtbot.waitSignal(label_view.agreement.updated, timeout=10_000):
        label_view.pages.setCurrentWidget(label_view.agreement)
    report = label_view.agreement.report
    ada = next(s for s in report.annotators if s.annotator == ANNOTATOR)
    assert ada.count == 5 and ada.tie_rate == pytest.approx(0.2)
    # People vs the demo's own labels, on those of ada's 5 pairs that carry one (3 of 5 here).
    [with_dataset] = [d for d in report.with_dataset if d.annotator == ANNOTATOR]
    assert with_dataset.shared_pairs == 3
    assert label_view.agreement.annotators.rowCount() == len(report.annotators) >= 2
    # Length bias: a row per annotator that gave a decisive verdict on answers of unequal length, then per dataset.
    table = label_view.agreement.length_bias
    assert table.rowCount() == len(report.length_by_annotator) + len(report.length_by_origin) >= 2
    assert table.item(0, 0).text() == report.length_by_annotator[0].group
    assert table.item(table.rowCount() - 1, 0).text() == f"all verdicts on pairs from {report.length_by_origin[-1].group}"
    qtbot.waitUntil(lambda: "Labelled by you: 5 ·" in label_view.judge_page.progress_label.text())


def test_a_verdict_given_while_another_process_holds_the_database_shows_saving_and_is_kept(
    window, qtbot, demo_path
):
    from test_database_busy import hold_write_lock

    page = window.label_view.judge_page
    pair_id = page.session.current.pair_id
    errors = []
    page.error.connect(errors.append)
    holder = hold_write_lock(demo_path / "project.db", 2.0)  # as a long import's transaction does
    try:
        qtbot.keyClick(page, Qt.Key.Key_T)
        assert page.saving and page.saving_label.isVisible()  # at once: the window did not freeze
        assert "Saving" in page.saving_label.text()
        assert page.session.current.pair_id == pair_id and rows(demo_path) == []
        qtbot.keyClick(page, Qt.Key.Key_X)  # held back: no second verdict while the first waits
    finally:
        holder.wait(10)
    qtbot.waitUntil(lambda: not page.saving, timeout=5000)
    assert not page.saving_label.isVisible() and errors == []
    assert [(r[0], r[1]) for r in rows(demo_path)] == [(pair_id, "tie")]
    assert page.session.current.pair_id != pair_id


def test_closing_the_project_gives_a_waiting_verdict_a_last_chance_to_be_saved(window, qtbot, demo_path):
    from test_database_busy import hold_write_lock

    page = window.label_view.judge_page
    pair_id = page.session.current.pair_id
    holder = hold_write_lock(demo_path / "project.db", 1.5)
    qtbot.keyClick(page, Qt.Key.Key_3)
    assert page.saving
    window.close_project()  # waits for the holder rather than dropping the verdict
    holder.wait(10)
    assert [(r[0], r[1]) for r in rows(demo_path)] == [(pair_id, "tie")]
