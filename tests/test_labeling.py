"""The labelling session and its queues, checked against the rows in the database file."""

from __future__ import annotations

import random
import sqlite3

import pytest

from rlhf_workbench.core.demo import create_demo_project
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.labeling import (
    CHOICES,
    QUEUE_TITLES,
    QUEUES,
    LabelSession,
    verdict_for,
)
from rlhf_workbench.core.project import Project

# Written out rather than computed with verdict_for, so that a wrong mapping fails here.
_STORED = {
    ("left", "a"): "a",
    ("left", "b"): "b",
    ("right", "a"): "b",
    ("right", "b"): "a",
}


def stored(choice: str, shown_left: str) -> str:
    return _STORED.get((choice, shown_left), choice)


class Clock:
    """A monotonic clock that moves 2.5 s every time it is read: every verdict takes 2.5 s."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 2.5
        return self.now


def rows(db_path, annotator="ada"):
    """Judgments by `annotator` read through a connection of our own, not the session's."""
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(
            "SELECT pair_id, annotator, verdict, shown_left, seconds, undone, rationale FROM judgments "
            "WHERE annotator = ? ORDER BY id",
            (annotator,),
        ).fetchall()
    finally:
        conn.close()


@pytest.fixture
def demo(tmp_path):
    with create_demo_project(tmp_path / "demo") as project:
        yield project


@pytest.fixture
def small(make_project):
    """q1..q10; the data labels q1..q6 with "a"."""
    data = [(f"q{i}", f"a{i}", f"b{i}", "test", "a" if i <= 6 else None, "dataset:test" if i <= 6 else None) for i in range(1, 11)]
    with Project.open(make_project("small", data)) as project:
        ids = {p.prompt[0].content: p.pair_id for p in project.store.iter_export_pairs()}
        project.q = {int(name[1:]): pid for name, pid in ids.items()}  # q number -> pair id
        yield project


def walk(session: LabelSession, choice: str = "left", limit: int = 100) -> list[int]:
    """Judge every pair the session offers with `choice`; the pair ids in the order offered."""
    seen = []
    pair = session.current or session.next()
    while pair is not None and len(seen) < limit:
        seen.append(pair.pair_id)
        session.judge(choice)
        pair = session.current
    return seen


def test_choices_become_verdicts_about_a_and_b():
    assert QUEUES == ("unlabelled", "generated", "others_not_me", "disagreement", "policy_vs_reference", "least_sure")
    assert set(QUEUE_TITLES) == set(QUEUES) and all(QUEUE_TITLES.values())
    for choice in CHOICES:
        for side in "ab":
            assert verdict_for(choice, side) == stored(choice, side)
    with pytest.raises(WorkbenchError):
        verdict_for("up", "a")
    with pytest.raises(WorkbenchError):
        verdict_for("left", "left")


def test_judge_20_pairs_with_every_choice_undo_3_and_relabel(demo):
    session = LabelSession(demo.store, "ada", rng=random.Random(7), clock=Clock())
    assert session.current is None and session.labels_per_hour() is None
    expected = []  # [pair_id, annotator, verdict, shown_left, seconds, undone, rationale]
    for n in range(20):
        current = session.current or session.next()
        choice = CHOICES[n % len(CHOICES)]
        rationale = "left is clearer" if n == 0 else None
        jid = session.judge(choice, rationale=rationale)
        assert isinstance(jid, int)
        expected.append([current.pair_id, "ada", stored(choice, current.shown_left), current.shown_left, 2.5, 0, rationale])
        assert session.current.pair_id != current.pair_id
    # The unlabelled queue walks pair ids in order (none of the demo's pairs is judged by a person).
    assert [e[0] for e in expected] == sorted(e[0] for e in expected)
    assert {e[3] for e in expected} == {"a", "b"}, "the side varies"
    displaced = session.current

    undone = [session.undo() for _ in range(3)]
    for row in expected[-3:]:
        row[5] = 1
    assert [u.pair_id for u in undone] == [expected[19][0], expected[18][0], expected[17][0]]
    assert [u.shown_left for u in undone] == [expected[19][3], expected[18][3], expected[17][3]], "same side"
    assert session.current.pair_id == expected[17][0]

    for choice in ("right", "tie", "left"):
        current = session.current
        session.judge(choice)
        expected.append([current.pair_id, "ada", stored(choice, current.shown_left), current.shown_left, 2.5, 0, None])
    assert [e[0] for e in expected[-3:]] == [e[0] for e in expected[17:20]], "relabelled in the order first shown"
    assert session.current.pair_id == displaced.pair_id, "then back where the labeller was"
    assert session.current.shown_left == displaced.shown_left

    assert [list(r) for r in rows(demo.db_path)] == expected
    assert rows(demo.db_path, "dataset:demo") and len(rows(demo.db_path, "dataset:demo")) == 216
    # 20 verdicts, 3 undone, 3 new: 20 active, of which 3 skips (n = 4, 9, 14; the one at 19 was undone).
    progress = session.progress()
    assert progress.labelled_by_me == 17
    assert progress.total == 360
    # The 17 labelled pairs left the queue; the 3 skipped ones are still to label (second pass).
    # The demo's 36 held-out prompts' pairs are not in it: their verdicts would train nothing.
    assert len(demo.store.heldout_prompt_ids()) == 36
    assert progress.remaining == 360 - 17 - 36
    assert progress.overlap_percent is None


def test_a_verdict_is_in_the_file_before_judge_returns_and_times_are_real(demo, monkeypatch):
    session = LabelSession(demo.store, "ada")
    first = session.next()
    seen_from_outside = []
    real_pair = demo.store.pair

    def pair_while_moving_on(pair_id):
        # Called by judge() when it moves to the next pair: the verdict must already be on disk.
        seen_from_outside.append(rows(demo.db_path))
        return real_pair(pair_id)

    monkeypatch.setattr(demo.store, "pair", pair_while_moving_on)
    jid = session.judge("right")
    verdict = "b" if first.shown_left == "a" else "a"
    assert seen_from_outside and seen_from_outside[0][0][:4] == (first.pair_id, "ada", verdict, first.shown_left)
    [row] = rows(demo.db_path)
    assert row[4] > 0, "seconds measured with the real clock"
    assert demo.store.conn.execute("SELECT id FROM judgments WHERE annotator = 'ada'").fetchone() == (jid,)


def test_a_skipped_pair_comes_back_only_after_the_rest_of_the_queue(small):
    q = small.q
    session = LabelSession(small.store, "ada", rng=random.Random(1))
    assert session.next().pair_id == q[1]
    session.judge("skip")
    assert session.current.pair_id == q[2], "skip moves on"
    session.judge("skip")
    offered = walk(session, "tie")
    # q3..q10 first; then, once, the two pairs people only skipped, flagged as a second pass.
    assert offered == [q[i] for i in range(3, 11)] + [q[1], q[2]]
    assert session.current is None
    assert session.progress().remaining == 0
    got = [(pid, verdict) for pid, _, verdict, *_ in rows(small.db_path)]
    assert got[:2] == [(q[1], "skip"), (q[2], "skip")]


def _offer_all(session: LabelSession, skip: set[int]) -> list[tuple[int, bool]]:
    offered = []
    pair = session.current or session.next()
    while pair is not None and len(offered) < 100:
        offered.append((pair.pair_id, pair.second_pass))
        session.judge("skip" if pair.pair_id in skip else "left")
        pair = session.current
    return offered


def test_the_second_pass_offers_each_skipped_pair_once(small):
    q = small.q
    session = LabelSession(small.store, "ada")
    offered = _offer_all(session, skip={q[3], q[10]})  # skipped again in the second pass too
    assert offered == [(q[i], False) for i in range(1, 11)] + [(q[3], True), (q[10], True)]
    assert session.next() is None, "the walk is over until the queue is chosen again"
    assert session.progress().remaining == 2
    session.set_queue("unlabelled")  # a deliberate restart offers them again
    assert (session.current.pair_id, session.current.second_pass) == (q[3], True)


def test_a_pair_skipped_at_the_end_of_the_first_pass_does_not_come_straight_back(small):
    q = small.q
    session = LabelSession(small.store, "ada")
    offered = _offer_all(session, skip={q[10]})
    assert offered == [(q[i], False) for i in range(1, 11)]
    assert session.current is None
    assert session.progress().remaining == 1
    session.set_queue("unlabelled")
    assert (session.current.pair_id, session.current.second_pass) == (q[10], True)


def test_the_three_queues_and_their_progress(small):
    q, store = small.q, small.store
    # ada: agrees with the data on q1, disagrees on q2 (b) and q3 (tie), skips q4, labels q7.
    for n, verdict in [(1, "a"), (2, "b"), (3, "tie"), (4, "skip"), (7, "b")]:
        store.add_judgment(q[n], "ada", verdict)

    bob = LabelSession(store, "bob")
    assert bob.next().pair_id == q[5]  # no person has touched q5; q1..q4 and q7 are out
    p = bob.progress()
    # q5 q6 q8 q9 q10 untouched, and q4 only skipped: 6 remaining.
    assert (p.labelled_by_me, p.remaining, p.total, p.overlap_percent) == (0, 6, 10, None)

    bob.set_queue("others_not_me")
    assert bob.current.pair_id == q[1]
    p = bob.progress()
    assert (p.remaining, p.overlap_percent) == (4, 0.0)  # q1 q2 q3 q7 (ada's skip on q4 is no verdict)

    bob.set_queue("disagreement")
    assert bob.current.pair_id == q[2]
    assert bob.progress().remaining == 2  # q2 (data a, people b) and q3 (data a, people tie)
    bob.judge("left" if bob.current.shown_left == "a" else "right")  # "a" on q2: people now split
    assert bob.current.pair_id == q[3]
    bob.judge("skip")
    assert bob.current is None, "q3 was skipped a moment ago: not straight back"

    bob.set_queue("others_not_me")
    p = bob.progress()
    assert (p.labelled_by_me, p.remaining, p.overlap_percent) == (1, 3, 25.0)  # judged q2 of q1 q2 q3 q7
    assert walk(bob, "tie") == [q[1], q[7], q[3]], "q3, which bob skipped, comes last"
    assert bob.progress().overlap_percent == 100.0

    carol = LabelSession(store, "carol", "disagreement")
    # q2: ada b, bob a: no majority, so no disagreement with the data. q3: ada tie, bob tie.
    assert carol.next().pair_id == q[3]
    assert carol.progress().remaining == 1
    store.add_judgment(q[4], "bob", "b")
    ada = LabelSession(store, "ada", "others_not_me")
    assert ada.next().pair_id == q[4], "ada only skipped q4, which bob labelled since: second pass"
    assert ada.progress().remaining == 1
    assert ada.current.second_pass


def test_undo_is_repeatable_and_stops_at_the_sessions_start(small):
    q, store = small.q, small.store
    store.add_judgment(q[1], "ada", "a")  # before the session: not its to undo
    session = LabelSession(store, "ada")
    assert session.undo() is None
    session.next()
    session.judge("skip")
    session.judge("tie")
    assert session.undo().pair_id == q[3]
    assert session.undo().pair_id == q[2]
    assert session.undo() is None and not session.can_undo
    assert session.current.pair_id == q[2]
    assert [r[5] for r in rows(small.db_path)] == [0, 1, 1]
    assert store.next_unlabelled_pair_id() == q[2], "undone verdicts give the pairs back"
    session.set_queue("disagreement")  # empty
    assert session.current is None
    session.set_queue("unlabelled")
    session.judge("tie")
    session.set_queue("others_not_me")
    assert session.undo().pair_id == q[2], "a verdict from the previous queue can still be undone"


def test_labels_per_hour_counts_this_sessions_verdicts_not_skips(small):
    session = LabelSession(small.store, "ada", clock=Clock())
    session.next()  # shown at 1002.5
    assert session.labels_per_hour() is None
    session.judge("left")  # at 1005
    session.judge("skip")  # at 1010
    session.judge("tie")  # at 1015: 2 labels in 12.5 s
    assert session.labels_per_hour() == pytest.approx(2 / (12.5 / 3600))
    session.undo()
    session.undo()
    # One label left; the latest verdict is still the one at 1015.
    assert session.labels_per_hour() == pytest.approx(1 / (12.5 / 3600))


def test_bad_names_queues_and_choices_are_refused(small):
    with pytest.raises(WorkbenchError, match="reserved"):
        LabelSession(small.store, "dataset:me")
    with pytest.raises(WorkbenchError):
        LabelSession(small.store, "  ")
    with pytest.raises(WorkbenchError, match="queue"):
        LabelSession(small.store, "ada", "newest")
    session = LabelSession(small.store, "ada")
    with pytest.raises(WorkbenchError, match="no pair"):
        session.judge("left")
    session.next()
    with pytest.raises(WorkbenchError, match="choice"):
        session.judge("a")
    assert rows(small.db_path) == []


def test_the_unlabelled_queue_is_an_index_look_up(small):
    plan = small.store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM pairs WHERE human_verdicts = 0 AND id > ? ORDER BY id LIMIT 1", (0,)
    ).fetchall()
    assert any("pairs_unlabelled" in detail for *_, detail in plan), plan
