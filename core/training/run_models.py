"""Models a project's runs made, as a method's settings name them: 'latest' (the newest finished
reward model), a run id, or a folder. PPO scores with one; scoring unlabelled pairs too; the
methods to come (RLOO, GRPO, evaluation) will as well. Imports no torch.
"""

from __future__ import annotations

from pathlib import Path

from ..models import ModelError, resolve_model
from ..runs.records import run_dir_of

LATEST_REWARD_MODEL = "latest"
# In a run's folder: the models it started with, `latest` resolved to a run id, so that a resumed
# run goes on with them (PPO writes it; deleting a run reads it to name the runs that used it).
PINNED_MODELS_FILE = "models.json"


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
