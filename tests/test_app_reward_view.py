"""The Reward model tab trains the demo model live in a child process: start, stop, resume, score."""

import sqlite3

import pytest
from PySide6.QtCore import Qt

pytestmark = [pytest.mark.usefixtures("workbench_home"), pytest.mark.timeout(600)]


@pytest.fixture
def window(demo_window):
    demo_window.show_tab(2)
    return demo_window


@pytest.mark.slow
def test_start_stop_resume_and_score_from_the_tab(window, qtbot, tmp_path):
    view = window.reward_view
    qtbot.waitUntil(lambda: view.model_box.count() > 0, timeout=10_000)
    assert view.model_spec() == "demo"
    form = view.form.widgets
    # Long enough (several seconds) that Stop always lands mid-run: 30 steps take about one.
    form["max_steps"].setText("300")
    form["log_every"].setValue(1)
    form["eval_every"].setValue(100)
    form["save_every"].setValue(50)
    assert not view.stop_button.isEnabled()

    # A value out of range is refused before anything starts, naming the field.
    form["max_steps"].setText("-4")
    errors = []
    view.error.connect(errors.append)
    qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
    assert errors and "max_steps" in errors[0] and not window.jobs.is_running
    form["max_steps"].setText("300")

    qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
    assert window.jobs.is_running and view.stop_button.isEnabled() and not view.start_button.isEnabled()
    run_id = view.run_id
    # Live: the loss curve grows while the job runs in its own process.
    qtbot.waitUntil(lambda: len(view.curves.series_data("train/loss")[0]) >= 2, timeout=240_000)
    with qtbot.waitSignal(window.jobs.finished, timeout=120_000) as stopped:
        qtbot.mouseClick(view.stop_button, Qt.MouseButton.LeftButton)
    assert stopped.args[0].stopped
    assert view.resume_button.isEnabled()
    assert "Resume continues" in view.status.text()

    with qtbot.waitSignal(window.jobs.finished, timeout=240_000) as finished:
        qtbot.mouseClick(view.resume_button, Qt.MouseButton.LeftButton)
    assert not finished.args[0].stopped
    assert finished.args[0].summary["steps"] == 300
    steps, _ = view.curves.series_data("train/loss")
    assert list(steps) == sorted(set(steps)) and steps[-1] == 300  # resumed curves do not double back

    conn = sqlite3.connect(tmp_path / "demo" / "project.db")
    try:
        assert conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone() == ("finished",)
    finally:
        conn.close()

    # Its checkpoints are offered for scoring.
    panel = view.score_panel
    qtbot.waitUntil(lambda: panel.model.count() > 0, timeout=20_000)
    panel.text.setPlainText("User: What is 2 + 2?\n\nAssistant: 2 + 2 = 4.")
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.result.text().startswith("Reward:"), timeout=120_000)

    wrong = view.most_wrong
    qtbot.mouseClick(wrong.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: wrong.table.rowCount() > 0, timeout=120_000)
    assert float(wrong.table.item(0, 1).text()) <= float(wrong.table.item(wrong.table.rowCount() - 1, 1).text())
