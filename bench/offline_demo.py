"""The demo's offline methods, end to end: does the policy learn the demo rules from the labels alone?

    .venv/bin/python bench/offline_demo.py [--seed 0] [--set KEY=VALUE ...]

What a person does in the app's SFT / DPO tab, with its defaults: the demo project (in a temporary
folder), then recorded runs from the demo policy on the demo's labelled pairs:

    sft         supervised on the chosen responses
    dpo         DPO with the tab's defaults (sft_weight 1: DPO plus the SFT loss of the chosen side)
    dpo-plain   DPO alone (sft_weight 0, TRL's default), to show what the SFT term is for
    sft+dpo     DPO (defaults) starting from the sft run's policy: the InstructGPT order

Before and after, the policy answers every demo prompt once (sampled at the RL tab's temperature,
as bench/rl_demo.py does) and `demo.follows_demo_rule` checks each answer; the share that follows
its prompt's rule is the figure, comparable with rl_demo.py's rows. Target (issue: DPO and SFT):
DPO from about half to at least 0.8 within 5 minutes on two CPU cores; SFT raises it too.

Prints one row per run; the last line is one JSON object: {"runs": {name: {share_before,
share_after, seconds, eval_accuracy, ...}}, ...}.
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
from rl_demo import share  # noqa: I001 (bench/ is on the path when this runs)

from rlhf_workbench.core.demo import create_demo_project
from rlhf_workbench.core.offline import train as offline_train
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.rl.train import project_prompts
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.runs.terminal import parse_overrides
from rlhf_workbench.core.runs.work import Work, execute
from rlhf_workbench.core.training.config import config_from_dict, config_to_dict

RUNS = {
    "sft": {"method": "sft"},
    "dpo": {"method": "dpo"},
    "dpo-plain": {"method": "dpo", "sft_weight": 0.0},
    "sft+dpo": {"method": "dpo", "policy": "<sft>"},
}


def run_offline(path: Path, name: str, settings: dict, overrides: dict, seed: int, prompts, sampling: RLConfig) -> dict:
    config = config_from_dict(OfflineConfig, {**config_to_dict(OfflineConfig(seed=seed)), **overrides, **settings}).validate()
    before = share(config.policy, prompts, sampling, seed=seed + 100)
    with Project.open(path) as project:
        ctx = start_run(project, kind=config.method, name=f"demo {name}", config=config)
    started = time.perf_counter()
    result = execute(Work.job(offline_train.JOB_PATH, config, ctx), lambda event: None, lambda: False)
    seconds = time.perf_counter() - started
    if not hasattr(result, "summary"):
        sys.exit(f"{name} failed: {result.message}")
    after = share(result.summary["best_checkpoint"], prompts, sampling, seed=seed + 100)
    return {
        "share_before": round(before, 4),
        "share_after": round(after, 4),
        "seconds": round(seconds, 1),
        "steps": result.summary["steps"],
        "eval_accuracy": round(result.summary["eval/accuracy"], 4) if "eval/accuracy" in result.summary else None,
        "eval_loss": round(result.summary["eval/loss"], 4) if "eval/loss" in result.summary else None,
        "checkpoint": result.summary["best_checkpoint"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default=",".join(RUNS), help=f"which, in order (default {','.join(RUNS)})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting other than the default, for every run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        sys.exit(f"--runs: {unknown[0]!r} is not one of {', '.join(RUNS)}")
    torch.set_num_threads(1)
    overrides = parse_overrides(args.overrides)
    sampling = RLConfig()

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="offline-demo-") as tmp:
        path = Path(tmp) / "demo"
        create_demo_project(path).close()
        with Project.open(path) as project:
            prompts = project_prompts(project.store, None)
        for name in names:
            settings = dict(RUNS[name])
            if settings.get("policy") == "<sft>":
                if "sft" not in rows:
                    sys.exit("--runs: sft+dpo starts from the sft run's policy: list sft before it")
                settings["policy"] = rows["sft"]["checkpoint"]
            rows[name] = run_offline(path, name, settings, overrides, args.seed, prompts, sampling)
            r = rows[name]
            accuracy = f"  validation accuracy {r['eval_accuracy']:.3f}" if r["eval_accuracy"] is not None else ""
            print(f"{name:<9} share {r['share_before']:.3f} -> {r['share_after']:.3f}  {r['seconds']:.1f} s  "
                  f"({r['steps']} steps){accuracy}", flush=True)
    for r in rows.values():
        r.pop("checkpoint")
    print(json.dumps({
        "runs": rows,
        "seed": args.seed,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
    }))


if __name__ == "__main__":
    main()
