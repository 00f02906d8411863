"""Compare runs in the Runs tab: several runs selected, the Compare window's curves on each x axis,
its tables, and Delete still on the current run only. Runs are real rows and folders of a real
project (start_run) with figures written as a job's recorder writes them; nothing trains."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from rlhf_workbench.app.views.compare_runs import CompareRunsWindow
from rlhf_workbench.app.views.runs_view import RunsView
from rlhf_workbench.core.experiments import ABSENT_TEXT
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.training.pairs import SPLIT_FILE

T0 = 1_700_000_000.0
NAME = "<b>not bold</b>"  # a run's name is shown as written, never as HTML


def _run(project, kind, name, config, figures, summary, val_ids=None):
    ctx = start_run(project, kind=kind, name=name, config=config)
    project.store.save_run_records(ctx.run_id, metrics=[(s, n, v, T0 + t) for s, n, v, t in figures])
    project.store.set_run_status(ctx.run_id, "finished", summary=summary)
    if val_ids is not None:
        (ctx.run_dir / SPLIT_FILE).write_text(json.dumps({"train_ids": [9], "val_ids": val_ids}), encoding="utf-8")
    return ctx.run_id


@pytest.fixture
def view(qtbot, project):
    """The Runs tab on a reward model, a DPO policy validated on its pairs, and a PPO run (newest first: ppo, dpo, rm)."""
    ids = {
        "rm": _run(project, "reward", NAME, RewardConfig(batch_size=8, gradient_accumulation_steps=2),
                   [(1, "train/loss", 0.9, 0.0), (2, "train/loss", 0.7, 3.0), (2, "eval/accuracy", 0.7, 3.0)],
                   {"eval/accuracy": 0.7, "eval/loss": 0.55, "steps": 2}, val_ids=[1, 2, 3]),
        "dpo": _run(project, "dpo", "dpo", OfflineConfig(method="dpo", batch_size=4),
                    [(1, "train/loss", 0.69, 50.0), (2, "train/loss", 0.5, 51.0), (2, "eval/accuracy", 0.8, 51.0)],
                    {"eval/accuracy": 0.8, "steps": 2}, val_ids=[3, 2, 1]),
        "ppo": _run(project, "ppo", "ppo", RLConfig(method="ppo", batch_size=16),
                    [(1, "objective/kl", 0.1, 0.0), (1, "objective/scores", 1.0, 0.0),
                     (2, "objective/kl", 0.4, 2.0), (2, "objective/scores", 1.5, 2.0)],
                    {"updates": 2, "scores": 1.5, "kl": 0.4}),
    }
    view = RunsView()
    qtbot.addWidget(view)
    view.set_project(project)
    view.ids = ids
    return view


def _click_row(qtbot, view, row, modifier=Qt.KeyboardModifier.NoModifier):
    rect = view.table.visualRect(view.table.model().index(row, 1))
    qtbot.mouseClick(view.table.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())


def _row_of(view, run_id):
    return next(r for r in range(view.table.rowCount()) if view.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == run_id)


def test_ctrl_click_selects_several_the_detail_shows_the_current_and_compare_enables(view, qtbot):
    view.show()
    qtbot.waitExposed(view)
    _click_row(qtbot, view, _row_of(view, view.ids["rm"]))
    assert view.selected_run_ids == [view.ids["rm"]] and not view.compare_button.isEnabled()
    assert "two or more" in view.compare_button.toolTip()
    _click_row(qtbot, view, _row_of(view, view.ids["dpo"]), Qt.KeyboardModifier.ControlModifier)
    assert view.selected_run_ids == [view.ids["dpo"], view.ids["rm"]]  # the list's order, newest first
    assert view.selected_run_id == view.ids["dpo"] and view.fields["id"].text() == view.ids["dpo"]  # the last clicked
    assert view.compare_button.isEnabled() and "(Alt+C)" in view.compare_button.toolTip()
    _click_row(qtbot, view, _row_of(view, view.ids["ppo"]), Qt.KeyboardModifier.ShiftModifier)
    assert len(view.selected_run_ids) == 3
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow)
    qtbot.keyClick(view.table, Qt.Key.Key_C, Qt.KeyboardModifier.AltModifier)  # the button's shortcut
    qtbot.waitUntil(lambda: len(view.compare_windows) == 1, timeout=2000)  # a shortcut animates the click first
    assert view.compare_windows[0].comparison.labels == ["ppo", "dpo", NAME]
    qtbot.addWidget(view.compare_windows[0])
    # a refresh keeps the selection and the current run
    view.refresh()
    assert len(view.selected_run_ids) == 3 and view.selected_run_id == view.ids["ppo"]


def test_compare_window_curves_on_each_axis(view, qtbot):
    view.select_runs([view.ids["rm"], view.ids["dpo"], view.ids["ppo"]], current=view.ids["rm"])
    assert view.fields["id"].text() == view.ids["rm"]
    view.compare_button.click()
    (window,) = view.compare_windows
    qtbot.addWidget(window)
    assert isinstance(window, CompareRunsWindow) and window.isVisible() and not window.isModal()
    assert [window.axis_box.itemText(i) for i in range(window.axis_box.count())] == [
        "Step", "Samples seen", "Wall time (s)", "KL from reference", "√KL from reference"
    ]
    # the list's order is the legend's: ppo, dpo, then the reward model
    loss = window.cards["train/loss"]
    # shared by most first; among those, as the runs' own tabs order them (DPO's: the loss first)
    assert [card.title for card in window.shown_cards()][:2] == ["train/loss", "eval/accuracy"]
    assert sorted(loss.series) == sorted(["dpo", NAME])
    assert loss.series[NAME].color == window.cards["eval/accuracy"].series[NAME].color  # one colour per run
    assert loss.series[NAME].color != loss.series["dpo"].color
    assert [label.text() for label in window.legend_labels] == ["ppo", "dpo", NAME]  # one legend, in run order
    assert all(label.textFormat() == Qt.TextFormat.PlainText for label in window.legend_labels)

    def xs(card, label):
        series = card.series[label]
        return series.steps[: series.n].tolist()

    assert xs(loss, NAME) == [1, 2] and not window.note.isVisible()
    window.set_axis("samples")
    assert xs(loss, NAME) == [16, 32] and xs(loss, "dpo") == [4, 8]  # 8 x 2 pairs a step; 4 x 1
    assert xs(window.cards["objective/scores"], "ppo") == [16, 32]  # 16 episodes an update
    assert loss.plot.getAxis("bottom").labelText == "Samples seen"  # pairs and episodes: no one noun
    window.set_axis("wall_time")
    assert xs(loss, NAME) == [0, 3] and xs(loss, "dpo") == [0, 1]  # seconds since each run's first figure
    window.axis_box.setCurrentIndex(window.axis_box.findData("kl"))  # as a person picks it
    assert window.axis == "kl"
    assert [card.title for card in window.shown_cards()] == ["objective/scores"]  # KL is the axis, not a plot on it
    assert xs(window.cards["objective/scores"], "ppo") == [pytest.approx(0.1), pytest.approx(0.4)]
    assert window.note.isVisible() and window.note.text().startswith(f"Not on this axis: dpo, {NAME} (no objective/kl")


def test_compare_window_tables(view, qtbot):
    view.select_runs([view.ids["rm"], view.ids["dpo"]])
    window = view.compare_selected()
    qtbot.addWidget(window)
    figures = window.figures_table
    assert [figures.horizontalHeaderItem(c).text() for c in range(3)] == ["Figure", "dpo", NAME]
    rows = {figures.item(r, 0).text(): [figures.item(r, c).text() for c in (1, 2)] for r in range(figures.rowCount())}
    assert rows == {"eval/accuracy": ["0.8", "0.7"], "eval/loss": ["", "0.55"], "steps": ["2", "2"]}
    assert figures.item(0, 0).text() == "eval/accuracy"
    assert window.validation_label.text().startswith(f"Validation pairs: the same 3 pairs for dpo and {NAME}")

    settings = window.settings_table
    rows = {settings.item(r, 0).text(): r for r in range(settings.rowCount())}
    assert settings.item(rows["batch_size"], 1).text() == "4" and settings.item(rows["batch_size"], 2).text() == "8"
    beta = settings.item(rows["beta"], 2)
    assert beta.text() == ABSENT_TEXT and beta.toolTip() == "Not a setting of Reward model"
    assert settings.item(rows["beta"], 1).text() == "0.1"
    assert "seed" not in rows  # the same in both: not shown
    assert settings.horizontalHeaderItem(2).toolTip() == f"{view.ids['rm']} (Reward model)"


def test_closing_the_project_closes_its_compare_windows(view, qtbot):
    view.select_runs([view.ids["rm"], view.ids["ppo"]])
    window = view.compare_selected()
    assert window.isVisible() and view.compare_windows == [window]
    view.set_project(None)
    qtbot.waitUntil(lambda: view.compare_windows == [], timeout=2000)  # closed, and gone once deleted
    assert not view.compare_button.isEnabled()


def test_delete_with_several_selected_deletes_the_current_run_only(view, project, qtbot):
    view.select_runs([view.ids["rm"], view.ids["dpo"]], current=view.ids["dpo"])
    box = view.delete_selected()
    assert box.text().startswith("Run dpo (")
    delete = next(button for button in box.buttons() if button.text() == "Delete")
    with qtbot.waitSignal(view.run_deleted, timeout=10_000) as deleted:
        delete.click()
    assert deleted.args == [view.ids["dpo"]]
    assert project.store.run(view.ids["dpo"]) is None
    assert project.store.run(view.ids["rm"]) is not None and project.store.run(view.ids["ppo"]) is not None
    assert not [b for b in view.findChildren(QMessageBox) if b.isVisible()]
