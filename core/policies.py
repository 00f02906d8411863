"""The policies a project's runs trained: which folder holds each, whatever the method.

A method that trains a policy says how its runs leave one (`TrainingMethod.policy`): an SFT or DPO
checkpoint is a causal-LM folder, an RL checkpoint keeps the policy in `policy/` beside the value
model. A run's policy is its result: the newest checkpoint marked best (SFT and DPO mark the one with
the best validation figure), else its newest. Imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .methods import METHODS, method_for_kind

# The kinds of run that train a policy ("sft", "dpo", "ppo", "rloo", "grpo").
POLICY_RUN_KINDS = frozenset(kind for method in METHODS if method.policy is not None for kind in method.kinds)


def run_policy(store, project_path: str | Path, run: dict[str, Any]) -> tuple[int, Path] | None:
    """(step, policy folder) of a run of the project, None if its method trains no policy or it has
    no checkpoint left."""
    method = method_for_kind(run["kind"])
    if method is None or method.policy is None:
        return None
    rows = store.checkpoints(run["id"])[::-1]  # newest first
    for row in [r for r in rows if r["best"]] + rows:
        folder = Path(project_path) / row["path"]  # relative, or absolute outside the project
        if method.policy.folder:
            folder = folder / method.policy.folder
        if folder.is_dir():  # pruned checkpoints are gone
            return row["step"], folder
    return None


def trained_policies(store, project_path: str | Path, runs=None) -> list[tuple[dict[str, Any], int, Path]]:
    """(run, step, policy folder) of every run of the project that trained a policy and has a
    checkpoint left, newest first."""
    policies = []
    for run in runs if runs is not None else store.runs(newest_first=True, decode=True):
        found = run_policy(store, project_path, run)
        if found is not None:
            policies.append((run, *found))
    return policies


def trained_model(store, project_path: str | Path, run: dict[str, Any]) -> tuple[int, Path] | None:
    """(step, model folder) of what a run trained, to use elsewhere (Export model): a policy run's
    policy (run_policy), a reward-model run's best checkpoint (else its newest); None without one."""
    if run["kind"] in POLICY_RUN_KINDS:
        return run_policy(store, project_path, run)
    method = method_for_kind(run["kind"])
    if method is None:
        return None  # generation and other work trains nothing
    rows = store.checkpoints(run["id"])[::-1]
    for row in [r for r in rows if r["best"]] + rows:
        folder = Path(project_path) / row["path"]
        if (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
            return row["step"], folder
    return None
