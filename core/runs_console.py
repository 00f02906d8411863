"""The `runs` command: a project's runs, newest first, comparing some (core/experiments.py),
exporting their figures (core/run_export.py) and deleting one (core/run_deletion.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .errors import WorkbenchError
from .experiments import ABSENT, Comparison, compare_runs, comparison_text
from .methods import method_for_kind
from .project import Project
from .run_deletion import delete_run, plan_deletion
from .run_export import FORMATS, export_runs
from .runs.records import INTERRUPTED, shown_status
from .terminal import for_terminal


def runs_command(project_path: Path, *, delete: str | None, yes: bool, as_json: bool,
                 compare: list[str] | None = None, export: list[str] | None = None, to: Path | None = None,
                 export_format: str = "both") -> int:
    if (export is None) != (to is None):
        raise WorkbenchError("--export RUN_ID ... and --to DIR go together" if export is not None
                             else "--to names where --export writes; add --export RUN_ID ...")
    with Project.open(project_path) as project:
        if export is not None:
            formats = FORMATS if export_format == "both" else (export_format,)
            report = export_runs(project, export, to, formats=formats)
            if as_json:
                print(json.dumps({"folder": str(report.folder), "replaced": report.replaced, "runs": {
                    run_id: {"values": report.values[run_id], "files": [str(path) for path in files]}
                    for run_id, files in report.files.items()}}, indent=2))
            else:
                print(for_terminal("\n".join(report.lines()), keep_newlines=True))
                if "tensorboard" in formats:
                    print(f"view them with: tensorboard --logdir {shlex.quote(str(report.folder))}")
            return 0
        if compare is not None:
            comparison = compare_runs(project, compare)
            print(json.dumps(_comparison_json(comparison), indent=2) if as_json
                  else for_terminal(comparison_text(comparison), keep_newlines=True))
            return 0
        if delete is None:
            return _list(project, as_json)
        plan = delete_run(project, delete) if yes else plan_deletion(project, delete)
    if as_json:
        print(json.dumps({
            "run": plan.run["id"], "deleted": yes, "folder": str(plan.folder) if plan.folder else None,
            "folder_bytes": plan.folder_bytes, "dependents": plan.dependents, "compare_pairs": plan.compare_pairs,
        }, indent=2))
    else:
        print(for_terminal(plan.describe(), keep_newlines=True))
        print(f"deleted run {plan.run['id']}" if yes else "nothing deleted yet: add --yes to delete it")
    return 0


def _list(project: Project, as_json: bool) -> int:
    runs = [{**run, "status": shown_status(project, run)} for run in project.store.runs(newest_first=True, decode=True)]
    if as_json:
        print(json.dumps([{key: run.get(key) for key in ("id", "kind", "name", "status", "created_at", "finished_at",
                                                          "error", "summary")} for run in runs], indent=2))
        return 0
    if not runs:
        print(f"{project.name}: no runs yet")
    interrupted = [run for run in runs if run["status"] == INTERRUPTED]
    for run in runs:
        error = (run.get("error") or "").splitlines()
        if run["status"] == INTERRUPTED and not error:
            error = ["its process is gone; resume it"]
        # Run names are typed by people and errors quote data: neither may drive the terminal.
        print(for_terminal(f"{run['id']:<26} {run['kind']:<8} {run['status']:<9} {run['created_at'][:19]}  {run['name']}"
                           + (f"  ({error[0]})" if error else "")))
    for run in interrupted:
        method = method_for_kind(run["kind"])
        if method is not None:
            print(f"resume {run['id']} with: rlhf-workbench {method.command} {shlex.quote(str(project.path))} "
                  f"--resume {run['id']}")
    return 0


def _comparison_json(comparison: Comparison) -> dict:
    """The comparison's tables as JSON: per figure and per setting, each run's value by run id
    (a figure a run lacks is null; a setting its method does not have is left out)."""
    ids = [run.id for run in comparison.runs]
    validation = comparison.validation
    return {
        "runs": [{"id": run.id, "name": run.name, "kind": run.kind} for run in comparison.runs],
        "final_figures": {name: dict(zip(ids, values)) for name, values in comparison.final},
        "same_validation_pairs": validation.same,
        "validation_pairs": {run.id: len(validation.val_ids[run.label]) for run in comparison.runs
                             if run.label in validation.val_ids},
        "shared_validation_pairs": validation.shared,
        "settings_that_differ": {
            name: {run_id: value for run_id, value in zip(ids, values) if value is not ABSENT}
            for name, values in comparison.differences
        },
    }
