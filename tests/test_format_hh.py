"""HH-RLHF: the real shared sample imports whole, each of its edge cases as the README says, and
exports back byte for byte; malformed transcripts are refused with the file, line and field.

The shared data is read where it lives (../shared/data), never copied into the repository. Its
dialogues contain offensive requests, so the tests find edge cases by structure, not by quoting.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlhf_workbench.core.errors import InputError
from rlhf_workbench.core.exporting import export_file
from rlhf_workbench.core.formats import detect
from rlhf_workbench.core.formats.hh_rlhf import common_prefix_length
from rlhf_workbench.core.formats.hh_rlhf import write as write_hh
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.records import ExportPair, Message

HH_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless" / "pairs.jsonl"
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
TAG = re.compile(r"\n\nHuman:|\n\nAssistant:")


@pytest.fixture(scope="module")
def source():
    if not HH_FILE.exists():
        pytest.skip(f"the shared HH-RLHF sample is not at {HH_FILE}")
    return [json.loads(line) for line in HH_FILE.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def imported(source, tmp_path_factory):
    """The shared file imported once; pairs come back in file order (one new pair per line)."""
    project = Project.create(tmp_path_factory.mktemp("hh") / "p")
    report = import_file(project, HH_FILE)
    pairs = list(project.store.iter_export_pairs())
    assert len(pairs) == len(source)
    yield project, report, pairs
    project.close()


def _expected_prompt_text(record: dict) -> str:
    """The README's rule, spelled out independently: common prefix cut back to its last Assistant tag."""
    prefix = os.path.commonprefix([record["chosen"], record["rejected"]])
    return prefix[: prefix.rfind(ASSISTANT)]


def test_detects_hh_rlhf(source):
    detection = detect(HH_FILE)
    assert detection.format.name == "hh-rlhf"
    assert detection.scores["hh-rlhf"] > detection.scores.get("trl", 0)


@pytest.mark.slow
def test_imports_every_record_with_its_verdict(imported):
    project, report, _ = imported
    assert report.format == "hh-rlhf"
    assert (report.pairs_added, report.judgments_added, report.rejected_count) == (1812, 1812, 0)
    counts = project.store.counts()
    assert counts["pairs"] == 1812 and counts["judgments"] == 1812
    assert project.store.judgments_by_annotator_and_verdict() == {"dataset:hh-rlhf": {"a": 1812}}
    assert project.store.pairs_by_origin() == {"hh-rlhf": 1812}


def test_importing_twice_adds_nothing(imported):
    project, _, _ = imported
    before = project.store.counts()
    again = import_file(project, HH_FILE)
    assert (again.pairs_added, again.judgments_added, again.prompts_added, again.responses_added) == (0, 0, 0, 0)
    assert again.pairs_existing == 1812 and again.judgments_existing == 1812
    assert project.store.counts() == before


def test_every_pair_is_the_chosen_and_rejected_response_after_the_shared_prompt(source, imported):
    _, _, pairs = imported
    for record, pair in zip(source, pairs):
        prompt_text = _expected_prompt_text(record)
        tags = TAG.findall(prompt_text)
        assert [m.role for m in pair.prompt] == ["user" if t == HUMAN else "assistant" for t in tags]
        assert pair.prompt[0].role == "user"
        assert (pair.verdict, pair.annotator) == ("a", "dataset:hh-rlhf")
        # Exactly one space after each tag is the separator; everything else is content.
        head = prompt_text + ASSISTANT + " "
        assert record["chosen"] == head + pair.response_a
        assert record["rejected"] == head + pair.response_b


def test_responses_that_write_role_tags_keep_them_as_text(source, imported):
    _, _, pairs = imported
    found = [
        (record, pair)
        for record, pair in zip(source, pairs)
        if record["chosen"][: record["chosen"].rfind(ASSISTANT)] != record["rejected"][: record["rejected"].rfind(ASSISTANT)]
    ]
    assert len(found) == 5
    for record, pair in found:
        # The prompt ends where the two transcripts part, at a real turn, not inside a response.
        assert not any(TAG.search(m.content) for m in pair.prompt)
        assert TAG.search(pair.response_a) or TAG.search(pair.response_b)
        assert len(pair.prompt) == len(TAG.findall(_expected_prompt_text(record)))
    # In one of them the model wrote a whole extra exchange, and its own double space survives.
    assert any(ASSISTANT + "  " in pair.response_a for _, pair in found)


def test_a_bare_human_tag_inside_text_is_not_a_turn(source, imported):
    _, _, pairs = imported
    bare = re.compile(r"(?<!\n\n)(Human|Assistant):")
    found = [(r, p) for r, p in zip(source, pairs) if bare.search(r["chosen"]) or bare.search(r["rejected"])]
    # 59 transcripts in 40 records by this pattern (the README counts 73 by its own measure).
    assert sum(bool(bare.search(r[k])) for r, _ in found for k in ("chosen", "rejected")) == 59
    in_prompt = in_response = 0
    for record, pair in found:
        assert len(pair.prompt) == len(TAG.findall(_expected_prompt_text(record)))
        in_prompt += any(bare.search(m.content) for m in pair.prompt)
        in_response += bool(bare.search(pair.response_a) or bare.search(pair.response_b))
    assert in_prompt and in_response


def test_empty_chosen_responses_are_imported(source, imported):
    project, _, pairs = imported
    found = [pair for record, pair in zip(source, pairs) if record["chosen"].endswith(ASSISTANT + " ")]
    assert len(found) == 4
    for pair in found:
        assert pair.response_a == "" and pair.response_b.strip()
        assert project.store.active_judgments(pair.pair_id) == [("dataset:hh-rlhf", "a")]


def test_exactly_one_leading_space_is_removed(source, imported):
    _, _, pairs = imported
    double = [(r, p) for r, p in zip(source, pairs) if re.search(r"\n\n(Human|Assistant):  ", _expected_prompt_text(r))]
    assert double
    for record, pair in double:
        assert any(m.content.startswith(" ") for m in pair.prompt)
    # The plain case: one space is the separator and goes.
    assert all(not pair.response_a.startswith(" ") for pair in pairs)


def test_export_reproduces_the_file_byte_for_byte(imported, tmp_path):
    project, _, _ = imported
    out = tmp_path / "hh.jsonl"
    report = export_file(project, out, format="hh-rlhf")
    assert (report.written, report.skipped) == (1812, {})
    assert out.read_bytes() == HH_FILE.read_bytes()


# -- small hand-written files ------------------------------------------------------------------------


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}


@pytest.mark.parametrize(
    ("row", "field", "says"),
    [
        ({"chosen": "Human: Hi\n\nAssistant: Hello!", "rejected": GOOD["rejected"]}, "chosen", "should be an HH-RLHF transcript"),
        ({"chosen": GOOD["chosen"], "rejected": "\n\nHuman: Hi, hello"}, "rejected", "has no '\\n\\nAssistant:' turn"),
        ({"chosen": GOOD["chosen"], "rejected": "\n\nHuman: Bye\n\nAssistant: ok"}, "rejected", "does not share its dialogue"),
        ({"chosen": 3, "rejected": GOOD["rejected"]}, "chosen", "is a number (3); expected text"),
        ({"chosen": GOOD["chosen"]}, "rejected", "is missing"),
    ],
)
def test_bad_transcripts_name_file_line_and_field(tmp_path, row, field, says):
    path = _jsonl(tmp_path / "bad.jsonl", [GOOD, row])
    with Project.create(tmp_path / "p") as project:
        with pytest.raises(InputError) as caught:
            import_file(project, path, format="hh-rlhf")
        assert project.store.counts()["pairs"] == 0  # the good first row was rolled back too
    error = caught.value
    assert (error.path, error.line, error.field) == (path, 2, field)
    assert says in str(error) and str(path) in str(error) and "line 2" in str(error)


def test_csv_container(tmp_path):
    path = tmp_path / "hh.csv"
    path.write_text(
        'chosen,rejected\n"\n\nHuman: Hi\n\nAssistant: Hello!","\n\nHuman: Hi\n\nAssistant: Go away."\n', encoding="utf-8"
    )
    with Project.create(tmp_path / "p") as project:
        report = import_file(project, path)
        assert report.format == "hh-rlhf" and report.pairs_added == 1
        (pair,) = project.store.iter_export_pairs()
    assert pair.prompt == (Message("user", "Hi"),)
    assert (pair.response_a, pair.response_b) == ("Hello!", "Go away.")


def test_writer_skips_what_hh_cannot_say():
    def pair(prompt, verdict, a="A", b="B"):
        return ExportPair(1, prompt, a, b, origin="test", verdict=verdict, annotator="ann")

    user = (Message("user", "q"),)
    pairs = [
        pair(user, "b"),
        pair(user, "tie"),
        pair(user, None),
        pair((Message("system", "be brief"),) + user, "a"),
        pair((Message("assistant", "Welcome"),) + user, "a"),
        pair((Message("user", "a\n\nAssistant: b"),), "a"),
        pair((), "a"),
    ]
    out = io.StringIO()
    report = write_hh(pairs, out)
    assert report.written == 1
    assert json.loads(out.getvalue()) == {"chosen": "\n\nHuman: q\n\nAssistant: B", "rejected": "\n\nHuman: q\n\nAssistant: A"}
    assert report.skipped == {
        "without a chosen/rejected verdict": 2,
        "with a system message, which HH-RLHF transcripts have no place for": 1,
        "that HH-RLHF transcripts cannot hold unambiguously (a prompt not starting with a user turn, "
        "or role tags inside the text)": 3,
    }


@given(st.text("ab\n "), st.text("ab\n "))
def test_common_prefix_length(a, b):
    assert common_prefix_length(a, b) == len(os.path.commonprefix([a, b]))

