"""Job configs: documented fields, validation naming the field, TOML that refuses what it does not know."""

import dataclasses

import pytest

from rlhf_workbench.core.errors import ConfigError
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.training.config import config_from_dict, load_config, save_config


def test_every_field_is_documented_for_the_form():
    for f in dataclasses.fields(RewardConfig):
        assert f.metadata.get("help"), f"{f.name} has no help text"
        if f.type in ("int", "float", "int | None", "float | None"):
            assert "min" in f.metadata and "max" in f.metadata, f"{f.name} has no range"
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(RewardConfig)}
    assert choices["lr_scheduler"] == ("linear", "cosine", "constant")
    assert choices["precision"] == ("fp32", "bf16", "fp16")
    assert choices["device"] == ("auto", "cuda", "mps", "cpu")


def test_defaults_are_valid_and_safe():
    config = RewardConfig().validate()
    assert config.base_model == "demo"
    assert config.trust_remote_code is False
    assert config.include_ties is False


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("learning_rate", 0.0, "between"),
        ("batch_size", 0, "between 1"),
        ("validation_fraction", 0.95, "between 0 and 0.9"),
        ("lr_scheduler", "step", "one of linear, cosine, constant"),
        ("precision", "int8", "one of fp32"),
        ("max_steps", 0, "between 1"),
        ("epochs", float("nan"), "not a number"),
        ("batch_size", 2.5, "whole number"),
        ("gradient_checkpointing", "yes", "true or false"),
        ("learning_rate", True, "a number"),
    ],
)
def test_validate_names_the_field_and_what_is_allowed(field, value, words):
    config = RewardConfig(**{field: value})
    with pytest.raises(ConfigError) as err:
        config.validate()
    assert str(err.value).startswith(f"{field}:")
    assert words in str(err.value)


def test_empty_base_model_is_refused():
    with pytest.raises(ConfigError, match="base_model"):
        RewardConfig(base_model=" ").validate()


def test_toml_round_trip_leaves_empty_optionals_out(tmp_path):
    path = tmp_path / "rm.toml"
    config = RewardConfig(learning_rate=3e-4, epochs=2, lora=True, lora_target_modules="q_proj,v_proj", max_steps=None)
    save_config(config, path)
    text = path.read_text()
    assert "max_steps" not in text and "learning_rate = 0.0003" in text
    assert load_config(RewardConfig, path) == config


def test_toml_with_an_unknown_key_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "rm.toml"
    path.write_text("learning_rte = 0.001\n")
    with pytest.raises(ConfigError) as err:
        load_config(RewardConfig, path)
    assert str(path) in str(err.value) and "'learning_rte'" in str(err.value)


def test_toml_with_a_wrong_type_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "rm.toml"
    path.write_text('batch_size = "big"\n')
    with pytest.raises(ConfigError) as err:
        load_config(RewardConfig, path)
    assert str(path) in str(err.value) and "batch_size" in str(err.value)


def test_whole_numbers_are_accepted_where_a_number_belongs():
    config = config_from_dict(RewardConfig, {"learning_rate": 1, "epochs": 3})
    assert config.learning_rate == 1.0 and isinstance(config.epochs, float)


def test_unreadable_toml_is_one_clear_error(tmp_path):
    path = tmp_path / "rm.toml"
    path.write_text("learning_rate = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(RewardConfig, path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(RewardConfig, tmp_path / "missing.toml")
