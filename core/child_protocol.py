"""How work in a short-lived child process talks to the GUI that started it (torch-free).

The child puts ("progress", done, total, message) ... on a queue, then one of ("done", result),
("cancelled", message) or ("failed", message), and polls an Event for Cancel. app/child_work.py
is the other end. A process rather than a Pool: a queue and an event can only be handed to a
process when it starts, and a child that dies (out of memory) is seen to be dead instead of
hanging `apply` for ever.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any


def report_to(events: Any, cancel: Any, work: Callable[..., Any]) -> None:
    """Runs `work(progress=, cancelled=)` and reports its progress and its end on `events`."""
    from .errors import Cancelled, WorkbenchError

    def progress(done: int, total: int, message: str | None = None) -> None:
        events.put(("progress", done, total, message))

    try:
        result = work(progress=progress, cancelled=cancel.is_set)
    except Cancelled as exc:
        events.put(("cancelled", str(exc)))
    except WorkbenchError as exc:
        events.put(("failed", str(exc)))
    except Exception as exc:  # noqa: BLE001 -- a bug: its traceback goes to stderr, one line to the person
        traceback.print_exc()
        events.put(("failed", f"{type(exc).__name__}: {exc}"))
    else:
        events.put(("done", result))
