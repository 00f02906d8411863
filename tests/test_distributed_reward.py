"""`train-rm` under torchrun: two CPU ranks (gloo) train exactly as one process does.

Each run is a real launch (`python -m torch.distributed.run ... -m rlhf_workbench.core.cli`), as a
person starts one on a workstation; the two processes share this machine's cores, so the runs
are short and every process keeps to one thread.
"""

import os
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file
from torchrun_launch import CLI, TORCHRUN, kill_rank_1_after

from rlhf_workbench.core.demo import create_demo_project
from rlhf_workbench.core.models import ensure_demo_model
from rlhf_workbench.core.project import Project

SETTINGS = ("max_steps=24", "log_every=1", "eval_every=12", "save_every=12", "torch_threads=1")


@pytest.fixture
def env(workbench_home):
    # Built once here, so that the ranks find it instead of building it side by side.
    ensure_demo_model()
    return {**os.environ, "RLHF_WORKBENCH_HOME": str(workbench_home), "OMP_NUM_THREADS": "1"}


def _train(env, project, *, ranks, settings=SETTINGS, timeout=120):
    launcher = TORCHRUN if ranks == 2 else (sys.executable,)
    sets = [arg for item in settings for arg in ("--set", item)]
    return subprocess.run([*launcher, *CLI, "train-rm", str(project), *sets], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _the_run(project):
    with Project.open(project) as p:
        (row,) = p.store.runs()
        run = p.store.run(row["id"])
        return run, p.store.metric_series(run["id"], "train/loss"), project / run["output_dir"]


@pytest.mark.timeout(300)
# One shape, for the suite's time: 4 pairs a step shared by 2 ranks, accumulated twice, crosses
# both the ranks' gradient averaging and accumulation (tests/test_distributed_offline.py runs 8 x 2).
@pytest.mark.parametrize("batch_size, accumulation", [(4, 2)])
@pytest.mark.slow
def test_two_cpu_ranks_train_as_one_process_does(env, tmp_path, batch_size, accumulation):
    one, two = tmp_path / "one", tmp_path / "two"
    create_demo_project(one).close()
    create_demo_project(two).close()
    settings = (*SETTINGS, f"batch_size={batch_size}", f"gradient_accumulation_steps={accumulation}")

    started = time.perf_counter()
    single = _train(env, one, ranks=1, settings=settings)
    assert single.returncode == 0, single.stderr
    both = _train(env, two, ranks=2, settings=settings)
    assert both.returncode == 0, both.stdout + both.stderr
    print(f"1 process then 2 ranks: {time.perf_counter() - started:.1f} s")

    # Only rank 0 prints: one start line, one line per step, one summary.
    out = both.stdout
    assert out.count(f"global batch = per-rank {batch_size // 2} x 2 ranks x accumulation {accumulation}") == 1
    assert out.count("done: steps 24") == 1 and out.count("step 24/24  loss") == 1

    # Only rank 0 records: one run, finished, with one loss per step.
    _, loss1, dir1 = _the_run(one)
    run2, loss2, dir2 = _the_run(two)
    assert run2["status"] == "finished"
    assert [s for s, _ in loss2] == [s for s, _ in loss1] == list(range(1, 25))  # past an epoch's end too
    loss_diff = max(abs(a - b) for (_, a), (_, b) in zip(loss1, loss2))
    w1 = load_file(str(dir1 / "checkpoints" / "last" / "model.safetensors"))
    w2 = load_file(str(dir2 / "checkpoints" / "last" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    weight_diff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    # Each pair's prompt is computed once (training/prefix.py), padded to the longest prompt of what
    # a rank holds: half a batch pads differently from the whole, so attention sums round differently.
    # Adam turns a gradient at rounding level (a rare token's embedding row) into a step of up to ~lr
    # x 0.1; a real fault (gradients not averaged, a pair twice) moves nearly every weight by ~lr.
    off = sum(int(((w1[k] - w2[k]).abs() > 1e-5).sum()) for k in w1)
    print(f"max |loss difference| {loss_diff:.2e}, max |weight difference| {weight_diff:.2e}, {off} weights off by > 1e-5")
    assert loss_diff < 1e-4 and off <= 8 and weight_diff < 0.2 * 5e-4
    with Project.open(two) as p:
        assert [c["step"] for c in p.store.checkpoints(run2["id"])] == [12, 24]


@pytest.mark.slow
def test_a_batch_the_ranks_cannot_share_is_refused_naming_batch_size(env, tmp_path):
    create_demo_project(tmp_path / "p").close()
    result = _train(env, tmp_path / "p", ranks=2, settings=("batch_size=7", "max_steps=2"), timeout=60)
    assert result.returncode != 0
    assert "batch_size: 7 pairs cannot be split evenly over 2 ranks" in result.stderr
    with Project.open(tmp_path / "p") as p:
        assert p.store.runs() == []


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_a_rank_killed_mid_run_ends_every_rank_and_the_run_is_recorded_as_failed(env, tmp_path):
    """Kill rank 1 once a checkpoint exists: torchrun names it, rank 0 says it lost its peer and
    records the run as failed, all are gone within seconds, and the checkpoint is there to resume
    from. (Resuming under torchrun, exactly: tests/test_distributed_ppo.py.)"""
    project = tmp_path / "p"
    create_demo_project(project).close()
    sets = [arg for item in ("max_steps=100000", "batch_size=8", "torch_threads=1", "save_every=5",
                             "eval_every=1000000", "log_every=1") for arg in ("--set", item)]
    # A complete checkpoint exists once rank 0 reports it.
    killed = kill_rank_1_after(["train-rm", str(project), *sets], env, "checkpoint at step 5")
    print(f"every rank gone {killed.gone_s:.1f} s after one was killed")
    assert killed.returncode != 0
    assert f"(pid: {killed.victim_pid})" in killed.output and "Signal 9 (SIGKILL)" in killed.output
    assert "error: rank 0: lost contact with the other ranks" in killed.output
    with Project.open(project) as p:
        (row,) = p.store.runs()
        assert row["status"] == "failed" and "lost contact with the other ranks" in row["error"]
        assert p.store.last_checkpoint(row["id"])["step"] >= 5
