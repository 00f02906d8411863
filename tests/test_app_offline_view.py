"""The SFT / DPO tab: the method picker and each method's form, its curves, and a real DPO run started
from the tab on the demo project, whose checkpoint every policy picker then offers."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from rlhf_workbench.app.curves import DPO_GROUPS, SFT_GROUPS
from rlhf_workbench.app.views.model_pickers import policy_name
from rlhf_workbench.core.events import Finished
from rlhf_workbench.core.offline.config import OfflineConfig

pytestmark = [pytest.mark.usefixtures("demo_models"), pytest.mark.timeout(300)]

DPO_ONLY = {"beta", "loss_type", "label_smoothing", "sft_weight"}


@pytest.fixture
def window(demo_window):
    demo_window.show_tab(demo_window.tabs.indexOf(demo_window.offline_view))
    return demo_window


def _shown(view) -> set[str]:
    return {name for name in view.form.widgets if view.form.is_shown(name)}


def test_the_method_picker_shows_each_method_its_own_settings_and_curves(window, qtbot):
    view = window.offline_view
    assert window.tabs.currentWidget() is view
    assert [view.method_box.itemText(i) for i in range(view.method_box.count())] == ["DPO", "SFT"]
    assert view.chosen_method() == "dpo"
    assert not {"method", "policy"} & set(view.form.widgets)  # picked above the form
    assert DPO_ONLY | {"learning_rate", "max_length", "batch_size"} <= _shown(view)
    assert "sft_data" not in _shown(view)
    assert view.curves.groups is DPO_GROUPS and view.throughput[1] == "pairs/s"

    view.form.widgets["beta"].setText("0.2")
    view.set_method("sft")
    assert "sft_data" in _shown(view) and not DPO_ONLY & _shown(view)
    assert view.curves.groups is SFT_GROUPS and view.throughput[1] == "sequences/s"
    qtbot.waitUntil(lambda: view.policy_box.count() > 0, timeout=20_000)
    assert view.policy_box.spec() == "demo"
    # What was set for DPO does not follow into SFT's run (it would be refused there).
    config = view.config()
    assert isinstance(config, OfflineConfig)
    assert (config.method, config.beta, config.sft_data, config.policy) == ("sft", OfflineConfig().beta, "chosen", "demo")
    view.set_method("dpo")
    assert "beta" in _shown(view) and view.config().method == "dpo"

    # A bad setting is named before any run exists.
    errors = []
    view.error.connect(errors.append)
    view.form.widgets["beta"].setText("-1")
    qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
    assert errors and "beta" in errors[-1] and not window.jobs.is_running and view.run_box.count() == 0


def test_run_names_name_the_policy():
    assert policy_name("demo") == "demo"
    assert policy_name("/p/runs/sft-1/checkpoints/step-000010") == "sft-1"
    assert policy_name("/p/runs/ppo-2/checkpoints/step-000004/policy") == "ppo-2"
    assert policy_name("/models/my-sft") == "my-sft"


@pytest.mark.slow
def test_dpo_runs_from_the_tab_and_its_policy_is_offered_to_rl(window, qtbot, monkeypatch):
    view = window.offline_view
    qtbot.waitUntil(lambda: view.policy_box.count() > 0, timeout=20_000)
    form = view.form.widgets
    form["max_steps"].setText("12")
    form["log_every"].setValue(2)
    form["eval_every"].setValue(6)
    form["save_every"].setValue(6)
    ended = []
    window.jobs.finished.connect(ended.append)
    window.jobs.failed.connect(ended.append)
    qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
    assert window.jobs.is_running and view.stop_button.isEnabled() and not view.start_button.isEnabled()
    assert not view.method_box.isEnabled() and not view.form.isEnabled()
    try:
        qtbot.waitUntil(lambda: bool(ended), timeout=120_000)
    except qtbot.TimeoutError:
        pytest.fail(f"the run did not end; its log:\n{view.log.toPlainText()}")
    [finished] = ended
    assert isinstance(finished, Finished), view.log.toPlainText()
    summary = finished.summary
    assert summary["steps"] == 12 and not finished.stopped
    run = window.project.store.run(view.run_id)
    assert (run["kind"], run["name"], run["status"]) == ("dpo", "DPO of demo", "finished")
    assert view.run_box.currentText().startswith("DPO of demo · finished")
    assert f"validation accuracy {summary['eval/accuracy']:.1%}" in view.status.text()
    # The curves the run drew live (or read back once it was shown): every DPO plot has points.
    steps, _ = view.curves.series_data("train/loss")
    assert list(steps) == [2, 4, 6, 8, 10, 12]
    assert list(view.curves.series_data("eval/accuracy")[0]) == [6, 12]
    assert all(card.has_data for card in view.curves.cards), [c.title for c in view.curves.cards if not c.has_data]
    assert view.start_button.isEnabled() and not view.resume_button.isEnabled()
    # Its policy can be compared with the one it started from (tests/test_app_rl_view.py clicks it).
    assert view.compare_button.isEnabled() and view.compare_status.text() == ""

    # Its checkpoint (the folder itself: no policy/ inside) is a policy wherever one is picked.
    rl = window.rl_view
    best = summary["best_step"]  # the run's result: its best checkpoint
    label = f"DPO of demo  (DPO {run['id']}, step {best})"
    qtbot.waitUntil(lambda: rl.policy_box.findText(label) >= 0 and view.policy_box.findText(label) >= 0,
                    timeout=20_000)
    folder = rl.policy_box.itemData(rl.policy_box.findText(label))
    assert folder == str(window.project.path / "runs" / run["id"] / "checkpoints" / f"step-{best:06d}")
    assert (window.project.path / folder / "config.json").is_file()
    # Picked, it names the run it came from.
    view.policy_box.setCurrentIndex(view.policy_box.findText(label))
    view.set_method("sft")
    assert view.run_name(view.config()) == f"SFT of {run['id']}"

    # The Runs tab names its kind and shows its headline figure first.
    runs = window.runs_view
    window.show_tab(window.tabs.indexOf(runs))
    runs.select_run(run["id"])
    from rlhf_workbench.app.views.runs_view import COLUMNS

    row = next(r for r in range(runs.table.rowCount())
               if runs.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == run["id"])
    assert runs.table.item(row, COLUMNS.index("Kind")).text() == "DPO"
    assert runs.table.item(row, COLUMNS.index("Result")).text().startswith("eval/accuracy ")
    assert runs.curves.card("Implicit-reward accuracy").has_data
    win_rate = runs.fields["win_rate"]
    assert runs.info_form.isRowVisible(win_rate) and "Not compared with its reference yet" in win_rate.text()

    # Export model…: its policy as a plain folder for use elsewhere, written by a child process.
    from PySide6.QtWidgets import QFileDialog

    chosen = window.project.path.parent / "exports"
    chosen.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: str(chosen))
    assert runs.export_model_button.isEnabled()
    with qtbot.waitSignal(runs.model_exported, timeout=120_000) as exported:
        runs.export_model_button.click()
    result = exported.args[0]
    assert result["kind"] == "policy" and not result["merged"] and result["max_difference"] < 1e-4
    assert (chosen / f"{run['id']}-step-{best}" / "model.safetensors").is_file()
