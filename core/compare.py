"""Policy against reference, for people to judge: did training really make the policy better?

A reward model can be fooled (reward hacking): the reward curve climbs while the answers get no
better, or worse; DPO can raise its implicit reward's accuracy while the writing degrades. People
are the check. `compare_with_reference` samples one response from a run's policy (core/policies.py:
an RL run's latest checkpoint, an SFT or DPO run's best) and one from its reference (the model the
run started from) for the same prompts, and adds each pair to the project with origin
`ppo-vs-ref:<run id>` (the name from when PPO was the only method; kept, so that older projects' pairs
count), response A the policy's and B the reference's. The Label tab shows them like any other pair
(on a random side, so nobody knows which is which), and `store.policy_win_rates()` counts how often
people preferred the policy.

The method says how (`TrainingMethod.policy.sampling`): an RL run's policy answers the run's own
prompts (its `prompt_origin`) with the run's temperature, top_p and max_new_tokens; an SFT or DPO
run, which samples nothing while it trains, answers every prompt of the project with the Generate
dialog's defaults. Prompts not compared for this run before come first, and among them the held-out
ones first (no run trained on them, so the verdicts say how the policy does on prompts it never
saw, as the Evaluate tab's figures do); each part in a seeded random order.
Both models sample with the same seed, so that any difference comes from the weights. Identical
responses are not a pair (there is nothing to judge): they are skipped and counted.

Nothing is written until both models have answered; then the pairs go in through BulkWriter, in
one transaction, like any import (a pair already in the project is not added twice).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from .bulk import BulkWriter
from .errors import Stopped, WorkbenchError
from .events import Progress, Sink, StopFlag
from .generate import sample_from
from .methods import method_for_kind
from .policies import run_policy
from .project import Project
from .records import conversation_from_json
from .store.model_pairs import POLICY_VS_POLICY, POLICY_VS_REFERENCE
from .training.config import config_from_dict

# Prompts per generate call: how often progress is reported and stop() is looked at.
CHUNK = 16


def compare_origin(run_id: str) -> str:
    return POLICY_VS_REFERENCE + run_id


def compare_with_reference(
    project_path: str | Path,
    run_id: str,
    *,
    n_prompts: int = 32,
    seed: int = 0,
    sink: Sink | None = None,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Add up to `n_prompts` policy-vs-reference pairs of run `run_id` (one that trains a policy:
    SFT, DPO, PPO, RLOO, GRPO) to the project, reporting Progress into `sink`.

    Returns counts: prompts (sampled), heldout (how many of them are held-out prompts), pairs_added,
    pairs_existing (already in the project), identical (skipped: both models wrote the same text),
    step (of the checkpoint), origin.
    Raises WorkbenchError when the run trains no policy, has no checkpoint or no prompts, and
    Stopped (nothing added) when `stop()` turns true.
    """
    if n_prompts < 1:
        raise WorkbenchError(f"n_prompts: must be at least 1, not {n_prompts}")
    report = (lambda done, total, message: sink(Progress(done, total, message))) if sink else (lambda *_: None)
    stopped = stop or (lambda: False)
    with Project.open(project_path) as project:
        sampling, policy_dir, step = _run_policy(project, run_id)
        origin = compare_origin(run_id)
        prompts, heldout = _pick_prompts(project, sampling["prompt_origin"], origin, n_prompts, seed)

    total = 2 * len(prompts)
    report(0, total, "Loading the policy…")
    responses = []
    for which, spec in (("policy", str(policy_dir)), ("reference", sampling["reference"])):
        responses.append(
            _sample(which, spec, prompts, sampling, seed, lambda done, which=which: report(
                done + (len(prompts) if which == "reference" else 0), total,
                f"Sampling from the {which}: {done} of {len(prompts)}",
            ), stopped)
        )
        if which == "policy":
            report(len(prompts), total, "Loading the reference…")

    if stopped():
        raise Stopped("The comparison was cancelled; nothing was added")
    report(total, total, "Adding the pairs…")
    counts = _add_pairs(project_path, prompts, responses, origin, f"{run_id}: policy vs reference",
                        {"run": run_id, "step": step, "a": "policy", "b": "reference", "reference": sampling["reference"]})
    return {"origin": origin, "step": step, "heldout": heldout, **counts}


def _add_pairs(project_path, prompts: list, responses: list[list[str]], origin: str, source_name: str,
               meta: dict[str, Any]) -> dict[str, int]:
    """Two models' responses to the same prompts as pairs of `origin` (A the first's), in one
    transaction; the same text twice is no pair. Counts: prompts, pairs_added, pairs_existing, identical."""
    kept = [(p, a, b) for p, a, b in zip(prompts, *responses) if a != b]
    with Project.open(project_path) as project:
        store = project.store
        with store.transaction():
            writer = BulkWriter(store, import_id=None, source="model", source_name=source_name)
            for prompt, a, b in kept:
                writer.add_pair(prompt, a, b, origin=origin, meta=meta)
            writer.flush()
    return {
        "prompts": len(prompts),
        "pairs_added": writer.counts.pairs_added,
        "pairs_existing": writer.counts.pairs_existing,
        "identical": len(prompts) - len(kept),
    }


def _run_policy(project: Project, run_id: str) -> tuple[dict[str, Any], Path, int]:
    """How the run's method samples its policy and reference, the policy's folder, and its step."""
    run = project.store.run(run_id)
    if run is None:
        raise WorkbenchError(f"{project.path}: has no run {run_id!r}")
    method = method_for_kind(run["kind"])
    if method is None or method.policy is None:
        raise WorkbenchError(f"Run {run_id} is a {run['kind']} run; it trains no policy to compare")
    config = config_from_dict(method.config, run["config"], source=f"run {run_id}")
    found = run_policy(project.store, project.path, run)
    if found is None:
        if not project.store.checkpoints(run_id):
            raise WorkbenchError(f"Run {run_id} has no checkpoint yet: there is no trained policy to compare")
        raise WorkbenchError(f"Run {run_id}: none of its checkpoints has its policy folder any more (deleted?)")
    step, folder = found
    return method.policy.sampling(config), folder, step


def _pick_prompts(project: Project, origin_prefix: str | None, origin: str, n: int, seed: int) -> tuple[list, int]:
    """n of the run's prompts and how many of them are held out: those not yet compared for this run
    first, held-out ones before the rest among the fresh and among the compared; each part in a
    seeded random order."""
    candidates = project.store.prompt_ids_for_comparison(origin_prefix, origin)
    if not candidates:
        where = f"of pairs whose origin starts with {origin_prefix!r}" if origin_prefix else "in this project"
        raise WorkbenchError(f"There are no prompts {where} to compare on")
    rng = random.Random(seed)
    heldout = set(project.store.heldout_prompt_ids())
    # A fresh prompt of any kind before one compared already: the same seed answers a compared
    # prompt the same way again, a pair the project has, so it would add nothing.
    parts = [[i for i, done in candidates if done == compared and (i in heldout) == held]
             for compared in (False, True) for held in (True, False)]
    for part in parts:
        rng.shuffle(part)
    chosen = [i for part in parts for i in part][:n]
    messages = project.store.prompt_messages(chosen)
    return [conversation_from_json(messages[i]) for i in chosen], sum(i in heldout for i in chosen)


def _sample(which: str, spec: str, prompts: list, sampling: dict[str, Any], seed: int, on_sampled, stop) -> list[str]:
    """One response per prompt from the model `spec` (the policy or the reference), with the run's sampling."""
    settings = {k: v for k, v in sampling.items() if k not in ("reference", "prompt_origin")}
    settings.update(batch_size=CHUNK, seed=seed)
    return sample_from(spec, prompts, what=f"the {which}", settings=settings, on_sampled=on_sampled, stop=stop,
                       cancel_message="The comparison was cancelled; nothing was added")


# -- any two policies ------------------------------------------------------------------------------


def policy_origin(label_a: str, label_b: str) -> str:
    return f"{POLICY_VS_POLICY}{label_a} vs {label_b}"


def compare_policies(
    project_path: str | Path,
    policy_a: str,
    policy_b: str,
    *,
    n_prompts: int = 32,
    seed: int = 0,
    sink: Sink | None = None,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Add up to `n_prompts` pairs of two policies' responses to the same prompts, for people to judge
    (origin `policies:<a> vs <b>`, response A policy_a's; the Label tab's policies queue offers them on
    random sides). A policy is a run id (its trained policy, core/policies.py) or a model (a folder,
    a cached model name, 'demo'). The prompts are the held-out ones when the project keeps some
    (no run trained on them), else any. Both sample with the first RL run's sampling among the two
    (else the Generate dialog's defaults) and the same seed. The verdicts feed store.policy_verdicts
    and so the Bradley-Terry ranking (core/evaluation.py's `policy_ranking`).

    Returns counts as compare_with_reference does, plus `a`, `b` (the names the ranking uses) and
    `heldout` (whether the prompts were held-out ones)."""
    from .generate import GenerateConfig, model_label

    if n_prompts < 1:
        raise WorkbenchError(f"n_prompts: must be at least 1, not {n_prompts}")
    report = (lambda done, total, message: sink(Progress(done, total, message))) if sink else (lambda *_: None)
    stopped = stop or (lambda: False)
    with Project.open(project_path) as project:
        sides, sampling = [], None
        for spec in (policy_a.strip(), policy_b.strip()):
            run = project.store.run(spec)
            if run is not None:
                run_sampling, folder, _ = _run_policy(project, spec)
                sampling = sampling or (run_sampling if run["kind"] in ("ppo", "rloo", "grpo") else None)
                sides.append((spec, str(folder)))
            elif spec:
                sides.append((model_label(spec, project.path), spec))
            else:
                raise WorkbenchError("a policy to compare is empty: give a run id or a model")
        if sides[0][0] == sides[1][0]:
            raise WorkbenchError(f"both policies are {sides[0][0]}: compare two different ones")
        if sampling is None:
            defaults = GenerateConfig()
            sampling = dict(max_new_tokens=defaults.max_new_tokens, temperature=defaults.temperature, top_p=defaults.top_p,
                            max_prompt_length=defaults.max_prompt_length, device=defaults.device,
                            precision=defaults.precision, trust_remote_code=False)
        origin = policy_origin(sides[0][0], sides[1][0])
        heldout = project.store.heldout_prompt_ids()
        ids = heldout or [prompt_id for prompt_id, _ in project.store.prompt_ids_for_comparison(None, origin)]
        if not ids:
            raise WorkbenchError("There are no prompts in this project to compare on")
        rng = random.Random(seed)
        ids = list(ids)
        rng.shuffle(ids)
        chosen = ids[:n_prompts]
        messages = project.store.prompt_messages(chosen)
        prompts = [conversation_from_json(messages[i]) for i in chosen]

    total = 2 * len(prompts)
    responses = []
    for k, (label, spec) in enumerate(sides):
        report(k * len(prompts), total, f"Loading {label}…")
        responses.append(_sample(label, spec, prompts, sampling, seed, lambda done, k=k, label=label: report(
            k * len(prompts) + done, total, f"Sampling {label}: {done} of {len(prompts)}"), stopped))
    if stopped():
        raise Stopped("The comparison was cancelled; nothing was added")
    report(total, total, "Adding the pairs…")
    counts = _add_pairs(project_path, prompts, responses, origin, f"{sides[0][0]} vs {sides[1][0]}",
                        {"a": sides[0][0], "b": sides[1][0], "a_spec": sides[0][1], "b_spec": sides[1][1]})
    return {"origin": origin, "a": sides[0][0], "b": sides[1][0], "heldout": bool(heldout), **counts}
