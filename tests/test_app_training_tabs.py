"""The training tabs are one base (TrainingTab) specialised, and Resume means the same in each: it
continues the run chosen in the tab's Run picker, when that run stopped early or failed and has a
checkpoint, with that run's own settings."""

import json
import shlex

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from rlhf_workbench.app.views.training_tab import TrainingTab
from rlhf_workbench.core.cli import training_config
from rlhf_workbench.core.methods import METHODS
from rlhf_workbench.core.runs.records import start_run

pytestmark = [pytest.mark.usefixtures("workbench_home"), pytest.mark.timeout(120)]
TABS = {"reward": "reward_view", "sft": "offline_view", "ppo": "rl_view"}


@pytest.fixture
def window(demo_window):
    return demo_window


def _run(project, method, name: str, status: str, *, checkpoint: bool = True) -> str:
    """A run of `method` that ended with `status`, with its last checkpoint on record."""
    ctx = start_run(project, kind=method.kinds[0], name=name, config=method.config())
    project.store.set_run_status(ctx.run_id, "running")
    if checkpoint:
        folder = ctx.run_dir / "checkpoints" / "step-000002"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"step": 2}), encoding="utf-8")
        project.store.save_run_records(ctx.run_id, checkpoint=(2, folder.relative_to(project.path).as_posix(), False))
    project.store.set_run_status(ctx.run_id, status, summary={"steps": 2, "stopped": status == "cancelled"})
    return ctx.run_id


def test_every_methods_tab_is_a_training_tab_for_that_method(window):
    for method in METHODS:
        view = getattr(window, TABS[method.kinds[0]])
        assert isinstance(view, TrainingTab) and view.method is method
        assert view.run_box is not None and view.resume_button.text() == "Resume"


@pytest.mark.parametrize("kind", sorted(TABS))
def test_resume_continues_the_run_chosen_in_the_run_picker(window, qtbot, kind):
    view = getattr(window, TABS[kind])
    method = view.method
    project = view.project
    stopped = _run(project, method, "stopped early", "cancelled")
    failed_without_checkpoint = _run(project, method, "failed at once", "failed", checkpoint=False)
    finished = _run(project, method, "finished", "finished")
    view.refresh_runs()

    # The newest run is shown first; a finished run has nothing to resume.
    assert view.run_box.currentData() == finished and not view.resume_button.isEnabled()
    # Nor has a run that failed before its first checkpoint.
    view.run_box.setCurrentIndex(view.run_box.findData(failed_without_checkpoint))
    assert view.run_id == failed_without_checkpoint and not view.resume_button.isEnabled()
    # The stopped run can be resumed, though it is not the newest.
    view.run_box.setCurrentIndex(view.run_box.findData(stopped))
    assert view.resumable_run()["id"] == stopped and view.resume_button.isEnabled()

    qtbot.mouseClick(view.resume_button, Qt.MouseButton.LeftButton)
    assert window.jobs.is_running and window.jobs.run_id == stopped == view.live_run_id
    assert view.stop_button.isEnabled() and not view.resume_button.isEnabled() and not view.start_button.isEnabled()
    # Only one training at a time: the other tabs wait for it too.
    for other in TABS.values():
        assert not getattr(window, other).start_button.isEnabled()
    with qtbot.waitSignal(window.jobs.failed, timeout=30_000):
        window.jobs.kill()
    assert project.store.run(stopped)["status"] == "cancelled"


# Settings a person might change in each tab (a method's picker first, where it has one), with text
# that needs quoting in a shell.
COPY_SETTINGS = {
    "reward": (None, {"learning_rate": 1e-5, "max_steps": 40, "lr_scheduler": "cosine", "lora": True,
                      "lora_target_modules": "q_proj, v_proj 'all'"}),
    "sft": ("sft", {"sft_data": "my data/it's \"best\".jsonl", "epochs": 2.5, "torch_threads": 2}),
    "ppo": ("grpo", {"loss_type": "dr_grpo", "epsilon_high": 0.28, "max_new_tokens": 12, "precision": "bf16"}),
}


def _read_clipboard_script(text: str, folder) -> list:
    """The configs the CLI reads from Copy command's text: its one-line command (a comment) and its
    TOML file with the command that reads it, each through core/cli.py's own parsing."""
    lines = text.splitlines()
    one_line = shlex.split(next(line for line in lines if line.startswith("#   "))[4:])
    start = next(i for i, line in enumerate(lines) if line.startswith("cat > "))
    end = lines.index("TOML", start)
    (folder / shlex.split(lines[start])[2]).write_text("\n".join(lines[start + 1:end]) + "\n", encoding="utf-8")
    with_file = shlex.split(lines[end + 1])
    with_file[with_file.index("--config") + 1] = str(folder / with_file[with_file.index("--config") + 1])
    return [training_config(argv[1:]) for argv in (one_line, with_file)]


@pytest.mark.parametrize("kind", sorted(TABS))
def test_copy_command_puts_what_reproduces_the_forms_settings_on_the_clipboard(window, kind, tmp_path):
    view = getattr(window, TABS[kind])
    algorithm, settings = COPY_SETTINGS[kind]
    if algorithm is not None:
        view.set_method(algorithm)
    for name, value in settings.items():
        assert view.form.is_shown(name), name
        view.form.set_field(name, value)
    expected = view.config()
    assert [getattr(expected, name) for name in settings] == list(settings.values())
    assert view.copy_command_button.shortcut().toString() == "Ctrl+Shift+C"

    view.copy_command_button.click()
    text = QGuiApplication.clipboard().text()
    assert text.splitlines()[0].startswith("# RLHF Workbench") and str(view.project.path) in text
    for method, config in _read_clipboard_script(text, tmp_path):
        assert method is view.method and config == expected
    assert "Copied" in view.status.text()


def test_copy_command_names_a_bad_setting_and_copies_nothing(window, qtbot):
    view = window.reward_view
    QGuiApplication.clipboard().setText("before")
    view.form.set_field("lora", True)
    view.form.set_field("lora_target_modules", "")
    with qtbot.waitSignal(view.error) as error:
        assert view.copy_command() is None
    assert error.args[0].startswith("lora_target_modules: is empty")
    assert QGuiApplication.clipboard().text() == "before"


def test_a_preset_fills_the_form_for_the_chosen_method_and_says_what_changed(window):
    rl = window.rl_view
    rl.set_method("grpo")
    box = rl.preset_box
    index = box.findText("LoRA on one GPU, 8 GB")
    assert index > 0 and "8 GB" in box.itemData(index, Qt.ItemDataRole.ToolTipRole)
    box.setCurrentIndex(index)
    box.activated.emit(index)
    config = rl.form.value()
    assert (config.lora, config.precision, config.gradient_checkpointing, config.device) == (True, "bf16", True, "cuda")
    assert config.batch_size == 32 and config.learning_rate == 1e-5
    status = rl.status.text()
    assert status.startswith("Preset “LoRA on one GPU, 8 GB”:") and "Precision fp32 → bf16" in status
    assert "LoRA off → on" in status
    # The models stay the pickers'; the form's LoRA settings now show (LoRA is on), without Advanced.
    assert rl.form.is_visible_field("lora_r")
    # Nothing changes the second time; a person's edit after it stands.
    assert rl.apply_preset("lora-8gb") == []
    rl.form.widgets["batch_size"].setValue(64)
    assert rl.config().batch_size == 64
    # Each tab reads its own section: the reward model's batch is another.
    reward = window.reward_view
    reward.apply_preset("lora-8gb")
    assert reward.form.value().batch_size == 4 and reward.form.value().gradient_accumulation_steps == 4
    offline = window.offline_view
    offline.set_method("sft")
    offline.apply_preset("full-80gb")
    assert offline.form.value().learning_rate == 1e-5
    offline.set_method("dpo")
    offline.apply_preset("full-80gb")
    assert offline.form.value().learning_rate == 5e-7


def test_the_memory_line_follows_the_form_and_its_suggestions_change_it(window, qtbot):
    reward = window.reward_view
    qtbot.waitUntil(lambda: reward.memory.label.text().startswith("Memory: needs about"), timeout=10_000)
    before = reward.memory.check.estimate.total
    reward.form.widgets["batch_size"].setValue(reward.form.widgets["batch_size"].value() * 64)
    qtbot.waitUntil(lambda: reward.memory.check.estimate.total > before, timeout=10_000)
    # A suggestion's button asks for its settings; the tab puts them in the form and says so.
    reward.memory.change_requested.emit({"batch_size": 8, "gradient_checkpointing": True})
    assert reward.form.value().batch_size == 8 and reward.form.value().gradient_checkpointing
    assert reward.status.text() == "Changed Batch size to 8, Gradient checkpointing to on."
