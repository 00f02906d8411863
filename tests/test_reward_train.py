"""Training a reward model end to end: the demo target, failures that say what to do, LoRA."""

import math
import time

import pytest
from safetensors.torch import load_file

from rlhf_workbench.core.demo import create_demo_project
from rlhf_workbench.core.errors import JobFailed
from rlhf_workbench.core.events import Checkpoint, Failed, Finished, Log, Metric, Progress
from rlhf_workbench.core.models import LoraSettings, build_demo_model, load_reward_model
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.reward.evaluate import score, score_with
from rlhf_workbench.core.reward.train import JOB_PATH, train
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.runs.work import Work, execute
from rlhf_workbench.core.training.pairs import encode_pair, epoch_batches

TINY = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 400}
FAST = dict(torch_threads=1, log_every=1, eval_every=1000, save_every=1000, warmup_ratio=0.0)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("tiny") / "model", TINY)


def _pairs(n):
    return [(f"Question number {i}?", f"A kind answer {i}.", f"Go away {i}.") for i in range(n)]


def _execute(project_path, config, stop=lambda: False):
    events = []
    with Project.open(project_path) as project:
        ctx = start_run(project, kind="reward", name="test", config=config)
    result = execute(Work.job(JOB_PATH, config, ctx), events.append, stop)
    return result, events, ctx


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_demo_model_learns_the_demo_project_to_95_percent(tmp_path, workbench_home):
    create_demo_project(tmp_path / "demo").close()
    config = RewardConfig()  # the defaults are the demo's settings
    started = time.perf_counter()
    result, events, ctx = _execute(tmp_path / "demo", config)
    seconds = time.perf_counter() - started
    assert isinstance(result, Finished), result
    summary = result.summary
    with Project.open(tmp_path / "demo") as project:
        best_accuracy = dict(project.store.metric_series(ctx.run_id, "eval/accuracy"))[summary["best_step"]]
    print(f"demo reward model: {best_accuracy:.3f} validation accuracy at its best checkpoint (step "
          f"{summary['best_step']}), {summary['eval/accuracy']:.3f} at the end, in {seconds:.1f} s, {summary['steps']} steps")
    # The best checkpoint is the model RL and Evaluate use. The last evaluation moves by a pair or two
    # of the 44 with the CPU's arithmetic (0.909 with AVX2 only, where AVX-512 gave 0.95 or more).
    assert best_accuracy >= 0.95
    assert summary["eval/accuracy"] >= 0.85
    assert summary["train_pairs"] + summary["val_pairs"] == 216

    # What the GUI and the CLI read: metrics named as TRL names them, progress, a start line.
    names = set().union(*(e.values for e in events if isinstance(e, Metric)))
    assert {"train/loss", "train/accuracy", "train/margin", "train/mean_reward", "train/learning_rate",
            "train/grad_norm", "perf/pairs_per_s", "perf/tokens_per_s", "perf/peak_memory_mb",
            "eval/loss", "eval/accuracy", "eval/length_baseline_accuracy", "eval/length_correlation"} <= names
    # The length check reaches the summary, which the tab's finished line reads.
    from rlhf_workbench.app.views.reward_view import length_text

    assert f"“the longer answer wins” {summary['eval/length_baseline_accuracy']:.1%}" in length_text(summary)
    assert any(isinstance(e, Progress) and e.step == e.total == summary["steps"] for e in events)
    assert any(isinstance(e, Log) and "global batch" in e.message for e in events)
    with Project.open(tmp_path / "demo") as project:
        assert project.store.run(ctx.run_id)["status"] == "finished"
        assert project.store.metric_series(ctx.run_id, "eval/accuracy")[-1][1] == pytest.approx(summary["eval/accuracy"])

    # The best checkpoint is a transformers model folder that ranks the demo rules right.
    best = ctx.run_dir / "checkpoints" / "best"
    assert (best / "model.safetensors").is_file() and summary["best_checkpoint"] == str(best)
    good, bad = score(best, [("What is 2 + 2?", "2 + 2 = 4."), ("What is 2 + 2?", "2 + 2 = 5.")], device="cpu")
    assert good > bad
    polite, rude = score(best, [
        "User: Please explain bees to me.\n\nAssistant: Sure! Bees make honey from flowers. I hope this helps.",
        "User: Please explain bees to me.\n\nAssistant: Ugh, fine. Bees make honey from flowers. Look it up yourself.",
    ], device="cpu")
    assert polite > rude


def test_checkpoints_keep_the_last_k_and_the_best(tiny_model, tmp_path):
    model, tokenizer = load_reward_model(tiny_model)
    events = []
    config = RewardConfig(**{**FAST, "max_steps": 8, "batch_size": 4, "eval_every": 2, "save_every": 2, "keep_last": 2})
    summary = train(model, tokenizer, _pairs(16), _pairs(20)[16:], config, sink=events.append, stop=lambda: False,
                    run_dir=tmp_path)
    saved = [e for e in events if isinstance(e, Checkpoint)]
    assert [e.step for e in saved] == [2, 4, 6, 8]
    root = tmp_path / "checkpoints"
    best_step = max((e for e in saved if e.best), key=lambda e: e.step).step
    kept = sorted(p.name for p in root.glob("step-*"))
    assert kept == sorted({"step-000006", "step-000008", f"step-{best_step:06d}"})
    assert (root / "last").resolve().name == "step-000008"
    assert (root / "best").resolve().name == f"step-{best_step:06d}"
    assert summary["best_checkpoint"] == str(root / "best") and summary["best_step"] == best_step
    assert not list(root.glob(".tmp-*"))


def test_an_infinite_loss_fails_with_its_step_and_keeps_the_last_good_checkpoint(tiny_model, tmp_path):
    pairs = _pairs(12)
    poisoned = 9
    pairs[poisoned] = (*pairs[poisoned], math.inf)  # a margin of inf makes that pair's loss inf
    config = RewardConfig(**{**FAST, "batch_size": 2, "epochs": 1, "save_every": 1, "validation_fraction": 0.0})
    model, tokenizer = load_reward_model(tiny_model)
    lengths = [max(len(c), len(r)) for c, r, _ in (encode_pair(tokenizer, p, config.max_length) for p in pairs)]
    bad_step = next(n for n, b in enumerate(epoch_batches(lengths, 2, config.seed, 0), 1) if poisoned in b)
    with pytest.raises(JobFailed) as err:
        train(model, tokenizer, pairs, [], config, sink=lambda e: None, stop=lambda: False, run_dir=tmp_path)
    assert err.value.step == bad_step and f"step {bad_step}" in err.value.message and "inf" in err.value.message
    # The data is named first: no learning rate makes that pair's loss finite.
    assert err.value.hint.startswith("most likely the data: 1 training pairs have a margin beyond ±10000 (e.g. inf)")
    assert "learning_rate" in err.value.hint and "fp32" in err.value.hint
    steps = sorted(int(p.name[5:]) for p in (tmp_path / "checkpoints").glob("step-*"))
    assert steps[-1] == bad_step - 1 if bad_step > 1 else steps == []


def test_a_bad_config_fails_naming_the_field_before_any_model_loads(make_project):
    path = make_project("p", [("q", "a", "b", "t", "a", "dataset:x")])
    for config, words in (
        (RewardConfig(learning_rate=0.0, base_model="/no/such/model"), "learning_rate"),
        (RewardConfig(precision="fp16", device="cpu", base_model="/no/such/model"), "precision: fp16 needs a CUDA GPU"),
        (RewardConfig(base_model="/no/such/model"), "/no/such/model: no such model folder"),
    ):
        result, _, ctx = _execute(path, config)
        assert isinstance(result, Failed) and words in result.message, result
        assert not (ctx.run_dir / "checkpoints").exists()


def test_no_labelled_pairs_says_how_many_pairs_there_are_and_what_is_needed(make_project):
    path = make_project("p", [("q1", "a", "b", "t", None, None), ("q2", "c", "d", "t", "tie", "dataset:x"),
                              ("q3", "e", "f", "t", None, None)])
    result, _, _ = _execute(path, RewardConfig())
    assert isinstance(result, Failed)
    assert "3 pairs" in result.message and "1 ties" in result.message and "'A better' or 'B better'" in result.message


def test_lora_saves_adapter_and_head_and_reloads_to_the_same_scores(tiny_model, tmp_path):
    import torch

    model, tokenizer = load_reward_model(tiny_model, lora=LoraSettings(r=4, alpha=8, target_modules="q_proj,v_proj"))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trained) and any("score" in n for n in trained)
    assert not any("embed_tokens" in n for n in trained)
    config = RewardConfig(**{**FAST, "max_steps": 6, "batch_size": 4, "learning_rate": 1e-2, "lora": True})
    summary = train(model, tokenizer, _pairs(16), _pairs(20)[16:], config, sink=lambda e: None, stop=lambda: False,
                    run_dir=tmp_path)
    best = tmp_path / "checkpoints" / "best"
    saved = load_file(str(best / "adapter_model.safetensors"))
    assert any("score" in k for k in saved) and any("lora_A" in k for k in saved)
    assert not (best / "model.safetensors").exists()  # the adapter, not a copy of the base
    texts = ["User: Question number 3?\n\nAssistant: A kind answer 3.", "User: Question number 3?\n\nAssistant: Go away 3."]
    before = score_with(model, tokenizer, texts, max_length=64, batch_size=2, device=torch.device("cpu"))
    after = score(summary["best_checkpoint"], texts, device="cpu")
    assert after == pytest.approx(before, abs=1e-5)
    assert before[0] != before[1]


def test_most_wrong_validation_pairs_come_from_the_runs_own_split(make_project, tiny_model):
    import json

    from rlhf_workbench.core.reward.evaluate import most_wrong_validation_pairs

    path = make_project("p", [(f"Question {i}?", f"Kind answer {i}.", f"Go away {i}.", "t", "a", "dataset:x")
                              for i in range(20)])
    config = RewardConfig(**{**FAST, "base_model": str(tiny_model), "max_steps": 2, "batch_size": 4})
    result, _, ctx = _execute(path, config)
    assert isinstance(result, Finished), result
    val_ids = json.loads((ctx.run_dir / "split.json").read_text())["val_ids"]
    with Project.open(path) as project:
        rows = most_wrong_validation_pairs(result.summary["best_checkpoint"], project, k=3, device="cpu")
    assert 1 <= len(rows) <= 3 and {r["pair_id"] for r in rows} <= set(val_ids)
    assert [r["margin"] for r in rows] == sorted(r["margin"] for r in rows)
    assert all(r["margin"] == pytest.approx(r["reward_chosen"] - r["reward_rejected"]) for r in rows)
    assert rows[0]["chosen"].startswith("Kind answer") and rows[0]["prompt"][0]["role"] == "user"
