"""Evaluate: policies side by side on prompts no run trained on.

A run's own curves say how its reward climbed on the prompts it trained on. Whether the policy got
better is asked elsewhere: on **held-out prompts** (store/evaluations.py: a set the project keeps
out of every run's training), each chosen policy (a run's trained policy, the reference, any model
folder) answers the same prompts with the same random numbers, and for each policy we report:

- **proxy**: the mean score of its answers under the reward model the run trained against (an RL
  run's own; for the others, the evaluation's `reward_model`), the figure training pushed up;
- **gold**: the true goal where one is known: on the demo, the share of answers that follow their
  prompt's rule (demo.follows_demo_rule, as bench/ppo_demo.py measures); on any project, the mean
  score of a reward model the person picks as the judge (one trained on more or other labels). The
  result says which gold it was. Proxy up and gold down is over-optimisation (Gao et al. 2022);
- **KL** to the reference: per response, the sum over its tokens of log pi(y_t) - log ref(y_t) at
  the sampling temperature (the k1 estimate RL logs as objective/kl), averaged; only where the
  policy and the reference share a tokenizer;
- **length** (tokens and words) and **distinct-2** (stats.distinct_n: a policy that found one
  answer the reward model likes writes it for everything);
- the **human win rate** against the reference, with a 95% Wilson interval, from people's verdicts on
  pairs of the two (Compare with reference, Compare two policies), for runs.

The reference is always a row (KL 0 by definition), so every figure has its baseline beside it.
The evaluation is saved in the project (`evaluations`: config, figures and every response), so
the Evaluate tab and `rlhf-workbench evaluate --show` read it back.

Models are loaded one at a time beside the reference (whose log-probabilities the KL needs), then
the reward models score everything; GPU memory holds at most two models at once.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .demo import follows_demo_rule, prompt_rule
from .errors import ConfigError, Stopped, WorkbenchError
from .events import Progress, Sink, StopFlag
from .generate import model_label
from .methods import method_for_kind
from .policies import POLICY_RUN_KINDS, run_policy
from .project import Project
from .records import conversation_from_json
from .stats import distinct_n, wilson_interval
from .training.config import config_from_dict, setting, validate_fields

REFERENCE = "reference"
AUTO = "auto"
DEMO_GOLD = "demo"
NO_GOLD = "none"
# How many prompts to hold out when a person asks without saying: enough for a win rate's
# interval to mean something (±12 points at 64 verdicts), few enough to cost little training data.
DEFAULT_HOLDOUT = 64
# The runs that train against a reward model (its proxy is theirs).
RL_KINDS = ("ppo", "rloo", "grpo")


@dataclass
class EvaluateSettings:
    """How to evaluate policies on the project's held-out prompts (the policies are named apart)."""

    reference: str | None = setting(
        None,
        "The model KL is measured against and the baseline row: a model folder, a cached model name or 'demo'. "
        "Empty: the model the first chosen run started from.",
        optional=True,
    )
    reward_model: str = setting(
        AUTO,
        "The proxy: the reward model whose score training pushed up. auto: each RL run its own, the other "
        "rows the first RL run's (else the newest reward-model run); or a reward-model run id or folder for all.",
    )
    gold: str = setting(
        AUTO,
        "The true goal to check the proxy against. auto: the demo's rules on the demo's prompts, none elsewhere; "
        "'demo', 'none', or a reward-model run id or folder to act as the judge.",
    )
    n_prompts: int = setting(64, "Held-out prompts to sample on (all of them if there are fewer).", min=1, max=100_000)
    samples_per_prompt: int = setting(1, "Responses per prompt and policy.", min=1, max=64)
    max_new_tokens: int | None = setting(
        None, "Longest response in tokens. Empty: as the first chosen RL run sampled (else 128).", optional=True,
        min=1, max=32768,
    )
    temperature: float | None = setting(
        None, "Sampling temperature. Empty: as the first chosen RL run sampled (else 1.0).", optional=True,
        min=0.01, max=10.0,
    )
    top_p: float = setting(1.0, "Nucleus sampling: sample from the smallest set of tokens with this much probability.",
                           min=0.01, max=1.0)
    max_prompt_length: int = setting(1024, "Prompts longer than this many tokens keep their end.", min=4, max=131072)
    batch_size: int = setting(32, "Responses sampled side by side; lower it if the GPU runs out of memory.",
                              min=1, max=4096)
    seed: int = setting(0, "Seeds the choice of prompts and the sampling: every policy draws the same random numbers.",
                        min=0, max=2**32 - 1)
    device: str = setting("auto", "Where to run. auto: a CUDA GPU, else Apple's MPS, else the CPU.",
                          choices=("auto", "cuda", "mps", "cpu"))
    trust_remote_code: bool = setting(
        False, "Run Python code shipped with a model folder. Only for models from a source you trust."
    )

    def validate(self) -> EvaluateSettings:
        validate_fields(self)
        return self


@dataclass
class _Entry:
    """One row of the evaluation: a policy, where it is, and what scores it."""

    label: str
    spec: str  # what load_policy takes
    run: dict[str, Any] | None = None
    step: int | None = None
    proxy_spec: str | None = None  # the reward model behind its proxy figure
    is_reference: bool = False


def hold_out(project_path: str | Path, n: int = DEFAULT_HOLDOUT, *, seed: int = 0) -> dict[str, int]:
    """Hold out `n` more prompts of the project; returns {"added", "heldout"} (the total)."""
    with Project.open(project_path) as project:
        added = project.store.hold_out_prompts(n, seed=seed)
        return {"added": added, "heldout": len(project.store.heldout_prompt_ids())}


def evaluate_policies(
    project_path: str | Path,
    policies: Sequence[str],
    settings: EvaluateSettings | dict[str, Any] | None = None,
    *,
    sink: Sink | None = None,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Evaluate `policies` (run ids, 'reference', model folders or names) on the held-out prompts,
    save the evaluation in the project and return it: {"id", "created_at", "config", "results"}.

    Raises WorkbenchError (nothing saved) for a policy that cannot be found or loaded, a project
    without held-out prompts, and Stopped when `stop()` turns true."""
    if isinstance(settings, dict):
        settings = config_from_dict(EvaluateSettings, settings, source="the evaluation's settings")
    settings = (settings or EvaluateSettings()).validate()
    if not policies:
        raise ConfigError("policies: choose at least one policy to evaluate")
    report = (lambda done, total, message: sink(Progress(done, total, message))) if sink else (lambda *_: None)
    stopped = stop or (lambda: False)
    started = time.time()

    with Project.open(project_path) as project:
        entries, reference, sampling_run = _entries(project, policies, settings)
        prompts, heldout_total = _heldout_prompts(project, settings)
        heldout_since = project.store.heldout_since()
        games = named_verdicts(project.store, project.path)
        proxies = {e.proxy_spec for e in entries if e.proxy_spec}
        gold_kind, gold_name, gold_spec = _gold(project, settings, prompts)
        reward_folders = {spec: str(_reward_folder(project, spec)) for spec in proxies | ({gold_spec} if gold_spec else set())}
    sampling = _sampling(settings, sampling_run)
    repeated = [p for p in prompts for _ in range(settings.samples_per_prompt)]
    per_model = len(repeated)
    total = per_model * len(entries)
    report(0, total, "Loading the reference…")
    samples = _sample_all(entries, reference, repeated, sampling, settings, report, stopped, total)

    report(total, total, "Scoring with the reward models…")
    max_length = settings.max_prompt_length + sampling["max_new_tokens"]
    scores = {spec: _score(folder, repeated, samples, settings, max_length, stopped) for spec, folder in reward_folders.items()}
    rows = []
    for i, entry in enumerate(entries):
        texts = [s["response"] for s in samples[i]]
        proxy = scores[entry.proxy_spec][i] if entry.proxy_spec else None
        if gold_kind == DEMO_GOLD:
            gold = [float(follows_demo_rule(_last_user_text(p), t)) for p, t in zip(repeated, texts)]
        else:
            gold = scores[gold_spec][i] if gold_spec else None
        rate = _win_rate(games, entry.run["id"], model_label(reference.spec, project_path)) if entry.run else None
        rows.append(_row(entry, samples[i], repeated, proxy, gold, rate, heldout_since))
    results = {
        "prompts": len(prompts),
        "samples_per_prompt": settings.samples_per_prompt,
        "heldout_prompts": heldout_total,
        "reference": reference.label,
        "gold": {"kind": gold_kind, "name": gold_name},
        "sampling": sampling,
        "seconds": round(time.time() - started, 1),
        "rows": rows,
    }
    config = {"policies": list(policies), **asdict(settings)}
    evaluation_id = "eval-" + time.strftime("%Y%m%d-%H%M%S") + f"-{random.randrange(16**4):04x}"
    with Project.open(project_path) as project:
        project.store.save_evaluation(evaluation_id, config, results)
        return project.store.evaluation(evaluation_id)


# -- what is evaluated ---------------------------------------------------------------------------------


def _entries(project: Project, policies: Sequence[str], settings: EvaluateSettings) -> tuple[list[_Entry], _Entry, dict | None]:
    """The rows (the reference first), the reference, and the first RL run's config (its sampling)."""
    from .training.policy import resolve_policy
    store = project.store
    runs: list[tuple[str, dict[str, Any]]] = []
    others: list[str] = []
    for spec in dict.fromkeys(s.strip() for s in policies):
        if not spec or spec == REFERENCE:
            continue
        run = store.run(spec)
        if run is not None:
            if run["kind"] not in POLICY_RUN_KINDS:
                raise WorkbenchError(f"policy {spec}: is a {run['kind']} run; it trains no policy")
            runs.append((spec, run))
        else:
            others.append(spec)
    for spec in others:
        try:
            resolve_policy(spec)
        except WorkbenchError as exc:
            raise WorkbenchError(f"policy {spec!r}: not a run of this project, nor a model: {exc}") from None
    first_config = None
    reference_spec = settings.reference.strip() if settings.reference and settings.reference.strip() else None
    rl_config = None
    entries: list[_Entry] = []
    for run_id, run in runs:
        method = method_for_kind(run["kind"])
        config = config_from_dict(method.config, run["config"], source=f"run {run_id}")
        first_config = first_config or config
        if rl_config is None and run["kind"] in RL_KINDS:
            rl_config = (run_id, config)
        found = run_policy(store, project.path, run)
        if found is None:
            raise WorkbenchError(f"policy {run_id}: the run has no checkpoint with its policy (not trained yet, or deleted)")
        step, folder = found
        entries.append(_Entry(f"{run_id} (step {step})", str(folder), run=run, step=step))
    if reference_spec is None:
        if first_config is None:
            raise ConfigError("reference: not set, and no run among the policies to take it from; name the model "
                              "the policies started from (a folder, a cached model name or 'demo')")
        reference_spec = method_for_kind(runs[0][1]["kind"]).policy.sampling(first_config)["reference"]
    for spec in others:
        if spec == reference_spec:
            continue  # the reference is a row already
        entries.append(_Entry(model_label(spec, project.path), spec))
    reference = _Entry(f"reference ({model_label(reference_spec, project.path)})", reference_spec, is_reference=True)
    entries.insert(0, reference)
    _assign_proxies(project, entries, settings, rl_config)
    return entries, reference, (rl_config[1] if rl_config else None)


def _assign_proxies(project: Project, entries: list[_Entry], settings: EvaluateSettings, rl_config) -> None:
    from .runs.records import run_dir_of
    from .training.run_models import LATEST_REWARD_MODEL, PINNED_MODELS_FILE, latest_reward_run

    if settings.reward_model.strip() != AUTO:
        for entry in entries:
            entry.proxy_spec = settings.reward_model.strip()
        return
    default = None
    for entry in entries:
        if entry.run is None or entry.run["kind"] not in RL_KINDS:
            continue
        pinned = run_dir_of(project, entry.run) / PINNED_MODELS_FILE
        spec = entry.run["config"].get("reward_model", LATEST_REWARD_MODEL)
        if pinned.is_file():
            import json

            spec = json.loads(pinned.read_text(encoding="utf-8")).get("reward_model", spec)
        entry.proxy_spec = spec
        default = default or spec
    if default is None:
        try:
            default = latest_reward_run(project)
        except WorkbenchError:
            default = None  # no reward model in the project: no proxy figure
    for entry in entries:
        if entry.proxy_spec is None:
            entry.proxy_spec = default


def _reward_folder(project: Project, spec: str) -> Path:
    from .models import ModelError
    from .training.run_models import resolve_reward_model

    try:
        return resolve_reward_model(spec, project)
    except ModelError as exc:
        raise WorkbenchError(f"reward model {spec!r}: {exc}") from None


def _heldout_prompts(project: Project, settings: EvaluateSettings) -> tuple[list, int]:
    ids = project.store.heldout_prompt_ids()
    if not ids:
        raise WorkbenchError(
            "This project has no held-out prompts yet: hold some out first (Hold out… in the Evaluate tab, or "
            f"`rlhf-workbench evaluate PROJECT --hold-out {DEFAULT_HOLDOUT}`). From then on no run trains on them."
        )
    chosen = list(ids)
    random.Random(settings.seed).shuffle(chosen)
    chosen = sorted(chosen[: settings.n_prompts])
    messages = project.store.prompt_messages(chosen)
    return [conversation_from_json(messages[i]) for i in chosen], len(ids)


def _gold(project: Project, settings: EvaluateSettings, prompts: list) -> tuple[str | None, str | None, str | None]:
    """(kind, how it reads, reward model spec or None)."""
    choice = settings.gold.strip()
    demo_rules = bool(prompts) and all(prompt_rule(_last_user_text(p) or "") is not None for p in prompts)
    if choice == AUTO:
        choice = DEMO_GOLD if demo_rules else NO_GOLD
    if choice == NO_GOLD:
        return None, None, None
    if choice == DEMO_GOLD:
        if not demo_rules:
            raise ConfigError("gold: 'demo' judges the demo's prompts only, and these held-out prompts are not all "
                              "demo prompts; pick a reward model as the judge, or 'none'")
        return DEMO_GOLD, "the demo's rules (share of answers that follow them)", None
    return "reward_model", f"reward model {model_label(choice, project.path)}", choice


def _sampling(settings: EvaluateSettings, rl_config) -> dict[str, Any]:
    return {
        "max_new_tokens": settings.max_new_tokens or (rl_config.max_new_tokens if rl_config else 128),
        "temperature": settings.temperature or (rl_config.temperature if rl_config else 1.0),
        "top_p": settings.top_p,
    }


# -- sampling and scoring ------------------------------------------------------------------------------


def _load(spec: str, settings: EvaluateSettings, device, what: str):
    from .training.policy import load_policy

    try:
        model, tokenizer = load_policy(spec, trust_remote_code=settings.trust_remote_code)
    except WorkbenchError as exc:
        raise WorkbenchError(f"{what} cannot be loaded: {exc}") from None
    model.to(device)
    model.eval()
    return model, tokenizer


def _sample_all(entries: list[_Entry], reference: _Entry, prompts: list, sampling: dict[str, Any],
                settings: EvaluateSettings, report: Callable, stopped: StopFlag, total: int) -> list[list[dict]]:
    """Per entry, per prompt: {"response", "tokens", "kl"}."""
    import torch

    from .training.device import resolve_device

    device = resolve_device(settings.device)
    ref_model, ref_tokenizer = _load(reference.spec, settings, device, f"The reference {reference.label}")
    out: list[list[dict]] = []
    try:
        for index, entry in enumerate(entries):
            if entry.is_reference:
                model, tokenizer = ref_model, ref_tokenizer
            else:
                report(index * len(prompts), total, f"Loading {entry.label}…")
                model, tokenizer = _load(entry.spec, settings, device, f"Policy {entry.label}")
            try:
                same_tokens = entry.is_reference or tokenizer.get_vocab() == ref_tokenizer.get_vocab()
                rows: list[dict] = []
                generator = torch.Generator(device=device).manual_seed(settings.seed)  # the same draws for every policy
                for start in range(0, len(prompts), settings.batch_size):
                    if stopped():
                        raise Stopped("The evaluation was cancelled; nothing was saved")
                    rows += _sample_batch(model, tokenizer, ref_model if same_tokens else None,
                                          prompts[start : start + settings.batch_size], sampling, settings, generator)
                    report(index * len(prompts) + len(rows), total, f"Sampling {entry.label}: {len(rows)} of {len(prompts)}")
                out.append(rows)
            finally:
                if model is not ref_model:
                    del model
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    finally:
        del ref_model
        gc.collect()
    return out


def _sample_batch(model, tokenizer, ref_model, prompts: list, sampling: dict[str, Any], settings: EvaluateSettings,
                  generator) -> list[dict]:
    import torch

    from .training.rollout import decode_responses, encode_prompts, response_logprobs, sample

    with torch.no_grad():
        rollout = sample(
            model, encode_prompts(tokenizer, prompts, settings.max_prompt_length), pad_id=tokenizer.pad_token_id,
            eos_id=tokenizer.eos_token_id, max_new_tokens=sampling["max_new_tokens"],
            temperature=sampling["temperature"], top_p=sampling["top_p"], generator=generator,
        )
        mask = rollout.response_mask
        if ref_model is None:
            kls = [None] * len(prompts)
        else:
            ref = response_logprobs(ref_model, rollout, sampling["temperature"])
            kls = ((rollout.logprobs - ref) * mask).sum(1).tolist()
    texts = [t.strip() for t in decode_responses(tokenizer, rollout)]
    return [
        {"response": text, "tokens": int(n), "kl": kl}
        for text, n, kl in zip(texts, rollout.response_lengths.tolist(), kls)
    ]


def _score(folder: str, prompts: list, samples: list[list[dict]], settings: EvaluateSettings, max_length: int,
           stopped: StopFlag) -> list[list[float]]:
    """Each entry's responses scored by the reward model in `folder`."""
    import torch

    from .models import load_reward_model
    from .training.device import resolve_device
    from .training.rollout import reward_scores

    device = resolve_device(settings.device)
    try:
        model, tokenizer = load_reward_model(folder, trust_remote_code=settings.trust_remote_code, trainable=False)
    except WorkbenchError as exc:
        raise WorkbenchError(f"The reward model {folder} cannot be loaded: {exc}") from None
    model.to(device)
    model.eval()
    scored = []
    try:
        for rows in samples:
            if stopped():
                raise Stopped("The evaluation was cancelled; nothing was saved")
            texts = [r["response"] for r in rows]
            values: list[float] = []
            for start in range(0, len(texts), settings.batch_size):
                part = slice(start, start + settings.batch_size)
                with torch.no_grad():
                    values += reward_scores(model, tokenizer, prompts[part], texts[part],
                                            max_length=max_length).float().cpu().tolist()
            scored.append(values)
    finally:
        del model
        gc.collect()
    return scored


# -- the figures ---------------------------------------------------------------------------------------


def _win_rate(games: list[tuple[str, str, str]], run_id: str, reference: str) -> dict[str, int]:
    """People's verdicts between a run's policy and its reference (made by Compare with reference
    or Compare two policies): wins, losses, ties; "both bad" says neither and is left out."""
    tally = {"wins": 0, "losses": 0, "ties": 0}
    for a, b, verdict in games:
        if {a, b} != {run_id, reference} or verdict not in ("a", "b", "tie"):
            continue
        if verdict == "tie":
            tally["ties"] += 1
        else:
            tally["wins" if (verdict == "a") == (a == run_id) else "losses"] += 1
    return tally


def win_rates_now(project: Project, evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """People's win rate of each run of a saved evaluation against its reference as the verdicts
    stand now (the evaluation keeps the figure of its day): by run id, {"win_rate", "win_interval",
    "judged"}; the Evaluate tab shows these, so that labelling moves the table."""
    rows = evaluation["results"]["rows"]
    reference = next((r["spec"] for r in rows if r["reference"]), None)
    if reference is None:
        return {}
    games = named_verdicts(project.store, project.path)
    rates = {}
    for row in rows:
        if row["run"]:
            tally = _win_rate(games, row["run"], model_label(reference, project.path))
            judged = sum(tally.values())
            won = tally["wins"] + 0.5 * tally["ties"]
            rates[row["run"]] = {"win_rate": won / judged if judged else None,
                                 "win_interval": list(wilson_interval(won, judged)) if judged else None, "judged": judged}
    return rates


def _row(entry: _Entry, samples: list[dict], prompts: list, proxy: list[float] | None, gold: list[float] | None,
         rate: dict[str, int] | None, heldout_since: str | None) -> dict[str, Any]:
    texts = [s["response"] for s in samples]
    kls = [s["kl"] for s in samples]
    run_id = entry.run["id"] if entry.run else None
    win = interval = None
    judged = sum(rate.values()) if rate else 0
    if judged:
        win = (rate["wins"] + 0.5 * rate["ties"]) / judged
        interval = wilson_interval(rate["wins"] + 0.5 * rate["ties"], judged)
    return {
        "policy": entry.label,
        "spec": entry.spec,
        "run": run_id,
        "kind": entry.run["kind"] if entry.run else (REFERENCE if entry.is_reference else "model"),
        "step": entry.step,
        "reference": entry.is_reference,
        "proxy_model": entry.proxy_spec,
        "proxy": _mean(proxy),
        "gold": _mean(gold),
        "kl": 0.0 if entry.is_reference else (_mean(kls) if None not in kls else None),
        "length_tokens": _mean([s["tokens"] for s in samples]),
        "length_words": _mean([len(t.split()) for t in texts]),
        "distinct_2": distinct_n(texts, 2),
        "win_rate": win,
        "win_interval": list(interval) if interval else None,
        "judged": judged,
        # A run created before the first prompt was held out may have trained on these prompts.
        "trained_before_heldout": bool(entry.run and heldout_since and entry.run["created_at"] < heldout_since),
        "responses": [
            {"prompt": _last_user_text(p), "response": t, "tokens": s["tokens"], "kl": s["kl"],
             "proxy": proxy[i] if proxy else None, "gold": gold[i] if gold else None}
            for i, (p, t, s) in enumerate(zip(prompts, texts, samples))
        ],
    }


def _mean(values: Sequence[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


def _last_user_text(prompt: Any) -> str | None:
    messages = prompt if isinstance(prompt, (list, tuple)) else [prompt]
    users = [getattr(m, "content", None) or (m.get("content") if isinstance(m, dict) else None)
             for m in messages if (getattr(m, "role", None) or (m.get("role") if isinstance(m, dict) else None)) == "user"]
    return users[-1] if users else None


def evaluate_task(project_path: str, policies: list[str], settings: dict[str, Any], *, sink: Sink, stop: StopFlag) -> dict:
    """evaluate_policies as work for a child process (the Evaluate tab runs it so)."""
    return evaluate_policies(project_path, policies, settings, sink=sink, stop=stop)


# -- policies ranked by people -------------------------------------------------------------------------

# A verdict as a game's score for policy A: a tie and "both bad" are half a win each, as Chatbot Arena
# counts its "tie" and "tie (bothbad)".
VERDICT_SCORES = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


def named_verdicts(store, project_path: str | Path) -> list[tuple[str, str, str]]:
    """store.policy_verdicts with each policy named as the ranking and the Evaluate table name it:
    a run by its id, a model by model_label (so "demo" met as a run's reference and "demo" compared
    by hand are one player)."""
    runs = {run["id"] for run in store.runs()}
    names: dict[str, str] = {}

    def player(spec: str) -> str:
        if spec not in names:
            names[spec] = spec if spec in runs or spec.startswith("reference of ") else model_label(spec, project_path)
        return names[spec]

    return [(player(a), player(b), v) for a, b, v in store.policy_verdicts()]


def policy_ranking(project_path: str | Path, *, rounds: int = 200, seed: int = 0) -> dict[str, Any]:
    """Every policy people judged against another (Compare with reference, Compare two policies),
    rated Bradley-Terry style on the Elo scale with 95% bootstrap intervals (stats.bradley_terry,
    stats.bootstrap_ratings), best first: {"anchor", "games", "rows": [{"policy", "rating", "low",
    "high", "games", "wins", "losses", "ties"}]}. The anchor (rated 1000) is the reference met most
    often, so a rating reads as "this much better than where training started"."""
    with Project.open(project_path) as project:
        return rank_policies(project.store, project.path, rounds=rounds, seed=seed)


def rank_policies(store, project_path: str | Path, *, rounds: int = 200, seed: int = 0) -> dict[str, Any]:
    """policy_ranking on an open store (the Evaluate tab computes it in a worker: the bootstrap refits
    the ratings `rounds` times, a second or so at thousands of verdicts)."""
    from .stats import bootstrap_ratings, bradley_terry

    runs = {run["id"] for run in store.runs()}
    games = [(a, b, VERDICT_SCORES[v]) for a, b, v in named_verdicts(store, project_path) if v in VERDICT_SCORES]
    if not games:
        return {"anchor": None, "games": 0, "rows": []}
    references = {}
    for a, b, _ in games:
        if a in runs and b not in runs:
            references[b] = references.get(b, 0) + 1
    anchor = max(references, key=references.get) if references else None
    ratings = bradley_terry(games, anchor=anchor)
    intervals = bootstrap_ratings(games, rounds=rounds, seed=seed, anchor=anchor)
    tally: dict[str, dict[str, int]] = {p: {"games": 0, "wins": 0, "losses": 0, "ties": 0} for p in ratings}
    for a, b, score in games:
        for who, mine in ((a, score), (b, 1.0 - score)):
            tally[who]["games"] += 1
            tally[who]["wins" if mine == 1.0 else "losses" if mine == 0.0 else "ties"] += 1
    rows = [
        {"policy": p, "rating": ratings[p], "low": intervals[p][0], "high": intervals[p][1], **tally[p]}
        for p in sorted(ratings, key=ratings.get, reverse=True)
    ]
    return {"anchor": anchor, "games": len(games), "rows": rows}
