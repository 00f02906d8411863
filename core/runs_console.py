"""The `runs` command: a project's runs, newest first, and deleting one (core/run_deletion.py)."""

from __future__ import annotations

import json
from pathlib import Path

from .project import Project
from .run_deletion import delete_run, plan_deletion


def runs_command(project_path: Path, *, delete: str | None, yes: bool, as_json: bool) -> int:
    with Project.open(project_path) as project:
        if delete is None:
            return _list(project, as_json)
        plan = delete_run(project, delete) if yes else plan_deletion(project, delete)
    if as_json:
        print(json.dumps({
            "run": plan.run["id"], "deleted": yes, "folder": str(plan.folder) if plan.folder else None,
            "folder_bytes": plan.folder_bytes, "dependents": plan.dependents, "compare_pairs": plan.compare_pairs,
        }, indent=2))
    else:
        print(plan.describe())
        print(f"deleted run {plan.run['id']}" if yes else "nothing deleted yet: add --yes to delete it")
    return 0


def _list(project: Project, as_json: bool) -> int:
    runs = project.store.runs(newest_first=True, decode=True)
    if as_json:
        print(json.dumps([{key: run.get(key) for key in ("id", "kind", "name", "status", "created_at", "finished_at",
                                                          "error", "summary")} for run in runs], indent=2))
        return 0
    if not runs:
        print(f"{project.name}: no runs yet")
    for run in runs:
        error = (run.get("error") or "").splitlines()
        print(f"{run['id']:<26} {run['kind']:<8} {run['status']:<9} {run['created_at'][:19]}  {run['name']}"
              + (f"  ({error[0]})" if error else ""))
    return 0
