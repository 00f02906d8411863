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
    """pair_scores.score_unjudged_pairs_at in a spawned child, in core/child_protocol.py's protocol."""
    from functools import partial

    from ..child_protocol import report_to
    from .pair_scores import score_unjudged_pairs_at

    report_to(events, cancel, partial(score_unjudged_pairs_at, project_path, run_id, **kwargs))
