"""Deleting a run: what it would affect, then its records and its folder.

A run's checkpoints are most of a project's disk (a PPO checkpoint holds two models and their
optimizer state), and experiments leave failed and abandoned runs behind. Deleting one removes
its database records (the run, its figures, samples, checkpoint records and pair scores) in one
transaction, then its folder. What people made of it stays: pairs and verdicts, including the
pairs "Compare with reference" drew from a PPO run.

Refused for a run a process is executing (its lock is held). Other runs that started from it
(a PPO run trained against its reward model, a run whose policy or model is one of its
checkpoints) are named first: they keep their own checkpoints, but cannot be resumed without it.
The folder is removed only where it lies inside the project's runs folder; a run recorded
elsewhere has its records forgotten and its folder left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WorkbenchError
from .project import Project
from .runs.records import run_dir_of, run_is_executing
from .training.run_models import PINNED_MODELS_FILE


@dataclass(frozen=True)
class DeletionPlan:
    run: dict[str, Any]
    folder: Path | None  # what will be removed: None when missing or outside the runs folder
    folder_bytes: int
    left_folder: Path | None  # a folder outside the project's runs folder, left in place
    dependents: list[str] = field(default_factory=list)  # "<run id> (<what it uses>)"
    compare_pairs: int = 0  # pairs 'Compare with reference' made from this run; they stay

    def describe(self) -> str:
        """What deleting does, in sentences a confirmation can show."""
        run = self.run
        named = f"{run['name']} ({run['id']}, " if run["name"] != run["id"] else f"{run['id']} ("
        lines = [f"Run {named}{run['kind']}, {run['status']})."]
        if self.folder is not None:
            lines.append(f"Its folder goes: {self.folder} ({_size(self.folder_bytes)}: checkpoints, log, config).")
        elif self.left_folder is not None:
            lines.append(f"Its folder {self.left_folder} is outside the project's runs folder and stays.")
        lines.append("Its curves, samples and checkpoint records go; pairs and verdicts stay.")
        if self.compare_pairs:
            lines.append(
                f"The {self.compare_pairs:,} pairs 'Compare with reference' made from it stay, with their verdicts, "
                "but the Runs tab shows no win rate for it any more."
            )
        if self.dependents:
            lines.append(
                "Runs that started from it keep their own checkpoints but cannot be resumed without it: "
                + ", ".join(self.dependents) + "."
            )
        return "\n".join(lines)


def plan_deletion(project: Project, run_id: str) -> DeletionPlan:
    """What deleting `run_id` would do; raises WorkbenchError for no such run or a running one."""
    store = project.store
    run = store.run(run_id)
    if run is None:
        raise WorkbenchError(f"{project.path}: has no run {run_id!r}")
    run_dir = run_dir_of(project, run)
    if run_is_executing(run_dir):
        raise WorkbenchError(f"Run {run_id} is running; stop it before deleting it")
    inside = _is_within(run_dir, project.runs_dir) and run_dir.resolve() != project.runs_dir.resolve()
    exists = run_dir.is_dir()
    compare = store.policy_win_rates().get(run_id, {}).get("pairs", 0)  # only RL runs have any
    return DeletionPlan(
        run=run,
        folder=run_dir if exists and inside else None,
        folder_bytes=_folder_bytes(run_dir) if exists and inside else 0,
        left_folder=run_dir if exists and not inside else None,
        dependents=list(_dependents(project, run, run_dir)),
        compare_pairs=compare,
    )


def delete_run(project: Project, run_id: str) -> DeletionPlan:
    """Deletes the run's records, then its folder; returns the plan it carried out.

    Records first: a crash between the two leaves a folder nobody refers to, never a run whose
    folder is half gone. A folder that cannot be removed entirely is named in the error.
    """
    plan = plan_deletion(project, run_id)
    project.store.delete_run(run_id)
    if plan.folder is not None:
        failures: list[str] = []

        def note(_function, path, error) -> None:  # onerror gets exc_info, onexc the exception
            failures.append(f"{path}: {error[1] if isinstance(error, tuple) else error}")

        shutil.rmtree(plan.folder, **({"onexc": note} if sys.version_info >= (3, 12) else {"onerror": note}))
        if failures:
            raise WorkbenchError(
                f"Run {run_id} is deleted from the project, but its folder {plan.folder} could not be removed "
                f"entirely ({failures[0]}" + (f", and {len(failures) - 1} more" if len(failures) > 1 else "")
                + "); remove what is left by hand"
            )
    return plan


def _dependents(project: Project, run: dict[str, Any], run_dir: Path) -> Iterator[str]:
    for other in project.store.runs(decode=True):
        if other["id"] == run["id"]:
            continue
        config = dict(other.get("config") or {})
        pinned = run_dir_of(project, other) / PINNED_MODELS_FILE
        if pinned.is_file():
            try:
                config.update(json.loads(pinned.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                pass
        uses = [
            key for key, value in sorted(config.items())
            if isinstance(value, str) and (value.strip() == run["id"] or _names_path_within(project, value, run_dir))
        ]
        if uses:
            yield f"{other['id']} ({', '.join(key.replace('_', ' ') for key in uses)})"


def _names_path_within(project: Project, value: str, folder: Path) -> bool:
    text = value.strip()
    if not text or ("/" not in text and os.sep not in text):
        return False
    path = Path(text).expanduser()
    return _is_within(path if path.is_absolute() else project.path / path, folder)


def _is_within(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # unreadable, or a symlink loop
        return False


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _size(n: int) -> str:
    if n < 1000:
        return f"{n:,} bytes"
    value, unit = next((n / 1000**k, u) for k, u in ((3, "GB"), (2, "MB"), (1, "KB")) if n >= 1000**k)
    return f"{value:.1f} {unit}"
