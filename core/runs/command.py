"""The command that reproduces a training config: what a tab's Copy command puts on the clipboard.

    command_line(RL, config, "/home/ada/demo")
    # ['rlhf-workbench', 'rl', '/home/ada/demo', '--set', 'method=grpo', '--set', 'learning_rate=0.0001']
    reproduce_script(RL, config, "/home/ada/demo")   # that line, and every setting as a TOML file for --config

Built for the CLI to read back exactly (core/runs/terminal.py's `config_from_options`, through
core/cli.py's parser; tests/test_copy_command.py checks it for every method):
- the command is the method's, or its alias when the config has what the alias fixes (`sft` for
  SFT, `ppo` for PPO), those settings then left out;
- `--set KEY=VALUE` for each setting that differs from its default, VALUE as `parse_overrides` reads
  it back: a plain word where that reads back as the same string (`base_model=./models/my model`),
  else a TOML literal (`0.0001`, `true`, `"123"`, `"say \"hi\""`); every argument is quoted for a
  POSIX shell (shlex), so spaces and quotes survive a paste into a terminal;
- the TOML file has every setting, so it reproduces the config even where a later version changes a
  default. An optional setting left empty is left out of both (TOML has no null): it is empty by
  default, which `check_reproducible` makes sure of.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

import tomli_w

from ..errors import ConfigError, WorkbenchError
from ..training.config import config_to_dict
from ..training.method import TrainingMethod
from .terminal import parse_overrides

PROGRAM = "rlhf-workbench"
# How the README launches the CLI on several GPUs.
TORCHRUN = ("torchrun", "--standalone", "--nproc_per_node={n}", "-m", "rlhf_workbench.core.cli")


def command_name(method: TrainingMethod, config: Any) -> tuple[str, dict[str, Any]]:
    """The command for this config and the settings it fixes: an alias whose settings the config
    has (`sft`, `ppo`), else the method's own command (and nothing fixed)."""
    for alias, fixed in method.aliases.items():
        if all(getattr(config, key) == value for key, value in fixed.items()):
            return alias, dict(fixed)
    return method.command, {}


def changed_settings(method: TrainingMethod, config: Any) -> dict[str, Any]:
    """The settings that differ from their defaults, in the config's order, less what the command fixes."""
    check_reproducible(config)
    defaults = method.config()
    _, fixed = command_name(method, config)
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name not in fixed and getattr(config, f.name) != getattr(defaults, f.name)}


def check_reproducible(config: Any) -> None:
    """Refuses a config that no command can say: an optional setting left empty whose default is
    not empty (neither --set nor TOML can write an empty value)."""
    for f in dataclasses.fields(config):
        if getattr(config, f.name) is None and f.default is not None:
            raise ConfigError(f"{f.name}: is empty, which no command line or TOML file can say; give it a value")


def set_argument(key: str, value: Any) -> str:
    """`KEY=VALUE` that `--set` reads back as exactly this value (see the module's docstring)."""
    if isinstance(value, str) and value and value.isprintable() and _reads_back(key, value, value):
        return f"{key}={value}"
    literal = tomli_w.dumps({"v": value}).removeprefix("v = ").removesuffix("\n")
    if not _reads_back(key, literal, value):
        raise ConfigError(f"{key}: its value {value!r} cannot be written for --set")
    return f"{key}={literal}"


def _reads_back(key: str, text: str, value: Any) -> bool:
    try:
        parsed = parse_overrides([f"{key}={text}"])[key]
    except WorkbenchError:
        return False
    return type(parsed) is type(value) and parsed == value


def command_line(method: TrainingMethod, config: Any, project: str | Path = "PROJECT", *,
                 config_file: str | Path | None = None, processes: int = 1) -> list[str]:
    """The command's arguments, the program first: with `config_file`, `--config` it (its settings
    are `settings_toml(config)`); else a `--set` for each setting that differs from its default.
    With `processes` > 1, launched by torchrun, one process per GPU."""
    command, _ = command_name(method, config)
    program = [part.format(n=processes) for part in TORCHRUN] if processes > 1 else [PROGRAM]
    args = [*program, command, str(project)]
    if config_file is not None:
        check_reproducible(config)
        return [*args, "--config", str(config_file)]
    for key, value in changed_settings(method, config).items():
        args += ["--set", set_argument(key, value)]
    return args


def settings_toml(config: Any) -> str:
    """Every setting as TOML, as --config reads it (and as a run's config.toml has it)."""
    check_reproducible(config)
    return tomli_w.dumps(config_to_dict(config))


def reproduce_script(method: TrainingMethod, config: Any, project: str | Path = "PROJECT", *,
                     processes: int = 1, source: str = "RLHF Workbench") -> str:
    """A shell script that trains with these settings: the one-line command (only what differs
    from the defaults) in a comment, then every setting written to `<command>.toml` and the
    command that reads it. Pasted into a terminal as a whole, it writes the file and trains."""
    command, _ = command_name(method, config)
    file_name = f"{command}.toml"
    one_line = shlex.join(command_line(method, config, project, processes=processes))
    with_file = shlex.join(command_line(method, config, project, config_file=file_name, processes=processes))
    return (
        f"# {source}: {method.title} settings.\n"
        f"# In one line (the settings that differ from the defaults):\n"
        f"#   {one_line}\n"
        f"# Or every setting in {file_name}, as the lines below write it and train with it:\n"
        f"cat > {file_name} <<'TOML'\n"
        f"{settings_toml(config)}"
        f"TOML\n"
        f"{with_file}\n"
    )
