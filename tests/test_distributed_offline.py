"""`dpo` under torchrun: two CPU ranks (gloo) train exactly as one process does.

As tests/test_distributed_reward.py does for the reward model: the two ranks are a real launch
(`python -m torch.distributed.run ... -m rlhf_workbench.core.cli dpo PROJECT`), on the demo project
with the demo policy, compared with the same settings run by one process; the processes share this
machine's cores, so the runs are short and every process keeps to one thread.
"""

import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file
from torchrun_launch import CLI, TORCHRUN

from rlhf_workbench.core.demo import create_demo_project
from rlhf_workbench.core.events import Failed, Finished
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.offline.train import JOB_PATH
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.runs.work import Work, execute
from rlhf_workbench.core.training.config import config_from_dict

# 172 training pairs in batches of 8, two to a step: 11 steps an epoch, so 12 cross its end (a short
# last batch). No warm-up: step 1 is then the only step whose policy is still the reference.
SETTINGS = ("max_steps=12", "batch_size=8", "log_every=1", "eval_every=6", "save_every=6", "torch_threads=1",
            "warmup_ratio=0")


@pytest.fixture
def env(workbench_home, demo_models):
    # The demo policy is copied in, so that the ranks find it instead of building it side by side.
    return {**os.environ, "RLHF_WORKBENCH_HOME": str(workbench_home), "OMP_NUM_THREADS": "1"}


def _launch(env, project, settings, timeout=180):
    """The CLI under torchrun, on two ranks."""
    sets = [arg for item in settings for arg in ("--set", item)]
    return subprocess.run([*TORCHRUN, *CLI, "dpo", str(project), *sets], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _in_process(project, settings) -> Finished | Failed:
    """The same settings run by one process, here, through the job machinery (the CLI's own path
    without the torchrun launch; a child process of its own would only add seconds)."""
    config = config_from_dict(OfflineConfig, {k: _value(v) for k, v in (item.split("=", 1) for item in settings)})
    with Project.open(project) as p:
        ctx = start_run(p, kind="dpo", name="one process", config=config)
    return execute(Work.job(JOB_PATH, config, ctx), lambda e: None, lambda: False)


def _value(text: str):
    return float(text) if "." in text else int(text)


def _the_run(project):
    with Project.open(project) as p:
        (row,) = p.store.runs()
        run = p.store.run(row["id"])
        series = {name: p.store.metric_series(run["id"], name)
                  for name in ("train/loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "eval/accuracy",
                               "eval/loss")}
        return run, series, project / run["output_dir"]


@pytest.mark.timeout(300)
@pytest.mark.slow
def test_two_cpu_ranks_train_dpo_as_one_process_does(env, tmp_path):
    """With the default sft_weight (1.0): its term is a mean over the chosen responses' tokens, not
    over pairs, so each rank's share is weighted by its tokens (train._token_mean_weight); without
    that the two runs part by ~1e-3 in the weights within 12 steps."""
    one, two = tmp_path / "one", tmp_path / "two"
    create_demo_project(one).close()
    create_demo_project(two).close()
    settings = (*SETTINGS, "gradient_accumulation_steps=2")

    single = _in_process(one, settings)
    assert isinstance(single, Finished), single
    both = _launch(env, two, settings)
    assert both.returncode == 0, both.stdout + both.stderr

    # Only rank 0 prints and records: one start line, one summary, one finished run of kind dpo.
    out = both.stdout
    assert out.count("global batch = per-rank 4 x 2 ranks x accumulation 2 (16 pairs per optimizer step)") == 1
    assert out.count("done: steps 12") == 1 and out.count("step 12/12  loss") == 1
    run1, series1, dir1 = _the_run(one)
    run2, series2, dir2 = _the_run(two)
    assert run1["kind"] == run2["kind"] == "dpo" and run2["status"] == "finished"
    # Every rank computed the reference's log-probs of every pair; rank 0 kept them.
    ref1 = load_file(str(dir1 / "reference_logps.safetensors"))
    ref2 = load_file(str(dir2 / "reference_logps.safetensors"))
    assert ref1.keys() == ref2.keys() and all(torch.allclose(ref1[k], ref2[k], atol=1e-5) for k in ref1)

    assert [s for s, _ in series2["train/loss"]] == [s for s, _ in series1["train/loss"]] == list(range(1, 13))
    assert [s for s, _ in series2["eval/accuracy"]] == [6, 12]
    # Step 1's implicit rewards are float noise (the policy is still its reference), and which way
    # noise tips a pair depends on the batch's shape: its accuracy is left out.
    diffs = {name: max(abs(a - b) for (s, a), (_, b) in zip(series1[name], series2[name])
                       if s > 1 or name != "rewards/accuracies") for name in series1}
    w1 = load_file(str(dir1 / "checkpoints" / "last" / "model.safetensors"))
    w2 = load_file(str(dir2 / "checkpoints" / "last" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    weight_diff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    print(f"max |figure differences| {diffs}, max |weight difference| {weight_diff:.2e}")
    assert weight_diff < 1e-5
    assert all(d < 1e-4 for d in diffs.values()), diffs
