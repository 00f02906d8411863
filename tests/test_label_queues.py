"""The "generated", "policy vs reference" and "reward model least sure" queues, and scoring pairs for the latter.

Real projects, real judgments through LabelSession, and a real (tiny) reward model: a fresh demo
causal LM given its scalar head and saved as a reward run's best checkpoint, the way a trained run
keeps one. Its p values are checked against a forward pass made here, one text at a time.
"""

from __future__ import annotations

import itertools
import os
import random
import sqlite3
import time

import pytest

from rlhf_workbench.core.errors import Stopped, WorkbenchError
from rlhf_workbench.core.labeling import LabelSession, queue_progress
from rlhf_workbench.core.project import DB_NAME, Project
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.store import APPLICATION_ID, SCHEMA_VERSION
from rlhf_workbench.core.store.schema import MIGRATIONS

pytestmark = pytest.mark.timeout(300)

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 512}
MAX_LENGTH = 96

WORDS = ("the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "far", "away", "and", "birds", "sang",
         "loud", "songs", "in", "green", "trees")


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))


def plain_pairs(n: int, *, seed: int = 0, origin: str = "test") -> list[tuple]:
    rng = random.Random(seed)
    return [(f"q{i} {sentence(rng)}", f"a{i} {sentence(rng)}", f"b{i} {sentence(rng)}", origin, None, None) for i in range(n)]


def fake_reward_run(project: Project, folder, *, status: str = "finished", name: str = "tiny reward model") -> str:
    """A reward-model run whose best checkpoint is a tiny demo LM with a (random) scalar head."""
    from rlhf_workbench.core.models import (
        build_demo_model,
        load_reward_model,
        quiet_transformers,
    )

    ctx = start_run(project, kind="reward", name=name, config=RewardConfig(max_length=MAX_LENGTH))
    model, tokenizer = load_reward_model(build_demo_model(folder / f"base-{ctx.run_id}", TINY), trainable=False)
    checkpoint = ctx.run_dir / "checkpoints" / "step-000005"
    with quiet_transformers():
        model.save_pretrained(checkpoint)  # the head is saved: every later load scores alike
    tokenizer.save_pretrained(checkpoint)
    (checkpoint / "trainer_state.json").write_text('{"step": 5}', encoding="utf-8")
    os.symlink(checkpoint.name, ctx.run_dir / "checkpoints" / "best", target_is_directory=True)
    project.store.save_run_records(ctx.run_id, checkpoint=(5, checkpoint.relative_to(project.path).as_posix(), True))
    project.store.set_run_status(ctx.run_id, "running")
    if status != "running":
        project.store.set_run_status(ctx.run_id, status)
    return ctx.run_id


def independent_p(project: Project, run_id: str, pair_ids) -> dict[int, float]:
    """p = sigmoid(r_a - r_b) from one unpadded forward pass per response."""
    import torch

    from rlhf_workbench.core.models import load_reward_model
    from rlhf_workbench.core.training.pairs import encode_response

    model, tokenizer = load_reward_model(project.path / "runs" / run_id / "checkpoints" / "best", trainable=False)
    model.eval()
    found = {}
    with torch.no_grad():
        for pair_id in pair_ids:
            pair = project.store.pair(pair_id)
            r = [
                model(input_ids=torch.tensor([encode_response(tokenizer, pair.prompt, text, MAX_LENGTH)])).logits[0, 0].item()
                for text in (pair.response_a, pair.response_b)
            ]
            found[pair_id] = 1.0 / (1.0 + torch.exp(torch.tensor(r[1] - r[0])).item())
    return found


def walk(session: LabelSession, limit: int = 1000) -> list[int]:
    """The pair ids a session offers, in order, passing over each (nothing recorded)."""
    seen = []
    pair = session.current or session.next()
    while pair is not None and pair.pair_id not in seen and len(seen) < limit:
        seen.append(pair.pair_id)
        pair = session.next()
    return seen


# -- the migration ---------------------------------------------------------------------------------


def test_a_version_2_project_gains_pair_scores_and_keeps_its_data(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    conn = sqlite3.connect(folder / DB_NAME, isolation_level=None)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("BEGIN")
    for migrate in MIGRATIONS[:2]:  # exactly what a version-2 workbench wrote
        migrate(conn)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO project(key, value) VALUES ('name', 'old'), ('created_at', '2024-01-01')")
    conn.execute("INSERT INTO prompts(id, hash, messages, created_at) VALUES (1, x'01', '[{\"role\": \"user\", \"content\": \"hi\"}]', 't')")
    conn.execute("INSERT INTO responses(id, hash, prompt_id, text, source, created_at) VALUES (1, x'02', 1, 'A', 'dataset', 't'), (2, x'03', 1, 'B', 'dataset', 't')")
    conn.execute("INSERT INTO pairs(id, hash, prompt_id, response_a_id, response_b_id, origin, created_at) VALUES (1, x'04', 1, 1, 2, 'old', 't')")
    conn.execute("INSERT INTO judgments(pair_id, annotator, verdict, created_at) VALUES (1, 'ada', 'a', 't')")
    conn.execute("INSERT INTO runs(id, kind, name, config, status, created_at) VALUES ('r1', 'reward', 'r1', '{}', 'finished', 't')")
    conn.execute("COMMIT")
    conn.close()
    assert SCHEMA_VERSION >= 3

    with Project.open(folder) as project:
        store = project.store
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.counts() == {"prompts": 1, "responses": 2, "pairs": 1, "judgments": 1, "runs": 1}
        assert store.conn.execute("SELECT human_verdicts FROM pairs").fetchone()[0] == 1  # the triggers survive
        assert store.pair(1).response_a == "A"
        store.save_pair_scores("r1", [(1, 0.25)])
        assert store.pair_scores("r1") == {1: 0.25}
        with pytest.raises(sqlite3.IntegrityError):  # a score names a real pair and a real run
            store.save_pair_scores("no such run", [(1, 0.5)])
        with pytest.raises(sqlite3.IntegrityError):
            store.save_pair_scores("r1", [(1, 1.5)])  # a probability
    with Project.open(folder) as project:  # opening again migrates nothing and loses nothing
        assert project.store.pair_scores("r1") == {1: 0.25}


# -- policy vs reference -------------------------------------------------------------------------


@pytest.fixture
def compared(make_project):
    """Ordinary pairs, then pairs of an older PPO run, a newer one, and one whose run record is gone,
    interleaved so that id order and run order differ."""
    rows = plain_pairs(4, seed=1)
    rows += plain_pairs(2, seed=2, origin="ppo-vs-ref:new")[:1]
    rows += plain_pairs(3, seed=3, origin="ppo-vs-ref:old")
    rows += plain_pairs(2, seed=4, origin="ppo-vs-ref:new")[1:]
    rows += plain_pairs(1, seed=5, origin="ppo-vs-ref:gone")
    rows += plain_pairs(1, seed=6, origin="ppo-vs-ref")  # not the prefix: no colon
    path = make_project("compared", rows)
    with Project.open(path) as project:
        for run_id in ("old", "new"):
            project.store.create_run(run_id, kind="ppo", name=run_id, config={}, output_dir=f"runs/{run_id}")
            time.sleep(0.01)  # created_at has millisecond resolution
        yield project


def test_policy_vs_reference_offers_the_newest_runs_pairs_first(compared):
    store = compared.store
    by_origin = {origin: store.pair_ids(origin=origin) for origin in ("ppo-vs-ref:new", "ppo-vs-ref:old", "ppo-vs-ref:gone")}
    expected = by_origin["ppo-vs-ref:new"] + by_origin["ppo-vs-ref:old"] + by_origin["ppo-vs-ref:gone"]
    assert by_origin["ppo-vs-ref:new"][1] > by_origin["ppo-vs-ref:old"][-1]  # id order would differ

    session = LabelSession(store, "ada", rng=random.Random(0))
    session.set_queue("policy_vs_reference")
    assert walk(session) == expected
    progress = queue_progress(store, "ada", "policy_vs_reference")
    assert (progress.remaining, progress.labelled_by_me, progress.total) == (6, 0, 11)

    # Judging takes a pair out of my queue, not out of anybody else's; a skip comes back once, last.
    session.set_queue("policy_vs_reference")
    first = session.current.pair_id
    session.judge("left")
    skipped = session.current.pair_id
    session.judge("skip")
    rest = []
    while session.current is not None:
        rest.append(session.current.pair_id)
        session.judge("tie")
    assert [first, skipped] + rest[:-1] == expected and rest[-1] == skipped
    assert queue_progress(store, "ada", "policy_vs_reference").remaining == 0
    assert queue_progress(store, "ada", "policy_vs_reference").labelled_by_me == 6
    bob = LabelSession(store, "bob", "policy_vs_reference")
    assert walk(bob) == expected
    # The policy's response is A whichever side it was shown on: the win rate sees verdicts on A/B.
    assert store.policy_win_rates()["new"]["judged_pairs"] == 2


def test_policy_vs_reference_is_empty_without_comparisons(make_project):
    with Project.open(make_project("plain", plain_pairs(3))) as project:
        session = LabelSession(project.store, "ada", "policy_vs_reference")
        assert session.next() is None
        assert queue_progress(project.store, "ada", "policy_vs_reference").remaining == 0


def test_generated_offers_the_newest_origins_pairs_first(make_project):
    """Pairs Generate… made (origin generated:*), the origin that got pairs last first; imported ones never."""
    rows = plain_pairs(3, seed=1)
    rows += plain_pairs(2, seed=2, origin="generated:old-model")
    rows += plain_pairs(1, seed=3, origin="generated")  # not the prefix: no colon
    with Project.open(make_project("generated", rows)) as project:
        store = project.store
        time.sleep(0.01)  # created_at has millisecond resolution
        from rlhf_workbench.core.bulk import BulkWriter
        from rlhf_workbench.core.records import user_prompt

        with store.transaction():
            writer = BulkWriter(store, import_id=None, source="model", source_name="new-model")
            for prompt, a, b, origin, _verdict, _annotator in plain_pairs(2, seed=4, origin="generated:new-model"):
                writer.add_pair(user_prompt(prompt), a, b, origin=origin)
            writer.flush()
        expected = store.pair_ids(origin="generated:new-model") + store.pair_ids(origin="generated:old-model")
        assert len(expected) == 4 and expected[0] > expected[-1]  # id order would differ

        session = LabelSession(store, "ada", "generated", rng=random.Random(0))
        assert walk(session) == expected
        assert queue_progress(store, "ada", "generated").remaining == 4
        session.set_queue("generated")
        session.judge("left")
        session.judge("right")
        assert session.current.pair_id == expected[2]
        assert queue_progress(store, "ada", "generated").remaining == 2
        assert walk(LabelSession(store, "bob", "generated")) == expected  # my verdicts leave only my queue

    with Project.open(make_project("none", plain_pairs(2))) as project:
        assert LabelSession(project.store, "ada", "generated").next() is None


# -- least sure: the queue over stored scores ----------------------------------------------------------


@pytest.fixture
def plain(make_project):
    with Project.open(make_project("plain", plain_pairs(12))) as project:
        yield project


def test_pairs_on_held_out_prompts_are_in_no_queue_for_training_data(make_project):
    """Their verdicts would train nothing (no run trains on a held-out prompt): the unlabelled queue
    passes them by in both passes and does not count them, and least-sure scoring leaves them out."""
    path = make_project("held", plain_pairs(12))
    with Project.open(path) as project:
        store = project.store
        session = LabelSession(store, "ada", rng=random.Random(0))
        everything = walk(session)
        assert len(everything) == 12 and queue_progress(store, "ada", "unlabelled").remaining == 12
        # Scored for the least-sure queue before any prompt was held out.
        store.create_run("rm", kind="reward", name="rm", config={}, output_dir="runs/rm")
        store.set_run_status("rm", "running")
        store.set_run_status("rm", "finished")
        store.save_pair_scores("rm", [(pair_id, 0.5) for pair_id in everything])
        store.hold_out_prompts(3)
        held = {pair_id for (pair_id,) in store.conn.execute(
            "SELECT id FROM pairs WHERE prompt_id IN (SELECT prompt_id FROM heldout_prompts)")}
        assert len(held) == 3
        session.set_queue("unlabelled")
        assert walk(session) == [i for i in everything if i not in held]
        assert queue_progress(store, "ada", "unlabelled").remaining == 9
        # Skipped by someone, none held out: offered again in the second pass; a held-out one is not.
        for pair_id in sorted(held)[:1] + [i for i in everything if i not in held][:1]:
            store.add_judgment(pair_id, "bob", "skip", shown_left="a", seconds=1.0)
        assert queue_progress(store, "ada", "unlabelled").remaining == 9
        assert store.skipped_only_pair_count() == 1
        assert set(store.pair_ids_to_score("some-run")) == set(everything) - held
        assert walk(LabelSession(store, "ada", "least_sure")) == [i for i in everything if i not in held]
        assert queue_progress(store, "ada", "least_sure").remaining == 9


def test_least_sure_is_empty_until_pairs_are_scored(plain):
    session = LabelSession(plain.store, "ada", "least_sure")
    assert session.next() is None
    assert queue_progress(plain.store, "ada", "least_sure").remaining == 0
    assert plain.store.least_sure_run() is None


def test_least_sure_orders_by_distance_from_a_coin_flip_under_the_newest_finished_run(plain):
    store = plain.store
    ids = store.pair_ids()
    for run_id, status in (("old", "finished"), ("new", "finished"), ("newest", "running")):
        store.create_run(run_id, kind="reward", name=run_id, config={}, output_dir=f"runs/{run_id}")
        if status == "running":
            store.set_run_status(run_id, "running")
        else:
            store.set_run_status(run_id, "running")
            store.set_run_status(run_id, status)
        time.sleep(0.01)
    ps = [0.9, 0.45, 0.52, 0.1, 0.5, 0.55, 0.3, 0.01, 0.49, 0.7]  # ids[10:] stay unscored
    store.save_pair_scores("old", [(ids[0], 0.5)])
    store.save_pair_scores("new", list(zip(ids, ps)))
    store.save_pair_scores("newest", [(ids[3], 0.5)])  # still training: not followed while a finished run has scores
    assert store.least_sure_run() == "new"
    expected = [pid for pid, _ in sorted(zip(ids, ps), key=lambda t: (abs(t[1] - 0.5), t[0]))]
    assert expected[:3] == [ids[4], ids[8], ids[2]]
    # (0.45 and 0.55 are not quite equally far from 0.5 in binary; SQLite and Python agree on it.)

    session = LabelSession(store, "ada", "least_sure")
    assert walk(session) == expected
    assert queue_progress(store, "ada", "least_sure").remaining == 10

    session.set_queue("least_sure")
    session.judge("left")  # the least sure pair
    session.judge("skip")  # the next one: comes back after the rest
    assert session.current.pair_id == expected[2]
    assert walk(session) == expected[2:]  # (walk stops where the first pass wraps)
    assert queue_progress(store, "ada", "least_sure").remaining == 9  # the skipped pair still counts
    # Judged by me, out of my queue; still in bob's, who has not judged it.
    assert walk(LabelSession(store, "bob", "least_sure")) == expected

    # Once the run that was training finishes, its scores are the ones followed.
    store.set_run_status("newest", "finished")
    assert store.least_sure_run() == "newest"
    assert walk(LabelSession(store, "bob", "least_sure")) == [ids[3]]


def test_least_sure_uses_its_index(plain):
    plan = plain.store.conn.execute(
        """EXPLAIN QUERY PLAN SELECT s.pair_id FROM pair_scores s
           WHERE s.run_id = 'r' AND (abs(s.p - 0.5), s.pair_id) > (0.1, 3)
           ORDER BY abs(s.p - 0.5), s.pair_id LIMIT 1"""
    ).fetchall()
    text = " ".join(row[-1] for row in plan)
    assert "pair_scores_unsure" in text and "TEMP B-TREE" not in text


# -- least sure: scoring with a real reward model ------------------------------------------------------


def test_scoring_writes_p_for_every_unjudged_pair_and_the_queue_follows_it(plain, tmp_path):
    from rlhf_workbench.core.reward.pair_scores import score_unjudged_pairs

    store = plain.store
    ids = store.pair_ids()
    # Judged before scoring: not scored (a person's verdict is the answer). Only skipped: scored.
    store.add_judgment(ids[0], "ada", "a")
    store.add_judgment(ids[1], "bob", "skip")
    store.add_judgment(ids[2], "dataset:import", "b")  # labels that came with data are not people's
    run_id = fake_reward_run(plain, tmp_path)

    reports = []
    result = score_unjudged_pairs(plain, sink=lambda e: reports.append((e.step, e.total, e.message)), batch_pairs=5)
    assert result["run_id"] == run_id and result["scored"] == 11 and result["total"] == 11
    assert reports[-1][:2] == (11, 11) and [r[0] for r in reports[1:]] == [5, 10, 11]
    scores = store.pair_scores(run_id)
    assert sorted(scores) == ids[1:]
    reference = independent_p(plain, run_id, ids[1:])
    for pair_id in ids[1:]:
        assert scores[pair_id] == pytest.approx(reference[pair_id], abs=1e-5)
    assert len({round(p, 9) for p in scores.values()}) == 11  # the model tells the pairs apart

    # The queue: least sure first, by the stored p and by the p computed here.
    session = LabelSession(store, "carol", "least_sure")
    order = walk(session)
    assert order == sorted(scores, key=lambda pid: (abs(scores[pid] - 0.5), pid))
    distances = [abs(reference[pid] - 0.5) for pid in order]
    assert all(a <= b + 1e-5 for a, b in itertools.pairwise(distances))

    # ada judged ids[0] before scoring (never scored); judging the head of the queue takes it out.
    ada = LabelSession(store, "ada", "least_sure")
    assert ada.next().pair_id == order[0]
    ada.judge("right")
    assert walk(ada) == order[1:]
    assert queue_progress(store, "ada", "least_sure").remaining == 10

    # Scoring again scores only what is new: nothing, here.
    assert score_unjudged_pairs(plain)["scored"] == 0
    assert store.pair_scores(run_id) == scores


def test_a_cancel_keeps_the_batches_already_written(plain, tmp_path):
    from rlhf_workbench.core.reward.pair_scores import score_unjudged_pairs

    run_id = fake_reward_run(plain, tmp_path)
    reports = []
    with pytest.raises(Stopped, match="4 pairs scored before are kept"):
        score_unjudged_pairs(
            plain, run_id, batch_pairs=4,
            sink=lambda e: reports.append((e.step, e.total, e.message)),
            stop=lambda: any(done >= 4 for done, *_ in reports),
        )
    kept = plain.store.pair_scores(run_id)
    assert sorted(kept) == plain.store.pair_ids()[:4]
    assert [pid for pid in walk(LabelSession(plain.store, "ada", "least_sure"))] == sorted(
        kept, key=lambda pid: (abs(kept[pid] - 0.5), pid)
    )
    # Scoring again carries on where the cancel stopped, and the kept scores stay as they were.
    again = score_unjudged_pairs(plain, run_id, batch_pairs=4)
    assert again["scored"] == 8 and again["total"] == 12
    assert {pid: p for pid, p in plain.store.pair_scores(run_id).items() if pid in kept} == kept


def test_the_latest_finished_reward_run_is_the_one_scored_with(plain, tmp_path):
    from rlhf_workbench.core.reward.pair_scores import score_unjudged_pairs

    with pytest.raises(WorkbenchError, match="no finished reward-model run"):
        score_unjudged_pairs(plain)
    finished = fake_reward_run(plain, tmp_path, name="finished")
    time.sleep(0.01)
    fake_reward_run(plain, tmp_path, status="cancelled", name="stopped")
    assert score_unjudged_pairs(plain)["run_id"] == finished
    with pytest.raises(WorkbenchError, match="not a reward-model run"):
        score_unjudged_pairs(plain, "nonsense")


def test_the_scoring_work_reports_progress_then_the_result(plain, tmp_path):
    """The work the Label tab's button runs in a child (core.reward.remote:score_pairs), executed
    here as the child executes it: Progress events, then Finished with its value, or Failed."""
    from rlhf_workbench.core.events import Failed, Finished, Progress
    from rlhf_workbench.core.runs.work import Work, execute

    target = "rlhf_workbench.core.reward.remote:score_pairs"
    run_id = fake_reward_run(plain, tmp_path)
    events = []
    result = execute(Work.task(target, str(plain.path), batch_pairs=6), events.append, lambda: False)
    assert [type(e) for e in events] == [Progress] * 3 + [Finished] and events[-1] is result
    assert result.value["run_id"] == run_id and result.value["scored"] == 12

    # Stopped with nothing left to score: done at once.
    assert isinstance(execute(Work.task(target, str(plain.path), run_id), lambda e: None, lambda: True), Finished)
    failed = execute(Work.task(target, str(plain.path), "nonsense"), lambda e: None, lambda: False)
    assert failed == Failed("run nonsense is not a reward-model run of this project")


def test_the_score_pairs_command(plain, tmp_path, capsys):
    from rlhf_workbench.core.cli import main

    assert main(["score-pairs", str(plain.path)]) == 1
    assert "no finished reward-model run" in capsys.readouterr().err
    run_id = fake_reward_run(plain, tmp_path)
    assert main(["score-pairs", str(plain.path), "--run", run_id, "--device", "cpu"]) == 0
    assert capsys.readouterr().out == f"scored 12 pairs with run {run_id} (tiny reward model); 12 pairs have its scores\n"
    assert len(plain.store.pair_scores(run_id)) == 12
