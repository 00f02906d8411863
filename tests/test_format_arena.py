"""Chatbot-Arena battles: both lmsys layouts, every winner spelling, multi-turn battles."""

import csv
import json
from pathlib import Path

import pytest

from rlhf_workbench.core.errors import InputError
from rlhf_workbench.core.formats import detect
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.records import Message, user_prompt

FIXTURES = Path(__file__).parent / "fixtures"


def _pairs(project):
    return {(p.response_a, p.response_b): p for p in project.store.iter_export_pairs()}


def _meta(project, response_a):
    row = project.store.conn.execute(
        "SELECT p.meta FROM pairs p JOIN responses r ON r.id = p.response_a_id WHERE r.text = ?", (response_a,)
    ).fetchone()
    return json.loads(row[0])


def test_kaggle_layout_json_encoded_turns_and_one_hot_winners(project):
    path = FIXTURES / "arena_55k_style.csv"
    assert detect(path).format.name == "arena"
    report = import_file(project, path)
    assert report.pairs_added == 4 and report.judgments_added == 4
    pairs = _pairs(project)
    single = pairs[("Canberra is the capital of Australia.", "Sydney.")]
    assert single.prompt == user_prompt("What is the capital of Australia?")
    assert (single.verdict, single.annotator) == ("a", "dataset:arena")
    # A null turn is a model that gave no answer: an empty response, still judged (a tie here).
    assert pairs[("", "Hello, and good day to you!")].verdict == "tie"
    # Plain text (not a JSON list) is one turn, quotes and commas intact.
    assert pairs[("Salut", 'Bonjour, "hi" is salut')].prompt == user_prompt('Write "hi" in French, with a comma, please')
    assert _meta(project, "Canberra is the capital of Australia.") == {
        "id": "30192", "model_a": "gpt-4-1106-preview", "model_b": "gpt-4-0613"}


def test_multi_turn_battles_whose_histories_differ_keep_each_sides_whole_conversation(project):
    import_file(project, FIXTURES / "arena_55k_style.csv")
    [pair] = [p for p in project.store.iter_export_pairs() if p.response_a.startswith("4")]
    assert pair.prompt == user_prompt("Name a prime number.")
    assert pair.response_a == "4\n\nUser: Now a bigger one.\n\nAssistant: 8"
    assert pair.response_b == "7\n\nUser: Now a bigger one.\n\nAssistant: 13"
    assert pair.verdict == "b"


def test_conversation_layout_with_winner_strings(project):
    path = FIXTURES / "arena_conversations.jsonl"
    assert detect(path).format.name == "arena"
    report = import_file(project, path)
    assert report.pairs_added == 4
    pairs = _pairs(project)
    assert pairs[("5", "4")].verdict == "b"
    assert pairs[("No.", "I refuse.")].verdict == "both_bad"
    # The histories agree up to the last answer: the whole history is the prompt.
    shared = pairs[("Fine, thanks.", "Very well, and you?")]
    assert shared.verdict == "tie"
    assert shared.prompt == (Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "How are you?"))
    # They differ from the first answer: the prompt is only what both sides saw.
    diverged = pairs[("Blue.\n\nUser: Why?\n\nAssistant: It is calm.", "Red!\n\nUser: Why?\n\nAssistant: Because.")]
    assert diverged.prompt == user_prompt("Pick a colour.") and diverged.verdict == "a"
    meta = _meta(project, "5")
    assert meta["model_a"] == "chatglm-6b" and meta["judge"] == "arena_user_973" and meta["turn"] == 1


@pytest.mark.parametrize(
    ("winner", "verdict"),
    [("model_a", "a"), ("model_b", "b"), ("tie", "tie"), ("tie (bothbad)", "both_bad"), ("both_bad", "both_bad"),
     ("Both bad", "both_bad"), ("TIE", "tie")],
)
def test_winner_spellings(project, tmp_path, winner, verdict):
    path = tmp_path / "arena.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "response_a", "response_b", "winner", "model_a", "model_b"])
        writer.writerow(["Hi", "Hello", "Go away", winner, "m1", "m2"])
    import_file(project, path)
    [pair] = project.store.iter_export_pairs()
    assert pair.verdict == verdict


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"winner": "model_c"}, "winner", "'model_c'"),
        ({"winner": None}, "winner", "null"),
        ({"winner": None, "winner_model_a": 1, "winner_model_b": 1, "winner_tie": 0}, "winner_model_a", "found 2"),
        ({"winner": None, "winner_model_a": "yes", "winner_model_b": 0, "winner_tie": 0}, "winner_model_a", "0 or 1"),
        ({"response_a": '["one", "two"]'}, "response_a", "2 turns but prompt has 1"),
        ({"response_b": ["fine", 3]}, "response_b[1]", "a number"),
        ({"prompt": ""}, "prompt", "empty"),
    ],
)
def test_bad_arena_rows_name_the_field(project, tmp_path, row, field, words):
    good = {"prompt": "Hi", "response_a": "Hello", "response_b": "Go away", "winner": "model_a"}
    bad = {**good, **row}
    if bad.get("winner") is None and "winner_model_a" in bad:
        del bad["winner"]
    path = tmp_path / "arena.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(InputError) as caught:
        import_file(project, path, format="arena")
    assert (caught.value.line, caught.value.field) == (2, field)
    assert words in caught.value.reason
    assert project.store.counts()["pairs"] == 0


def test_a_pandas_written_conversation_column_gets_a_clear_hint(project, tmp_path):
    path = tmp_path / "arena.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["winner", "conversation_a", "conversation_b"])
        writer.writerow(["model_a", "[{'content': 'Hi', 'role': 'user'}]", "[{'content': 'Hi', 'role': 'user'}]"])
    with pytest.raises(InputError, match="Python list"):
        import_file(project, path)


def test_jsonl_rows_may_hold_real_lists_of_turns(project, tmp_path):
    path = tmp_path / "arena.jsonl"
    row = {"id": 7, "model_a": "m1", "model_b": "m2", "prompt": ["Hi", "And?"], "response_a": ["Hello", "Nothing."],
           "response_b": ["Hello", "Plenty."], "winner_model_a": 0, "winner_model_b": 1, "winner_tie": 0}
    path.write_text(json.dumps(row) + "\n")
    import_file(project, path)
    [pair] = project.store.iter_export_pairs()
    # The first answers agree, so the whole history is the prompt and only the last answers differ.
    assert pair.prompt == (Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "And?"))
    assert (pair.response_a, pair.response_b, pair.verdict) == ("Nothing.", "Plenty.", "b")


def test_conversations_that_start_differently_are_refused(project, tmp_path):
    path = tmp_path / "arena.jsonl"
    row = {"winner": "model_a",
           "conversation_a": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
           "conversation_b": [{"role": "user", "content": "Yo"}, {"role": "assistant", "content": "Hey"}]}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError) as caught:
        import_file(project, path)
    assert caught.value.field == "conversation_b" and "starts differently" in caught.value.reason


@pytest.mark.parametrize("pipeline", [False, True])
def test_battles_whose_two_answers_are_identical_are_skipped_and_counted(project, tmp_path, pipeline):
    """Real Arena exports hold many ties of identical answers; one stopped the whole file's import."""
    rows = [
        {"prompt": "Hi", "response_a": "Hello", "response_b": "Go away", "winner": "model_a"},
        {"prompt": "2+2?", "response_a": "4", "response_b": "4", "winner": "tie"},
        {"prompt": "Sky?", "response_a": "Blue.", "response_b": "Green.", "winner": "model_a"},
        {"prompt": "Name?", "response_a": '["I am a model."]', "response_b": '["I am a model."]', "winner": "model_b"},
    ]
    path = tmp_path / "arena.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = import_file(project, path, pipeline=pipeline)
    assert (report.pairs_added, report.rows, report.rejected_count) == (2, 4, 0)
    assert report.skipped == {"the two responses are identical": 2}
    assert "2 rows skipped (the two responses are identical)" in report.summary()
    assert project.store.counts()["pairs"] == 2
    # A bad row is still refused: skipping is for good data that holds no pair.
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, {**rows[0], "winner": "model_c"}]))
    with pytest.raises(InputError, match="line 5"):
        import_file(project, path, pipeline=pipeline)
