"""The reward model's work for the app's child processes (core/runs/child.py runs each as
"rlhf_workbench.core.reward.remote:NAME"): each takes `sink` and `stop` as every piece of work
does, and imports torch only once it runs, in the child.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..events import Sink, StopFlag


def score_texts(model_path: str | Path, texts: list[Any], *, sink: Sink, stop: StopFlag) -> list[float]:
    """The reward of each text (Score a text)."""
    from .evaluate import score

    return score(model_path, texts)


def most_wrong_validation_pairs(checkpoint: str | Path, project_path: str | Path, *, k: int = 20, sink: Sink,
                                stop: StopFlag) -> list[dict[str, Any]]:
    """The validation pairs the checkpoint gets most wrong (Most wrong validation pairs)."""
    from .evaluate import most_wrong_validation_pairs_at

    return most_wrong_validation_pairs_at(checkpoint, project_path, k=k)


def score_pairs(project_path: str | Path, run_id: str | None = None, *, sink: Sink, stop: StopFlag,
                **kwargs: Any) -> dict[str, Any]:
    """Scores the pairs nobody has judged (the Label tab's least-sure queue); see pair_scores.py."""
    from .pair_scores import score_unjudged_pairs_at

    return score_unjudged_pairs_at(project_path, run_id, sink=sink, stop=stop, **kwargs)
