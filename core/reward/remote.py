"""Entry points for work a GUI hands to a child process: importing this module imports no torch,
so the parent can name these functions (to pickle them) without loading torch itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def score_texts(model_path: str | Path, texts: list[Any]) -> list[float]:
    from .evaluate import score

    return score(model_path, texts)


def most_wrong_validation_pairs(checkpoint: str | Path, project_path: str | Path, *, k: int = 20) -> list[dict[str, Any]]:
    from .evaluate import most_wrong_validation_pairs_at

    return most_wrong_validation_pairs_at(checkpoint, project_path, k=k)


def score_pairs_in_child(events: Any, cancel: Any, project_path: str | Path, run_id: str | None = None, **kwargs: Any) -> None:
    """The target of a spawned process: pair_scores.score_unjudged_pairs, reporting on `events`
    (a queue) and polling `cancel` (an Event), as core.ppo.remote.compare_in_child does:
    ("progress", done, total, message) ..., then ("done", result), ("cancelled", message) or
    ("failed", message). A process rather than a Pool: a queue and an event can only be handed to
    a process when it starts, and a child that dies (out of memory) is seen to be dead."""
    import traceback

    from ..errors import Cancelled, WorkbenchError
    from .pair_scores import score_unjudged_pairs_at

    def progress(done: int, total: int, message: str | None = None) -> None:
        events.put(("progress", done, total, message))

    try:
        result = score_unjudged_pairs_at(project_path, run_id, progress=progress, cancelled=cancel.is_set, **kwargs)
    except Cancelled as exc:
        events.put(("cancelled", str(exc)))
    except WorkbenchError as exc:
        events.put(("failed", str(exc)))
    except Exception as exc:  # noqa: BLE001 -- a bug: its traceback goes to stderr, one line to the person
        traceback.print_exc()
        events.put(("failed", f"{type(exc).__name__}: {exc}"))
    else:
        events.put(("done", result))
