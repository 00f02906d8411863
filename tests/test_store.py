"""The store: idempotent bulk writes, verdict orientation, labelling bookkeeping, settling verdicts."""

import pytest

from rlhf_workbench.core.bulk import BulkWriter
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.records import Message, user_prompt
from rlhf_workbench.core.store import settle_verdict


def _write(store, rows):
    with store.transaction():
        writer = BulkWriter(store, import_id=None, source="dataset", source_name="test")
        for prompt, a, b, verdict in rows:
            writer.add_pair(user_prompt(prompt), a, b, origin="test", verdict=verdict,
                            annotator="dataset:test" if verdict else None)
        writer.flush()
    return writer.counts


def test_writing_the_same_pairs_twice_adds_nothing(project):
    rows = [(f"q{i}", f"good {i}", f"bad {i}", "a") for i in range(10)]
    first = _write(project.store, rows)
    assert (first.prompts_added, first.responses_added, first.pairs_added, first.judgments_added) == (10, 20, 10, 10)
    second = _write(project.store, rows)
    assert (second.prompts_added, second.pairs_added, second.judgments_added) == (0, 0, 0)
    assert second.pairs_existing == 10 and second.judgments_existing == 10
    assert project.store.counts()["pairs"] == 10


def test_pairs_larger_than_a_batch_resolve_across_batches(project):
    n = BulkWriter.BATCH * 2 + 7
    rows = [(f"q{i % 50}", f"answer {i}", f"other {i}", None) for i in range(n)]
    counts = _write(project.store, rows)
    assert counts.prompts_added == 50 and counts.pairs_added == n
    assert _write(project.store, rows).pairs_added == 0


def test_the_same_two_responses_the_other_way_round_are_one_pair_with_the_verdict_flipped(project):
    _write(project.store, [("q", "first", "second", "a")])
    _write(project.store, [("q", "second", "first", "b")])  # the same judgment, said from the other side
    _write(project.store, [("q", "second", "first", "a")])  # a different judgment
    [pair] = list(project.store.iter_export_pairs())
    assert (pair.response_a, pair.response_b) == ("first", "second")
    assert pair.judgments == [("dataset:test", "a"), ("dataset:test", "b")]


def test_the_same_text_under_two_prompts_is_two_responses(project):
    _write(project.store, [("q1", "I don't know.", "Paris", None), ("q2", "I don't know.", "Rome", None)])
    assert project.store.counts()["responses"] == 4


def test_people_label_pairs_and_undo_marks_rather_than_deletes(project):
    _write(project.store, [("q1", "a1", "b1", "a"), ("q2", "a2", "b2", None)])
    store = project.store
    first = store.next_unlabelled_pair_id()
    assert first == 1, "a label that came with the data does not make a pair labelled for people"
    jid = store.add_judgment(first, "ada", "b", shown_left="b", seconds=2.5, rationale="clearer")
    assert store.next_unlabelled_pair_id() == 2
    store.undo_judgment(jid)
    assert store.next_unlabelled_pair_id() == 1
    row = store.conn.execute("SELECT verdict, undone, undone_at IS NOT NULL, shown_left FROM judgments WHERE id = ?", (jid,)).fetchone()
    assert row == ("b", 1, 1, "b")
    assert store.counts()["judgments"] == 1  # only the dataset's, the undone one is not active
    assert store.unlabelled_pair_count() == 2


def test_a_verdict_outside_the_vocabulary_is_refused(project):
    _write(project.store, [("q", "x", "y", None)])
    with pytest.raises(WorkbenchError, match="verdict must be one of"):
        project.store.add_judgment(1, "ada", "maybe")
    assert project.store.counts()["judgments"] == 0


def test_a_failed_transaction_leaves_nothing(project):
    with pytest.raises(RuntimeError), project.store.transaction():
        writer = BulkWriter(project.store, import_id=None, source="dataset", source_name="t")
        writer.add_pair(user_prompt("q"), "x", "y", origin="t")
        writer.flush()
        raise RuntimeError("power cut")
    assert project.store.counts()["pairs"] == 0


def test_multi_turn_prompts_survive_storage(project):
    prompt = (Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "2+2?"))
    with project.store.transaction():
        writer = BulkWriter(project.store, import_id=None, source="dataset", source_name="t")
        writer.add_pair(prompt, "4", "5", origin="t")
        writer.flush()
    assert project.store.pair(1).prompt == prompt


@pytest.mark.parametrize(
    "judgments, expected",
    [
        ([], (None, None)),
        ([("ada", "skip")], (None, None)),
        ([("ada", "a")], ("a", "ada")),
        ([("ada", "tie")], ("tie", "ada")),
        ([("ada", "a"), ("bob", "a")], ("a", "consensus")),
        ([("ada", "a"), ("ada", "a")], ("a", "ada")),
        ([("ada", "a"), ("bob", "b")], (None, None)),
        ([("ada", "a"), ("bob", "b"), ("cy", "b")], ("b", "consensus")),
        ([("ada", "a"), ("bob", "skip")], ("a", "ada")),
        ([("ada", "a"), ("bob", "b"), ("cy", "tie")], (None, None)),
    ],
)
def test_settle_verdict(judgments, expected):
    assert settle_verdict(judgments) == expected


def _indexes(store):
    return sorted(store.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))


def test_a_first_import_sets_indexes_aside_and_restores_every_one(project):
    before = _indexes(project.store)
    rows = [(f"q{i}", f"good {i}", f"bad {i}", "a") for i in range(BulkWriter.BATCH + 10)]
    rows += rows[:5]  # duplicates within the same file, while the unique indexes are set aside
    with project.store.transaction(foreign_keys=False):
        writer = BulkWriter(project.store, import_id=None, source="dataset", source_name="t")
        for prompt, a, b, verdict in rows:
            writer.add_pair(user_prompt(prompt), a, b, origin="t", verdict=verdict, annotator="dataset:t")
        writer._write_batch()
        assert len(_indexes(project.store)) < len(before), "a first import builds its indexes at the end"
        writer.flush()
    assert _indexes(project.store) == before
    assert writer.counts.pairs_added == BulkWriter.BATCH + 10 and writer.counts.pairs_existing == 5
    assert writer.counts.judgments_added == BulkWriter.BATCH + 10 and writer.counts.judgments_existing == 5
    assert project.store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert project.store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert project.store.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    # A second import meets the rebuilt unique indexes: nothing is added twice.
    assert _write(project.store, rows).pairs_added == 0


def test_the_count_of_peoples_verdicts_follows_judgments_and_undo(project):
    _write(project.store, [("q1", "a1", "b1", "a"), ("q2", "a2", "b2", None)])
    store = project.store

    def people_counts():
        return [n for (n,) in store.conn.execute("SELECT human_verdicts FROM pairs ORDER BY id")]

    assert people_counts() == [0, 0], "a label that came with the data is not a person's"
    first = store.add_judgment(1, "ada", "a")
    store.add_judgment(1, "bob", "skip")
    assert people_counts() == [2, 0]
    store.undo_judgment(first)
    store.undo_judgment(first)  # undoing twice changes nothing more
    assert people_counts() == [1, 0]
    with store.transaction(foreign_keys=False):
        writer = BulkWriter(store, import_id=None, source="dataset", source_name="t")
        writer.add_pair(user_prompt("q2"), "a2", "b2", origin="test", verdict="b", annotator="carol")
        writer.flush()
    assert people_counts() == [1, 1], "an imported verdict under a person's name counts as theirs"
    assert writer.counts.judgments_added == 1
