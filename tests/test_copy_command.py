"""Copy command (core/runs/command.py): the command and the TOML built from a config reproduce that
config exactly when the CLI reads them back with its own parser and settings code
(core/cli.py's `training_config`, the path `rlhf-workbench train-rm ...` takes), for every method,
with strings a shell or TOML could mangle, optional settings, floats, bools and choices; and the
script pasted into a real shell does the same."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from rlhf_workbench.core.cli import training_config
from rlhf_workbench.core.errors import ConfigError
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.offline.method import OFFLINE
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.reward.method import REWARD_MODEL
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.rl.method import RL
from rlhf_workbench.core.runs.command import (
    check_reproducible,
    command_line,
    command_name,
    reproduce_script,
    set_argument,
    settings_toml,
)
from rlhf_workbench.core.training.config import applies, setting

# Strings that a shell, TOML or `--set`'s reading would change if written carelessly.
AWKWARD = [
    "./models/my model", "it's \"quoted\"", "C:\\models\\tiny", "$HOME/`id`/$(echo hi);|&*", "true", "123", "1e5",
    "inf", "2024-01-01", "[1, 2]", "  padded  ", "tab\there", "new\nline", "ünïcödé ✓", "x # not a comment", "=",
    "-h", "--set", "'", '"', "\\",
]

CONFIGS = [
    (REWARD_MODEL, RewardConfig()),
    (REWARD_MODEL, RewardConfig(
        max_steps=120, learning_rate=1e-5, center_rewards_coefficient=0.01, lr_scheduler="cosine", precision="bf16",
        epochs=2.5, trust_remote_code=True, seed=4294967295, torch_threads=3, lora=True, lora_r=8, lora_alpha=16.0,
        lora_dropout=0.05, lora_target_modules="q_proj,v_proj", warmup_ratio=0.0, max_grad_norm=0.0,
    )),
    (OFFLINE, OfflineConfig()),
    (OFFLINE, OfflineConfig(method="sft", sft_data="data/my file.jsonl", split_from="rm-20261121-142501-3f9a",
                            max_steps=7, learning_rate=3e-7, gradient_checkpointing=True)),
    (OFFLINE, OfflineConfig(method="dpo", beta=0.5, loss_type="robust", label_smoothing=0.1, sft_weight=0.0,
                            device="cpu", batch_size=5)),
    (RL, RLConfig()),
    (RL, RLConfig(method="ppo", kl_coef=0.0, adaptive_kl=True, kl_estimator="k3", missing_eos_penalty=1.0,
                  value_model="policy", prompt_origin="generated:demo model", total_episodes=10_000_000_000)),
    (RL, RLConfig(method="rloo", beta=0.0, normalize_advantages=True, epsilon_high=0.28, num_generations=8,
                  batch_size=32)),
    (RL, RLConfig(method="grpo", loss_type="dr_grpo", scale_rewards="group", temperature=1.25, top_p=0.95,
                  reward_model="rm-20261121-142501-3f9a", num_iterations=2)),
]


def _string_fields(config):
    """The settings a person types text into (not a choice among a few), of the config's algorithm."""
    return [f.name for f in dataclasses.fields(config)
            if "str" in str(f.type) and "choices" not in f.metadata  # optional ones too (prompt_origin)
            and applies(f, getattr(config, "method", ""))]


def _awkward_configs():
    for method, config in ((REWARD_MODEL, RewardConfig()), (OFFLINE, OfflineConfig(method="sft")),
                           (OFFLINE, OfflineConfig(method="dpo")), (RL, RLConfig(method="grpo"))):
        for text in AWKWARD:
            awkward = dict.fromkeys(_string_fields(config), text)
            if "gold_model" in awkward:
                awkward["gold_model"] = f"{text} (gold)"  # the gold must be another model than the proxy
            yield method, dataclasses.replace(config, **awkward)


ALL = CONFIGS + list(_awkward_configs())
IDS = [f"{method.command}-{i}" for i, (method, _) in enumerate(ALL)]


def _read_back(argv):
    """What the CLI starts a run with from these arguments (the program's name, or torchrun's, left out)."""
    program_end = argv.index("rlhf_workbench.core.cli") + 1 if "torchrun" in argv[:1] else 1
    return training_config(argv[program_end:])


@pytest.mark.parametrize(("method", "config"), ALL, ids=IDS)
def test_the_set_command_reproduces_the_config(method, config):
    config = config.validate()
    line = shlex.join(command_line(method, config, "/home/ada/my project"))
    read_method, read = _read_back(shlex.split(line))  # through a shell's word splitting, as pasted
    assert read_method is method and read == config
    # Only what differs from the defaults is written, less what the command (an alias) says.
    fixed = command_name(method, config)[1]
    differ = [f.name for f in dataclasses.fields(config)
              if getattr(config, f.name) != getattr(method.config(), f.name) and f.name not in fixed]
    assert shlex.split(line).count("--set") == len(differ)


@pytest.mark.parametrize(("method", "config"), ALL, ids=IDS)
def test_the_toml_file_reproduces_the_config(method, config, tmp_path):
    config = config.validate()
    path = tmp_path / "settings.toml"
    path.write_text(settings_toml(config), encoding="utf-8")
    read_method, read = _read_back(command_line(method, config, "PROJECT", config_file=path))
    assert read_method is method and read == config


def test_commands_read_as_people_write_them():
    assert command_name(OFFLINE, OfflineConfig(method="sft")) == ("sft", {"method": "sft"})
    assert command_name(OFFLINE, OfflineConfig(method="dpo")) == ("dpo", {})
    assert command_name(RL, RLConfig(method="ppo")) == ("ppo", {"method": "ppo"})
    assert command_name(RL, RLConfig(method="grpo", batch_size=64)) == ("rl", {})
    assert command_line(REWARD_MODEL, RewardConfig(), "p") == ["rlhf-workbench", "train-rm", "p"]
    assert command_line(RL, RLConfig(method="grpo"), "p", processes=4) == [
        "torchrun", "--standalone", "--nproc_per_node=4", "-m", "rlhf_workbench.core.cli", "rl", "p",
        "--set", "method=grpo",
    ]
    # A plain word stays plain; what --set would read as something else is written as TOML.
    assert set_argument("lr_scheduler", "cosine") == "lr_scheduler=cosine"
    assert set_argument("base_model", "./models/my model") == "base_model=./models/my model"
    assert set_argument("base_model", "true") == 'base_model="true"'
    assert set_argument("base_model", "  x ") == 'base_model="  x "'
    assert set_argument("learning_rate", 1e-5) == "learning_rate=1e-05"
    assert set_argument("epochs", 3.0) == "epochs=3.0"
    assert set_argument("lora", True) == "lora=true"


def test_a_setting_left_empty_against_a_default_is_refused():
    @dataclass
    class Odd:
        name: str | None = setting("x", "A setting whose default is not empty.", optional=True)

    check_reproducible(Odd())
    with pytest.raises(ConfigError, match="name: is empty"):
        check_reproducible(Odd(name=None))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("processes", [1, 2])
def test_the_script_pasted_into_a_shell_reproduces_the_config(tmp_path, monkeypatch, processes):
    """The whole clipboard text run by bash (the programs it calls are stand-ins that write down
    their arguments), and its commented one-line command run alone."""
    method = RL
    config = RLConfig(method="rloo", policy="./models/it's a \"policy\" $HOME", prompt_origin="generated:x y",
                      epsilon_high=0.3, learning_rate=2e-5).validate()
    script = reproduce_script(method, config, tmp_path / "my project", processes=processes)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("rlhf-workbench", "torchrun"):
        (stubs / name).write_text('#!/bin/sh\nprintf \'%s\\0\' "$(basename "$0")" "$@" > "$ARGS_FILE"\n')
        (stubs / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", "ARGS_FILE": str(tmp_path / "args")}
    work = tmp_path / "work"
    work.mkdir()

    def run(text):
        subprocess.run(["bash", "-c", text], cwd=work, env=env, check=True, timeout=30)
        return (tmp_path / "args").read_text(encoding="utf-8").split("\0")[:-1]

    argv = run(script)
    assert argv[-2:] == ["--config", "rl.toml"] and (work / "rl.toml").is_file()
    monkeypatch.chdir(work)  # the file is named relative to where the script ran
    assert _read_back(argv) == (method, config)
    one_line = next(line for line in script.splitlines() if line.startswith("#   "))[4:]
    argv = run(one_line)
    assert "--config" not in argv and _read_back(argv) == (method, config)
    assert argv[argv.index("rl") + 1] == str(tmp_path / "my project")
