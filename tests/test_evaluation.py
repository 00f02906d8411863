"""Evaluate (core/evaluation.py): held-out prompts no run trains on, policies sampled there side by
side with proxy, gold, KL, length and distinct-2, and policies ranked from people's verdicts.

The policies are real: the demo policy and run records whose checkpoints hold it with its weights
nudged (test_policy_compare.fake_trained_checkpoint); the reward model is a real one with a head.
"""

from __future__ import annotations

import json
import math

import pytest
from test_policy_compare import fake_trained_checkpoint

from rlhf_workbench.core.cli import main
from rlhf_workbench.core.compare import compare_policies, compare_with_reference
from rlhf_workbench.core.demo import DEMO_HELDOUT_PROMPTS, DEMO_ORIGIN, create_demo_project, follows_demo_rule
from rlhf_workbench.core.errors import ConfigError, WorkbenchError
from rlhf_workbench.core.evaluation import EvaluateSettings, evaluate_policies, hold_out, policy_ranking
from rlhf_workbench.core.labeling import LabelSession
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.records import user_prompt
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.rl.train import project_prompts
from rlhf_workbench.core.stats import bradley_terry, wilson_interval
from rlhf_workbench.core.training.pairs import load_project_pairs

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(home, tmp_path_factory):
    """The demo project (which holds prompts out) with one GRPO run whose policy is the nudged demo policy."""
    path = tmp_path_factory.mktemp("demo") / "demo"
    with create_demo_project(path) as project:
        run_id = fake_trained_checkpoint(project, RLConfig(method="grpo", prompt_origin=DEMO_ORIGIN, max_new_tokens=12,
                                                           reward_model="demo"), kind="grpo", noise=0.08)
    return path, run_id


def test_held_out_prompts_train_nothing(make_project):
    path = make_project("held", [(f"question {i}", f"yes {i}", f"no {i}", "tests", "a" if i < 6 else None,
                                  "dataset:tests" if i < 6 else None) for i in range(10)])
    project = Project.open(path)
    store = project.store
    before = load_project_pairs(store, validation_fraction=0.0, seed=0)
    assert before.counts["held_out"] == 0 and len(before.train) == 6
    assert store.hold_out_prompts(3, seed=0) == 3
    held = store.heldout_prompt_ids()
    assert len(held) == 3 and store.heldout_since() is not None
    # The unjudged prompts go first: no reward model or DPO run has learnt from them.
    judged_texts = {f"question {i}" for i in range(6)}
    held_texts = {json.loads(m)[-1]["content"] for m in store.prompt_messages(held).values()}
    assert not held_texts & judged_texts
    # RL leaves them out of the prompts it trains on.
    assert {p[-1]["content"] for p in project_prompts(store, None)} == {f"question {i}" for i in range(10)} - held_texts
    # Holding out more reaches the judged prompts; their pairs then leave training, counted.
    assert store.hold_out_prompts(2, seed=0) == 2
    after = load_project_pairs(store, validation_fraction=0.0, seed=0)
    assert after.counts["held_out"] == 5 and len(after.train) == 5
    assert store.hold_out_prompts(100) == 5  # what is left
    assert store.hold_out_prompts(1) == 0
    project.close()


def test_the_demo_holds_prompts_out_from_its_unjudged_pairs(demo):
    path, _ = demo
    with Project.open(path) as project:
        held = project.store.heldout_prompt_ids()
        assert len(held) == DEMO_HELDOUT_PROMPTS
        data = load_project_pairs(project.store, validation_fraction=0.0, seed=0)
        assert data.counts["held_out"] == DEMO_HELDOUT_PROMPTS
        assert data.counts["decisive"] == 216  # every ready-made label still trains


def test_evaluate_reports_each_policy_beside_its_reference(demo, tmp_path):
    path, run_id = demo
    # A real reward model (the demo's base with a head, saved) stands in for the proxy.
    import torch

    from rlhf_workbench.core.models import ensure_demo_model, load_reward_model, quiet_transformers

    torch.manual_seed(0)
    model, tokenizer = load_reward_model(ensure_demo_model(), trainable=False)
    reward = str(tmp_path / "reward")
    with quiet_transformers():
        model.save_pretrained(reward)
    tokenizer.save_pretrained(reward)
    settings = EvaluateSettings(reward_model=reward, n_prompts=12, samples_per_prompt=2, batch_size=8, seed=3)
    events = []
    evaluation = evaluate_policies(path, [run_id], settings, sink=events.append)
    results = evaluation["results"]
    assert results["prompts"] == 12 and results["heldout_prompts"] == DEMO_HELDOUT_PROMPTS
    assert results["gold"]["kind"] == "demo" and results["sampling"]["max_new_tokens"] == 12
    reference, policy = results["rows"]
    assert reference["reference"] and reference["policy"] == "reference (demo)" and reference["kl"] == 0.0
    assert policy["run"] == run_id and policy["step"] == 3 and policy["kind"] == "grpo"
    assert len(policy["responses"]) == 24
    assert events and events[-1].step == events[-1].total
    # The figures are those of the responses kept beside them.
    for row in (reference, policy):
        responses = row["responses"]
        gold = sum(follows_demo_rule(r["prompt"], r["response"]) for r in responses) / len(responses)
        assert row["gold"] == pytest.approx(gold)
        assert row["proxy"] == pytest.approx(sum(r["proxy"] for r in responses) / len(responses))
        assert row["length_tokens"] == pytest.approx(sum(r["tokens"] for r in responses) / len(responses))
        assert 0 < row["distinct_2"] <= 1
    # The proxy is the reward model's own score of (prompt, response), as `score` computes it.
    from rlhf_workbench.core.reward.evaluate import score

    first = policy["responses"][:4]
    assert [r["proxy"] for r in first] == pytest.approx(
        score(reward, [(user_prompt(r["prompt"]), r["response"]) for r in first]), abs=1e-4)
    # KL: the sum over the response's tokens of log pi - log ref at the sampling temperature, as
    # computed here independently with one forward pass of each model over the whole text.
    _check_kl(run_id, path, policy["responses"][0], temperature=results["sampling"]["temperature"])
    assert policy["kl"] > 0
    # Saved, and read back whole.
    with Project.open(path) as project:
        saved = project.store.evaluation(evaluation["id"])
    assert saved["results"] == results and saved["config"]["policies"] == [run_id]


def _check_kl(run_id, path, response, *, temperature):
    import torch

    from rlhf_workbench.core.policies import run_policy
    from rlhf_workbench.core.training.policy import load_policy
    from rlhf_workbench.core.training.rollout import encode_prompts

    with Project.open(path) as project:
        _, folder = run_policy(project.store, path, project.store.run(run_id))
    policy, tokenizer = load_policy(folder)
    reference, _ = load_policy("demo")
    prompt_ids = encode_prompts(tokenizer, [user_prompt(response["prompt"])], 1024)[0]
    answer = tokenizer(response["response"], add_special_tokens=False)["input_ids"]
    # The sampled tokens: the text's, then the end-of-text token when the response ended before its limit.
    ids = answer + ([tokenizer.eos_token_id] if len(answer) < response["tokens"] else [])
    assert len(ids) == response["tokens"]
    full = torch.tensor([prompt_ids + ids])
    with torch.no_grad():
        def logprobs(model):
            logits = model(full).logits[0, len(prompt_ids) - 1 : -1].float() / temperature
            return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None]).squeeze(1)

        expected = float((logprobs(policy) - logprobs(reference)).sum())
    assert response["kl"] == pytest.approx(expected, abs=1e-3)


def test_evaluate_refuses_what_it_cannot_do_and_saves_nothing(demo, make_project):
    path, run_id = demo
    with Project.open(path) as project:
        before = len(project.store.evaluations())
    with pytest.raises(WorkbenchError, match="no policy|not a"):
        evaluate_policies(path, ["no-such-run-or-folder"])
    with pytest.raises(ConfigError, match="reference: not set"):
        evaluate_policies(path, ["reference"])
    with pytest.raises(ConfigError, match="policies"):
        evaluate_policies(path, [])
    plain = make_project("plain", [("hi", "hello", "go away", "tests", "a", "dataset:tests")])
    with pytest.raises(WorkbenchError, match="no held-out prompts"):
        evaluate_policies(plain, ["demo"], EvaluateSettings(reference="demo"))
    assert hold_out(plain, 1) == {"added": 1, "heldout": 1}
    with pytest.raises(ConfigError, match="gold: 'demo'"):
        evaluate_policies(plain, ["demo"], EvaluateSettings(reference="demo", gold="demo"))
    with Project.open(path) as project:
        assert len(project.store.evaluations()) == before


def test_people_rank_the_policies_they_compared(demo, tmp_path):
    import shutil

    path = tmp_path / "ranked"
    shutil.copytree(demo[0], path)
    run_id = demo[1]
    made = compare_policies(path, run_id, "demo", n_prompts=12, seed=0)
    assert made["heldout"] and made["a"] == run_id and made["b"] == "demo"
    assert made["origin"] == f"policies:{run_id} vs demo" and made["pairs_added"] > 0
    compare_with_reference(path, run_id, n_prompts=12, seed=1)
    # One person judges every pair where the policies met: the run's answer wins two in three.
    with Project.open(path) as project:
        session = LabelSession(project.store, "ada")
        session.set_queue("policy_vs_reference")
        games, k = [], 0
        origins = set()
        while (current := session.next()) is not None:
            # Both origins put the run's response in A.
            verdict = "a" if k % 3 else ("tie" if k % 2 else "b")
            project.store.add_judgment(current.pair_id, "ada", verdict, shown_left=current.shown_left)
            origins.add(project.store.conn.execute("SELECT origin FROM pairs WHERE id = ?", (current.pair_id,)).fetchone()[0])
            games.append(verdict)
            k += 1
        # The Label tab's policies queue offers both kinds of pair.
        assert origins == {made["origin"], f"ppo-vs-ref:{run_id}"}
    ranking = policy_ranking(path, rounds=50)
    assert ranking["anchor"] == "demo" and ranking["games"] == k
    expected = bradley_terry([(run_id, "demo", {"a": 1.0, "b": 0.0, "tie": 0.5}[v]) for v in games], anchor="demo")
    rows = {row["policy"]: row for row in ranking["rows"]}
    assert rows["demo"]["rating"] == 1000.0
    assert rows[run_id]["rating"] == pytest.approx(expected[run_id])
    assert rows[run_id]["low"] < rows[run_id]["rating"] < rows[run_id]["high"]
    assert rows[run_id]["wins"] == games.count("a") and rows[run_id]["ties"] == games.count("tie")
    # The run's win rate against its reference, from both kinds of pair, with its Wilson interval,
    # reaches Evaluate's table.
    evaluation = evaluate_policies(path, [run_id], EvaluateSettings(n_prompts=4))
    policy = evaluation["results"]["rows"][1]
    wins, losses, ties = games.count("a"), games.count("b"), games.count("tie")
    n = wins + losses + ties
    assert policy["judged"] == n and policy["win_rate"] == pytest.approx((wins + ties / 2) / n)
    assert policy["win_interval"] == pytest.approx(list(wilson_interval(wins + ties / 2, n)))
    assert policy["proxy_model"] == "demo"  # auto: the reward model the run trained against
    assert not math.isnan(policy["gold"])


def test_the_cli_holds_out_evaluates_and_shows(demo, tmp_path, capsys):
    import shutil

    path = tmp_path / "cli"
    shutil.copytree(demo[0], path)
    run_id = demo[1]
    assert main(["evaluate", str(path), "--hold-out", "4"]) == 0
    assert f"{DEMO_HELDOUT_PROMPTS + 4:,} in all" in capsys.readouterr().out
    assert main(["evaluate", str(path), "--policy", run_id, "--set", "n_prompts=6", "--set", "seed=2"]) == 0
    out = capsys.readouterr().out
    assert "reference (demo)" in out and run_id in out and "gold: the demo's rules" in out
    assert main(["evaluate", str(path), "--show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["results"]["prompts"] == 6 and len(shown["results"]["rows"]) == 2
    assert main(["evaluate", str(path), "--set", "n_prompts=0", "--policy", run_id]) == 1
    assert "n_prompts" in capsys.readouterr().err
    assert main(["ranking", str(path)]) == 0
    assert "no verdicts between policies yet" in capsys.readouterr().out


def test_the_loop_progress_says_what_comes_next(make_project, demo):
    from rlhf_workbench.core.progress import loop_progress

    empty = make_project("empty")
    with Project.open(empty) as project:
        progress = loop_progress(project.store)
        assert progress.done == 0 and progress.next.key == "data"
        assert progress.summary().startswith("Next, step 1 of 5: import preference data")
    unlabelled = make_project("unlabelled", [("q", "a", "b", "tests", None, None)])
    with Project.open(unlabelled) as project:
        assert loop_progress(project.store).next.key == "label"
    # The demo comes labelled, with a policy run (the module's) and no reward model yet.
    with Project.open(demo[0]) as project:
        progress = loop_progress(project.store)
        assert [s.done for s in progress.steps[:4]] == [True, True, False, True]  # evaluations: other tests
        assert progress.next.key == "reward" and progress.steps[1].detail == "216 pairs labelled"
