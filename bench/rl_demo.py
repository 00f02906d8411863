"""The demo's RL, end to end, for each method: does the policy learn the demo rules, and how fast?

    .venv/bin/python bench/rl_demo.py [--methods ppo,rloo,grpo] [--seconds 300] [--set KEY=VALUE ...]

What a person does in the app, once per method: the demo project (in a temporary folder), the demo
reward model trained with the Reward model tab's defaults, then a recorded run of each method with
the RL tab's defaults for it (the demo policy against that reward model, the same prompts), stopped
after `--seconds` if it has not finished. Before and after, the policy answers every demo prompt
once (sampled at the run's temperature) and `demo.follows_demo_rule` checks each answer; the share
that follows its prompt's rule is the figure. Target: from about half to at least 0.8 within 5
minutes on two CPU cores, with objective/kl bounded, for each method.

Prints one row per method; the last line is one JSON object:
{"methods": {name: {share_before, share_after, kl, seconds, episodes_per_s, ...}}, ...}.
`--set` applies to every method (a setting of one method only is refused for the others: run
that method alone with --methods).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from rlhf_workbench.core.demo import create_demo_project
from rlhf_workbench.core.demo_policy import share_following
from rlhf_workbench.core.events import Log, Metric
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.reward import train as rm_train
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.rl import train as rl_train
from rlhf_workbench.core.rl.config import METHOD_TITLES, METHODS, RLConfig
from rlhf_workbench.core.rl.train import project_prompts
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.runs.terminal import parse_overrides
from rlhf_workbench.core.runs.work import Work, execute
from rlhf_workbench.core.training.config import config_from_dict, config_to_dict
from rlhf_workbench.core.training.policy import load_policy
from rlhf_workbench.core.training.rollout import sample_responses


def train_demo_reward_model(path: Path, seed: int) -> float:
    """The project's reward model, trained with the Reward model tab's defaults; its seconds."""
    began = time.perf_counter()
    config = RewardConfig(seed=seed)
    with Project.open(path) as project:
        ctx = start_run(project, kind="reward", name="demo rm", config=config)
    result = execute(Work.job(rm_train.JOB_PATH, config, ctx), lambda e: None, lambda: False)
    if not hasattr(result, "summary"):
        sys.exit(f"reward model failed: {result.message}")
    seconds = time.perf_counter() - began
    print(f"reward model: validation accuracy {result.summary.get('eval/accuracy', float('nan')):.3f} "
          f"in {seconds:.0f} s", flush=True)
    return seconds


def share(policy_spec: str, prompts: list, config: RLConfig, seed: int) -> float:
    model, tokenizer = load_policy(policy_spec)
    texts = [m[-1]["content"] for m in prompts]
    with torch.no_grad():
        responses = sample_responses(model, tokenizer, prompts, max_new_tokens=config.max_new_tokens,
                                     temperature=config.temperature, top_p=config.top_p, seed=seed, batch_size=64)
    return share_following(texts, responses)


def run_method(path: Path, method: str, overrides: dict, seed: int, seconds_limit: float, prompts) -> dict:
    config = config_from_dict(RLConfig, {**config_to_dict(RLConfig(method=method, seed=seed)), **overrides}).validate()
    before = share(config.policy, prompts, config, seed=seed + 100)
    with Project.open(path) as project:
        ctx = start_run(project, kind=method, name=f"demo {method}", config=config)
    last: dict[str, float] = {}
    speeds: list[float] = []
    started = time.perf_counter()

    def sink(event) -> None:
        if isinstance(event, Metric):
            last.update(event.values)
            speeds.append(event.values["perf/episodes_per_s"])
            v = event.values
            if event.step % 16 == 0:
                kl = f"kl {v['objective/kl']:.2f}  " if "objective/kl" in v else ""
                print(f"  {method} update {event.step:3d}  {time.perf_counter() - started:5.0f} s  "
                      f"score {v['objective/scores']:+.2f}  {kl}entropy {v['policy/entropy_avg']:.2f}  "
                      f"length {v['val/response_length']:.1f}  {v['perf/episodes_per_s']:.0f} episodes/s", flush=True)
        elif isinstance(event, Log) and event.level == "warning":
            print(f"  {method} warning: {event.message}", flush=True)

    result = execute(Work.job(rl_train.JOB_PATH, config, ctx), sink,
                     lambda: time.perf_counter() - started > seconds_limit)
    seconds = time.perf_counter() - started
    if not hasattr(result, "summary"):
        sys.exit(f"{method} failed: {result.message}")
    after = share(str(ctx.run_dir), prompts, config, seed=seed + 100)
    speeds.sort()
    return {
        "share_before": round(before, 4),
        "share_after": round(after, 4),
        "kl": round(last.get("objective/kl", float("nan")), 4),
        "seconds": round(seconds, 1),
        "episodes_per_s": round(speeds[len(speeds) // 2], 1) if speeds else None,
        "episodes": result.summary["episodes"],
        "updates": result.summary["updates"],
        "final_score": round(last.get("objective/scores", float("nan")), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="which, in order (default ppo,rloo,grpo)")
    parser.add_argument("--seconds", type=float, default=300.0, help="stop each run after this long (default 300)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting other than the default, for every method")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit(f"--methods: {unknown[0]!r} is not one of {', '.join(METHODS)}")
    torch.set_num_threads(1)
    overrides = parse_overrides(args.overrides)

    rows = {}
    with tempfile.TemporaryDirectory(prefix="rl-demo-") as tmp:
        path = Path(tmp) / "demo"
        create_demo_project(path).close()
        rm_seconds = train_demo_reward_model(path, args.seed)
        with Project.open(path) as project:
            prompts = project_prompts(project.store, RLConfig().prompt_origin)
        for method in methods:
            rows[method] = run_method(path, method, overrides, args.seed, args.seconds, prompts)
            r = rows[method]
            print(f"{METHOD_TITLES[method]:<5} share {r['share_before']:.3f} -> {r['share_after']:.3f}  kl {r['kl']:.2f}  "
                  f"{r['seconds']:.0f} s  {r['episodes_per_s']} episodes/s  ({r['updates']} updates)", flush=True)
    print(json.dumps({
        "methods": rows,
        "reward_model_seconds": round(rm_seconds, 1),
        "seed": args.seed,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
    }))


if __name__ == "__main__":
    main()
