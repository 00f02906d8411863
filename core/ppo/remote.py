"""Entry points for PPO work a GUI hands to a child process: importing this module imports no
torch, so the parent can name these functions (to start a process on them) without loading it.

    events, cancel = ctx.Queue(), ctx.Event()           # ctx = multiprocessing.get_context("spawn")
    ctx.Process(target=compare_in_child, args=(events, cancel, project_path, run_id), kwargs=...).start()
    events.get() -> ("progress", done, total, message) ... then ("done", counts),
                    ("cancelled", message) or ("failed", message)

A process rather than a Pool: a queue for progress and an event for Cancel can only be handed to
a process when it starts, and a dead child (out of memory) is seen as dead instead of hanging
`apply` for ever.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any


def compare_in_child(events: Any, cancel: Any, project_path: str | Path, run_id: str, **kwargs: Any) -> None:
    """Run compare.compare_with_reference, reporting on `events` and polling `cancel` (an Event)."""
    from ..errors import Cancelled, WorkbenchError
    from .compare import compare_with_reference

    def progress(done: int, total: int, message: str | None = None) -> None:
        events.put(("progress", done, total, message))

    try:
        result = compare_with_reference(project_path, run_id, progress=progress, cancelled=cancel.is_set, **kwargs)
    except Cancelled as exc:
        events.put(("cancelled", str(exc)))
    except WorkbenchError as exc:
        events.put(("failed", str(exc)))
    except Exception as exc:  # noqa: BLE001 -- a bug: its traceback goes to stderr, one line to the person
        traceback.print_exc()
        events.put(("failed", f"{type(exc).__name__}: {exc}"))
    else:
        events.put(("done", result))
