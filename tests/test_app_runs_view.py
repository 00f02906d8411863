"""The Runs tab on a project whose runs were made by the real runner with fixture jobs."""

from __future__ import annotations

import tomllib

import pytest
from job_fixtures import CountConfig
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QMessageBox

from rlhf_workbench.app.views.runs_view import (
    COLUMNS,
    RunsView,
    duration_text,
    summary_line,
)
from rlhf_workbench.core.events import Metric
from rlhf_workbench.core.runs.records import run_dir_of, start_run
from rlhf_workbench.core.runs.work import Work, execute


def _run(project, job, name, config=None, kind="reward"):
    config = config or CountConfig(steps=6, sleep_s=0)
    ctx = start_run(project, kind=kind, name=name, config=config)
    if job is not None:
        execute(Work.job(f"job_fixtures:{job}", config, ctx), lambda e: None, lambda: False)
    return ctx.run_id


@pytest.fixture
def view(qtbot, project):
    ids = {
        "finished": _run(project, "count", "counted"),
        "failed": _run(project, "understood_failure", "went NaN"),
        "created": _run(project, None, "<b>not bold</b>", kind="ppo"),
    }
    view = RunsView()
    qtbot.addWidget(view)
    view.set_project(project)
    view.ids = ids
    return view


def _cell(view, row, column):
    return view.table.item(row, COLUMNS.index(column)).text()


def test_lists_runs_newest_first_with_status_result_and_error(view):
    assert view.table.rowCount() == 3 and view.count_label.text() == "3 runs"
    assert [_cell(view, r, "Name") for r in range(3)] == ["<b>not bold</b>", "went NaN", "counted"]  # plain text
    assert [_cell(view, r, "Status") for r in range(3)] == ["Created", "Failed", "Finished"]
    assert [_cell(view, r, "Kind") for r in range(3)] == ["PPO", "Reward model", "Reward model"]
    assert _cell(view, 2, "Result") == "steps 6 · final_loss 0.1667 · started_at_step 0"
    assert _cell(view, 1, "Error") == "The loss became NaN at step 0"  # the hint stays in the detail
    assert _cell(view, 2, "Duration").endswith(" s") and _cell(view, 0, "Duration") == ""
    assert view.selected_run_id == view.ids["created"]  # the newest is selected


def test_detail_shows_config_summary_error_log_and_curves(view, project):
    assert view.select_run(view.ids["finished"])
    assert view.fields["status"].text() == "Finished"
    assert tomllib.loads(view.config_text.toPlainText()) == {
        "steps": 6, "sleep_s": 0, "checkpoint_every": 0, "tags": ["tiny"]
    }
    assert view.summary_text.toPlainText() == "steps: 6\nfinal_loss: 0.1667\nstarted_at_step: 0"
    assert "counting from 0 to 6" in view.log_text.toPlainText()
    assert view.error_text.toPlainText() == ""
    series = view.curves.card("Loss").series["train/loss"]
    stored = project.store.metric_series(view.ids["finished"], "train/loss")
    assert series.steps[: series.n].tolist() == [s for s, _ in stored]
    assert series.values[: series.n].tolist() == [v for _, v in stored]
    assert view.curves.card("Accuracy").series["train/accuracy"].n == 6

    view.select_run(view.ids["failed"])
    assert view.error_text.toPlainText() == "The loss became NaN at step 0\nLower the learning rate"
    assert not any(card.has_data for card in view.curves.cards)  # its one figure was NaN: not stored


def test_open_folder_opens_the_runs_folder(view, project, monkeypatch):
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    view.select_run(view.ids["finished"])
    assert view.open_folder_button.isEnabled()
    view.open_folder_button.click()
    assert opened == [QUrl.fromLocalFile(str(project.runs_dir / view.ids["finished"]))]


def test_refresh_keeps_the_selection_and_shows_new_runs_and_ends(view, project):
    view.select_run(view.ids["finished"])
    later = _run(project, "count", "later", CountConfig(steps=2, sleep_s=0))
    assert view.table.rowCount() == 3  # only on demand
    view.refresh()
    assert view.table.rowCount() == 4 and _cell(view, 0, "Name") == "later"
    assert view.selected_run_id == view.ids["finished"]
    view.select_run(later)
    assert view.curves.card("Loss").series["train/loss"].n == 2


def test_live_metrics_of_the_selected_run_are_drawn_once(view, project):
    run_id = view.ids["finished"]
    view._live_run_id = run_id  # as follow() sets it while a controller runs this run
    view.select_run(run_id)
    view.show_live_metrics([Metric(5, {"train/loss": 9.0}), Metric(6, {"train/loss": 0.5})])
    view.curves.flush()
    series = view.curves.card("Loss").series["train/loss"]
    assert series.steps[: series.n].tolist() == [0, 1, 2, 3, 4, 5, 6]  # step 5 was already stored
    assert series.values[series.n - 1] == 0.5


def test_no_project_empties_the_view(view):
    view.set_project(None)
    assert view.table.rowCount() == 0 and view.selected_run_id is None
    assert view.config_text.toPlainText() == "" and not view.open_folder_button.isEnabled()


def test_a_project_without_runs_says_how_to_make_one(qtbot, tmp_path):
    from rlhf_workbench.core.project import Project

    with Project.create(tmp_path / "fresh") as fresh:
        view = RunsView()
        qtbot.addWidget(view)
        view.set_project(fresh)
        assert view.stack.currentWidget() is view.empty_page and "Reward model tab" in view.empty_label.text()
        _run(fresh, "count", "first")
        view.refresh()
        assert view.stack.currentWidget() is view.splitter and view.selected_run_id is not None


def test_small_formatters():
    assert summary_line({"stopped": True, "a": 1234, "b": 0.123456, "c": "x", "d": 1}) == "a 1,234 · b 0.1235 · c x"
    assert duration_text({"status": "finished", "started_at": "2026-01-01T10:00:00.000+00:00",
                          "finished_at": "2026-01-01T11:02:05.000+00:00"}) == "1 h 02 min"
    assert duration_text({"status": "created", "started_at": None}) == ""


def test_ppo_runs_show_the_human_win_rate(view, project, qtbot):
    from rlhf_workbench.core.bulk import BulkWriter
    from rlhf_workbench.core.records import user_prompt

    run_id = view.ids["created"]  # the PPO run
    origin = f"ppo-vs-ref:{run_id}"
    assert _cell(view, 0, "Human win rate") == "" and _cell(view, 2, "Human win rate") == ""
    with project.store.transaction():
        writer = BulkWriter(project.store, import_id=None, source="model", source_name="tests")
        for i in range(5):
            writer.add_pair(user_prompt(f"question {i}"), f"policy says {i}", f"reference says {i}", origin=origin)
        writer.flush()
    pair_ids = project.store.pair_ids(origin=origin)
    view.refresh()
    assert _cell(view, 0, "Human win rate") == "not judged yet (5 pairs)"

    for pair_id, verdict in zip(pair_ids, ("a", "b", "a", "tie", "both_bad")):
        project.store.add_judgment(pair_id, "ada", verdict, shown_left="b")
    project.store.add_judgment(pair_ids[0], "dataset:imported", "b")  # a label that came with data: not a person
    skipped = project.store.add_judgment(pair_ids[1], "bob", "skip")
    project.store.undo_judgment(project.store.add_judgment(pair_ids[2], "bob", "b"))
    view.refresh()
    assert _cell(view, 0, "Human win rate") == "62% of 4"  # (2 wins + 1 tie / 2) / 4
    assert view.table.item(0, COLUMNS.index("Human win rate")).toolTip().startswith("People preferred the policy 2 times")
    assert _cell(view, 1, "Human win rate") == ""  # reward-model runs have none
    assert skipped

    view.select_run(run_id)
    assert view.info_form.isRowVisible(view.fields["win_rate"])
    assert "on 5 of 5 pairs" in view.fields["win_rate"].text()
    view.select_run(view.ids["finished"])
    assert not view.info_form.isRowVisible(view.fields["win_rate"])

    # Verdicts given elsewhere (the Label tab) show when the tab is shown again.
    view.show()
    qtbot.waitExposed(view)
    project.store.add_judgment(pair_ids[4], "bob", "a")
    view.hide()
    view.show()
    assert _cell(view, 0, "Human win rate") == "70% of 5"


def _visible_boxes(view):
    return [box for box in view.findChildren(QMessageBox) if box.isVisible()]


@pytest.mark.slow
def test_delete_says_what_goes_and_removes_the_run_only_when_confirmed(view, project, qtbot):
    run_id = view.ids["finished"]
    assert view.select_run(run_id)
    folder = run_dir_of(project, project.store.run(run_id))
    view.show()
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow)
    view.table.setFocus()
    qtbot.keyClick(view.table, Qt.Key.Key_Delete)
    (box,) = _visible_boxes(view)
    assert box.text().startswith("Run counted (") and "Its folder goes" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert project.store.run(run_id) is not None and folder.is_dir()

    box = view.delete_selected()
    delete = next(button for button in box.buttons() if button.text() == "Delete")
    with qtbot.waitSignal(view.run_deleted, timeout=10_000) as deleted:
        delete.click()
    assert deleted.args == [run_id]
    assert project.store.run(run_id) is None and not folder.exists()
    shown = [view.table.item(row, 0).data(Qt.ItemDataRole.UserRole) for row in range(view.table.rowCount())]
    assert run_id not in shown and len(shown) == 2


def test_a_run_with_many_figures_scrolls_its_curves_instead_of_growing_the_window(qtbot, project):
    run_id = _run(project, None, "many figures", kind="ppo")
    for step in range(3):
        project.store.add_metrics(run_id, step, {f"figure/{i:02d}": float(step * i) for i in range(22)})
    view = RunsView()
    qtbot.addWidget(view)
    view.set_project(project)
    assert view.select_run(run_id) and len(view.curves.cards) >= 22
    assert view.minimumSizeHint().height() < 700  # 11 rows of plots would need 2,200 px


def test_export_writes_the_selected_runs_figures_where_the_person_chose(view, project, qtbot, tmp_path, monkeypatch):
    """Export… asks for a folder and writes every selected run there in a worker (TensorBoard event
    files and a CSV per run: tests/test_run_export.py reads them back); a message says where."""
    asked = []
    chosen = tmp_path / "exported"
    chosen.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: asked.append(args[1]) or str(chosen))
    view.table.clearSelection()
    assert not view.export_button.isEnabled()  # nothing selected
    run_ids = [view.ids["finished"], view.ids["failed"]]
    assert view.select_runs(run_ids)
    assert view.export_button.isEnabled()
    with qtbot.waitSignal(view.runs_exported, timeout=10_000) as exported:
        view.export_button.click()
    assert asked == ["Export the figures of 2 runs into"]
    report = exported.args[0]
    assert sorted(report.files) == sorted(run_ids) and report.folder == chosen
    assert sorted(p.name for p in chosen.iterdir()) == sorted(run_ids)
    finished = chosen / view.ids["finished"]
    assert any(p.name.startswith("events.out.tfevents.") for p in finished.iterdir())
    with (finished / f"{view.ids['finished']}.csv").open(encoding="utf-8-sig") as fh:
        header = fh.readline().strip().split(",")
    assert header[:3] == ["step", "wall_time", "elapsed_s"] and "train/loss" in header
    assert report.values[view.ids["finished"]] == sum(
        len(project.store.metric_series(view.ids["finished"], name))
        for name in project.store.metric_names(view.ids["finished"]))
    assert view.export_box.text() == f"Exported 2 runs to {chosen}"
    assert "tensorboard --logdir" in view.export_box.informativeText()
    assert view.export_button.isEnabled()  # ready for another


def test_a_killed_run_shows_as_interrupted_and_offers_resume(view, project, qtbot):
    """SIGKILL leaves 'running' in the database for ever; its free lock says nobody is running it."""
    from job_fixtures import killed_process

    config = CountConfig(steps=6, sleep_s=0, checkpoint_every=1)
    ctx = start_run(project, kind="reward", name="killed", config=config)
    killed_process(project.path, config, ctx)
    assert project.store.run(ctx.run_id)["status"] == "running"
    view.refresh()
    assert view.select_run(ctx.run_id)
    row = [view._run_id_at(r) for r in range(view.table.rowCount())].index(ctx.run_id)
    assert _cell(view, row, "Status") == "Interrupted"
    assert "lock" in view.table.item(row, COLUMNS.index("Status")).toolTip()
    assert view.fields["status"].text() == "Interrupted" and _cell(view, row, "Duration") == ""
    assert view.resume_button.isEnabled()
    with qtbot.waitSignal(view.resume_requested) as asked:
        view.resume_button.click()
    assert asked.args == [ctx.run_id]
    view.select_run(view.ids["created"])  # never started, no checkpoint: nothing to resume
    assert not view.resume_button.isEnabled()


def test_the_detail_says_which_checkpoints_are_kept_for_another_run(view, project):
    config = CountConfig(steps=4, sleep_s=0, checkpoint_every=2)
    source = _run(project, "count", "source", config)
    step = run_dir_of(project, project.store.run(source)) / "checkpoints" / "step-1"
    # Any setting naming a folder inside the source's checkpoints (a policy, a base model) counts.
    user = _run(project, None, "started from it", CountConfig(note=str(step)))
    view.refresh()
    view.select_run(source)
    assert view.fields["kept"].text() == (
        f"step-1: kept whatever keep_last says, because {user} (note) started from it")
    assert not view.fields["kept"].isHidden()
    view.select_run(user)
    assert view.fields["kept"].text() == "" and view.fields["kept"].isHidden()
