"""The settings form is built from the config dataclass and gives back a config of the same type."""

import dataclasses

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox

from rlhf_workbench.app.config_form import ConfigForm
from rlhf_workbench.core.errors import ConfigError
from rlhf_workbench.core.generate import GenerateConfig
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.training.config import applies


@pytest.fixture
def form(qtbot):
    form = ConfigForm(RewardConfig(base_model="/models/mine"), hidden=("base_model",))
    qtbot.addWidget(form)
    return form


def test_every_visible_field_has_a_widget_with_its_default_and_help(form):
    defaults = RewardConfig()
    names = [f.name for f in dataclasses.fields(RewardConfig) if f.name != "base_model"]
    assert list(form.widgets) == names
    assert isinstance(form.widgets["batch_size"], QSpinBox) and form.widgets["batch_size"].value() == defaults.batch_size
    assert isinstance(form.widgets["lora"], QCheckBox)
    assert isinstance(form.widgets["precision"], QComboBox)
    assert form.widgets["learning_rate"].text() == f"{defaults.learning_rate:g}"
    assert form.widgets["max_steps"].text() == ""  # None shows as empty
    assert "AdamW" in form.widgets["weight_decay"].toolTip()
    # Unchanged, the form gives back exactly the config it was given.
    assert form.value() == RewardConfig(base_model="/models/mine")


def test_edits_come_back_typed_and_hidden_fields_are_kept(form):
    form.widgets["batch_size"].setValue(4)
    form.widgets["learning_rate"].setText("1e-05")
    form.widgets["max_steps"].setText("120")
    form.widgets["lora"].setChecked(True)
    form.widgets["precision"].setCurrentIndex(form.widgets["precision"].findData("bf16"))
    config = form.value()
    assert (config.batch_size, config.learning_rate, config.max_steps, config.lora, config.precision) == (
        4, 1e-05, 120, True, "bf16"
    )
    assert config.base_model == "/models/mine"


def test_text_that_does_not_parse_names_the_field_and_ranges_are_left_to_validate(form):
    form.widgets["max_steps"].setText("many")
    with pytest.raises(ValueError, match="Max steps"):
        form.value()
    form.widgets["max_steps"].setText("")
    form.widgets["warmup_ratio"].setText("0.9")  # parses; out of range
    with pytest.raises(ConfigError, match="warmup_ratio"):
        form.value().validate()
    assert isinstance(form.widgets["warmup_ratio"], QLineEdit)


def test_basic_settings_come_first_and_the_rest_fold_under_a_remembered_advanced(qtbot, workbench_home):
    form = ConfigForm(RewardConfig(), hidden=("base_model",))
    qtbot.addWidget(form)
    form.show()
    basic = {f.name for f in dataclasses.fields(RewardConfig) if f.metadata.get("basic")} - {"base_model"}
    assert basic == {"batch_size", "epochs", "learning_rate", "precision", "device", "lora"}
    assert all(form.widgets[name].isVisible() for name in basic)
    # A first form: Advanced is closed, its settings out of sight but still in the config.
    assert not form.advanced_button.isChecked()
    assert not form.widgets["weight_decay"].isVisible() and not form.widgets["max_length"].isVisible()
    assert form.value() == RewardConfig()
    qtbot.mouseClick(form.advanced_button, Qt.MouseButton.LeftButton)
    assert form.widgets["weight_decay"].isVisible()
    # The next form of this config opens as it was left; another config's keeps its own state.
    again = ConfigForm(RewardConfig(), hidden=("base_model",))
    qtbot.addWidget(again)
    again.show()
    assert again.advanced_button.isChecked() and again.widgets["weight_decay"].isVisible()
    other = ConfigForm(OfflineConfig())
    qtbot.addWidget(other)
    assert not other.advanced_button.isChecked()
    # A config that marks nothing basic is one list, as before.
    plain = ConfigForm(GenerateConfig())
    assert plain.advanced_button is None


def test_a_setting_that_needs_a_switch_is_hidden_while_it_is_off(qtbot, workbench_home):
    form = ConfigForm(RewardConfig())
    qtbot.addWidget(form)
    form.set_advanced_open(True)
    form.show()
    lora_settings = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
    assert not any(form.widgets[name].isVisible() for name in lora_settings)
    assert not form.is_visible_field("lora_r")
    form.widgets["lora_r"].setValue(8)  # a value kept while hidden
    form.widgets["lora"].setChecked(True)
    assert all(form.widgets[name].isVisible() for name in lora_settings) and form.is_visible_field("lora_r")
    assert form.value().lora_r == 8
    form.widgets["lora"].setChecked(False)
    assert not form.widgets["lora_r"].isVisible()


def test_a_method_picker_and_a_switch_together_decide(qtbot, workbench_home):
    form = ConfigForm(RLConfig())
    qtbot.addWidget(form)
    form.set_advanced_open(True)
    form.show()
    form.show_only(lambda f: applies(f, "ppo"))
    assert not form.widgets["target_kl"].isVisible()  # PPO's, but only with adaptive_kl on
    form.widgets["adaptive_kl"].setChecked(True)
    assert form.widgets["target_kl"].isVisible()
    form.show_only(lambda f: applies(f, "grpo"))  # not GRPO's at all
    assert not form.widgets["target_kl"].isVisible() and not form.widgets["adaptive_kl"].isVisible()
    assert form.widgets["beta"].isVisible() and not form.widgets["kl_coef"].isVisible()
