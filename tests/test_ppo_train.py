"""The PPO loop on real tiny models (random init, tokenizer trained here) in a real project:
events and metric names, exact resume, LoRA's reference, failures with clear messages, the CLI."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from rlhf_workbench.core.errors import ConfigError, JobFailed
from rlhf_workbench.core.events import Checkpoint, Log, Metric, Sample
from rlhf_workbench.core.models import build_demo_model
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.rl.models import load_models
from rlhf_workbench.core.rl.train import JOB_PATH, train
from rlhf_workbench.core.runs.records import resume_run, start_run
from rlhf_workbench.core.runs.work import Work, execute
from rlhf_workbench.core.training.policy import POLICY_DIR, load_policy

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 512}
OTHER = {**TINY, "vocab_size": 300, "seed": 1}  # another tokenizer: the reward model re-tokenizes
PROMPTS = [f"Tell me about {x}." for x in ("bees", "the ocean", "trees", "bread", "the moon", "rain", "cats", "bicycles")]
METRICS = {
    "objective/kl", "objective/entropy", "objective/non_score_reward", "objective/rlhf_reward", "objective/scores",
    "policy/approxkl_avg", "policy/clipfrac_avg", "policy/entropy_avg", "loss/policy_avg", "loss/value_avg",
    "val/clipfrac_avg", "val/ratio", "val/num_eos_tokens", "val/response_length", "perf/episodes_per_s",
    "perf/tokens_per_s", "time/generation_s", "time/scoring_s", "time/update_s", "perf/peak_memory_mb", "episodes",
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo-models")
    return {
        "policy": build_demo_model(root / "policy", TINY),
        "reward": build_demo_model(root / "reward", {**TINY, "seed": 7}),
        "other": build_demo_model(root / "other", OTHER),
    }


def _config(folders, **changes) -> RLConfig:
    base = dict(
        policy=str(folders["policy"]), reward_model=str(folders["reward"]), batch_size=8, num_mini_batches=2,
        max_new_tokens=8, total_episodes=32, save_every=2, sample_every=1, samples_per_report=2, seed=3,
        learning_rate=1e-3,
    )
    return RLConfig(**(base | changes)).validate()


def _project(make_project):
    pairs = [(p, "A fine answer.", "A poor answer.", "demo", None, None) for p in PROMPTS]
    pairs += [("Unrelated prompt", "x", "y", "other", None, None)]
    return make_project("ppo", pairs)


def _run(path, config, *, stop_after=None):
    events = []

    def stop():
        return stop_after is not None and sum(isinstance(e, Metric) for e in events) >= stop_after

    with Project.open(path) as project:
        ctx = start_run(project, kind="ppo", name="t", config=config)
    result = execute(Work.job(JOB_PATH, config, ctx), events.append, stop)
    return ctx, result, events


def test_a_run_reports_every_metric_samples_and_checkpoints(folders, make_project):
    path = _project(make_project)
    config = _config(folders, prompt_origin="demo")
    ctx, result, events = _run(path, config)
    assert not hasattr(result, "message"), getattr(result, "message", None)
    metrics = [e for e in events if isinstance(e, Metric)]
    assert [m.step for m in metrics] == [1, 2, 3, 4]
    assert set(metrics[0].values) >= METRICS
    assert all(math.isfinite(v) for m in metrics for v in m.values.values())
    # Dropout is off and the sampling log-probs are the policy's: the first pass starts at ratio 1.
    assert metrics[0].values["val/ratio"] == pytest.approx(1.0, abs=0.05)
    assert metrics[0].values["objective/kl"] == pytest.approx(0.0, abs=1e-4)  # policy == reference at first
    # The demo's prompts have a known goal: its rules' share, beside the reward model's score.
    assert all(0.0 <= m.values["objective/gold_score"] <= 1.0 for m in metrics)
    assert result.summary["gold_score"] == metrics[-1].values["objective/gold_score"]
    samples = [e for e in events if isinstance(e, Sample)]
    assert samples and all(s.prompt in PROMPTS for s in samples)  # only the 'demo' prompts
    assert all("kl" in s.extra for s in samples)
    checkpoints = [e for e in events if isinstance(e, Checkpoint)]
    assert [c.step for c in checkpoints] == [2, 4]
    policy, _ = load_policy(checkpoints[-1].path + "/" + POLICY_DIR)  # a plain causal-LM folder
    assert sum(p.numel() for p in policy.parameters()) > 0
    with Project.open(path) as project:
        assert project.store.run(ctx.run_id)["status"] == "finished"
        assert project.store.metric_series(ctx.run_id, "objective/kl")
        assert project.store.samples(ctx.run_id)[0]["extra"].keys() == {"kl"}


@pytest.mark.slow
def test_a_stopped_run_resumes_exactly(folders, make_project):
    path = _project(make_project)
    config = _config(folders, save_every=100)
    _, straight, straight_events = _run(path, config)
    ctx, stopped, _ = _run(path, config, stop_after=2)
    assert stopped.stopped
    with Project.open(path) as project:
        resumed_ctx = resume_run(project, ctx.run_id)
    events = []
    result = execute(Work.job(JOB_PATH, config, resumed_ctx), events.append, lambda: False)
    assert not result.stopped
    resumed = [e for e in events if isinstance(e, Metric)]
    expected = [e for e in straight_events if isinstance(e, Metric)][2:]
    assert [m.step for m in resumed] == [3, 4]
    for got, want in zip(resumed, expected):
        for name in ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg"):
            assert got.values[name] == pytest.approx(want.values[name], rel=1e-4, abs=1e-6), name


def _finished_reward_run(path, model_folder) -> str:
    """A reward-model run of the project, finished, whose best checkpoint is `model_folder`."""
    with Project.open(path) as project:
        ctx = start_run(project, kind="reward", name="rm", config={})
        shutil.copytree(model_folder, ctx.run_dir / "checkpoints" / "best")
        project.store.set_run_status(ctx.run_id, "finished")
    return ctx.run_id


@pytest.mark.slow
def test_latest_reward_model_stays_the_one_the_run_started_with(folders, make_project, tmp_path):
    path = _project(make_project)
    config = _config(folders, total_episodes=16, save_every=1)
    _, _, straight_events = _run(path, config)
    first = _finished_reward_run(path, folders["reward"])
    latest = _config(folders, total_episodes=16, save_every=1, reward_model="latest")
    ctx, stopped, events = _run(path, latest, stop_after=1)
    assert stopped.stopped
    assert any(isinstance(e, Log) and first in e.message for e in events)
    # A reward model trained while the run is stopped is now the project's latest...
    _finished_reward_run(path, build_demo_model(tmp_path / "newer", {**TINY, "seed": 11}))
    with Project.open(path) as project:
        resumed_ctx = resume_run(project, ctx.run_id)
    events = []
    result = execute(Work.job(JOB_PATH, latest, resumed_ctx), events.append, lambda: False)
    assert not hasattr(result, "message"), getattr(result, "message", None)
    # ...but the resumed run goes on scoring with the one it started with.
    (resumed,) = [e for e in events if isinstance(e, Metric)]
    (expected,) = [e for e in straight_events if isinstance(e, Metric) and e.step == 2]
    assert resumed.step == 2
    assert resumed.values["objective/scores"] == pytest.approx(expected.values["objective/scores"], rel=1e-4, abs=1e-6)


def test_lora_keeps_one_copy_of_the_base_weights_and_its_reference_is_the_base(folders):
    config = _config(folders, lora=True, lora_r=4, total_episodes=16)
    models = load_models(config)
    assert models.reference is None
    base_before = {n: p.detach().clone() for n, p in models.policy.named_parameters() if "lora_" not in n}
    events = []
    train(models, PROMPTS, config, sink=events.append, stop=lambda: False)
    after = dict(models.policy.named_parameters())
    assert all(torch.equal(after[n], w) for n, w in base_before.items())  # only the adapter learned
    assert any(isinstance(e, Metric) for e in events)


def test_a_reward_model_with_another_tokenizer_scores_the_decoded_text(folders):
    config = _config(folders, reward_model=str(folders["other"]), total_episodes=8)
    logs = []
    models = load_models(config, log=logs.append)
    assert models.reward_tokenizer.vocab_size != models.tokenizer.vocab_size
    assert logs and "value model starts from the policy" in logs[0]
    events = []
    train(models, PROMPTS, config, sink=events.append, stop=lambda: False)
    assert [e.step for e in events if isinstance(e, Metric)] == [1]


def test_a_nan_fails_the_run_with_the_update_and_a_hint(folders, make_project):
    _project(make_project)
    config = _config(folders)
    models = load_models(config)
    with torch.no_grad():
        next(models.value.parameters()).fill_(float("nan"))
    with pytest.raises(JobFailed) as failure:
        train(models, PROMPTS, config, sink=lambda e: None, stop=lambda: False)
    assert failure.value.step == 1 and "learning_rate" in failure.value.hint


def test_bad_settings_are_refused_naming_the_setting(folders, make_project):
    with pytest.raises(ConfigError, match="num_mini_batches"):
        RLConfig(batch_size=10, num_mini_batches=4).validate()
    with pytest.raises(ConfigError, match="kl_estimator"):
        RLConfig(kl_estimator="k2").validate()
    path = _project(make_project)
    _, result, _ = _run(path, _config(folders, reward_model="latest"))
    assert "no finished reward-model run" in result.message
    _, result, _ = _run(path, _config(folders, prompt_origin="nothing-like-this"))
    assert "no prompts" in result.message and "nothing-like-this" in result.message
    _, result, _ = _run(path, _config(folders, policy=str(folders["policy"].parent / "missing")))
    assert result.message.startswith("policy:")


def test_the_ppo_command_runs_headless_and_resumes(folders, make_project, capsys):
    from rlhf_workbench.core.cli import main

    path = _project(make_project)
    sets = [f"policy={folders['policy']}", f"reward_model={folders['reward']}", "total_episodes=16", "batch_size=8",
            "max_new_tokens=6"]
    code = main(["ppo", str(path), *sum((["--set", s] for s in sets), [])])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "update 2/2" in out and "last checkpoint:" in out
    code = main(["ppo", str(path), "--set", "no_such_setting=1"])
    assert code != 0
    assert "no_such_setting" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["rloo", "grpo"])
def test_the_rl_command_runs_each_method_headless_and_resumes_it(folders, make_project, capsys, method):
    from rlhf_workbench.core.cli import main

    path = _project(make_project)
    sets = [f"method={method}", f"policy={folders['policy']}", f"reward_model={folders['reward']}",
            "total_episodes=24", "batch_size=8", "num_generations=4", "max_new_tokens=6", "save_every=1"]
    code = main(["rl", str(path), *sum((["--set", s] for s in sets), []), "--set", "beta=0.0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"by {method.upper()} against reward model" in out and "update 3/3" in out and "group std" in out
    assert "no reference (beta 0)" in out  # nothing to hold the policy near its start: nothing loaded
    with Project.open(path) as project:
        (run,) = project.store.runs()
        assert run["kind"] == method and run["id"].startswith(f"{method}-")
        names = project.store.metric_names(run["id"])
        assert {"reward_std", "frac_reward_zero_std", "policy/clipfrac_avg"} <= set(names)
        assert "loss/value_avg" not in names and "objective/kl" not in names  # no value model, no reference
        samples = project.store.samples(run["id"])
        assert samples and all("advantage" in s["extra"] and "group" in s["extra"] for s in samples)
        project.store.set_run_status(run["id"], "cancelled")  # as if stopped: it resumes as `rl` and not as `ppo`
    code = main(["ppo", str(path), "--resume", run["id"]])
    assert code != 0 and f"has method {method}; this command runs method ppo" in capsys.readouterr().err
    assert main(["rl", str(path), "--resume", run["id"]]) == 0
    # A setting of another method is refused, naming it.
    assert main(["rl", str(path), "--set", f"method={method}", "--set", "kl_coef=0.1"]) != 0
    assert "kl_coef: is a setting of PPO" in capsys.readouterr().err
    assert main(["ppo", str(path), "--set", f"method={method}"]) != 0
    assert f"method: this command runs method ppo, not {method}" in capsys.readouterr().err


def test_the_gold_is_the_share_of_answers_following_the_demo_rules_and_only_on_demo_prompts():
    from rlhf_workbench.core.rl.train import demo_gold

    sums = [[{"role": "user", "content": "What is 2 + 3?"}], [{"role": "user", "content": "What is 4 + 4?"}]]
    gold = demo_gold(sums + [[{"role": "user", "content": "Tell me about bees."}]])
    assert gold(sums, ["It is 5.", "It is 9."]) == 0.5 and gold(sums, ["5", "8"]) == 1.0
    assert demo_gold([[{"role": "user", "content": "Write me a poem."}], sums[0]]) is None  # no rule known for it
    assert demo_gold([]) is None


def test_scores_are_reported_after_the_missing_eos_penalty_as_trl_does(folders, make_project):
    """objective/scores is TRL's (penalised), so rlhf_reward = scores + non_score_reward adds up;
    the reward model's own mean is reported beside it. (It used to be the unpenalised mean.)"""
    path = _project(make_project)
    config = _config(folders, prompt_origin="demo", missing_eos_penalty=5.0, max_new_tokens=2, total_episodes=16)
    _, result, events = _run(path, config)
    assert not hasattr(result, "message"), getattr(result, "message", None)
    (first, *_) = [e.values for e in events if isinstance(e, Metric)]
    unended = 1 - first["val/num_eos_tokens"] / config.batch_size
    assert unended > 0  # two tokens: most responses do not end
    assert first["objective/scores"] == pytest.approx(first["objective/scores_before_eos_penalty"] - 5.0 * unended,
                                                      abs=1e-4)
    assert first["objective/rlhf_reward"] == pytest.approx(
        first["objective/scores"] + first["objective/non_score_reward"], abs=1e-4)


@pytest.mark.slow
def test_the_reward_checkpoint_a_run_started_with_is_kept_and_used_on_resume(folders, make_project, tmp_path):
    """reward_model names a reward run: the run scores with the checkpoint that run's `best` named
    when it started. The reward run, resumed meanwhile, moved `best` on and pruned that checkpoint
    (keep_last): the resumed PPO run scored with another model, or could not load one at all."""
    import os

    from rlhf_workbench.core.training.checkpoints import _prune

    path = _project(make_project)
    config = _config(folders, total_episodes=16, save_every=1)
    _, _, straight_events = _run(path, config)
    with Project.open(path) as project:
        rm = start_run(project, kind="reward", name="rm", config={})
        project.store.set_run_status(rm.run_id, "finished")
    checkpoints = rm.run_dir / "checkpoints"
    for step, model in ((2, folders["reward"]), (4, build_demo_model(tmp_path / "newer", {**TINY, "seed": 11}))):
        shutil.copytree(model, checkpoints / f"step-{step:06d}")
        (checkpoints / f"step-{step:06d}" / "trainer_state.json").write_text("{}")
    os.symlink("step-000002", checkpoints / "best")
    by_run = _config(folders, total_episodes=16, save_every=1, reward_model=rm.run_id)
    ctx, stopped, _ = _run(path, by_run, stop_after=1)
    assert stopped.stopped

    # The reward run resumed and found a better model: best moves on, and keep_last 1 prunes.
    (checkpoints / "best").unlink()
    os.symlink("step-000004", checkpoints / "best")
    _prune(rm.run_dir, keep_last=1)
    assert (checkpoints / "step-000002").is_dir()  # kept: the PPO run scores with it

    with Project.open(path) as project:
        resumed_ctx = resume_run(project, ctx.run_id)
    events = []
    result = execute(Work.job(JOB_PATH, by_run, resumed_ctx), events.append, lambda: False)
    assert not hasattr(result, "message"), getattr(result, "message", None)
    (resumed,) = [e for e in events if isinstance(e, Metric)]
    (expected,) = [e for e in straight_events if isinstance(e, Metric) and e.step == 2]
    assert resumed.values["objective/scores"] == pytest.approx(expected.values["objective/scores"], rel=1e-4, abs=1e-6)


def test_a_reward_model_picked_as_gold_scores_the_same_answers(folders, make_project, tmp_path):
    import shutil

    from rlhf_workbench.core.events import Log
    from rlhf_workbench.core.models import load_reward_model, quiet_transformers

    path = _project(make_project)
    # A reward model with its head saved (the demo folder is a bare LM that gets a new head at each
    # load), and the same weights in another folder: as gold they must give exactly the proxy's
    # scores, which shows the gold scores the very answers the proxy scored.
    model, tokenizer = load_reward_model(folders["reward"], trainable=False)
    reward = tmp_path / "reward"
    with quiet_transformers():
        model.save_pretrained(reward)
    tokenizer.save_pretrained(reward)
    gold = tmp_path / "gold"
    shutil.copytree(reward, gold)
    config = _config(folders, prompt_origin="demo", total_episodes=16, reward_model=str(reward), gold_model=str(gold))
    ctx, result, events = _run(path, config)
    assert not hasattr(result, "message"), getattr(result, "message", None)
    metrics = [e for e in events if isinstance(e, Metric)]
    assert len(metrics) == 2
    for m in metrics:
        assert m.values["objective/gold_score"] == pytest.approx(m.values["objective/scores"], abs=1e-5)
    assert any(isinstance(e, Log) and e.message.startswith(f"gold: reward model {gold}") for e in events)
    # Another judge, on prompts that are not the demo's: a gold all the same.
    config = _config(folders, total_episodes=8, gold_model=str(folders["other"]))
    _, result, events = _run(path, config)
    assert "objective/gold_score" in [e for e in events if isinstance(e, Metric)][0].values
    with pytest.raises(ConfigError, match="gold_model: is the reward model itself"):
        _config(folders, gold_model=str(folders["reward"]))
    _, result, _ = _run(path, _config(folders, gold_model=str(tmp_path / "missing")))
    assert "gold_model" in result.message
