"""Models a project's runs made, as a method's settings name them: 'latest' (the newest finished
reward model), a run id, or a folder. PPO scores with one; scoring unlabelled pairs too; the
methods to come (RLOO, GRPO, evaluation) will as well. Imports no torch.
"""

from __future__ import annotations

from pathlib import Path

from ..models import ModelError, resolve_model
from ..runs.records import run_dir_of
from .dependents import PINNED_MODELS_FILE  # noqa: F401 -- named here by rl/train.py and run_deletion.py

LATEST_REWARD_MODEL = "latest"


def resolve_reward_model(spec: str, project=None) -> Path:
    """'latest' is the best checkpoint of the project's newest finished reward run; a run id, that
    run's best; anything else, what resolve_model makes of it."""
    text = str(spec).strip()
    if project is not None and text == LATEST_REWARD_MODEL:
        text = latest_reward_run(project)
    if project is not None and project.store.run(text) is not None:
        return _reward_run_checkpoint(project, text)
    if text == LATEST_REWARD_MODEL:
        raise ModelError("reward_model: 'latest' needs a project; give a reward-model folder")
    return resolve_model(text)


def latest_reward_run(project) -> str:
    """The id of the project's newest finished reward-model run that has a checkpoint: what
    'latest' means now."""
    for run in project.store.runs(newest_first=True, decode=True):
        if run["kind"] == "reward" and run["status"] == "finished" and run_checkpoint(project, run) is not None:
            return run["id"]
    raise ModelError(
        "reward_model: 'latest' found no finished reward-model run with a checkpoint in this project; "
        "train one in the Reward model tab (or `rlhf-workbench train-rm`) first"
    )


def _reward_run_checkpoint(project, run_id: str) -> Path:
    run = project.store.run(run_id)
    if run is None or run["kind"] != "reward":
        raise ModelError(f"reward_model: run {run_id} is not a reward-model run")
    folder = run_checkpoint(project, run)
    if folder is None:
        raise ModelError(f"reward_model: run {run_id} has no checkpoint yet")
    return folder


def run_checkpoint(project, run) -> Path | None:
    """The checkpoint a run leaves: its best, else its last; None before its first."""
    from .checkpoints import best_checkpoint, latest_checkpoint

    run_dir = run_dir_of(project, run)
    return best_checkpoint(run_dir) or latest_checkpoint(run_dir)


# Settings that name a model folder, and what else they may name (a run, 'latest', 'demo'). Checked
# before a run is created, so that a typo or a wrong folder is a one-line refusal, not a failed run
# left behind on each try.
_MODEL_SETTINGS = ("base_model", "policy", "reward_model", "gold_model")


def check_model_settings(config, project=None) -> None:
    """Raises ModelError naming the setting for one that names no usable model folder: missing, a
    file, a folder without config.json, or a config.json that is not a model's. Torch-free and
    quick (the app calls it on the GUI thread); what it cannot tell without loading (the weights
    themselves) the run says when it loads them."""
    for name in _MODEL_SETTINGS:
        spec = str(getattr(config, name, None) or "").strip()
        if not spec or spec in ("demo", LATEST_REWARD_MODEL):
            continue
        if project is not None and project.store.run(spec) is not None:
            continue  # a run of this project: resolved when the run starts
        path = Path(spec).expanduser()
        if path.is_dir() and not (path / "config.json").is_file() and (path / "policy").is_dir():
            path = path / "policy"  # an RL checkpoint: its policy is what loads
        try:
            folder = resolve_model(path if path.exists() else spec)
        except ModelError as exc:
            raise ModelError(f"{name}: {exc}") from None
        _check_config_json(name, folder)


def _check_config_json(name: str, folder: Path) -> None:
    import json

    path = folder / "config.json"
    if not path.is_file():
        return  # a LoRA adapter folder: its base is named in adapter_config.json
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{name}: {path}: is not valid JSON ({exc}); the file is damaged or not a model's config") from None
    except OSError as exc:
        raise ModelError(f"{name}: {path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or not data.get("model_type"):
        raise ModelError(f"{name}: {path}: names no model_type, so transformers cannot tell which model this is")

