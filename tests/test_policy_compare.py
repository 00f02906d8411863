"""Compare with reference: a run's policy and its reference answer the same prompts, the pairs go
into the project, and people's verdicts on them make the run's human win rate.

The runs here are real run records whose checkpoints hold a real policy: the demo policy with its
weights moved a little (a policy that learned something), saved where a PPO checkpoint keeps it
(`policy/` beside the value model) or where a DPO one does (the checkpoint is the policy).
"""

from __future__ import annotations

import random

import pytest

from rlhf_workbench.core.bulk import BulkWriter
from rlhf_workbench.core.compare import compare_origin, compare_with_reference
from rlhf_workbench.core.demo import DEMO_ORIGIN, create_demo_project
from rlhf_workbench.core.errors import Stopped, WorkbenchError
from rlhf_workbench.core.labeling import LabelSession
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.records import conversation_to_json, user_prompt
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.runs.records import start_run

# Every test here samples the demo policy, built (trained) once for the module: the slow part.
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def fake_trained_checkpoint(project: Project, config: RLConfig | OfflineConfig, *, noise: float = 0.05,
                            kind: str = "ppo", step: int = 3, best: bool = False) -> str:
    """A run whose checkpoint's policy is the demo policy with its weights nudged (seeded): in the
    checkpoint's `policy/` folder for an RL kind, the checkpoint itself for SFT and DPO."""
    import torch

    from rlhf_workbench.core.models import quiet_transformers
    from rlhf_workbench.core.training.policy import load_policy

    ctx = start_run(project, kind=kind, name="nudged demo policy", config=config)
    model, tokenizer = load_policy("demo")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * noise)
    folder = ctx.run_dir / "checkpoints" / f"step-{step:06d}"
    policy = folder / "policy" if kind in ("ppo", "rloo", "grpo") else folder
    with quiet_transformers():
        model.save_pretrained(policy)
    tokenizer.save_pretrained(policy)
    project.store.save_run_records(ctx.run_id, checkpoint=(step, folder.relative_to(project.path).as_posix(), best))
    project.store.set_run_status(ctx.run_id, "running")
    project.store.set_run_status(ctx.run_id, "cancelled", summary={"updates": 3, "stopped": True})
    return ctx.run_id


@pytest.fixture(scope="module")
def demo(home, tmp_path_factory):
    """The demo project with one PPO run (max 12 new tokens, prompts of the demo pairs)."""
    path = tmp_path_factory.mktemp("demo") / "demo"
    with create_demo_project(path) as project:
        run_id = fake_trained_checkpoint(project, RLConfig(prompt_origin=DEMO_ORIGIN, max_new_tokens=12))
    return path, run_id


def _pairs(path, origin):
    with Project.open(path) as project:
        rows = project.store.conn.execute(
            """SELECT p.id, pr.messages, ra.text, rb.text, p.meta, ra.source FROM pairs p
               JOIN prompts pr ON pr.id = p.prompt_id JOIN responses ra ON ra.id = p.response_a_id
               JOIN responses rb ON rb.id = p.response_b_id WHERE p.origin = ? ORDER BY p.id""",
            (origin,),
        ).fetchall()
    return rows


def test_pairs_of_policy_and_reference_go_into_the_project(demo):
    path, run_id = demo
    reports = []
    counts = compare_with_reference(path, run_id, n_prompts=10, seed=0, sink=lambda e: reports.append((e.step, e.total, e.message)))
    assert counts["origin"] == compare_origin(run_id) == f"ppo-vs-ref:{run_id}"
    assert counts["prompts"] == 10 and counts["step"] == 3
    # The demo holds out 36 of its prompts: they come first, so the verdicts judge unseen prompts.
    assert counts["heldout"] == 10
    assert counts["pairs_added"] + counts["pairs_existing"] + counts["identical"] == 10
    assert counts["pairs_added"] >= 5  # the nudged policy writes something else most of the time
    pairs = _pairs(path, counts["origin"])
    assert len(pairs) == counts["pairs_added"]
    for _, _, a, b, meta, source in pairs:
        assert a != b and source == "model"
        assert '"a": "policy"' in meta and '"b": "reference"' in meta
    # Progress went from nothing to everything, with something to say on the way.
    assert reports[0][0] == 0 and reports[-1][0] == reports[-1][1] == 20
    assert any(message and "reference" in message for *_, message in reports)

    # The prompts are the run's: prompts of the demo pairs.
    with Project.open(path) as project:
        demo_prompts = {
            row[0] for row in project.store.conn.execute(
                "SELECT DISTINCT pr.messages FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id WHERE p.origin = ?",
                (DEMO_ORIGIN,),
            )
        }
    assert {messages for _, messages, *_ in pairs} <= demo_prompts
    with Project.open(path) as project:
        heldout = set(project.store.prompt_messages(project.store.heldout_prompt_ids()).values())
    assert {messages for _, messages, *_ in pairs} <= heldout

    # Again: prompts not compared yet come first, and the same seed gives the same answers.
    again = compare_with_reference(path, run_id, n_prompts=10, seed=0)
    assert again["prompts"] == 10
    second = _pairs(path, counts["origin"])[len(pairs):]
    assert not {m for _, m, *_ in second} & {m for _, m, *_ in pairs}


def test_held_out_prompts_come_first_then_fresh_ones_then_those_compared_before(make_project):
    """The order Compare with reference takes a run's prompts in: held out and not yet compared for
    this run; then the rest not yet compared; then held out and compared; then the rest."""
    from rlhf_workbench.core.compare import _pick_prompts

    origin = compare_origin("ppo-test")
    questions = [f"Question {i}?" for i in range(12)]
    path = make_project("order", [(q, "yes", "no", "mine", None, None) for q in questions]
                        + [("Other origin?", "a", "b", "theirs", None, None)])
    with Project.open(path) as project:
        store = project.store
        every = [prompt_id for prompt_id, _ in store.prompt_ids_for_comparison(None, origin)]
        ids = {messages: prompt_id for prompt_id, messages in store.prompt_messages(every).items()}
        by_question = {q: ids[conversation_to_json(user_prompt(q))] for q in questions}
        held = {by_question[q] for q in questions[:4]}
        with store.transaction():
            store.conn.executemany("INSERT INTO heldout_prompts (prompt_id, held_at) VALUES (?, '2026-12-08')",
                                   [(i,) for i in held])
        compared = {by_question[q] for q in questions[2:6]}  # two held out, two not
        with store.transaction():
            writer = BulkWriter(store, import_id=None, source="model", source_name="earlier comparison")
            for q in questions[2:6]:
                writer.add_pair(user_prompt(q), "policy said", "reference said", origin=origin)
            writer.flush()
        for seed in (0, 1):
            prompts, heldout = _pick_prompts(project, "mine", origin, 20, seed)
            chosen = [ids[conversation_to_json(p)] for p in prompts]
            assert len(chosen) == 12 and heldout == 4  # only the run's origin, every prompt once
            assert set(chosen[:2]) == held - compared
            assert set(chosen[2:8]) == set(by_question.values()) - held - compared
            assert set(chosen[8:10]) == held & compared
            assert set(chosen[10:]) == compared - held
        assert _pick_prompts(project, "mine", origin, 3, 0)[1] == 2


def test_the_reference_against_itself_gives_no_pairs(demo, tmp_path):
    """A checkpoint that is its reference: same weights, same seed, same answers: nothing to judge."""
    path, _ = demo
    with Project.open(path) as project:
        run_id = fake_trained_checkpoint(project, RLConfig(prompt_origin=DEMO_ORIGIN, max_new_tokens=12), noise=0.0)
    counts = compare_with_reference(path, run_id, n_prompts=6)
    assert counts["identical"] == 6 and counts["pairs_added"] == 0
    assert _pairs(path, compare_origin(run_id)) == []


def test_a_dpo_policy_compares_its_best_checkpoint_on_every_prompt(demo, make_project):
    """SFT and DPO sample nothing in training: their policy answers every prompt of the project (not
    one origin's) with the Generate dialog's settings, and the run's result is its best checkpoint,
    not its newest."""
    questions = ["What do bees make?", "Name a colour.", "Is ice cold?", "Say hello.", "Count to three.", "Why?"]
    path = make_project("offline", [(q, "yes", "no", "ab"[i % 2], None, None) for i, q in enumerate(questions)])
    with Project.open(path) as project:
        run_id = fake_trained_checkpoint(project, OfflineConfig(method="dpo"), kind="dpo", step=5, best=True)
        # A newer checkpoint, not the best, holding the demo policy itself: were it the one compared,
        # both sides would write the same and no pair would be added.
        from rlhf_workbench.core.models import quiet_transformers
        from rlhf_workbench.core.training.policy import load_policy

        newer = project.path / project.store.last_checkpoint(run_id)["path"].replace("step-000005", "step-000009")
        model, tokenizer = load_policy("demo")
        with quiet_transformers():
            model.save_pretrained(newer)
        tokenizer.save_pretrained(newer)
        project.store.save_run_records(run_id, checkpoint=(9, newer.relative_to(project.path).as_posix(), False))
    counts = compare_with_reference(path, run_id, n_prompts=len(questions), seed=3)
    assert counts["step"] == 5 and counts["prompts"] == len(questions)
    pairs = _pairs(path, compare_origin(run_id))
    asked = {messages for _, messages, *_ in pairs}
    by_origin = [{conversation_to_json(user_prompt(q)) for q in questions[k::2]} for k in (0, 1)]
    assert asked & by_origin[0] and asked & by_origin[1]  # both origins' prompts
    assert len(pairs) == counts["pairs_added"] >= 4
    assert all('"reference": "demo"' in meta and '"step": 5' in meta for *_, meta, _ in pairs)


def test_cancel_adds_nothing_and_bad_runs_are_refused(demo):
    path, run_id = demo
    before = len(_pairs(path, compare_origin(run_id)))
    with pytest.raises(Stopped, match="nothing was added"):
        compare_with_reference(path, run_id, n_prompts=4, stop=lambda: True)
    assert len(_pairs(path, compare_origin(run_id))) == before

    with Project.open(path) as project:
        reward = start_run(project, kind="reward", name="a reward run", config=RLConfig()).run_id
        bare = start_run(project, kind="ppo", name="no checkpoint yet", config=RLConfig()).run_id
        nowhere = start_run(project, kind="ppo", name="no prompts", config=RLConfig(prompt_origin="nowhere"))
        project.store.save_run_records(nowhere.run_id, checkpoint=(1, "runs/x/checkpoints/step-000001", False))
    with pytest.raises(WorkbenchError, match="trains no policy"):
        compare_with_reference(path, reward)
    with pytest.raises(WorkbenchError, match="no checkpoint yet"):
        compare_with_reference(path, bare)
    with pytest.raises(WorkbenchError, match="has its policy folder"):
        compare_with_reference(path, nowhere.run_id)
    with pytest.raises(WorkbenchError, match="no run"):
        compare_with_reference(path, "ppo-nope")


def _judge_as(session: LabelSession, verdict: str) -> int:
    """Judge the session's current pair so that the stored verdict is `verdict` (a/b name responses)."""
    shown_left = session.current.shown_left
    choice = {"a": "left" if shown_left == "a" else "right", "b": "right" if shown_left == "a" else "left"}
    return session.judge(choice.get(verdict, verdict))


def test_win_rates_count_peoples_active_verdicts(home, tmp_path):
    prompts = ["What is 2 + 3?", "Tell me about the moon, please.", "What is 4 + 4?", "Say something about tea.",
               "What is 7 + 1?", "Tell me about rivers.", "What is 5 + 2?", "Tell me about bread, please."]
    with Project.create(tmp_path / "small") as project:
        from rlhf_workbench.core.bulk import BulkWriter

        with project.store.transaction():
            writer = BulkWriter(project.store, import_id=None, source="dataset", source_name="tests")
            for text in prompts:
                writer.add_pair(user_prompt(text), "Yes.", "No.", origin="mine")
            writer.flush()
        run_id = fake_trained_checkpoint(project, RLConfig(prompt_origin="mine", max_new_tokens=12), noise=0.1)
        assert project.store.policy_win_rates() == {}
    counts = compare_with_reference(tmp_path / "small", run_id, n_prompts=8)
    assert counts["pairs_added"] >= 6
    origin = compare_origin(run_id)

    with Project.open(tmp_path / "small") as project:
        store = project.store
        assert store.policy_win_rates() == {
            run_id: {"wins": 0, "losses": 0, "ties": 0, "both_bad": 0, "judged": 0,
                     "pairs": counts["pairs_added"], "judged_pairs": 0, "win_rate": None}
        }
        ada = LabelSession(store, "ada", rng=random.Random(0))
        ada.next()
        while ada.current.pair.origin != origin:  # the pairs that were there first
            ada.judge("skip")
        judged = {}
        for verdict in ("a", "a", "b", "tie", "both_bad", "skip"):
            judged[ada.current.pair_id] = verdict
            _judge_as(ada, verdict)
        # A verdict taken back does not count; nor does a label that came with data.
        ada.undo()  # the skip
        _judge_as(ada, "b")
        ada.undo()
        first = next(iter(judged))
        store.add_judgment(first, "dataset:import", "b")
        # A second person's verdicts count as well.
        bob = LabelSession(store, "bob", "others_not_me", rng=random.Random(1))
        bob.next()
        while bob.current.pair_id != first:
            bob.judge("skip")
        _judge_as(bob, "a")

        rates = store.policy_win_rates()
    assert rates[run_id] == {
        "wins": 3, "losses": 1, "ties": 1, "both_bad": 1, "judged": 6,
        "pairs": counts["pairs_added"], "judged_pairs": 5, "win_rate": (3 + 0.5) / 5,
    }
