"""OpenAssistant message trees: ranked sibling replies become pairs, with the whole history as prompt."""

import json
from pathlib import Path

import pytest

from rlhf_workbench.core.errors import InputError
from rlhf_workbench.core.formats import detect
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.records import Message

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TREES = SHARED / "oasst-en100" / "trees.jsonl"


def _pairs(project):
    return {(p.response_a, p.response_b): p for p in project.store.iter_export_pairs()}


def test_the_shared_sample_gives_754_pairs_each_with_a_dataset_verdict(project):
    assert detect(TREES).format.name == "oasst"
    report = import_file(project, TREES)
    assert report.format == "oasst"
    assert report.rows == 100 and report.rejected_count == 0
    assert report.pairs_added == 754 and report.judgments_added == 754
    assert project.store.judgments_by_annotator_and_verdict() == {"dataset:oasst": {"a": 754}}
    # Idempotent: the second import finds every pair and verdict already there.
    again = import_file(project, TREES)
    assert (again.pairs_added, again.judgments_added, again.pairs_existing) == (0, 0, 754)


def test_multi_turn_history_runs_from_the_root_and_meta_keeps_the_ids(project):
    import_file(project, TREES)
    first_tree = json.loads(TREES.read_text(encoding="utf-8").splitlines()[0])
    deepest = max(project.store.iter_export_pairs(), key=lambda p: len(p.prompt))
    assert len(deepest.prompt) >= 3
    roles = [m.role for m in deepest.prompt]
    assert roles[0] == "user" and roles[-1] == "user"
    assert all(x != y for x, y in zip(roles, roles[1:]))  # turns alternate
    meta = json.loads(project.store.conn.execute("SELECT meta FROM pairs ORDER BY id LIMIT 1").fetchone()[0])
    root = first_tree["prompt"]
    assert meta["tree_id"] == first_tree["message_tree_id"] and meta["parent_id"] == root["message_id"]
    assert meta["message_id_a"] == root["replies"][0]["message_id"]
    assert (meta["rank_a"], meta["rank_b"]) == (0, 1)
    # That first tree was written by a model and ranked by people: kept, and marked.
    assert meta["synthetic"] == [True, True]


def test_ties_unranked_deleted_spam_and_duplicate_replies(project):
    report = import_file(project, FIXTURES / "oasst_edge_cases.jsonl")
    assert report.rows == 2 and report.rejected_count == 0
    pairs = _pairs(project)
    assert {k: p.verdict for k, p in pairs.items()} == {
        ("Whiskers.", "Something you like saying aloud, e.g. Miso."): "b",  # lower rank wins
        ("Whiskers.", "Whiskers, or Tom."): "tie",  # equal ranks
        ("Something you like saying aloud, e.g. Miso.", "Whiskers, or Tom."): "a",
        ("Because it is short and friendly.", "It's a soup."): "a",
    }
    texts = {t for pair in pairs for t in pair}
    assert "Cat." not in texts  # unranked
    assert "[deleted reply]" not in texts and "Left out" not in texts  # deleted, and below it
    assert "BUY CHEAP WATCHES" not in texts  # failed review
    assert "Same answer." not in texts  # identical siblings: no preference to state
    follow_up = pairs[("Because it is short and friendly.", "It's a soup.")]
    assert follow_up.prompt == (
        Message("user", "What should I name my cat?"),
        Message("assistant", "Something you like saying aloud, e.g. Miso."),
        Message("user", "Why Miso?"),
    )


def _tree_line(tmp_path, mutate):
    tree = json.loads((FIXTURES / "oasst_edge_cases.jsonl").read_text().splitlines()[0])
    mutate(tree)
    path = tmp_path / "tree.jsonl"
    path.write_text(json.dumps(tree) + "\n")
    return path


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda t: t["prompt"]["replies"][2].__setitem__("text", 42), "prompt.replies[2].text", "a number"),
        (lambda t: t["prompt"]["replies"][1]["replies"][0].__setitem__("text", None), "prompt.replies[1].replies[0].text", "null"),
        (lambda t: t["prompt"]["replies"][0].pop("role"), "prompt.replies[0].role", "missing"),
        (lambda t: t["prompt"]["replies"][0].__setitem__("role", "prompter"), "prompt.replies[0].role", "must be 'assistant'"),
        (lambda t: t["prompt"]["replies"][3].__setitem__("rank", "first"), "prompt.replies[3].rank", "whole number"),
        (lambda t: t["prompt"]["replies"][3].__setitem__("rank", -1), "prompt.replies[3].rank", "whole number"),
        (lambda t: t["prompt"].__setitem__("replies", {"a": 1}), "prompt.replies", "expected a list"),
        (lambda t: t["prompt"]["replies"].append("hello"), "prompt.replies[6]", "expected a message object"),
        (lambda t: t["prompt"]["replies"][0].__setitem__("deleted", "no"), "prompt.replies[0].deleted", "true or false"),
        (lambda t: t.__setitem__("prompt", "just text"), "prompt", "expected a message object"),
        (lambda t: t["prompt"].__setitem__("message_id", None), "prompt.message_id", "null"),
    ],
)
def test_a_malformed_tree_is_refused_naming_the_path_to_the_field(project, tmp_path, mutate, field, words):
    path = _tree_line(tmp_path, mutate)
    with pytest.raises(InputError) as caught:
        import_file(project, path, format="oasst")
    assert caught.value.field == field and caught.value.line == 1
    assert words in str(caught.value) and str(path) in str(caught.value)
    assert project.store.counts()["pairs"] == 0


def test_the_flat_message_export_gets_a_pointer_to_the_tree_export(project, tmp_path):
    path = tmp_path / "messages.jsonl"
    path.write_text(json.dumps({"message_id": "m1", "parent_id": None, "text": "hi", "role": "prompter",
                                "message_tree_id": "m1"}) + "\n")
    with pytest.raises(InputError, match="flat message list"):
        import_file(project, path, format="oasst")
