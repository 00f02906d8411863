"""How every job's settings are written: one dataclass per job, every field documented in place.

Each field's `metadata` carries what a form needs to offer it and what `validate()` enforces:
`help` (one sentence for a tooltip), `min` / `max` (inclusive bounds for numbers), `choices`
(allowed strings) and `optional` (None is allowed: the field is left out of a TOML file). The GUI
builds its forms from these (`dataclasses.fields(RewardConfig)`); nothing here imports torch, so
a form can be built without loading it.

Configs are saved as TOML. Loading refuses unknown keys and wrong types, naming the key and the
file, so a typo in `learning_rte` is an error and never a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError


def setting(default: Any, help: str, **limits: Any) -> Any:
    """A config field: its default, one sentence of help, and its limits (min, max, choices).

    What a form makes of it: `basic=True` for the few settings a person new to the method sets (the
    model, how long, batch, learning rate, precision, LoRA, device, the method's defining knob); the
    rest fold under Advanced. `requires="other"`: the field means something only while the boolean
    setting `other` is on (LoRA's rank without LoRA), so the form hides it otherwise. `methods=`: the
    methods of a shared config the field belongs to (`applies`)."""
    return field(default=default, metadata={"help": help, **limits})


# LoRA's settings, the same in every config that trains with it (each config's `lora` switch says
# what LoRA means for its job).
_LORA = {
    "r": (16, "LoRA rank.", {"min": 1, "max": 1024}),
    "alpha": (32.0, "LoRA scaling numerator (the update is scaled by alpha / r).", {"min": 0.0, "max": 1e4}),
    "dropout": (0.0, "Dropout on the LoRA path.", {"min": 0.0, "max": 0.9}),
    "target_modules": ("auto", "Layers that get adapters: comma-separated module names (e.g. q_proj,v_proj), "
                               "'all-linear', or 'auto' (peft's choice for the architecture).", {}),
}


def lora_setting(name: str) -> Any:
    """The field of LoRA's setting `lora_<name>`; a new one each call (a dataclass takes the one it is given)."""
    default, help, limits = _LORA[name]
    return setting(default, help, requires="lora", **limits)


def check_lora(config: Any) -> None:
    if config.lora and not config.lora_target_modules.strip():
        raise ConfigError("lora_target_modules: is empty; give module names, 'all-linear' or 'auto'")


C = TypeVar("C")


def _allowed(hint: Any) -> tuple[tuple[type, ...], bool]:
    """The Python types a field accepts, and whether None is among them."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    optional = type(None) in args
    kinds = tuple(a for a in args if a is not type(None))
    return kinds, optional


def _check_type(name: str, value: Any, hint: Any, where: str) -> Any:
    kinds, optional = _allowed(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}{name}: must be set")
    # bool is an int in Python; a `true` where a number belongs is a mistake, not 1.
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{where}{name}: expected {_type_name(kinds)}, got {value!r}")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds):
        raise ConfigError(f"{where}{name}: expected {_type_name(kinds)}, got {type(value).__name__} {value!r}")
    return value


def _type_name(kinds: tuple[type, ...]) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def validate_fields(config: Any) -> None:
    """Types, ranges and choices from each field's metadata; raises ConfigError naming the field."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = _check_type(f.name, getattr(config, f.name), hints[f.name], "")
        setattr(config, f.name, value)
        if value is None:
            continue
        meta = f.metadata
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{f.name}: must be one of {', '.join(meta['choices'])}, not {value!r}")
        lo, hi = meta.get("min"), meta.get("max")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value:  # NaN passes every comparison below
                raise ConfigError(f"{f.name}: is not a number")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ConfigError(f"{f.name}: must be between {lo:g} and {hi:g}, not {value:g}")


def is_basic(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("basic"))


def applies(f: dataclasses.Field, method: str) -> bool:
    """Whether a field of a config that serves several methods (`methods=` in its metadata) is
    one of `method`'s; a field without `methods` belongs to every method."""
    return method in f.metadata.get("methods", (method,))


def check_method_fields(config: Any, method: str) -> None:
    """A field of another method set away from its default is a mistake (it would do nothing):
    raises ConfigError naming it and the methods it is for."""
    for f in dataclasses.fields(config):
        if applies(f, method):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if getattr(config, f.name) != default:
            owners = " and ".join(m.upper() for m in f.metadata["methods"])
            raise ConfigError(f"{f.name}: is a setting of {owners}, not of {method.upper()}; leave it out for this method")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain values; None (an optional field left empty) is left out, as TOML has no null."""
    return {k: v for k, v in dataclasses.asdict(config).items() if v is not None}


def config_from_dict(cls: type[C], data: dict[str, Any], *, source: str | Path | None = None) -> C:
    """A config from plain values; unknown keys and wrong types raise ConfigError naming key and source.

    Missing keys keep their defaults. Ranges are checked by `validate()`, not here, so that a form
    can load a file and show which field is out of range.
    """
    where = f"{source}: " if source is not None else ""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}unknown setting {unknown[0]!r} (known: {', '.join(sorted(names))})")
    values = {k: _check_type(k, v, hints[k], where) for k, v in data.items()}
    return cls(**values)


def load_config(cls: type[C], path: str | Path) -> C:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    return config_from_dict(cls, data, source=path)


def save_config(config: Any, path: str | Path) -> None:
    import tomli_w

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(tomli_w.dumps(config_to_dict(config)), encoding="utf-8")
    tmp.replace(path)
