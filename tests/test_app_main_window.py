"""The main window: opening projects, tabs, menus, errors, recent projects, first start."""

import sqlite3
import subprocess
import sys
import textwrap

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QMessageBox

from rlhf_workbench.app import settings
from rlhf_workbench.app.dialogs import NewProjectDialog, WelcomeDialog
from rlhf_workbench.app.main import configure_application, create_main_window, parse_args
from rlhf_workbench.app.resources import app_icon, resource_path
from rlhf_workbench.app.text import display_path
from rlhf_workbench.core import __version__
from rlhf_workbench.core.errors import ProjectError
from rlhf_workbench.core.project import Project, demo_project_path

pytestmark = pytest.mark.usefixtures("workbench_home")

PAIRS = [
    ("What is 2 + 2?", "4", "5", "arena", "a", "dataset:arena"),
    ("Say hello.", "Hello!", "Go away.", "arena", None, None),
    ("Name a colour.", "Blue.", "Seven.", "trl", "b", "alice"),
]


@pytest.fixture
def start(qtbot):
    """start(*argv) -> the main window, built as `rlhf-workbench ARGV` would build it."""

    def run(*argv):
        configure_application(QApplication.instance())
        window = create_main_window(parse_args([str(a) for a in argv]))
        qtbot.addWidget(window)
        qtbot.waitExposed(window)
        return window

    return run


def visible_message_boxes(window):
    return [box for box in window.findChildren(QMessageBox) if box.isVisible()]


def test_window_opens_on_a_project_and_shows_its_name_and_counts(start, make_project, qtbot):
    path = make_project("Preferences 2024", PAIRS)
    window = start(path)
    assert window.project is not None and window.project.path == path
    assert "Preferences 2024" in window.windowTitle()
    assert window.tabs.currentIndex() == 0 and window.stack.currentWidget() is window.tabs
    assert window.path_label.text() == display_path(path)
    qtbot.waitUntil(lambda: window.counts_label.text() == "3 prompts · 3 pairs · 2 judgments")
    # The overview is counted off the GUI thread.
    qtbot.waitUntil(lambda: window.data_view.overview.values["pairs"].text() == "3")


def test_ctrl_1_to_7_switch_tabs(start, make_project, qtbot):
    window = start(make_project("p", PAIRS))
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    assert window.tabs.count() == 7
    assert [window.tabs.tabText(i) for i in range(7)] == [
        "Data", "Label", "Reward model", "SFT / DPO", "RL", "Evaluate", "Runs"]
    for n in (2, 7, 6, 3, 5, 4, 1):
        qtbot.keyClick(window, getattr(Qt.Key, f"Key_{n}"), Qt.KeyboardModifier.ControlModifier)
        assert window.tabs.currentIndex() == n - 1


def test_the_training_tabs_hold_their_views(start, make_project):
    from rlhf_workbench.app.views.offline_view import OfflineView
    from rlhf_workbench.app.views.rl_view import RLView

    window = start(make_project("p", PAIRS))
    assert isinstance(window.offline_view, OfflineView) and isinstance(window.rl_view, RLView)
    assert window.tabs.indexOf(window.offline_view) == 3 and window.tabs.tabText(3) == "SFT / DPO"
    assert window.tabs.indexOf(window.rl_view) == 4 and window.tabs.tabText(4) == "RL"


def test_opening_a_folder_that_is_not_a_project_shows_the_core_message(start, make_project, tmp_path, qtbot):
    good = make_project("good", PAIRS)
    window = start(good)
    not_project = tmp_path / "just-a-folder"
    not_project.mkdir()
    with pytest.raises(ProjectError) as expected:
        Project.open(not_project)

    with qtbot.waitSignal(window.error_shown) as shown:
        assert window.open_project(not_project) is False
    assert shown.args == [str(expected.value)]
    [box] = visible_message_boxes(window)
    assert box.text() == str(expected.value)
    assert box.textFormat() == Qt.TextFormat.PlainText
    assert "Traceback" not in box.text() + box.detailedText()
    box.button(QMessageBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: not visible_message_boxes(window))

    # The project that was open stays open, and the window goes on working.
    assert window.project is not None and window.project.path == good
    other = make_project("other", PAIRS[:1])
    assert window.open_project(other) is True
    qtbot.waitUntil(lambda: window.counts_label.text() == "1 prompt · 1 pair · 1 judgment")
    assert not not_project.joinpath("project.db").exists()


def test_starting_on_a_bad_path_shows_the_error_then_a_window_with_no_project(start, tmp_path):
    missing = tmp_path / "nowhere"
    window = start(missing)
    [box] = visible_message_boxes(window)
    assert "does not exist" in box.text() and str(missing) in box.text()
    assert window.project is None
    assert window.stack.currentWidget() is window.start_page
    assert window.windowTitle() == "RLHF Workbench"
    box.close()


@pytest.mark.slow
def test_recent_projects_are_remembered_and_the_last_one_reopens(start, make_project, qtbot):
    first, second = make_project("first", PAIRS), make_project("second", PAIRS)
    window = start(first)
    window.open_project(second)
    assert settings.recent_projects() == [second, first]
    window._fill_recent_menu()
    titles = [a.text() for a in window.recent_menu.actions() if not a.isSeparator()]
    assert titles[:2] == [str(second), str(first)]
    window.open_project(first)  # opening again moves it to the front, without duplicates
    assert settings.recent_projects() == [first, second]
    window.close()

    reopened = start()  # no argument: the last project
    assert reopened.project is not None and reopened.project.path == first

    reopened.close_project()
    items = [reopened.start_page.recent.item(i).text() for i in range(reopened.start_page.recent.count())]
    assert items == [str(first), str(second)]


@pytest.mark.slow
def test_first_start_offers_the_demo_project_once(start, qtbot):
    window = start()
    dialogs = [d for d in window.findChildren(WelcomeDialog) if d.isVisible()]
    assert len(dialogs) == 1
    with qtbot.waitSignal(window.project_changed, timeout=30_000):
        qtbot.mouseClick(dialogs[0].panel.demo_button, Qt.MouseButton.LeftButton)
    assert window.project.path == demo_project_path()
    assert window.project.store.counts()["pairs"] > 100
    qtbot.waitUntil(lambda: not dialogs[0].isVisible())
    window.close()

    # Even with no project to reopen, the welcome is not offered a second time: the start page is.
    settings.clear_recent_projects()
    again = start()
    assert again.project is None and again.stack.currentWidget() is again.start_page
    assert not [d for d in again.findChildren(WelcomeDialog) if d.isVisible()]


def test_demo_flag_opens_the_demo_creating_it_if_needed(start):
    assert not Project.is_project(demo_project_path())
    window = start("--demo")
    assert window.project.path == demo_project_path()
    assert window.project.name == "Demo"
    window.close()
    again = start("--demo")  # now it exists: opened, not made again
    assert again.project.path == demo_project_path()


@pytest.mark.slow
def test_annotator_flag_is_shown_and_remembered(start, make_project):
    path = make_project("p", PAIRS)
    window = start(path, "--annotator", "alice")
    assert window.annotator == "alice" and "alice" in window.annotator_label.text()
    window.close()
    assert start(path).annotator == "alice"


def test_new_project_dialog_creates_and_opens_the_project(start, tmp_path, qtbot):
    window = start()
    for d in window.findChildren(WelcomeDialog):
        d.close()
    window.choose_project_to_create()
    [dialog] = [d for d in window.findChildren(NewProjectDialog) if d.isVisible()]
    dialog.name.setText("fresh")
    dialog.location.setText(str(tmp_path / "projects"))
    with qtbot.waitSignal(window.project_changed):
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert window.project.path == tmp_path / "projects" / "fresh"
    assert Project.is_project(tmp_path / "projects" / "fresh")
    assert window.windowTitle().startswith("fresh")


def test_creating_where_a_project_already_is_shows_the_error(start, make_project):
    path = make_project("exists", PAIRS)
    window = start()
    assert window.create_project(path) is False
    assert any("already a project" in box.text() for box in visible_message_boxes(window))


def test_about_shows_name_version_and_icon(start):
    window = start()
    box = window.show_about()
    assert "RLHF Workbench" in box.text() and __version__ in box.text()
    assert not box.iconPixmap().isNull()
    box.close()


def test_error_messages_are_plain_text(start):
    window = start()
    box = window.show_error("<b>not bold</b> <img src=x>")
    assert box.textFormat() == Qt.TextFormat.PlainText and box.text() == "<b>not bold</b> <img src=x>"
    box.close()


def test_resources_are_found():
    assert resource_path("rlhf-workbench.svg").is_file()
    desktop = resource_path("rlhf-workbench.desktop").read_text()
    assert "Exec=rlhf-workbench" in desktop and "Icon=rlhf-workbench" in desktop
    assert not app_icon().isNull()
    with pytest.raises(FileNotFoundError):
        resource_path("no-such-file.png")


@pytest.mark.slow
def test_main_opens_the_window_without_importing_torch_or_transformers(make_project, tmp_path):
    # A fresh interpreter: other tests in this process may have imported torch on purpose. It runs
    # the real entry point, main(argv), and quits from inside the event loop.
    path = make_project("p", PAIRS)
    code = textwrap.dedent(
        f"""
        import os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        os.environ["RLHF_WORKBENCH_HOME"] = {str(tmp_path / "fresh-home")!r}
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        from rlhf_workbench.app.main import main
        from rlhf_workbench.app.main_window import MainWindow

        app = QApplication([])

        def check():
            [window] = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow)]
            print("project:", window.project.name, window.tabs.count())
            print("heavy:", sorted(m for m in ("torch", "transformers", "peft", "safetensors") if m in sys.modules))
            window.close()
            app.quit()

        QTimer.singleShot(0, check)
        sys.exit(main([{str(path)!r}, "--annotator", "bob"]))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "project: p 7" in result.stdout  # seven tabs
    assert "heavy: []" in result.stdout


@pytest.mark.slow
def test_a_run_deleted_in_the_runs_tab_leaves_the_ppo_tabs_run_picker(start, make_project, qtbot):
    from rlhf_workbench.core.runs.records import start_run

    path = make_project("p", PAIRS)
    with Project.open(path) as project:
        doomed = start_run(project, kind="ppo", name="doomed", config={}).run_id
        kept = start_run(project, kind="ppo", name="kept", config={}).run_id
    window = start(path)
    picker = window.rl_view.run_box
    assert {picker.itemData(i) for i in range(picker.count())} == {doomed, kept}
    window.tabs.setCurrentWidget(window.runs_view)
    assert window.runs_view.select_run(doomed)
    box = window.runs_view.delete_selected()
    with qtbot.waitSignal(window.runs_view.run_deleted, timeout=10_000):
        next(button for button in box.buttons() if button.text() == "Delete").click()
    assert [picker.itemData(i) for i in range(picker.count())] == [kept]
    assert window.project.store.run(doomed) is None


def test_a_read_only_project_opens_and_says_so_in_the_title_and_the_status_bar(start, read_only_project, qtbot):
    window = start(read_only_project, "--annotator", "ada")
    assert window.project is not None and window.project.read_only
    assert "(read-only)" in window.windowTitle()
    assert "read-only" in window.path_label.text() and not window.import_action.isEnabled()
    qtbot.waitUntil(lambda: window.counts_label.text() == "4 prompts · 4 pairs · 2 judgments")
    assert visible_message_boxes(window) == []


def test_file_menu_checks_the_project_and_makes_the_safe_repairs(start, make_project, qtbot):
    path = make_project("p", PAIRS)
    window = start(path)
    assert window.check_action in window.menuBar().actions()[0].menu().actions()
    leftover = path / "runs" / "rm-1" / "checkpoints" / ".tmp-step-000003"
    leftover.mkdir(parents=True)
    window.project.store.create_run("rm-1", kind="reward", name="r", config={}, output_dir="runs/rm-1")

    window.check_action.trigger()
    qtbot.waitUntil(lambda: getattr(window, "last_check_box", None) is not None and window.last_check_box.isVisible())
    box = window.last_check_box
    assert ".tmp-step-000003" in box.text() and "--repair" in box.text()
    [repair] = [b for b in box.buttons() if b.text().startswith("Repair")]
    repair.click()
    qtbot.waitUntil(lambda: window.last_check_box is not box and window.last_check_box.isVisible())
    assert "repaired:" in window.last_check_box.text() and not leftover.exists()


def test_file_menu_backs_the_project_up_while_it_is_open(start, make_project, qtbot, tmp_path):
    path = make_project("p", PAIRS)
    window = start(path)
    out = tmp_path / "backup.db"
    window.back_up_to(out)
    qtbot.waitUntil(lambda: "Backed up to" in window.statusBar().currentMessage())
    conn = sqlite3.connect(out)
    try:
        assert conn.execute("SELECT count(*) FROM pairs").fetchone() == (3,)
    finally:
        conn.close()


@pytest.mark.slow
def test_resume_in_the_runs_tab_continues_a_killed_run_in_its_methods_tab(start, make_project, qtbot, tmp_path):
    """A reward run killed with SIGKILL (its status stays 'running'): the Runs tab shows it
    interrupted and its Resume… continues it, in the Reward model tab, to its end."""
    from job_fixtures import killed_process

    from rlhf_workbench.core.models import build_demo_model
    from rlhf_workbench.core.reward.config import RewardConfig
    from rlhf_workbench.core.reward.train import JOB_PATH
    from rlhf_workbench.core.runs.records import start_run

    model = build_demo_model(tmp_path / "tiny", {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                                 "num_attention_heads": 2, "vocab_size": 400})
    path = make_project("p", [(f"Question {i}?", f"Kind answer {i}.", f"Go away {i}.", "t", "a", "dataset:x")
                              for i in range(12)])
    config = RewardConfig(base_model=str(model), max_steps=4, batch_size=4, save_every=2, validation_fraction=0.0,
                          torch_threads=1)
    with Project.open(path) as project:
        ctx = start_run(project, kind="reward", name="killed", config=config)
    killed_process(path, config, ctx, job=JOB_PATH, at_step=2)
    window = start(path)
    runs = window.runs_view
    window.tabs.setCurrentWidget(runs)
    assert runs.select_run(ctx.run_id) and runs.fields["status"].text() == "Interrupted"
    assert "interrupted" in window.reward_view.run_box.itemText(window.reward_view.run_box.findData(ctx.run_id))
    try:
        with qtbot.waitSignal(window.jobs.finished, timeout=120_000):
            runs.resume_button.click()
            assert window.tabs.currentWidget() is window.reward_view
        run = window.project.store.run(ctx.run_id)
        assert run["status"] == "finished" and run["summary"]["steps"] == 4, run
    finally:
        window.jobs.shutdown(10)


def test_the_data_tab_says_what_comes_next_and_goes_there(start, make_project, qtbot):
    window = start(make_project("fresh"))
    steps = window.data_view.next_steps
    qtbot.waitUntil(lambda: steps.progress is not None)
    assert steps.progress.next.key == "data"
    assert steps.summary.text().startswith("Next, step 1 of 5: import")
    assert steps.buttons["data"].text() == "▶ 1 Import or generate" and steps.buttons["data"].font().bold()
    window.close()
    window = start(make_project("p2", PAIRS))
    steps = window.data_view.next_steps
    qtbot.waitUntil(lambda: steps.progress is not None)
    assert steps.buttons["data"].text().startswith("✓ 1")
    # Each step's button shows its tab.
    for key, view in (("label", window.label_view), ("reward", window.reward_view), ("policy", window.rl_view),
                      ("check", window.evaluate_view)):
        qtbot.mouseClick(steps.buttons[key], Qt.MouseButton.LeftButton)
        assert window.tabs.currentWidget() is view, key
