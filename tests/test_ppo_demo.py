"""PPO on the demo project, as a person runs it: the demo reward model, then the demo policy against
it. Over a short run the reward must rise (bench/ppo_demo.py runs the whole thing and measures the
share of answers that follow the demo rules)."""

from __future__ import annotations

import statistics

import pytest

from rlhf_workbench.core.demo import create_demo_project
from rlhf_workbench.core.events import Metric
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.reward import train as rm_train
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.rl.train import JOB_PATH
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.runs.work import Work, execute


@pytest.mark.slow
def test_reward_rises_over_a_short_demo_run(tmp_path, demo_models):
    path = tmp_path / "demo"
    create_demo_project(path).close()
    rm_config = RewardConfig(max_steps=200, eval_every=200, save_every=200)
    with Project.open(path) as project:
        ctx = start_run(project, kind="reward", name="rm", config=rm_config)
    assert hasattr(execute(Work.job(rm_train.JOB_PATH, rm_config, ctx), lambda e: None, lambda: False), "summary")

    config = RLConfig(total_episodes=24 * 32, batch_size=32, num_mini_batches=2, save_every=1000, seed=1)
    with Project.open(path) as project:
        ctx = start_run(project, kind="ppo", name="ppo", config=config)
    events = []
    result = execute(Work.job(JOB_PATH, config, ctx), events.append, lambda: False)
    assert hasattr(result, "summary"), getattr(result, "message", None)
    scores = [e.values["objective/scores"] for e in events if isinstance(e, Metric)]
    kls = [e.values["objective/kl"] for e in events if isinstance(e, Metric)]
    assert len(scores) == 24
    first, last = statistics.mean(scores[:4]), statistics.mean(scores[-4:])
    assert last > first + 0.5, f"reward went from {first:.2f} to {last:.2f}"
    assert max(kls) < 20.0  # the policy moved, but stayed near its reference
