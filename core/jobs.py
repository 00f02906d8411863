"""How long work runs and reports: one path for the GUI, the CLI and the tests.

A job is a plain function, named by its import path so that a spawned child can find it:

    def run(config, ctx: RunContext, sink: Sink, stop: StopFlag) -> dict:
        ...emit Metric / Sample / Progress / Log / Checkpoint events into sink...
        ...poll stop() between steps; when it is set, checkpoint and return early...
        return {"final figures": ...}

It returns a summary (plain numbers and strings, stored with the run and shown in the Runs tab;
`"stopped": True` when it ended because stop() was set). It raises `JobFailed` for failures it
understands (NaN loss, out of memory, bad config: message + hint) and may raise anything else
for bugs; either way the run is marked failed with the message, never a traceback in the GUI.

The runners (below) own everything around the job: the run's row in the database (created,
running, finished / failed / cancelled, with times, error and summary), persisting Metric and
Sample events from the job's own process, and emitting the final Finished or Failed event.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import WorkbenchError
from .project import Project


class JobFailed(WorkbenchError):
    """A failure the job understands: `message` says what happened, `hint` what to try."""

    def __init__(self, message: str, *, hint: str | None = None, step: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.step = step


@dataclass(frozen=True)
class RunContext:
    """Where a job runs: its project, its run id and its folder (`<project>/runs/<run_id>/`, which
    exists). `resume` asks the job to continue from the last complete checkpoint in run_dir."""

    project_path: Path
    run_id: str
    run_dir: Path
    resume: bool = False

    def open_project(self) -> Project:
        """The job's own connection (a child process cannot share the parent's)."""
        return Project.open(self.project_path)
