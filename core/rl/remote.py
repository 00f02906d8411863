"""PPO's work for the app's child processes (core/runs/child.py runs each as
"rlhf_workbench.core.rl.remote:NAME"): each takes `sink` and `stop` as every piece of work does,
and imports torch only once it runs, in the child.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..events import Sink, StopFlag


def compare(project_path: str | Path, run_id: str, *, sink: Sink, stop: StopFlag, **kwargs: Any) -> dict[str, Any]:
    """Policy-vs-reference pairs of a PPO run for people to judge (see compare.py)."""
    from .compare import compare_with_reference

    return compare_with_reference(project_path, run_id, sink=sink, stop=stop, **kwargs)
