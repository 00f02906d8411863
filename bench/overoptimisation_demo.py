"""Over-optimisation on the demo, live: the proxy (the reward model's score) keeps rising while the
gold (the demo's own rules) falls, once the policy may drift far from where it started.

    .venv/bin/python bench/overoptimisation_demo.py [--method grpo] [--episodes 32768] [--seed N] [--set KEY=VALUE ...]

Gao, Schulman & Hilton (2022), "Scaling laws for reward model overoptimization": optimising against
a learned reward model raises its score without end, while the true goal rises, peaks and falls as
the policy moves away from the reference (they plot both against sqrt(KL)). The demo has a true
goal the reward model only approximates from 216 labels: `demo.follows_demo_rule`, logged by every
RL run on the demo as `objective/gold_score` (the share of each update's answers that follow their
prompt's rule) beside `objective/scores` (the proxy).

Two runs of the same method from the demo policy against the same demo reward model, differing only
in the leash: "leashed" with the RL tab's defaults (GRPO's beta 0.05, the KL in its loss), and
"unleashed" with beta 0.001 (a KL term 50 times weaker; 0 would load no reference, and nothing would
measure the KL) and otherwise the same. Prints each run's proxy, gold and
KL as it goes, then a row per run: the proxy and gold at the start, at the gold's peak and at the end;
the last line is one JSON object with those figures.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from rl_demo import train_demo_reward_model

from rlhf_workbench.core.demo import create_demo_project
from rlhf_workbench.core.events import Metric
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.rl import train as rl_train
from rlhf_workbench.core.rl.config import METHODS, RLConfig
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.runs.terminal import parse_overrides
from rlhf_workbench.core.runs.work import Work, execute
from rlhf_workbench.core.training.config import config_from_dict, config_to_dict

# Loose, not off: beta 0 loads no reference at all, and then no KL is measured to plot against.
LEASHES = {"grpo": ("beta", 0.001), "rloo": ("beta", 0.001), "ppo": ("kl_coef", 0.001)}


def run(path: Path, name: str, config: RLConfig) -> list[dict[str, float]]:
    """One recorded run; its (update, proxy, gold, kl) per update."""
    with Project.open(path) as project:
        ctx = start_run(project, kind=config.method, name=f"{name} {config.method}", config=config)
    points: list[dict[str, float]] = []
    started = time.perf_counter()

    def sink(event) -> None:
        if isinstance(event, Metric) and "objective/gold_score" in event.values:
            v = event.values
            points.append({"update": event.step, "proxy": v["objective/scores"], "gold": v["objective/gold_score"],
                           "kl": v.get("objective/kl", float("nan"))})
            if event.step % 16 == 0:
                print(f"  {name:<9} update {event.step:4d}  {time.perf_counter() - started:5.0f} s  proxy "
                      f"{v['objective/scores']:+.2f}  gold {v['objective/gold_score']:.2f}  kl "
                      f"{v.get('objective/kl', float('nan')):.2f}", flush=True)

    result = execute(Work.job(rl_train.JOB_PATH, config, ctx), sink, lambda: False)
    if not hasattr(result, "summary"):
        sys.exit(f"{name} failed: {result.message}")
    if not points:
        sys.exit(f"{name}: no objective/gold_score was logged (is this the demo project?)")
    return points


def smoothed(points: list[dict[str, float]], key: str, window: int = 8) -> list[float]:
    """A trailing mean: one update's 64 answers are a noisy share."""
    values = [p[key] for p in points]
    return [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
            for i in range(len(values))]


def summary(points: list[dict[str, float]]) -> dict[str, float]:
    proxy, gold = smoothed(points, "proxy"), smoothed(points, "gold")
    peak = max(range(len(gold)), key=gold.__getitem__)
    kl = points[-1]["kl"]
    return {
        "updates": len(points),
        "proxy_start": round(proxy[0], 3), "gold_start": round(gold[0], 3),
        "gold_peak": round(gold[peak], 3), "proxy_at_gold_peak": round(proxy[peak], 3), "peak_update": points[peak]["update"],
        "proxy_end": round(proxy[-1], 3), "gold_end": round(gold[-1], 3),
        "kl_end": None if math.isnan(kl) else round(kl, 3),
        "gold_drop_from_peak": round(gold[peak] - gold[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="grpo", choices=METHODS)
    parser.add_argument("--episodes", type=int, default=32768, help="episodes each run (default 32768)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting other than the default, for both runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    leash, loose = LEASHES[args.method]
    base = {**config_to_dict(RLConfig(method=args.method, seed=args.seed)), "total_episodes": args.episodes,
            **parse_overrides(args.overrides)}
    configs = {
        "leashed": config_from_dict(RLConfig, base).validate(),
        "unleashed": config_from_dict(RLConfig, {**base, leash: loose}).validate(),
    }
    rows = {}
    with tempfile.TemporaryDirectory(prefix="overopt-demo-") as tmp:
        path = Path(tmp) / "demo"
        create_demo_project(path).close()
        train_demo_reward_model(path, args.seed)
        for name, config in configs.items():
            rows[name] = summary(run(path, name, config))
            r = rows[name]
            print(f"{name:<9} ({leash} {getattr(config, leash)}): proxy {r['proxy_start']:+.2f} -> {r['proxy_end']:+.2f}  "
                  f"gold {r['gold_start']:.2f} -> peak {r['gold_peak']:.2f} (update {r['peak_update']}) -> "
                  f"{r['gold_end']:.2f}  kl {r['kl_end']}", flush=True)
    print(json.dumps({"method": args.method, "episodes": args.episodes, "leash": leash, "runs": rows,
                      "seed": args.seed, "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)"}))


if __name__ == "__main__":
    main()
