"""Which checkpoints of a run other runs started from (a policy, base model or reward model given as
a folder inside one): pruning keeps those whatever keep_last says, and the Runs tab says so.
Imports no torch (the app reads it), and not the checkpoint code (which imports this).
"""

from __future__ import annotations

from pathlib import Path

# In a run's folder: the models it started with, `latest` resolved to a run id, so that a resumed
# run goes on with them (PPO writes it; deleting a run reads it to name the runs that used it).
PINNED_MODELS_FILE = "models.json"


def checkpoint_dependents(run_dir: Path) -> dict[str, list[str]]:
    """{checkpoint folder name: ["<run id> (<setting>)", ...]} for this run's checkpoints that other
    runs of the project started from: a policy, base model or reward model given as a folder
    inside one of them, in the other run's config.toml or its models.json.

    Pruning keeps these whatever keep_last says: the other run loads that folder again each time it
    is resumed (its reference, its reward model). Read from the run folders beside this one, not
    the database, so the training process that prunes needs no connection for it."""
    import json
    import tomllib

    run_dir = Path(run_dir)
    try:
        checkpoints = (run_dir / "checkpoints").resolve()
        siblings = [p for p in run_dir.parent.iterdir() if p.is_dir() and p.name != run_dir.name]
    except OSError:
        return {}
    project_dir = run_dir.parent.parent  # runs/<id>: relative paths in settings are the project's
    found: dict[str, list[str]] = {}
    for other in sorted(siblings):
        settings: dict = {}
        for name, read in (("config.toml", tomllib.loads), (PINNED_MODELS_FILE, json.loads)):
            try:
                settings.update(read((other / name).read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        for key, value in sorted(settings.items()):
            if not isinstance(value, str) or ("/" not in value and "\\" not in value):
                continue
            path = Path(value.strip()).expanduser()
            try:
                path = (path if path.is_absolute() else project_dir / path).resolve()
                inside = path.relative_to(checkpoints)
            except (OSError, RuntimeError, ValueError):
                continue
            if inside.parts and inside.parts[0].startswith("step-"):
                found.setdefault(inside.parts[0], []).append(f"{other.name} ({key.replace('_', ' ')})")
    return found


def kept_checkpoints_text(run_dir: Path) -> str:
    """What the Runs tab says about the checkpoints kept for other runs; empty when there are none."""
    dependents = checkpoint_dependents(run_dir)
    return "\n".join(f"{name}: kept whatever keep_last says, because {', '.join(users)} started from it"
                     for name, users in sorted(dependents.items()))
