"""The Label tab's "Policy vs reference" and "Reward model least sure" queues, through the real
window: choosing the queue, the pair it shows, and scoring through the button in a child process."""

from __future__ import annotations

import sqlite3
import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from test_label_queues import fake_reward_run, plain_pairs

from rlhf_workbench.app import tasks
from rlhf_workbench.app.main import (
    configure_application,
    create_main_window,
    parse_args,
)
from rlhf_workbench.app.views.label_queues import SCORE_BUTTON
from rlhf_workbench.core.project import Project

pytestmark = [pytest.mark.usefixtures("workbench_home"), pytest.mark.timeout(600)]


@pytest.fixture
def project_path(make_project):
    """Plain pairs, then the pairs of an older and a newer PPO run's comparison with its reference."""
    rows = plain_pairs(20) + plain_pairs(3, seed=1, origin="ppo-vs-ref:new")[:2]
    rows += plain_pairs(2, seed=2, origin="ppo-vs-ref:old") + plain_pairs(3, seed=1, origin="ppo-vs-ref:new")[2:]
    path = make_project("queues", rows)
    with Project.open(path) as project:
        for run_id in ("old", "new"):
            project.store.create_run(run_id, kind="ppo", name=run_id, config={}, output_dir=f"runs/{run_id}")
            time.sleep(0.01)
    return path


def open_window(qtbot, path):
    configure_application(QApplication.instance())
    window = create_main_window(parse_args([str(path), "--annotator", "ada"]))
    qtbot.addWidget(window)
    qtbot.waitExposed(window)
    window.show_tab(1)
    page = window.label_view.judge_page
    qtbot.waitUntil(lambda: page.hasFocus())
    return window, page


def choose(page, queue):
    page.queue_box.setCurrentIndex(page.queue_box.findData(queue))
    assert page.session.queue == queue


def db(path, sql, *args):
    conn = sqlite3.connect(path / "project.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_policy_vs_reference_shows_the_newest_runs_pairs(qtbot, project_path):
    _window, page = open_window(qtbot, project_path)
    assert not page.scoring.button.isVisible()
    choose(page, "policy_vs_reference")
    assert not page.scoring.button.isVisible()
    new = [r[0] for r in db(project_path, "SELECT id FROM pairs WHERE origin = 'ppo-vs-ref:new' ORDER BY id")]
    old = [r[0] for r in db(project_path, "SELECT id FROM pairs WHERE origin = 'ppo-vs-ref:old' ORDER BY id")]
    for expected in new + old:
        current = page.session.current
        assert current.pair_id == expected
        assert page.prompt.subtitle.text().startswith(f"Pair {expected} ·")
        shown = current.pair.response_a if current.shown_left == "a" else current.pair.response_b
        assert page.left.text.toPlainText() == shown
        qtbot.keyClick(page, Qt.Key.Key_1)
        assert db(project_path, "SELECT verdict FROM judgments WHERE pair_id = ? AND annotator = 'ada'", expected) == [
            (current.shown_left,)
        ]
    assert page.session.current is None
    assert "Compare with reference" in page.message.text()
    choose(page, "generated")  # none generated in this project: the queue says where they come from
    assert page.session.current is None and "“Generate…” in the Data tab" in page.message.text()
    qtbot.waitUntil(lambda: "Left in this queue: 0" in page.progress_label.text())


@pytest.mark.slow
def test_least_sure_scores_through_the_button_then_offers_the_least_sure_pair(qtbot, project_path, tmp_path):
    with Project.open(project_path) as project:
        run_id = fake_reward_run(project, tmp_path)
    _window, page = open_window(qtbot, project_path)
    judged = page.session.current.pair_id  # judged before scoring: never scored
    qtbot.keyClick(page, Qt.Key.Key_2)

    choose(page, "least_sure")
    assert page.session.current is None
    assert "No pair has a reward-model score yet" in page.message.text() and SCORE_BUTTON in page.message.text()
    button = page.scoring.button
    assert button.isVisible() and button.isEnabled() and button.text() == SCORE_BUTTON

    # Cancel reaches the child before its first batch: nothing scored, the queue stays empty.
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert not button.isEnabled()  # one scoring at a time
    tasks.stop_all()
    qtbot.waitUntil(button.isEnabled, timeout=300_000)
    assert "cancelled" in page.scoring.status.text()
    assert db(project_path, "SELECT count(*) FROM pair_scores") == [(0,)]
    assert page.session.current is None

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(button.isEnabled, timeout=300_000)
    assert page.scoring.status.text().startswith("Scored 24 pairs with run “tiny reward model”"), page.scoring.status.text()
    scores = dict(db(project_path, "SELECT pair_id, p FROM pair_scores WHERE run_id = ?", run_id))
    assert len(scores) == 24 and judged not in scores
    order = sorted(scores, key=lambda pid: (abs(scores[pid] - 0.5), pid))
    for expected in order[:3]:
        assert page.session.current is not None and page.session.current.pair_id == expected
        qtbot.keyClick(page, Qt.Key.Key_T)
    assert [r[0] for r in db(project_path, "SELECT pair_id FROM judgments WHERE verdict = 'tie'")] == order[:3]
    qtbot.waitUntil(lambda: "Left in this queue: 21" in page.progress_label.text())

    # Back to another queue and again: the button goes and comes with the queue.
    choose(page, "unlabelled")
    assert not button.isVisible()
    choose(page, "least_sure")
    assert button.isVisible() and page.session.current.pair_id == order[3]

    # A newer reward model finishes: the queue keeps the old scores until told, and says so.
    with Project.open(project_path) as project:
        newer = fake_reward_run(project, tmp_path, name="newer reward model")
    choose(page, "unlabelled")
    choose(page, "least_sure")
    status = page.scoring.status.text()
    assert status.startswith("This queue is ordered by the scores of an older reward model, “tiny reward model”")
    assert f"“newer reward model” ({newer})" in status and page.session.current.pair_id == order[3]

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(button.isEnabled, timeout=300_000)
    assert page.scoring.status.text().startswith("Scored 21 pairs with run “newer reward model”"), page.scoring.status.text()
