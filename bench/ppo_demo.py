"""The demo's PPO, end to end: does the policy learn the demo rules, and how fast?

    .venv/bin/python bench/ppo_demo.py [--seconds 300] [--set KEY=VALUE ...]

What it does, as a person in the app would: creates the demo project (in a temporary folder),
trains the demo reward model with the Reward model tab's defaults, then runs PPO with the PPO
tab's defaults (the demo policy against that reward model) as a recorded run, stopped after
`--seconds` if it has not finished. Before and after, the policy answers every demo prompt once
(sampled at the run's temperature) and `demo.follows_demo_rule` checks each answer: the share that
follows its prompt's rule (correct sum; polite; on topic) is the figure. Target: from about half
to at least 0.8 within 5 minutes on two CPU cores, with objective/kl bounded.

The last line is one JSON object: share_before, share_after, kl (objective/kl of the last update),
seconds (PPO's wall time), and more.
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
from rlhf_workbench.core.rl import train as ppo_train
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.rl.train import project_prompts
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.runs.terminal import parse_overrides
from rlhf_workbench.core.runs.work import Work, execute
from rlhf_workbench.core.training.config import config_from_dict, config_to_dict
from rlhf_workbench.core.training.policy import load_policy
from rlhf_workbench.core.training.rollout import sample_responses

sys.path.insert(0, str(Path(__file__).resolve().parent))  # rl_demo, also when run from elsewhere
from rl_demo import train_demo_reward_model  # noqa: E402 -- a sibling script, found through the line above


def share(policy_spec: str, prompts: list, config: RLConfig, seed: int) -> tuple[float, list[str]]:
    model, tokenizer = load_policy(policy_spec)
    texts = [m[-1]["content"] for m in prompts]
    with torch.no_grad():
        responses = sample_responses(model, tokenizer, prompts, max_new_tokens=config.max_new_tokens,
                                     temperature=config.temperature, top_p=config.top_p, seed=seed, batch_size=64)
    return share_following(texts, responses), responses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="stop PPO after this long (default 300)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a PPO setting other than the default")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="ppo-demo-") as tmp:
        path = Path(tmp) / "demo"
        create_demo_project(path).close()

        rm_seconds = train_demo_reward_model(path, args.seed)

        config = config_from_dict(RLConfig, {**config_to_dict(RLConfig(seed=args.seed)), **parse_overrides(args.overrides)}).validate()
        with Project.open(path) as project:
            prompts = project_prompts(project.store, config.prompt_origin)
        before, _ = share(config.policy, prompts, config, seed=args.seed + 100)
        print(f"share following the demo rules before PPO: {before:.3f} of {len(prompts)} prompts", flush=True)

        with Project.open(path) as project:
            ctx = start_run(project, kind="ppo", name="demo ppo", config=config)
        last: dict[str, float] = {}
        started = time.perf_counter()

        def sink(event) -> None:
            if isinstance(event, Metric):
                last.update(event.values)
                v = event.values
                print(f"update {event.step:3d}  {time.perf_counter() - started:5.0f} s  score {v['objective/scores']:+.2f}  "
                      f"kl {v['objective/kl']:.2f}  entropy {v['policy/entropy_avg']:.2f}  "
                      f"length {v['val/response_length']:.1f}  {v['perf/episodes_per_s']:.0f} episodes/s", flush=True)
            elif isinstance(event, Log) and event.level == "warning":
                print(f"warning: {event.message}", flush=True)

        result = execute(Work.job(ppo_train.JOB_PATH, config, ctx), sink, lambda: time.perf_counter() - started > args.seconds)
        seconds = time.perf_counter() - started
        if not hasattr(result, "summary"):
            sys.exit(f"PPO failed: {result.message}")
        after, responses = share(str(ctx.run_dir), prompts, config, seed=args.seed + 100)
        print(f"share following the demo rules after PPO: {after:.3f} ({seconds:.0f} s, "
              f"{result.summary['episodes']:,} episodes)")
        for prompt, response in list(zip(prompts, responses))[:6]:
            print(f"  {prompt[-1]['content']!r} -> {response!r}")
    figures = {
        "share_before": round(before, 4),
        "share_after": round(after, 4),
        "kl": round(last.get("objective/kl", float("nan")), 4),
        "seconds": round(seconds, 1),
        "episodes": result.summary["episodes"],
        "updates": result.summary["updates"],
        "final_score": round(last.get("objective/scores", float("nan")), 4),
        "reward_model_seconds": round(rm_seconds, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
