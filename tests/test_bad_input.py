"""Bad input never half-imports: a clear error naming file, line and field, and the project unchanged.

Every file under fixtures/bad/ is imported into a project that already holds pairs and verdicts.
The import must raise InputError whose message names the file, the line (or says the file is
empty or binary) and the field where one applies, and the database must be exactly as before:
the whole SQL dump is compared, not only the counts.
"""

import json
from pathlib import Path

import pytest

from rlhf_workbench.core.errors import InputError
from rlhf_workbench.core.formats import MAX_TEXT_CHARS
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.project import Project

FIXTURES = Path(__file__).parent / "fixtures"
BAD = FIXTURES / "bad"


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "p") as project:
        import_file(project, FIXTURES / "pairs.jsonl")
        import_file(project, FIXTURES / "oasst_edge_cases.jsonl")
        project.store.add_judgment(1, "alice", "b", shown_left="a", seconds=3.5)
        assert project.store.counts()["pairs"] == 6
        yield project


def _state(project):
    return list(project.store.conn.iterdump()), project.store.counts()


# (file, how it is imported, line, field, words the reason must contain)
CASES = [
    ("truncated.jsonl", {}, 3, None, "may be truncated"),
    ("truncated.json", {}, 3, None, "may be truncated"),
    ("invalid_utf8.jsonl", {}, 2, None, "not valid UTF-8"),
    ("invalid_utf8.csv", {}, 3, None, "not valid UTF-8"),
    ("empty.jsonl", {}, None, None, "the file is empty"),
    ("blank_lines.jsonl", {}, None, None, "the file is empty"),
    ("header_only.csv", {}, None, None, "has a header but no rows"),
    ("binary.jsonl", {}, None, None, "binary file"),
    ("missing_key.jsonl", {}, 2, "response_b", "is missing"),
    ("misspelled_key.jsonl", {}, 3, "response_b", "there is a 'respones_b': misspelled?"),
    ("number_as_text.jsonl", {}, 2, "response_a", "is a number (42); expected text"),
    ("null_as_text.jsonl", {}, 2, "prompt", "is null"),
    ("identical_responses.jsonl", {}, 2, None, "identical"),
    ("wrong_columns.csv", {}, None, None, "columns: question, answer_1, answer_2"),
    ("wrong_columns.csv", {"format": "pairs"}, 2, "prompt", "question, answer_1, answer_2"),
    # A mapping naming a missing column is wrong for the whole file: refused before any row is read.
    ("wrong_columns.csv", {"mapping": {"prompt": "question", "chosen": "answer_1", "rejected": "answer_3"}},
     None, "answer_3", "the columns are: question, answer_1, answer_2"),
    ("wrong_field_count.csv", {}, 3, None, "has 4 fields but the header has 3"),
    ("deeply_nested.jsonl", {}, 2, None, "too deeply"),
    ("arena_bad_winner.csv", {}, 3, "winner", "'model_c'"),
    ("oasst_malformed_tree.jsonl", {}, 2, "prompt.replies[2].text", "a number (7)"),
    ("hh_identical.jsonl", {}, 4, None, "identical"),
    ("hh_no_assistant_turn.jsonl", {}, 4, "chosen", "Assistant"),
    ("trl_identical.jsonl", {}, 4, None, "identical"),
    ("trl_null_rejected.jsonl", {}, 4, "rejected", "is null"),
    ("trl_number_chosen.jsonl", {}, 4, "chosen", "a number (42)"),
    # A margin of 1e300 was accepted and made the reward model's loss infinite in training.
    ("trl_absurd_margin.jsonl", {}, 2, "margin", "is 1e+300; a margin beyond ±10000"),
    ("trl_infinite_margin.jsonl", {}, 3, "margin", "expected a finite number"),
    ("mapped_absurd_margin.csv", {"mapping": {"prompt": "question", "chosen": "good", "rejected": "bad",
                                              "margin": "how_much"}}, 3, "margin", "is -20000"),
]


@pytest.mark.parametrize(("name", "how", "line", "field", "words"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_a_bad_file_gives_a_clear_error_and_changes_nothing(project, name, how, line, field, words):
    path = BAD / name
    before = _state(project)
    with pytest.raises(InputError) as caught:
        import_file(project, path, **how)
    error, message = caught.value, str(caught.value)
    assert str(path) in message
    assert error.line == line
    if line is not None:
        assert f"line {line}" in message
    assert error.field == field
    if field is not None:
        assert f"field '{field}'" in message
    assert words in message
    assert _state(project) == before


@pytest.mark.slow
def test_a_50_mb_single_line_is_refused_naming_the_field_and_the_limit(project, tmp_path):
    path = tmp_path / "huge.jsonl"
    huge = "x" * 50_000_000
    with path.open("w") as f:
        f.write(json.dumps({"prompt": "Describe x.", "response_a": huge, "response_b": "No."}))
    assert path.stat().st_size > 50_000_000
    before = _state(project)
    with pytest.raises(InputError) as caught:
        import_file(project, path)
    assert (caught.value.line, caught.value.field) == (1, "response_a")
    assert "50,000,000 characters" in str(caught.value) and f"{MAX_TEXT_CHARS:,}" in str(caught.value)
    assert str(path) in str(caught.value)
    assert _state(project) == before


def test_skip_bad_imports_the_good_rows_and_reports_every_rejected_one(project):
    before = project.store.counts()
    report = import_file(project, BAD / "mixed_good_and_bad.jsonl", skip_bad=True)
    assert report.pairs_added == 4
    assert project.store.counts()["pairs"] == before["pairs"] + 4
    assert report.rejected_count == len(report.rejected) == 6
    reasons = {r.line: (r.field, r.reason) for r in report.rejected}
    assert sorted(reasons) == [2, 4, 5, 6, 8, 9]
    assert "not valid JSON" in reasons[2][1]
    assert reasons[4][0] == "response_b" and "missing" in reasons[4][1]
    assert "UTF-8" in reasons[5][1]
    assert "identical" in reasons[6][1]
    assert reasons[8] == ("response_a", "is a number (42); expected text")
    assert "JSON object" in reasons[9][1]
    # Each rejected row reads as one line a person can act on.
    assert str(report.rejected[1]) == "line 4, field 'response_b': " + reasons[4][1]
    # Without skip_bad the same file is refused whole, at its first bad line.
    with pytest.raises(InputError, match="line 2"):
        import_file(project, BAD / "mixed_good_and_bad.jsonl")


def test_skip_bad_skips_csv_rows_with_the_wrong_field_count(project):
    report = import_file(project, BAD / "wrong_field_count.csv", skip_bad=True)
    assert report.pairs_added == 2
    [rejected] = report.rejected
    assert rejected.line == 3 and "4 fields" in rejected.reason


def test_skip_bad_does_not_hide_a_file_that_is_bad_as_a_whole(project):
    before = _state(project)
    for name in ("empty.jsonl", "binary.jsonl", "truncated.json", "invalid_utf8.csv"):
        with pytest.raises(InputError):
            import_file(project, BAD / name, skip_bad=True)
    assert _state(project) == before


def test_bad_fixtures_stay_small():
    assert all(path.stat().st_size < 20_000 for path in BAD.iterdir())
