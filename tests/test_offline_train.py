"""DPO and SFT end to end: the jobs on the demo project through the run machinery, exact resume,
LoRA, and the failures that say what to do.

Every run is the real job (`Work.job(JOB_PATH, ...)` executed as the runners execute it) on the
demo project with the demo policy, kept to a few steps.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf_workbench.core.demo import create_demo_project
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.events import Checkpoint, Failed, Finished, Log, Metric
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.offline.method import OFFLINE
from rlhf_workbench.core.offline.train import JOB_PATH, REFERENCE_FILE, DPOObjective, SFTObjective
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.runs.records import resume_run, start_run
from rlhf_workbench.core.runs.work import Work, execute
from rlhf_workbench.core.training.pairs import SPLIT_FILE, pairs_by_id
from rlhf_workbench.core.training.policy import load_policy

FAST = dict(torch_threads=1, log_every=1, eval_every=1000, save_every=1000, warmup_ratio=0.0, device="cpu")
CPU = torch.device("cpu")


@pytest.fixture
def demo(tmp_path, home):
    """A fresh demo project (216 labelled pairs); `home` holds the demo policy, built once."""
    create_demo_project(tmp_path / "demo").close()
    return tmp_path / "demo"


def _execute(project_path, config: OfflineConfig, stop=lambda: False, kind=None):
    events = []
    with Project.open(project_path) as project:
        ctx = start_run(project, kind=kind or config.method, name="test", config=config)
    result = execute(Work.job(JOB_PATH, config, ctx), events.append, stop)
    return result, events, ctx


def _names(events) -> set[str]:
    return set().union(*(e.values for e in events if isinstance(e, Metric)))


def _logs(events) -> list[str]:
    return [e.message for e in events if isinstance(e, Log)]


def _val_data(project_path, run_dir, method: str):
    split = json.loads((run_dir / SPLIT_FILE).read_text())
    with Project.open(project_path) as project:
        pairs, _ = pairs_by_id(project.store, split["val_ids"])
    return pairs if method == "dpo" else [(p[0], p[1]) for p in pairs]


def test_dpo_job_trains_the_demo_policy_and_its_checkpoint_is_what_was_measured(demo):
    config = OfflineConfig(**{**FAST, "method": "dpo", "max_steps": 8, "eval_every": 8, "save_every": 4})
    result, events, ctx = _execute(demo, config)
    assert isinstance(result, Finished) and not result.stopped, result
    summary = result.summary
    assert summary["steps"] == 8 and summary["train_pairs"] + summary["val_pairs"] == 216
    assert {"train/loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
            "logps/chosen", "logps/rejected", "train/learning_rate", "train/grad_norm", "perf/pairs_per_s",
            "perf/tokens_per_s", "eval/loss", "eval/accuracy", "eval/rewards/margins", "eval/logps/chosen"} <= _names(events)
    assert [e.step for e in events if isinstance(e, Checkpoint)] == [4, 8]
    assert (ctx.run_dir / REFERENCE_FILE).is_file()
    assert any("reference's log-probabilities of 216 pairs computed" in m for m in _logs(events))
    with Project.open(demo) as project:
        assert project.store.run(ctx.run_id)["status"] == "finished"
        assert project.store.run(ctx.run_id)["kind"] == "dpo"
        assert project.store.metric_series(ctx.run_id, "eval/accuracy")[-1] == (8, pytest.approx(summary["eval/accuracy"]))

    # The start, measured as the run measures: the policy is its own reference, every implicit
    # reward 0 up to float rounding (which decides the few "right" pairs), the loss log 2.
    reference, tokenizer = load_policy("demo")
    val_pairs = _val_data(demo, ctx.run_dir, "dpo")
    assert len(val_pairs) == summary["val_pairs"]
    objective = DPOObjective(reference, tokenizer, [], val_pairs, config, CPU, None, lambda e: None)
    start = objective.evaluate(reference)
    assert start["eval/loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert abs(start["eval/rewards/margins"]) < 1e-5
    # Eight steps later the implicit reward ranks most validation pairs right.
    print(f"DPO validation accuracy {start['eval/accuracy']:.3f} -> {summary['eval/accuracy']:.3f}")
    assert summary["eval/accuracy"] >= 0.75 and summary["eval/accuracy"] > start["eval/accuracy"]
    assert summary["eval/loss"] < math.log(2) and summary["eval/rewards/margins"] > 0

    # The checkpoints load as policies, and the same weights give the figures the run recorded: the
    # run folder names its latest checkpoint (step 8), `best` the better of steps 4 and 8.
    last, _ = load_policy(ctx.run_dir)
    again = objective.evaluate(last)
    assert again["eval/accuracy"] == pytest.approx(summary["eval/accuracy"], abs=1e-9)
    assert again["eval/loss"] == pytest.approx(summary["eval/loss"], abs=1e-5)
    best = ctx.run_dir / "checkpoints" / "best"
    assert summary["best_checkpoint"] == str(best) and (best / "model.safetensors").is_file()
    with Project.open(demo) as project:
        recorded = dict(project.store.metric_series(ctx.run_id, "eval/loss"))
    assert summary["best_step"] in (4, 8) and sorted(recorded) == [4, 8]
    assert objective.evaluate(load_policy(best)[0])["eval/loss"] == pytest.approx(recorded[summary["best_step"]], abs=1e-5)


def test_sft_job_lowers_the_validation_loss_of_the_chosen_responses(demo):
    config = OfflineConfig(**{**FAST, "method": "sft", "max_steps": 6, "save_every": 6, "eval_every": 6})
    result, events, ctx = _execute(demo, config)
    assert isinstance(result, Finished), result
    summary = result.summary
    assert summary["train_sequences"] + summary["val_sequences"] == 216
    assert {"train/loss", "mean_token_accuracy", "eval/loss", "eval/mean_token_accuracy", "perf/sequences_per_s",
            "train/learning_rate"} <= _names(events)
    assert not any(name.startswith(("rewards/", "logps/")) for name in _names(events))
    assert not (ctx.run_dir / REFERENCE_FILE).exists()
    with Project.open(demo) as project:
        assert project.store.run(ctx.run_id)["kind"] == "sft"

    policy, tokenizer = load_policy("demo")
    objective = SFTObjective(tokenizer, [], _val_data(demo, ctx.run_dir, "sft"), config, CPU)
    start = objective.evaluate(policy)
    trained, _ = load_policy(summary["best_checkpoint"])
    after = objective.evaluate(trained)
    assert after["eval/loss"] == pytest.approx(summary["eval/loss"], abs=1e-5)
    print(f"SFT validation loss {start['eval/loss']:.4f} -> {after['eval/loss']:.4f}")
    assert after["eval/loss"] < start["eval/loss"]


def _stop_after(n):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) >= n

    return stop


def _weights(run_dir):
    return load_file(str(run_dir / "checkpoints" / "last" / "model.safetensors"))


@pytest.mark.parametrize("method", ["dpo", "sft"])
def test_a_stopped_and_resumed_run_ends_where_an_uninterrupted_one_does(demo, method):
    # 172 training examples in 11 batches of 16, two to a step: 6 steps an epoch, so 8 steps cross
    # an epoch's end, and the stop at step 3 falls mid-epoch with warm-up still running.
    config = OfflineConfig(**{**FAST, "method": method, "max_steps": 8, "batch_size": 16,
                              "gradient_accumulation_steps": 2, "warmup_ratio": 0.5, "eval_every": 2,
                              "save_every": 5, "keep_last": 1})
    with Project.open(demo) as project:
        straight = start_run(project, kind=method, name="straight", config=config)
        interrupted = start_run(project, kind=method, name="interrupted", config=config)
    whole = execute(Work.job(JOB_PATH, config, straight), lambda e: None, lambda: False)
    assert isinstance(whole, Finished) and whole.summary["steps"] == 8, whole

    first = execute(Work.job(JOB_PATH, config, interrupted), lambda e: None, _stop_after(3))
    assert isinstance(first, Finished) and first.stopped and first.summary["steps"] == 3
    reference = interrupted.run_dir / REFERENCE_FILE
    kept = reference.stat().st_mtime_ns if method == "dpo" else None
    with Project.open(demo) as project:
        again = resume_run(project, interrupted.run_id)
    assert again.resume and again.resume_step == 3
    events = []
    second = execute(Work.job(JOB_PATH, config, again), events.append, lambda: False)
    assert isinstance(second, Finished) and not second.stopped and second.summary["steps"] == 8, second
    assert [e.step for e in events if isinstance(e, Checkpoint)] == [5, 8]
    if method == "dpo":
        # The reference's log-probs are read back, not recomputed by a policy that has moved since.
        assert any(f"read back from {REFERENCE_FILE}" in m for m in _logs(events))
        assert not any("log-probabilities of" in m and "computed" in m for m in _logs(events))
        assert reference.stat().st_mtime_ns == kept
        assert load_file(str(reference)).keys() == {"train_chosen", "train_rejected", "val_chosen", "val_rejected"}

    a, b = _weights(straight.run_dir), _weights(interrupted.run_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-6), name
    with Project.open(demo) as project:
        losses_a = project.store.metric_series(straight.run_id, "train/loss")
        losses_b = project.store.metric_series(interrupted.run_id, "train/loss")
        evals_a = project.store.metric_series(straight.run_id, "eval/loss")
        evals_b = project.store.metric_series(interrupted.run_id, "eval/loss")
    assert [s for s, _ in losses_b] == list(range(1, 9))  # every step once, none twice
    assert [v for _, v in losses_b] == pytest.approx([v for _, v in losses_a], abs=1e-6)
    assert [s for s, _ in evals_b] == [s for s, _ in evals_a] == [2, 4, 5, 6, 8]  # 5: a checkpoint's own
    assert [v for _, v in evals_b] == pytest.approx([v for _, v in evals_a], abs=1e-6)


def test_a_setting_of_the_other_method_is_refused_naming_it(demo):
    for config, words in (
        (OfflineConfig(method="sft", beta=0.5), "beta: is a setting of DPO, not of SFT"),
        (OfflineConfig(method="sft", loss_type="ipo"), "loss_type: is a setting of DPO, not of SFT"),
        (OfflineConfig(method="dpo", sft_data="/data/sft.jsonl"), "sft_data: is a setting of SFT, not of DPO"),
    ):
        result, _, ctx = _execute(demo, config)
        assert isinstance(result, Failed) and result.message.startswith(words), result
        assert not (ctx.run_dir / "checkpoints").exists() and not (ctx.run_dir / SPLIT_FILE).exists()


def test_split_from_must_name_a_reward_model_run_that_trained(demo):
    with Project.open(demo) as project:
        other = start_run(project, kind="dpo", name="not a reward model", config=OfflineConfig())
        untrained = start_run(project, kind="reward", name="never ran", config={})
    for split_from, words in (
        ("no-such-run", "split_from: 'no-such-run' is not a reward-model run of this project"),
        (other.run_id, f"split_from: '{other.run_id}' is not a reward-model run of this project"),
        (untrained.run_id, f"split_from: reward-model run {untrained.run_id} has no {SPLIT_FILE}"),
    ):
        result, _, _ = _execute(demo, OfflineConfig(**FAST, max_steps=1, split_from=split_from))
        assert isinstance(result, Failed) and result.message.startswith(words), result


def test_dpo_validates_on_the_reward_models_split(demo):
    """With split_from, on that run's pairs; without, on the split the reward model's seed makes."""
    from rlhf_workbench.core.reward.config import RewardConfig
    from rlhf_workbench.core.reward.train import JOB_PATH as REWARD_JOB

    reward_config = RewardConfig(max_steps=1, torch_threads=1, eval_every=1000, save_every=1000,
                                 validation_fraction=0.3, seed=5)
    with Project.open(demo) as project:
        reward = start_run(project, kind="reward", name="rm", config=reward_config)
    assert isinstance(execute(Work.job(REWARD_JOB, reward_config, reward), lambda e: None, lambda: False), Finished)
    reward_split = json.loads((reward.run_dir / SPLIT_FILE).read_text())

    result, events, ctx = _execute(demo, OfflineConfig(**FAST, max_steps=1, split_from=reward.run_id))
    assert isinstance(result, Finished), result
    split = json.loads((ctx.run_dir / SPLIT_FILE).read_text())
    assert (split["train_ids"], split["val_ids"]) == (reward_split["train_ids"], reward_split["val_ids"])
    assert result.summary["val_pairs"] == len(reward_split["val_ids"])
    assert any(f"reward-model run {reward.run_id}'s split" in m for m in _logs(events))

    same_seed = OfflineConfig(**FAST, max_steps=1, validation_fraction=0.3, seed=5)
    result, _, ctx = _execute(demo, same_seed)
    assert isinstance(result, Finished), result
    assert json.loads((ctx.run_dir / SPLIT_FILE).read_text())["val_ids"] == reward_split["val_ids"]


def test_no_labelled_pairs_says_what_is_needed(make_project, home):
    path = make_project("p", [("q1", "a", "b", "t", None, None), ("q2", "c", "d", "t", "tie", "dataset:x")])
    for method in ("dpo", "sft"):
        result, _, ctx = _execute(path, OfflineConfig(method=method))
        assert isinstance(result, Failed), result
        assert "no labelled pairs to train on" in result.message and "'A better' or 'B better'" in result.message
        assert "sft_data" in result.hint
        assert not (ctx.run_dir / "checkpoints").exists()


def test_sft_learns_from_a_file_of_its_own(make_project, home, tmp_path):
    data = tmp_path / "examples.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} + 1?", "completion": f"{i} + 1 = {i + 1}."}) + "\n"
                            for i in range(30)), encoding="utf-8")
    path = make_project("p", [])  # no pairs at all: the file is the data
    config = OfflineConfig(**{**FAST, "method": "sft", "sft_data": str(data), "max_steps": 3, "batch_size": 8,
                              "learning_rate": 1e-3, "eval_every": 3})
    result, events, ctx = _execute(path, config)
    assert isinstance(result, Finished), result
    summary = result.summary
    assert summary["train_sequences"] + summary["val_sequences"] == 30 and summary["val_sequences"] > 0
    assert any(f"validation examples (split by prompt) from {data}" in m for m in _logs(events))
    assert not (ctx.run_dir / SPLIT_FILE).exists()  # the split is the file's, not the project's pairs
    trained, tokenizer = load_policy(summary["best_checkpoint"])
    ids = tokenizer("User: What is 4 + 1?\n\nAssistant: 4 + 1 = 5.")["input_ids"]
    assert trained(input_ids=torch.tensor([ids])).logits.shape[-1] == len(tokenizer)

    data.write_text('{"prompt": "Hi?", "response": "Hello."}\n{"prompt": "Bye?"}\n', encoding="utf-8")
    result, _, _ = _execute(path, config)
    assert isinstance(result, Failed) and f"{data}, line 2: 'response' is missing or empty" in result.message


def test_lora_dpo_saves_an_adapter_that_loads_over_the_demo_policy(demo):
    config = OfflineConfig(**{**FAST, "method": "dpo", "max_steps": 3, "save_every": 3, "eval_every": 3, "lora": True,
                              "lora_r": 4, "lora_target_modules": "q_proj,v_proj", "learning_rate": 1e-2})
    result, events, ctx = _execute(demo, config)
    assert isinstance(result, Finished), result
    best = ctx.run_dir / "checkpoints" / "best"
    assert (best / "adapter_model.safetensors").is_file() and not (best / "model.safetensors").exists()
    saved = load_file(str(best / "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved)
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in saved.items())  # the adapter trained

    adapted, tokenizer = load_policy(best)
    assert hasattr(adapted, "peft_config")
    base, _ = load_policy("demo")
    ids = torch.tensor([tokenizer("User: What is 2 + 2?\n\nAssistant: 2 + 2 = 4.")["input_ids"]])
    with torch.no_grad():
        assert not torch.allclose(adapted(input_ids=ids).logits, base(input_ids=ids).logits, atol=1e-4)
    # Measured as the run measured it: the adapter's validation accuracy is the run's.
    objective = DPOObjective(base, tokenizer, [], _val_data(demo, ctx.run_dir, "dpo"), config, CPU, None, lambda e: None)
    assert objective.evaluate(adapted)["eval/accuracy"] == pytest.approx(result.summary["eval/accuracy"], abs=1e-9)


def test_the_sft_command_refuses_a_dpo_setting_before_recording_a_run(demo):
    """`rlhf-workbench sft` is the offline method with method = sft: a DPO setting is named and refused."""
    cli = Path(sys.executable).with_name("rlhf-workbench")
    result = subprocess.run([str(cli), "sft", str(demo), "--set", "beta=0.5"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "beta: is a setting of DPO, not of SFT" in result.stderr
    # Asking the sft command for DPO, the default method, is refused too, not quietly run as SFT.
    from rlhf_workbench.core.runs.terminal import config_from_options

    with pytest.raises(WorkbenchError, match="method: this command runs method sft, not dpo"):
        config_from_options(OFFLINE, None, ["method=dpo"], fixed={"method": "sft"})
    assert config_from_options(OFFLINE, None, ["method=sft"], fixed={"method": "sft"}).method == "sft"
    with Project.open(demo) as project:
        assert project.store.runs() == []
