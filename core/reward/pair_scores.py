"""What a reward model thinks of the pairs nobody has judged: the Label tab's "least sure" queue.

A pair's score is p = sigmoid(r_a - r_b), the model's probability that response A is the better
one (the Bradley-Terry model it was trained under). Pairs with p near 0.5 are the ones it cannot
tell apart, where a person's verdict teaches the next reward model the most (active learning);
the queue offers them first (core/labeling.py).

Only pairs without any person's verdict are scored (a labelled pair already has its answer), and
pairs the run has scored before are left alone, so scoring again after a Cancel, or after an
import, carries on where it stopped. Scores are written a batch at a time, one transaction each:
a Cancel keeps every batch written before it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import Stopped, WorkbenchError
from ..events import Progress, Sink, StopFlag
from ..project import Project
from ..records import conversation_from_json
from .evaluate import score_with

# Pairs per transaction: how often progress is reported and stop() is looked at.
BATCH_PAIRS = 64
DEFAULT_MAX_LENGTH = 1024


def reward_run_to_score_with(project: Project, run_id: str | None = None) -> str:
    """`run_id` if it is a reward-model run; without one, the newest finished reward-model run
    with a checkpoint (what PPO's reward_model = "latest" picks)."""
    from ..models import ModelError
    from ..training.run_models import latest_reward_run

    if run_id is not None:
        run = project.store.run(run_id)
        if run is None or run["kind"] != "reward":
            raise WorkbenchError(f"run {run_id} is not a reward-model run of this project")
        return run_id
    try:
        return latest_reward_run(project)
    except ModelError:
        raise WorkbenchError(
            "There is no finished reward-model run with a checkpoint in this project to score pairs with; "
            "train one in the Reward model tab (or `rlhf-workbench train-rm`) first"
        ) from None


def score_unjudged_pairs(
    project: Project,
    run_id: str | None = None,
    *,
    batch_pairs: int = BATCH_PAIRS,
    batch_size: int = 16,
    device: str = "auto",
    sink: Sink | None = None,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Score, with reward run `run_id`'s best checkpoint (default: the latest finished run), every
    pair no person has given a verdict that the run has not scored yet.

    Returns run_id, run_name, checkpoint, scored (now), total (pairs with a score of this run).
    Reports Progress into `sink`; raises Stopped, keeping the batches already written, when `stop()` turns true.
    """
    from ..models import load_reward_model
    from ..training.device import resolve_device
    from ..training.run_models import resolve_reward_model

    report = sink or (lambda event: None)
    stopped = stop or (lambda: False)
    store = project.store
    run_id = reward_run_to_score_with(project, run_id)
    run = store.run(run_id)
    folder = resolve_reward_model(run_id, project)
    # Rendered and truncated as the run's training pairs were, so p means what training meant.
    max_length = int(run["config"].get("max_length") or DEFAULT_MAX_LENGTH)
    ids = store.pair_ids_to_score(run_id)
    result = {"run_id": run_id, "run_name": run["name"], "checkpoint": str(folder), "scored": 0}
    if ids:
        report(Progress(0, len(ids), f"Loading the reward model of run {run['name']}…"))
        model, tokenizer = load_reward_model(folder, trainable=False)
        target = resolve_device(device)
        model.to(target)
        for start in range(0, len(ids), batch_pairs):
            if stopped():
                raise Stopped(
                    f"Scoring was cancelled; the {result['scored']:,} pairs scored before are kept"
                )
            rows = store.pair_texts(ids[start : start + batch_pairs])
            texts = []
            for _pair_id, messages, a, b in rows:
                prompt = conversation_from_json(messages)
                texts += [(prompt, a), (prompt, b)]
            rewards = torch.tensor(score_with(model, tokenizer, texts, max_length=max_length,
                                              batch_size=batch_size, device=target))
            p = torch.sigmoid(rewards[0::2] - rewards[1::2]).tolist()
            store.save_pair_scores(run_id, zip((row[0] for row in rows), p))
            result["scored"] += len(rows)
            report(Progress(result["scored"], len(ids), f"Scored {result['scored']:,} of {len(ids):,} pairs"))
        del model
    result["total"] = store.pair_score_count(run_id)
    return result


def score_unjudged_pairs_at(project_path: str | Path, run_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """score_unjudged_pairs for a project given by its folder: work for a child process (the Label
    tab's Score button runs it so, as "rlhf_workbench.core.reward.pair_scores:score_unjudged_pairs_at")."""
    with Project.open(project_path) as project:
        return score_unjudged_pairs(project, run_id, **kwargs)
