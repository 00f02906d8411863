"""Download… beside a model picker: the dialog looks a model up and downloads it, in a child
process, from a local server that answers as the hub does (tests/hub_server.py), into the Hugging
Face cache; the picker then has it selected. Cancel stops a download under way."""

import pytest
from hub_server import REPO
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton, QWidget

from rlhf_workbench.app.views.model_pickers import SpecBox
from rlhf_workbench.core.download import human_size
from rlhf_workbench.core.models import ModelError, resolve_model


@pytest.fixture
def picker(qtbot):
    box = SpecBox("a model")
    box.set_items([("demo", "demo")])
    holder = QWidget()
    holder.setLayout(box.with_browse("model folder"))
    qtbot.addWidget(holder)
    holder.show()
    button = next(b for b in holder.findChildren(QPushButton) if b.text() == "Download…")
    yield box, button
    holder.close()


def look_up(qtbot, box, button, name):
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    dialog = box.download_dialog
    assert dialog is not None and dialog.isVisible()
    assert not dialog.download_button.isEnabled()  # nothing to download before a look-up
    dialog.typed_before = dialog.repo.text()
    dialog.repo.setText(name)
    qtbot.mouseClick(dialog.look_up_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.model is not None or "no such model" in dialog.status.text(), timeout=60_000)
    return dialog


def test_the_dialog_downloads_a_model_into_the_picker(qtbot, picker, hub, tiny_model):
    box, button = picker
    box.setEditText(REPO)  # typed into the picker, not on this machine: Download… starts from it
    dialog = look_up(qtbot, box, button, REPO)
    assert dialog.typed_before == REPO

    info = dialog.info.text()
    served = sum(p.stat().st_size for p in tiny_model.iterdir() if p.name not in ("pytorch_model.bin", "README.md"))
    assert "apache-2.0" in info and human_size(served) in info and "free" in info
    assert not any("/resolve/" in path for _, path, _ in hub.requests)  # looked up, nothing fetched
    assert dialog.download_button.isEnabled()

    with qtbot.waitSignal(dialog.downloaded, timeout=60_000):
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)

    folder = str(resolve_model(REPO))
    assert box.spec() == folder and box.currentText() == f"{REPO}  (hf-cache)"
    assert not hub.gets("pytorch_model.bin")
    qtbot.waitUntil(lambda: not dialog.isVisible())


def test_cancel_stops_the_download_and_keeps_the_dialog_open(qtbot, picker, hub):
    box, button = picker
    dialog = look_up(qtbot, box, button, REPO)
    hub.stall("model.safetensors")

    qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    assert hub.half_sent.wait(60)
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and dialog.status.text() == "Cancelling…"
    hub.release.set()
    qtbot.waitUntil(lambda: not dialog.busy(), timeout=30_000)

    assert "cancelled" in dialog.status.text() and dialog.isVisible()
    assert box.spec() == "demo"
    with pytest.raises(ModelError):
        resolve_model(REPO)
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)  # now it closes
    qtbot.waitUntil(lambda: not dialog.isVisible())


def test_an_unknown_model_is_said_in_the_dialog(qtbot, picker, hub):
    box, button = picker
    dialog = look_up(qtbot, box, button, "tiny-org/missing")
    qtbot.waitUntil(lambda: not dialog.busy())
    assert "no such model" in dialog.status.text() and not dialog.download_button.isEnabled()


def test_the_reward_tab_base_model_picker_downloads_too(qtbot, hub, demo_window):
    view = demo_window.reward_view
    qtbot.waitUntil(lambda: view.model_box.count() > 0, timeout=10_000)
    button = next(b for b in view.findChildren(QPushButton) if b.text() == "Download…")
    dialog = look_up(qtbot, view.model_box, button, REPO)
    qtbot.waitUntil(dialog.download_button.isEnabled)

    with qtbot.waitSignal(dialog.downloaded, timeout=60_000):
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)

    assert view.model_spec() == str(resolve_model(REPO))
