"""Unlabelled pairs (reader and writer) and plain prompt lists."""

import json
from pathlib import Path

import pytest

from rlhf_workbench.core.errors import InputError
from rlhf_workbench.core.exporting import export_file
from rlhf_workbench.core.formats import detect
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.records import Message, conversation_to_json, user_prompt

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _snapshot(project):
    return sorted((conversation_to_json(p.prompt), p.response_a, p.response_b) for p in project.store.iter_export_pairs())


@pytest.mark.parametrize("name", ["pairs.csv", "pairs.jsonl"])
def test_unlabelled_pairs_are_detected_and_imported_without_verdicts(project, name):
    path = FIXTURES / name
    assert detect(path).format.name == "pairs"
    report = import_file(project, path)
    assert report.pairs_added == len(_snapshot(project)) > 0
    assert report.judgments_added == 0
    assert project.store.unlabelled_pair_count() == report.pairs_added


def test_a_prompt_may_be_a_message_list_in_jsonl_or_json_in_a_csv_cell(project):
    import_file(project, FIXTURES / "pairs.jsonl")
    import_file(project, FIXTURES / "pairs.csv")
    prompts = {p.response_a: p.prompt for p in project.store.iter_export_pairs()}
    assert prompts["Try 'The Left Hand of Darkness'."] == (
        Message("user", "Hi!"), Message("assistant", "Hello. How can I help?"), Message("user", "Recommend a book."))
    assert prompts["Disorder, measured."] == (Message("system", "Be brief."), Message("user", "Define entropy."))
    assert prompts["Katze"] == user_prompt("Translate 'cat' to German.")


def test_the_writer_writes_every_pair_without_verdicts_and_reads_back_the_same(project, tmp_path):
    import_file(project, FIXTURES / "pairs.jsonl")
    import_file(project, FIXTURES / "pairs.csv")
    # Labelled pairs go out too: this file is what labellers get, so verdicts stay behind.
    import_file(project, FIXTURES / "oasst_edge_cases.jsonl")
    out = tmp_path / "out.jsonl"
    report = export_file(project, out, format="pairs")
    assert report.written == len(_snapshot(project)) == 9 and not report.skipped
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert all(set(row) == {"prompt", "response_a", "response_b"} for row in rows)
    by_a = {row["response_a"]: row for row in rows}
    assert by_a["Katze"]["prompt"] == "Translate 'cat' to German."  # one user turn: plain text
    assert by_a["Try 'The Left Hand of Darkness'."]["prompt"][1] == {"role": "assistant", "content": "Hello. How can I help?"}
    with Project.create(tmp_path / "again") as again:
        assert detect(out).format.name == "pairs"
        import_file(again, out)
        assert _snapshot(again) == _snapshot(project)
        assert again.store.counts()["judgments"] == 0


def test_the_writer_round_trips_the_whole_oasst_sample(project, tmp_path):
    import_file(project, SHARED / "oasst-en100" / "trees.jsonl")
    out = tmp_path / "oasst-pairs.jsonl"
    assert export_file(project, out, format="pairs").written == 754
    with Project.create(tmp_path / "again") as again:
        assert import_file(again, out).pairs_added == 754
        assert _snapshot(again) == _snapshot(project)


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"prompt": "q", "response_a": "x", "respnse_b": "y"}, "response_b", "misspelled"),
        ({"prompt": "q", "response_a": None, "response_b": "y"}, "response_a", "null"),
        ({"prompt": 42, "response_a": "x", "response_b": "y"}, "prompt", "a number"),
        ({"prompt": [{"role": "robot", "content": "hi"}], "response_a": "x", "response_b": "y"}, "prompt[0].role", "'robot'"),
        ({"prompt": [{"role": "user"}], "response_a": "x", "response_b": "y"}, "prompt[0].content", "missing"),
        ({"prompt": [], "response_a": "x", "response_b": "y"}, "prompt", "empty list"),
        ({"prompt": "   ", "response_a": "x", "response_b": "y"}, "prompt", "empty"),
    ],
)
def test_bad_pair_rows_name_the_field(project, tmp_path, row, field, words):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "q", "response_a": "x", "response_b": "y"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError) as caught:
        import_file(project, path, format="pairs")
    assert (caught.value.line, caught.value.field) == (2, field)
    assert words in caught.value.reason


# -- prompt lists ---------------------------------------------------------------------------------


def test_a_text_file_is_one_prompt_per_line(project):
    path = FIXTURES / "prompts.txt"
    assert detect(path).format.name == "prompts"
    report = import_file(project, path)
    assert report.prompts_added == 3 and report.pairs_added == 0
    texts = {p["prompt"][0].content for p in project.store.prompts_page(0, 10)}
    assert texts == {"Write a haiku about autumn.", "Explain recursion to a child.", "List three prime numbers."}


def test_prompt_lists_in_csv_and_jsonl_including_message_lists(project):
    for name in ("prompts.csv", "prompts.jsonl"):
        assert detect(FIXTURES / name).format.name == "prompts"
        import_file(project, FIXTURES / name)
    prompts = {p["prompt"] for p in project.store.prompts_page(0, 10)}
    assert user_prompt("Why is the sky blue?") in prompts
    assert (Message("system", "You are terse."), Message("user", "What is 7*6?")) in prompts
    assert len(prompts) == 4
    assert import_file(project, FIXTURES / "prompts.jsonl").prompts_added == 0  # idempotent


def test_a_prompt_list_row_without_a_prompt_names_the_field(project, tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "fine"}\n{"promt": "typo"}\n')
    with pytest.raises(InputError) as caught:
        import_file(project, path, format="prompts")
    assert (caught.value.line, caught.value.field) == (2, "prompt")
    assert "'promt'" in caught.value.reason


def test_a_prompt_whose_text_looks_like_a_message_list_round_trips_as_text(project, tmp_path):
    tricky = '[{"role": "user", "content": "not really a message"}]'
    path = tmp_path / "tricky.jsonl"
    path.write_text(json.dumps({"prompt": [{"role": "user", "content": tricky}], "response_a": "x", "response_b": "y"}) + "\n")
    import_file(project, path)
    out = tmp_path / "out.jsonl"
    export_file(project, out, format="pairs")
    with Project.create(tmp_path / "again") as again:
        import_file(again, out)
        [pair] = again.store.iter_export_pairs()
        assert pair.prompt == user_prompt(tricky)
