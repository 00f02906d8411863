"""The settings form is built from the config dataclass and gives back a config of the same type."""

import dataclasses

import pytest
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox

from rlhf_workbench.app.config_form import ConfigForm
from rlhf_workbench.core.errors import ConfigError
from rlhf_workbench.core.reward.config import RewardConfig


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
