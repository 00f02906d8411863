"""Any CSV/JSONL through an explicit column mapping."""

import json
import re
from pathlib import Path

import pytest

from rlhf_workbench.core.errors import ConfigError, InputError
from rlhf_workbench.core.formats import detect
from rlhf_workbench.core.formats.mapped import TARGETS, check_mapping
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.records import Message, user_prompt

FIXTURES = Path(__file__).parent / "fixtures"
CHOSEN_REJECTED = FIXTURES / "mapped_chosen_rejected.csv"
VERDICTS = FIXTURES / "mapped_verdicts.jsonl"
AB = {"prompt": "question", "response_a": "first", "response_b": "second", "verdict": "preferred"}


def _pairs(project):
    return {p.response_a: p for p in project.store.iter_export_pairs()}


def test_chosen_and_rejected_columns_with_margin_and_system(project):
    mapping = {"prompt": "question", "chosen": "good", "rejected": "bad", "margin": "score", "system": "sys"}
    report = import_file(project, CHOSEN_REJECTED, mapping=mapping)
    assert report.format == "mapped" and report.pairs_added == 2 and report.judgments_added == 2
    pairs = _pairs(project)
    assert (pairs["7"].response_b, pairs["7"].verdict, pairs["7"].annotator) == ("8", "a", "dataset:mapped")
    assert pairs["7"].margin == 2.5 and pairs["Paris"].margin is None
    assert pairs["7"].prompt == (Message("system", "Answer with a number."), Message("user", "What is 3+4?"))
    assert pairs["Paris"].prompt == user_prompt("Capital of France?")  # an empty system cell adds nothing


def test_response_columns_with_verdict_spellings_and_an_empty_verdict(project):
    report = import_file(project, VERDICTS, mapping=AB, annotator="alice")
    assert report.pairs_added == 6 and report.judgments_added == 5
    verdicts = {a: p.verdict for a, p in _pairs(project).items()}
    assert verdicts == {"x1": "a", "x2": "b", "x3": "b", "x4": "tie", "x5": "both_bad", "x6": None}
    assert set(project.store.judgments_by_annotator_and_verdict()) == {"alice"}


def test_mapped_is_never_detected_and_a_mapping_picks_it(project):
    with pytest.raises(InputError, match="could not be recognised"):
        detect(CHOSEN_REJECTED)
    assert import_file(project, VERDICTS, mapping=AB).format == "mapped"


def test_a_mapping_naming_a_missing_column_names_it_and_lists_the_columns(project):
    mapping = {"prompt": "query", "chosen": "good", "rejected": "bad"}
    with pytest.raises(InputError) as caught:
        import_file(project, CHOSEN_REJECTED, mapping=mapping)
    assert caught.value.field == "query"
    assert "question, good, bad, score, sys" in caught.value.reason
    assert project.store.counts()["pairs"] == 0
    with pytest.raises(ConfigError, match="'query'.*question, good, bad"):
        check_mapping(mapping, ["question", "good", "bad", "score", "sys"])


@pytest.mark.parametrize(
    ("mapping", "words"),
    [
        ({"prompt": "question", "chosen": "good", "rejected": "bad", "better": "score"}, "unknown mapping target 'better'"),
        ({"prompt": "question", "chosen": "good"}, "needs both chosen and rejected"),
        ({"prompt": "question"}, "chosen + rejected or response_a + response_b"),
        ({"chosen": "good", "rejected": "bad"}, "needs a prompt"),
        ({"prompt": "question", "chosen": "good", "rejected": "bad", "response_a": "x", "response_b": "y"}, "not both"),
        ({"prompt": "question", "chosen": "good", "rejected": "bad", "verdict": "score"}, "only goes with"),
    ],
)
def test_unusable_mappings_are_refused(project, mapping, words):
    with pytest.raises(InputError, match=re.escape(words)):
        import_file(project, CHOSEN_REJECTED, mapping=mapping)
    with pytest.raises(ConfigError, match=re.escape(words)):
        check_mapping(mapping)


def test_an_unknown_target_lists_the_valid_ones(project):
    with pytest.raises(InputError) as caught:
        import_file(project, CHOSEN_REJECTED, mapping={"question": "prompt", "chosen": "good", "rejected": "bad"})
    assert ", ".join(TARGETS) in str(caught.value)


def test_a_bad_verdict_value_names_the_column_and_the_accepted_values(project, tmp_path):
    path = tmp_path / "v.jsonl"
    path.write_text('{"question": "q", "first": "x", "second": "y", "preferred": "maybe"}\n')
    with pytest.raises(InputError) as caught:
        import_file(project, path, mapping=AB)
    assert caught.value.field == "preferred" and caught.value.line == 1
    assert "'maybe'" in caught.value.reason and "model_a" in caught.value.reason


def test_jsonl_with_a_message_list_prompt_and_a_null_system(project, tmp_path):
    path = tmp_path / "m.jsonl"
    row = {"q": [{"role": "human", "content": "Hi"}, {"role": "gpt", "content": "Hello"}, {"role": "human", "content": "Bye?"}],
           "good": "Goodbye!", "bad": "No.", "sys": None}
    path.write_text(json.dumps(row) + "\n")
    import_file(project, path, mapping={"prompt": "q", "chosen": "good", "rejected": "bad", "system": "sys"})
    [pair] = project.store.iter_export_pairs()
    assert pair.prompt == (Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Bye?"))


def test_a_mapping_naming_a_missing_column_is_refused_once_even_with_skip_bad(tmp_path, project):
    data = tmp_path / "qa.csv"
    data.write_text("question,good,bad\nq1,yes,no\nq2,fine,poor\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        import_file(project, data, mapping={"prompt": "question", "chosen": "gud", "rejected": "bad"}, skip_bad=True)
    message = str(caught.value)
    assert "qa.csv" in message and "'gud'" in message and "question, good, bad" in message
    assert project.store.counts()["pairs"] == 0


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


PANDALM = [
    {"instruction": "Q1", "output_1": "x1", "output_2": "y1", "annotator1": 1, "annotator2": 1, "annotator3": 0},
    {"instruction": "Q2", "output_1": "x2", "output_2": "y2", "annotator1": 2, "annotator2": 0, "annotator3": 2},
    {"instruction": "Q3", "output_1": "x3", "output_2": "y3", "annotator1": "0", "annotator2": 2.0, "annotator3": None},
]
PANDALM_MAP = {"prompt": "instruction", "response_a": "output_1", "response_b": "output_2"}


def test_verdict_values_say_what_a_columns_values_mean(project, tmp_path):
    """PandaLM writes 0 = tie, 1 = A, 2 = B: the built-in spellings read 2 as B but 0 as an error."""
    from rlhf_workbench.core.formats.mapped import parse_verdict_values

    path = _jsonl(tmp_path / "pandalm.jsonl", PANDALM)
    mapping = {**PANDALM_MAP, "verdict": "annotator1"}
    with pytest.raises(InputError, match="is 2, which --verdict-values does not give a verdict; --verdict-values maps -1=b, 1=a"):
        import_file(project, path, mapping=mapping, verdict_values=parse_verdict_values("-1=b,1=a"))
    report = import_file(project, path, mapping=mapping, verdict_values=parse_verdict_values("0=tie,1=a,2=b"))
    assert report.judgments_added == 3
    assert {a: p.verdict for a, p in _pairs(project).items()} == {"x1": "a", "x2": "b", "x3": "tie"}


@pytest.mark.parametrize("pipeline", [False, True])
def test_several_annotator_columns_are_each_their_own_annotator(project, tmp_path, pipeline):
    from rlhf_workbench.core.formats.mapped import parse_verdict_values

    path = _jsonl(tmp_path / "pandalm.jsonl", PANDALM)
    values = parse_verdict_values("0=tie,1=A,2=B")
    report = import_file(project, path, mapping={**PANDALM_MAP, "verdict": "annotator1+annotator2+annotator3"},
                         verdict_values=values, pipeline=pipeline)  # True: read in a second process
    assert (report.pairs_added, report.judgments_added, report.ignored_columns) == (3, 8, [])  # one empty cell
    assert project.store.judgments_by_annotator_and_verdict() == {
        "dataset:mapped:annotator1": {"a": 1, "b": 1, "tie": 1},
        "dataset:mapped:annotator2": {"a": 1, "b": 1, "tie": 1},
        "dataset:mapped:annotator3": {"b": 1, "tie": 1},
    }
    # --annotator names the group; importing again adds nothing.
    again = import_file(project, path, mapping={**PANDALM_MAP, "verdict": "annotator1+annotator2"},
                        verdict_values=values, annotator="pandalm")
    assert (again.pairs_added, again.judgments_added) == (0, 6)
    assert {"pandalm:annotator1", "pandalm:annotator2"} <= set(project.store.judgments_by_annotator_and_verdict())


@pytest.mark.parametrize(("text", "words"), [
    ("0=tie,1=c", "--verdict-values: '1=c': 'c' is not a verdict; use a, b, tie, both_bad, none"),
    ("0tie", "--verdict-values: '0tie' is not VALUE=VERDICT"),
    ("1=a,1.0=b", "the value '1.0' is given two verdicts"),
    ("", "--verdict-values is empty"),
])
def test_unusable_verdict_values_name_the_setting_and_the_item(text, words):
    from rlhf_workbench.core.formats.mapped import parse_verdict_values

    with pytest.raises(ConfigError) as caught:
        parse_verdict_values(text)
    assert words in str(caught.value)


def test_words_in_another_language_and_bad_mappings_of_verdict_columns(project, tmp_path):
    from rlhf_workbench.core.formats.mapped import parse_verdict_values

    rows = [{"frage": "F1", "a": "x1", "b": "y1", "urteil": "Links"}, {"frage": "F2", "a": "x2", "b": "y2", "urteil": "gleich"}]
    path = _jsonl(tmp_path / "de.jsonl", rows)
    mapping = {"prompt": "frage", "response_a": "a", "response_b": "b", "verdict": "urteil"}
    import_file(project, path, mapping=mapping, verdict_values=parse_verdict_values("links=a,rechts=b,gleich=tie"))
    assert {a: p.verdict for a, p in _pairs(project).items()} == {"x1": "a", "x2": "tie"}
    with pytest.raises(InputError, match="no column 'urteil3' \\(mapped to verdict\\)"):
        import_file(project, path, mapping={**mapping, "verdict": "urteil+urteil3"})
    with pytest.raises(InputError, match="--verdict-values says what a verdict column's values mean, but no column"):
        import_file(project, path, mapping={"prompt": "frage", "response_a": "a", "response_b": "b"},
                    verdict_values={"1": "a"})
    with pytest.raises(InputError, match="--verdict-values is for the mapped format"):
        import_file(project, FIXTURES / "pairs.jsonl", verdict_values={"1": "a"})
    assert project.store.counts()["pairs"] == 2
