"""Entry points for PPO work a GUI hands to a child process: importing this module imports no
torch, so the parent can name these functions (to start a process on them) without loading it.
They speak core/child_protocol.py's protocol; app/child_work.py starts and waits on them.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from ..child_protocol import report_to


def compare_in_child(events: Any, cancel: Any, project_path: str | Path, run_id: str, **kwargs: Any) -> None:
    """compare.compare_with_reference in a spawned child, reporting on `events`, polling `cancel`."""
    from .compare import compare_with_reference

    report_to(events, cancel, partial(compare_with_reference, project_path, run_id, **kwargs))
