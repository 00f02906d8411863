"""The app's runs on several GPUs: TorchrunRunner launches the CLI under torchrun and reads its events.

Two CPU ranks (gloo) stand in for two GPUs: the launch, the event lines, stopping and the records
are the same; only the backend differs (NCCL on GPUs). A whole run through the app's
JobController is in tests/test_app_jobs.py.
"""

import math
import time

import pytest

from rlhf_workbench.core.demo import create_demo_project
from rlhf_workbench.core.events import (
    Checkpoint,
    Failed,
    Finished,
    Log,
    Metric,
    Progress,
    Sample,
    event_line,
    parse_event_line,
)
from rlhf_workbench.core.models import ensure_demo_model
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.reward.method import REWARD_MODEL
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.runs.torchrun import TorchrunRunner, visible_gpu_count


def test_every_event_survives_its_line():
    events = [
        Metric(3, {"train/loss": 0.5, "bad": math.inf}, time=1.0), Sample(2, "p", "r", 0.25, {"kl": 0.1}),
        Progress(4, 10, "step 4 of 10", 2.5), Log("careful", "warning", time=2.0), Checkpoint(5, "/x", True),
        Finished({"steps": 5, "stopped": False}), Failed("it broke", hint="try less", step=3),
    ]
    for event in events:
        line = event_line(event)
        assert "\n" not in line
        assert parse_event_line(line) == event
    assert parse_event_line("step 3/10  loss 0.5") is None  # anything else a rank prints
    assert parse_event_line("@event {not json") is None


def test_each_method_names_its_own_job_and_a_command_the_cli_has():
    from rlhf_workbench.core.cli import _COMMANDS
    from rlhf_workbench.core.methods import METHODS
    from rlhf_workbench.core.offline.train import JOB_PATH as OFFLINE_JOB
    from rlhf_workbench.core.reward.train import JOB_PATH
    from rlhf_workbench.core.rl.train import JOB_PATH as RL_JOB

    assert {m.job: m.command for m in METHODS} == {JOB_PATH: "train-rm", OFFLINE_JOB: "dpo", RL_JOB: "rl"}
    # Every command and alias a method names is one the CLI has ("ppo" is "rl --method ppo").
    assert all(m.command in _COMMANDS and set(m.aliases) <= set(_COMMANDS) for m in METHODS)
    assert all(m.distributed for m in METHODS)


def test_gpus_are_counted_from_cuda_visible_devices(monkeypatch):
    for value, count in (("0,1,3", 3), ("", 0), ("-1", 0), ("GPU-8f1c,GPU-22aa", 2)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        visible_gpu_count.cache_clear()
        assert visible_gpu_count() == count
    visible_gpu_count.cache_clear()


@pytest.fixture
def demo(tmp_path, workbench_home):
    ensure_demo_model()  # built once here rather than by both ranks
    create_demo_project(tmp_path / "p").close()
    return tmp_path / "p"


def _start(project, events, **settings):
    config = RewardConfig(batch_size=8, torch_threads=1, log_every=1, eval_every=1000, **settings)
    with Project.open(project) as p:
        ctx = start_run(p, kind="reward", name="two ranks", config=config)
    return ctx, TorchrunRunner(REWARD_MODEL.command, ctx, 2, events.append)


@pytest.mark.timeout(180)
@pytest.mark.slow
def test_stop_ends_every_rank_with_a_checkpoint(demo):
    events = []
    ctx, job = _start(demo, events, max_steps=100_000, save_every=100_000)
    deadline = time.monotonic() + 120
    while not any(isinstance(e, Metric) for e in events) and time.monotonic() < deadline:
        time.sleep(0.05)
    job.stop()
    assert job.join(90), "the ranks did not stop"
    assert isinstance(job.result, Finished) and job.result.stopped, job.result
    (saved,) = [e.step for e in events if isinstance(e, Checkpoint)]
    with Project.open(demo) as p:
        run = p.store.run(ctx.run_id)
        assert run["status"] == "cancelled"
        assert p.store.last_checkpoint(ctx.run_id)["step"] == saved


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_a_launch_that_fails_says_why(demo):
    events = []
    ctx, job = _start(demo, events, max_steps=4, save_every=4, base_model="/nowhere/such-model")
    assert job.join(100)
    assert isinstance(job.result, Failed)
    assert "/nowhere/such-model" in job.result.message + (job.result.hint or "")
    with Project.open(demo) as p:
        assert p.store.run(ctx.run_id)["status"] == "failed"
