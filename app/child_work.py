"""Short-lived work in a spawned child process, waited on from a worker thread.

Loading a model (torch, transformers) happens in a child, never in the GUI process: importing torch
on a worker thread of a Qt process was seen to deadlock, the window stays responsive, and the
model's memory goes when the child ends. The child is one of the core's `remote` entry points
(core/reward/remote.py, core/ppo/remote.py), speaking core/child_protocol.py's protocol:
("progress", done, total, message) ..., then ("done", result), ("cancelled", message) or
("failed", message).
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from typing import Any

from rlhf_workbench.core.errors import Cancelled, WorkbenchError

from .tasks import TaskState

# How long the child gets to end by itself once it has answered or was cancelled.
CHILD_EXIT_S = 10.0


class ChildWork:
    """`target(events, cancel, *args, **kwargs)` in a spawned child.

    Started on the GUI thread (spawn's start-up swaps the main module for a moment, which must not
    race another start); `wait` is for a worker thread (run_task): it relays progress to the task
    and Cancel to the child, and returns the result or raises Cancelled or WorkbenchError (also
    when the child died without a word).
    """

    def __init__(self, target: Callable[..., None], *args: Any, what: str, **kwargs: Any):
        from rlhf_workbench.core.runners import _main_module_hidden

        mp = multiprocessing.get_context("spawn")
        self.what = what
        self.events, self.cancel = mp.Queue(), mp.Event()
        # daemon: the child goes with the window; it starts no processes of its own.
        self.process = mp.Process(
            target=target, args=(self.events, self.cancel, *args), kwargs=kwargs, name=f"rlhf-workbench-{what}",
            daemon=True,
        )
        # Kept from importing the app's main module again, as spawn otherwise does: it imports Qt.
        with _main_module_hidden():
            self.process.start()

    def wait(self, state: TaskState) -> Any:
        process, events = self.process, self.events
        try:
            while True:
                if state.cancelled():
                    self.cancel.set()
                try:
                    message = events.get(timeout=0.1)
                except queue.Empty:
                    if process.is_alive():
                        continue
                    try:  # it may have answered just before it ended
                        message = events.get(timeout=1.0)
                    except queue.Empty:
                        raise WorkbenchError(
                            f"The {self.what} process ended without an answer (exit code {process.exitcode}); "
                            "it may have run out of memory"
                        ) from None
                kind, *rest = message
                if kind == "progress":
                    state.progress(*rest)
                elif kind == "done":
                    return rest[0]
                elif kind == "cancelled":
                    raise Cancelled(rest[0])
                else:
                    raise WorkbenchError(rest[0])
        finally:
            process.join(CHILD_EXIT_S)
            if process.is_alive():
                process.kill()
                process.join()
            events.close()
