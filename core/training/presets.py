"""Presets: named sets of settings for a kind of machine, as data (resources/preset-*.toml).

A person new to a method picks "LoRA on one GPU, 8 GB" rather than learning what twelve settings
do on such a card; the training tabs offer them above the form, the training commands take
`--preset NAME`. One file a preset, its sections applied in order, each over the one before:

    name = "LoRA on one GPU, 8 GB"       # how it reads in the app
    description = "..."
    [all]      settings of every method
    [reward]   the reward model's          [offline] SFT's and DPO's   [rl] PPO's, RLOO's and GRPO's
    [sft] [dpo] [ppo] [rloo] [grpo]        one algorithm's

A preset never names models (the pickers do); `settings_for` returns only the settings the method's
config has, so [all] may hold what most methods share.
A file's key is its name without "preset-" and the order number: "preset-2-lora-8gb.toml" is `lora-8gb`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ..errors import ConfigError

PRESETS_PACKAGE = "rlhf_workbench.resources"
PREFIX = "preset-"
# Which section serves which training method's runs (TrainingMethod.kinds' first kind or the config's
# `method`), after [all].
FAMILY = {"reward": "reward", "sft": "offline", "dpo": "offline", "ppo": "rl", "rloo": "rl", "grpo": "rl"}
SECTIONS = ("all", "reward", "offline", "rl", *FAMILY)


@dataclass(frozen=True)
class Preset:
    key: str  # the file's name without its order number and suffix: what --preset takes
    name: str  # how it reads in the app
    description: str
    sections: dict[str, dict[str, Any]]

    def settings_for(self, config_type: type, method: str) -> dict[str, Any]:
        """The settings this preset gives a run of `method` ("reward", "sft", "dpo", "ppo", "rloo",
        "grpo") whose config is `config_type`: [all], then its family's section, then its own; only
        the config's fields."""
        names = {f.name for f in dataclasses.fields(config_type)}
        values: dict[str, Any] = {}
        for section in ("all", FAMILY.get(method, method), method):
            values.update(self.sections.get(section, {}))
        return {k: v for k, v in values.items() if k in names}


def _key(stem: str) -> str:
    return re.sub(r"^\d+-", "", stem[len(PREFIX):])


@cache
def presets() -> tuple[Preset, ...]:
    """Every preset shipped with the workbench, in their files' order."""
    found = []
    for entry in sorted(resources.files(PRESETS_PACKAGE).iterdir(), key=lambda e: e.name):
        if entry.name.startswith(PREFIX) and entry.name.endswith(".toml"):
            found.append(parse_preset(_key(entry.name[: -len(".toml")]), entry.read_text(encoding="utf-8"), entry.name))
    return tuple(found)


def parse_preset(key: str, text: str, source: str) -> Preset:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    sections = {k: v for k, v in data.items() if isinstance(v, dict)}
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section [{unknown[0]}] (known: {', '.join(SECTIONS)})")
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        raise ConfigError(f"{source}: name: must be set")
    return Preset(key, data["name"].strip(), str(data.get("description", "")).strip(), sections)


def find_preset(name: str) -> Preset:
    """The preset whose key or name is `name` (case and spaces ignored); ConfigError listing them."""
    wanted = " ".join(name.split()).casefold()
    for preset in presets():
        if wanted in (preset.key.casefold(), preset.name.casefold()):
            return preset
    raise ConfigError(f"--preset: no preset {name!r} (there are: {', '.join(p.key for p in presets())})")
