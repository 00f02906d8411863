"""TRL preference data: every form TRL's dataset guide names, in JSONL, a JSON array and CSV; the
writers' rows; detection against HH-RLHF; and bad rows refused with the file, line and field."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from rlhf_workbench.core.errors import InputError
from rlhf_workbench.core.formats import detect
from rlhf_workbench.core.formats.trl import write as write_trl
from rlhf_workbench.core.formats.trl import write_conversational
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.records import ExportPair, Message

USER, ASSISTANT, SYSTEM = "user", "assistant", "system"


def said(role: str, content) -> dict:
    return {"role": role, "content": content}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _import(tmp_path: Path, path: Path, **kwargs):
    """Import into a fresh project: (report, pairs as stored, with their settled verdicts)."""
    with Project.create(tmp_path / "p") as project:
        report = import_file(project, path, **kwargs)
        return report, list(project.store.iter_export_pairs())


def _conversation(*messages: tuple[str, str]) -> tuple[Message, ...]:
    return tuple(Message(role, content) for role, content in messages)


def test_explicit_string_prompt(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}])
    report, (pair,) = _import(tmp_path, path)
    assert report.format == "trl"
    assert pair.prompt == _conversation((USER, "The sky is"))
    assert (pair.response_a, pair.response_b, pair.verdict, pair.annotator) == (" blue.", " green.", "a", "dataset:trl")
    assert pair.origin == "trl" and pair.margin is None


def test_explicit_prompt_that_is_an_hh_transcript_becomes_messages(tmp_path):
    row = {
        "prompt": "\n\nHuman: Hi\n\nAssistant: Hello. Human: is text here\n\nHuman: Weather?\n\nAssistant:",
        "chosen": " Sunny.",
        "rejected": "  Dunno.",
    }
    _, (pair,) = _import(tmp_path, _jsonl(tmp_path / "d.jsonl", [row]))
    assert pair.prompt == _conversation((USER, "Hi"), (ASSISTANT, "Hello. Human: is text here"), (USER, "Weather?"))
    # The space after the cue goes, as in HH-RLHF itself; a second one is the response's own.
    assert (pair.response_a, pair.response_b) == ("Sunny.", " Dunno.")


def test_implicit_string_prompt_is_the_common_prefix(tmp_path):
    rows = [{"chosen": "The sky is blue.", "rejected": "The sky is green."}]
    _, (pair,) = _import(tmp_path, _jsonl(tmp_path / "d.jsonl", rows))
    # As TRL's extract_prompt: the space before the point where they differ goes with the responses.
    assert pair.prompt == _conversation((USER, "The sky is"))
    assert (pair.response_a, pair.response_b) == (" blue.", " green.")


GOOD_ROW = {"prompt": "What is the capital of Italy?", "chosen": "Rome.", "rejected": "Milan."}


@pytest.mark.parametrize(("column", "suggested"), [
    ("promt", "promt"), ("Prompt", "Prompt"), ("question", "question"), (None, None),
])
def test_a_row_whose_prompt_comes_out_empty_is_refused_naming_the_columns_and_the_likely_one(
        tmp_path, column, suggested):
    """A misspelt prompt column was read as the implicit-prompt form: an empty prompt, exit 0."""
    row = {"chosen": "Paris.", "rejected": "Lyon."}
    if column is not None:
        row = {column: "What is the capital of France?", **row}
    path = _jsonl(tmp_path / "d.jsonl", [GOOD_ROW, row])
    with Project.create(tmp_path / "p") as project:
        with pytest.raises(InputError) as caught:
            import_file(project, path)
        assert project.store.counts()["pairs"] == 0  # all or nothing
    error = caught.value
    assert (error.path, error.line, error.field) == (path, 2, "prompt")
    assert error.reason.startswith("is missing")
    if column in (None, "question"):  # a misspelling is refused before the responses are looked at
        assert "the prompt would be empty" in error.reason
    assert f"the columns are: {', '.join(row)}" in error.reason
    if suggested:
        assert f"did you mean 'prompt' (the column '{suggested}')?" in error.reason
        assert f"--map prompt={suggested},chosen=chosen,rejected=rejected" in error.reason


def test_a_column_spelt_like_prompt_is_refused_even_where_the_responses_share_a_beginning(tmp_path):
    # Read implicitly, "The capital is" would have become the prompt and the question been lost.
    row = {"Prompt": "What is the capital of France?", "chosen": "The capital is Paris.", "rejected": "The capital is Lyon."}
    with pytest.raises(InputError, match="did you mean 'prompt' \\(the column 'Prompt'\\)"):
        _import(tmp_path, _jsonl(tmp_path / "d.jsonl", [row]))


def test_an_empty_explicit_or_conversational_prompt_is_refused(tmp_path):
    for i, row in enumerate([
        {"prompt": "  ", "chosen": "Paris.", "rejected": "Lyon."},
        {"chosen": [said(USER, "Hi"), said(ASSISTANT, "Hello.")], "rejected": [said(USER, "Yo"), said(ASSISTANT, "Hey.")]},
    ]):
        with pytest.raises(InputError) as caught:
            _import(tmp_path / str(i), _jsonl(tmp_path / f"{i}.jsonl", [row]), format="trl")
        assert caught.value.field == "prompt" and "empty" in caught.value.reason


def test_the_summary_names_the_columns_a_format_does_not_read(tmp_path):
    rows = [{**GOOD_ROW, "id": 7, "source": "web", "score_chosen": 9.0}]
    report, _ = _import(tmp_path, _jsonl(tmp_path / "d.jsonl", rows))
    assert report.ignored_columns == ["id", "source", "score_chosen"]
    assert report.summary().endswith("; columns not read by the trl format: id, source, score_chosen")
    report, _ = _import(tmp_path / "2", _jsonl(tmp_path / "e.jsonl", [GOOD_ROW]))
    assert report.ignored_columns == [] and "not read" not in report.summary()


def test_implicit_hh_transcripts_split_at_the_turn(tmp_path):
    row = {"chosen": "\n\nHuman: Hi\n\nAssistant: I agree.", "rejected": "\n\nHuman: Hi\n\nAssistant: I disagree."}
    _, (pair,) = _import(tmp_path, _jsonl(tmp_path / "d.jsonl", [row]), format="trl")
    # Not "...Assistant: I" + " agree.": whole dialogues are cut where the turn starts.
    assert pair.prompt == _conversation((USER, "Hi"))
    assert (pair.response_a, pair.response_b) == ("I agree.", "I disagree.")


def test_conversational_explicit_prompt(tmp_path):
    row = {
        "prompt": [said(SYSTEM, "Be brief."), said(USER, "Sky colour?")],
        "chosen": [said(ASSISTANT, "Blue.")],
        "rejected": [said(ASSISTANT, "Green.")],
    }
    report, (pair,) = _import(tmp_path, _jsonl(tmp_path / "d.jsonl", [row]))
    assert report.format == "trl"
    assert pair.prompt == _conversation((SYSTEM, "Be brief."), (USER, "Sky colour?"))
    assert (pair.response_a, pair.response_b) == ("Blue.", "Green.")


def test_conversational_implicit_prompt_and_repeated_prompt_column(tmp_path):
    history = [said(USER, "Hi"), said(ASSISTANT, "Hello"), said(USER, "Sky?")]
    rows = [
        {"chosen": history + [said(ASSISTANT, "Blue.")], "rejected": history + [said(ASSISTANT, "Green.")]},
        # UltraFeedback-style: a string prompt column that the conversations repeat.
        {
            "prompt": "Sun?",
            "chosen": [said(USER, "Sun?"), said(ASSISTANT, "Hot.")],
            "rejected": [said(USER, "Sun?"), said(ASSISTANT, "Cold.")],
        },
    ]
    _, pairs = _import(tmp_path, _jsonl(tmp_path / "d.jsonl", rows))
    by_prompt = {p.prompt: (p.response_a, p.response_b) for p in pairs}
    assert by_prompt == {
        _conversation((USER, "Hi"), (ASSISTANT, "Hello"), (USER, "Sky?")): ("Blue.", "Green."),
        _conversation((USER, "Sun?")): ("Hot.", "Cold."),
    }


def test_margin_and_annotator_columns_are_kept(tmp_path):
    rows = [
        {"prompt": "a", "chosen": "x", "rejected": "y", "margin": 1.5, "annotator": "alice"},
        {"prompt": "b", "chosen": "x", "rejected": "y", "margin": None},
    ]
    _, pairs = _import(tmp_path, _jsonl(tmp_path / "d.jsonl", rows))
    assert [(p.prompt[0].content, p.margin, p.annotator) for p in pairs] == [("a", 1.5, "alice"), ("b", None, "dataset:trl")]


def test_csv_holds_the_string_forms(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "prompt,chosen,rejected,margin\n"
        'What is 2+2?,4,5,2\n'
        '"\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye?\n\nAssistant:", Bye!, No.,\n',
        encoding="utf-8",
    )
    report, pairs = _import(tmp_path, path)
    assert report.format == "trl"
    assert [(p.prompt, p.response_a, p.response_b, p.margin) for p in pairs] == [
        (_conversation((USER, "What is 2+2?")), "4", "5", 2.0),
        (_conversation((USER, "Hi"), (ASSISTANT, "Hello"), (USER, "Bye?")), "Bye!", "No.", None),
    ]


def test_json_array_container(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(
        json.dumps(
            [
                {"prompt": "q1", "chosen": "good", "rejected": "bad"},
                {"prompt": [said(USER, "q2")], "chosen": [said(ASSISTANT, "good")],
                 "rejected": [said(ASSISTANT, "bad")]},
            ],
            indent=2,
        ),
        encoding="utf-8",
    )
    report, pairs = _import(tmp_path, path)
    assert report.format == "trl"
    assert [(p.prompt, p.response_a) for p in pairs] == [
        (_conversation((USER, "q1")), "good"),
        (_conversation((USER, "q2")), "good"),
    ]


@pytest.mark.parametrize(
    ("name", "rows", "score"),
    [
        ("explicit.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}], 80),
        ("implicit.jsonl", [{"chosen": "p a", "rejected": "p b"}], 60),
        ("conversational.jsonl", [{"chosen": [said(ASSISTANT, "a")], "rejected": [said(ASSISTANT, "b")]}], 80),
    ],
)
def test_detection_picks_trl(tmp_path, name, rows, score):
    detection = detect(_jsonl(tmp_path / name, rows))
    assert detection.format.name == "trl"
    assert detection.scores["trl"] == score and detection.scores.get("hh-rlhf", 0) == 0


def test_hh_data_scores_higher_as_hh(tmp_path):
    rows = [{"chosen": "\n\nHuman: Hi\n\nAssistant: A", "rejected": "\n\nHuman: Hi\n\nAssistant: B"}] * 3
    detection = detect(_jsonl(tmp_path / "hh.jsonl", rows))
    assert detection.format.name == "hh-rlhf"
    assert 0 < detection.scores["trl"] < detection.scores["hh-rlhf"]
    # With a prompt column it is TRL's explicit form, even with HH-style text.
    rows = [{"prompt": "\n\nHuman: Hi\n\nAssistant:", "chosen": " A", "rejected": " B"}]
    assert detect(_jsonl(tmp_path / "trl.jsonl", rows)).format.name == "trl"


GOOD = {"prompt": "q", "chosen": "good", "rejected": "bad"}


@pytest.mark.parametrize(
    ("row", "field", "says"),
    [
        ({"prompt": "q", "chosen": "good"}, "rejected", "is missing; expected text"),
        ({"prompt": "q", "chosen": 7, "rejected": "bad"}, "chosen", "is a number (7); expected text"),
        ({"prompt": "q", "chosen": None, "rejected": "bad"}, "chosen", "is null"),
        ({"prompt": "q", "choosen": "good", "rejected": "bad"}, "chosen", "there is a 'choosen': misspelled?"),
        (
            {"prompt": [said(USER, "q"), said("robot", "beep")], "chosen": "a", "rejected": "b"},
            "prompt",
            "message 2 has role 'robot'; expected one of system, user, assistant",
        ),
        ({"prompt": [said(USER, 5)], "chosen": "a", "rejected": "b"}, "prompt", "message 1 has content that is a number"),
        ({"prompt": "q", "chosen": "good", "rejected": [said(ASSISTANT, "bad")]}, "rejected", "is a list but 'chosen' is text"),
        (
            {"prompt": [said(USER, "q")], "chosen": [said(ASSISTANT, "a"), said(USER, "?")],
             "rejected": [said(ASSISTANT, "b")]},
            "chosen",
            "has 2 messages after the prompt; expected one assistant message",
        ),
        ({"prompt": "q", "chosen": "good", "rejected": "bad", "margin": "lots"}, "margin", "expected a number"),
        ({"prompt": "q", "chosen": "good", "rejected": "bad", "annotator": 3}, "annotator", "is a number (3)"),
        ({"prompt": None, "chosen": "good", "rejected": "bad"}, "prompt", "is null"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, row, field, says):
    path = _jsonl(tmp_path / "bad.jsonl", [GOOD, dict(GOOD, prompt="q2"), row])
    with Project.create(tmp_path / "p") as project:
        with pytest.raises(InputError) as caught:
            import_file(project, path)  # detected from the good rows; the bad one is named on its line
        assert project.store.counts()["pairs"] == 0
    error = caught.value
    assert (error.path, error.line, error.field) == (path, 3, field)
    assert says in str(error) and str(path) in str(error) and "line 3" in str(error)


def test_identical_conversations_are_refused(tmp_path):
    same = [said(USER, "q"), said(ASSISTANT, "a")]
    path = _jsonl(tmp_path / "bad.jsonl", [{"chosen": same, "rejected": same}])
    with pytest.raises(InputError, match="line 1: chosen and rejected are the same conversation"):
        _import(tmp_path, path, format="trl")


def test_skip_bad_imports_the_good_rows(tmp_path):
    path = _jsonl(tmp_path / "mixed.jsonl", [GOOD, {"prompt": "q", "chosen": 1, "rejected": "x"}, dict(GOOD, prompt="q3")])
    report, pairs = _import(tmp_path, path, skip_bad=True)
    assert report.pairs_added == 2 and report.rejected_count == 1
    assert str(report.rejected[0]) == "line 2, field 'chosen': is a number (1); expected text"


# -- writers ---------------------------------------------------------------------------------------


def _pair(prompt, verdict="a", *, margin=None, annotator="alice", a="A", b="B"):
    return ExportPair(1, prompt, a, b, origin="test", verdict=verdict, annotator=annotator, margin=margin)


def _rows(writer, pairs):
    out = io.StringIO()
    report = writer(pairs, out)
    return report, [json.loads(line) for line in out.getvalue().splitlines()]


def test_trl_writer_rows():
    multi = _conversation((USER, "Hi"), (ASSISTANT, "Hello"), (USER, "Sky?"))
    report, rows = _rows(
        write_trl,
        [
            _pair(_conversation((USER, "Sky?")), "b", margin=0.5),
            _pair(multi, annotator=None),
            _pair(()),
            _pair(_conversation((USER, "")), annotator="consensus"),
        ],
    )
    assert report.written == 4 and report.skipped == {}
    assert rows == [
        {"prompt": "Sky?", "chosen": "B", "rejected": "A", "margin": 0.5, "annotator": "alice"},
        {"prompt": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Sky?\n\nAssistant:", "chosen": " A", "rejected": " B"},
        {"prompt": "", "chosen": "A", "rejected": "B", "annotator": "alice"},
        # Plain "" would read back as no prompt at all; the transcript keeps the empty user turn.
        {"prompt": "\n\nHuman: \n\nAssistant:", "chosen": " A", "rejected": " B", "annotator": "consensus"},
    ]


def test_trl_writer_skips_what_text_cannot_hold():
    user = _conversation((USER, "q"))
    report, rows = _rows(
        write_trl,
        [
            _pair(user, "tie"),
            _pair(user, "both_bad"),
            _pair(user, None),
            _pair(_conversation((SYSTEM, "Be brief."), (USER, "q"))),
            _pair(_conversation((ASSISTANT, "Welcome!"), (USER, "q"))),
            _pair(_conversation((USER, "q"), (ASSISTANT, "x\n\nHuman: y"), (USER, "z"))),
            _pair(user),
        ],
    )
    assert report.written == 1 and rows == [{"prompt": "q", "chosen": "A", "rejected": "B", "annotator": "alice"}]
    assert report.skipped == {
        "without a chosen/rejected verdict": 3,
        "with a system message, which a text prompt has no place for (export as trl-conversational)": 1,
        "whose prompt text cannot hold unambiguously (export as trl-conversational)": 2,
    }


def test_trl_conversational_writer_rows():
    prompt = _conversation((SYSTEM, "Be brief."), (USER, "q"))
    report, rows = _rows(write_conversational, [_pair(prompt, "b", margin=2.0), _pair(prompt, "tie")])
    assert report.written == 1 and report.skipped == {"without a chosen/rejected verdict": 1}
    assert rows == [
        {
            "prompt": [said(SYSTEM, "Be brief."), said(USER, "q")],
            "chosen": [said(ASSISTANT, "B")],
            "rejected": [said(ASSISTANT, "A")],
            "margin": 2.0,
            "annotator": "alice",
        }
    ]
