"""Presets (core/training/presets.py, resources/preset-*.toml): every preset makes a valid config for
every method, `--preset` sits under --config and --set, and a bad preset or name is named."""

from __future__ import annotations

import pytest

from rlhf_workbench.core.cli import training_config
from rlhf_workbench.core.errors import ConfigError
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.training.config import config_from_dict, config_to_dict
from rlhf_workbench.core.training.presets import find_preset, parse_preset, presets

METHODS = [(RewardConfig, "reward"), (OfflineConfig, "sft"), (OfflineConfig, "dpo"),
           (RLConfig, "ppo"), (RLConfig, "rloo"), (RLConfig, "grpo")]


def test_the_four_presets_the_issue_names_are_shipped():
    assert [p.name for p in presets()] == [
        "Quick try on this CPU", "LoRA on one GPU, 8 GB", "LoRA on one GPU, 24 GB", "Full fine-tune, 80 GB"]
    assert [p.key for p in presets()] == ["quick-cpu", "lora-8gb", "lora-24gb", "full-80gb"]
    assert all(p.description for p in presets())


@pytest.mark.parametrize("preset", [p.key for p in presets()])
@pytest.mark.parametrize(("config_type", "method"), METHODS)
def test_every_preset_is_a_valid_config_for_every_method(preset, config_type, method):
    values = find_preset(preset).settings_for(config_type, method)
    assert values  # it says something to every method
    settings = {**config_to_dict(config_type()), **values}
    if "method" in settings:
        settings["method"] = method
    config = config_from_dict(config_type, settings).validate()
    assert not any(name in values for name in ("policy", "base_model", "reward_model", "value_model"))  # pickers' own
    assert config.device == ("cpu" if preset == "quick-cpu" else "cuda")


def test_sections_apply_in_order_and_only_the_configs_fields():
    preset = parse_preset("t", """
name = "T"
[all]
precision = "bf16"
learning_rate = 1.0
total_episodes = 5
[offline]
learning_rate = 2.0
[dpo]
learning_rate = 3.0
""", "t.toml")
    assert preset.settings_for(OfflineConfig, "dpo") == {"precision": "bf16", "learning_rate": 3.0}
    assert preset.settings_for(OfflineConfig, "sft") == {"precision": "bf16", "learning_rate": 2.0}
    assert preset.settings_for(RLConfig, "grpo") == {"precision": "bf16", "learning_rate": 1.0, "total_episodes": 5}
    with pytest.raises(ConfigError, match=r"t.toml: unknown section \[gpu\]"):
        parse_preset("t", "name = 'x'\n[gpu]\na = 1\n", "t.toml")
    with pytest.raises(ConfigError, match="name: must be set"):
        parse_preset("t", "[all]\na = 1\n", "t.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_preset("t", "name = ", "t.toml")


def test_the_command_line_takes_a_preset_under_config_and_set(tmp_path):
    _, config = training_config(["dpo", "p", "--preset", "lora-8gb"])
    assert (config.lora, config.precision, config.gradient_checkpointing, config.learning_rate) == (True, "bf16", True, 5e-6)
    # By its name as the app shows it, too; --set and --config go over it.
    _, config = training_config(["rl", "p", "--preset", "LoRA on one GPU, 8 GB", "--set", "method=grpo",
                                 "--set", "learning_rate=3e-5"])
    assert config.method == "grpo" and config.lora and config.learning_rate == 3e-5
    file = tmp_path / "rm.toml"
    file.write_text("precision = 'fp32'\n", encoding="utf-8")
    _, config = training_config(["train-rm", "p", "--preset", "full-80gb", "--config", str(file)])
    assert config.precision == "fp32" and config.gradient_checkpointing and config.batch_size == 16
    # `ppo` fixes the method: the preset's PPO section is the one read.
    _, config = training_config(["ppo", "p", "--preset", "quick-cpu"])
    assert config.method == "ppo" and config.total_episodes == 4096 and config.device == "cpu"
    with pytest.raises(ConfigError, match="no preset 'huge'.*quick-cpu, lora-8gb"):
        training_config(["train-rm", "p", "--preset", "huge"])
