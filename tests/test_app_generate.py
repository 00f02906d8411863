"""The Data tab's Generate…: the dialog's choices, a bad setting refused in place, a real generation
with the demo policy in a child process (cancelled first, then run), and the tables refreshed."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from rlhf_workbench.app import tasks
from rlhf_workbench.app.views.data_view import DataView
from rlhf_workbench.app.views.rl_pickers import SpecBox
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.project import Project

pytestmark = [pytest.mark.usefixtures("demo_models"), pytest.mark.timeout(600)]

LISTED = ["Give me a fact about bicycles.", "Write something about birds.", "Sum 3 and 1.", "Help me understand cats."]


@pytest.fixture
def view(qtbot, make_project, tmp_path):
    """A Data view on a project with one imported pair and a prompt list of four prompts."""
    path = make_project("p", [("Tell me about the moon.", "It circles the Earth.", "I like trains.", "tests", None, None)])
    prompt_list = tmp_path / "prompts.txt"
    prompt_list.write_text("\n".join(LISTED) + "\n", encoding="utf-8")
    project = Project.open(path)
    import_file(project, prompt_list)
    view = DataView()
    qtbot.addWidget(view)
    view.show()
    view.set_project(project)
    qtbot.waitUntil(lambda: not view.is_loading(), timeout=10_000)
    yield view
    view.set_project(None)
    assert tasks.wait_for_all()
    project.close()


def open_dialog(view, qtbot):
    dialog = view.generator.open_dialog()
    qtbot.waitUntil(lambda: dialog.model_box.count() > 0 and dialog.prompts_box.count() > 1, timeout=20_000)
    return dialog


def test_the_dialog_offers_the_models_and_the_waiting_prompts(view, qtbot):
    assert view.generator.button.isEnabled() and view.generator.button.text() == "&Generate…"
    dialog = open_dialog(view, qtbot)
    assert dialog.model_box.currentData() == "demo"
    assert dialog.model_b_box.currentText().startswith("(none")
    assert dialog.prompts_box.itemText(0) == "All prompts, the 4 without a pair first"
    assert dialog.prompts_box.itemData(1) == "tests"
    assert "5 prompts; 4 have no pair yet" in dialog.status.text()
    assert not {"model", "model_b", "prompt_origin", "n_prompts"} & set(dialog.form.widgets)
    config = dialog.config()
    assert (config.model, config.model_b, config.prompt_origin, config.n_prompts) == ("demo", None, None, 32)

    # A bad setting is named in the dialog, which stays open; nothing starts.
    dialog.form.widgets["temperature"].setText("0")
    qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and "temperature: must be between 0.01 and 10" in dialog.status.text()
    assert view.generator.task is None
    dialog.model_b_box.setCurrentIndex(dialog.model_b_box.findData("demo"))
    dialog.form.widgets["temperature"].setText("1")
    qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and "model_b: is the same model as model" in dialog.status.text()
    dialog.reject()


@pytest.mark.slow
def test_generate_adds_pairs_and_refreshes_the_tables(view, qtbot):
    added = []
    view.generator.added.connect(added.append)

    # Cancelled: the child stops and adds nothing.
    dialog = open_dialog(view, qtbot)
    dialog.count.setValue(3)
    dialog.form.widgets["max_new_tokens"].setValue(16)
    qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)
    assert not view.generator.button.isEnabled()  # one generation at a time
    tasks.stop_all()
    qtbot.waitUntil(view.generator.button.isEnabled, timeout=300_000)
    assert not added and not view.project.store.pair_ids(origin="generated:demo")
    assert _message_boxes(view)[-1].windowTitle() == "Generating cancelled"

    dialog = open_dialog(view, qtbot)
    dialog.count.setValue(3)
    dialog.form.widgets["max_new_tokens"].setValue(16)
    qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(added), timeout=300_000)
    counts = added[0]
    assert counts["origin"] == "generated:demo" and counts["prompts"] == 3
    pair_ids = view.project.store.pair_ids(origin="generated:demo")
    assert len(pair_ids) == counts["pairs_added"] >= 1
    for pair_id in pair_ids:
        assert view.project.store.pair(pair_id).prompt[-1].content in LISTED  # waiting prompts first
    box = _message_boxes(view)[-1]
    assert box.windowTitle() == "Responses generated"
    assert box.text().startswith(f"Added {counts['pairs_added']} pairs for 3 prompts (origin generated:demo)")
    qtbot.waitUntil(lambda: not view.is_loading(), timeout=10_000)
    assert view.pairs_model.rowCount() == 1 + counts["pairs_added"]  # the table shows them
    qtbot.waitUntil(view.generator.button.isEnabled, timeout=10_000)


def test_a_picked_label_reads_from_its_start(qtbot):
    box = SpecBox("tip")
    qtbot.addWidget(box)
    box.resize(160, 30)
    box.show()
    box.set_items([("latest  (newest finished reward model)", "latest"), (" ".join(["a much longer label"] * 4), "x")])
    assert box.lineEdit().cursorPosition() == 0
    box.setCurrentIndex(1)
    assert box.lineEdit().cursorPosition() == 0 and box.spec() == "x"


def _message_boxes(view):
    return [w for w in view.findChildren(QMessageBox) if w.isVisible()]
