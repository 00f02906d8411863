"""Import, export, import: every pair comes back with its verdict and who gave it.

Pairs are compared as (prompt messages, chosen text, rejected text, annotator, margin), because the
stored order of a pair's two responses is not part of what it means.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhf_workbench.core.exporting import export_file
from rlhf_workbench.core.formats import detect
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.records import DECISIVE_VERDICTS, Message

HH_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless" / "pairs.jsonl"


def preferences(project: Project) -> set[tuple]:
    """Every pair with a decisive settled verdict, as (prompt, chosen, rejected, annotator, margin)."""
    result = set()
    for pair in project.store.iter_export_pairs():
        if pair.verdict not in DECISIVE_VERDICTS:
            continue
        chosen, rejected = (pair.response_a, pair.response_b) if pair.verdict == "a" else (pair.response_b, pair.response_a)
        result.add((tuple((m.role, m.content) for m in pair.prompt), chosen, rejected, pair.annotator, pair.margin))
    return result


def reimport(path: Path, folder: Path, expected_format: str) -> Project:
    assert detect(path).format.name == expected_format
    project = Project.create(folder)
    import_file(project, path)
    return project


@pytest.fixture(scope="module")
def hh_project(tmp_path_factory):
    if not HH_FILE.exists():
        pytest.skip(f"the shared HH-RLHF sample is not at {HH_FILE}")
    project = Project.create(tmp_path_factory.mktemp("hh") / "p")
    import_file(project, HH_FILE)
    yield project
    project.close()


@pytest.mark.parametrize("format", ["trl", "trl-conversational"])
def test_hh_through_trl_keeps_every_pair_verdict_and_annotator(hh_project, tmp_path, format):
    out = tmp_path / "export.jsonl"
    report = export_file(hh_project, out, format=format)
    assert (report.written, report.skipped) == (1812, {})
    with reimport(out, tmp_path / "again", "trl") as again:
        assert again.store.counts()["pairs"] == 1812
        assert again.store.judgments_by_annotator_and_verdict() == {"dataset:hh-rlhf": {"a": 1812}}
        assert preferences(again) == preferences(hh_project)
        assert len(preferences(again)) == 1812
        # And on to HH again: the very bytes of the published file.
        back = tmp_path / "back.jsonl"
        export_file(again, back, format="hh-rlhf")
    assert back.read_bytes() == HH_FILE.read_bytes()


def test_hh_trl_string_rows_look_like_hh_derived_trl_data(hh_project, tmp_path):
    out = tmp_path / "export.jsonl"
    export_file(hh_project, out, format="trl")
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["prompt"].startswith("\n\nHuman: ") and first["prompt"].endswith("\n\nAssistant:")
    assert first["chosen"].startswith(" ") and first["annotator"] == "dataset:hh-rlhf"


@pytest.fixture
def mixed_project(tmp_path):
    """Pairs TRL's string form cannot all hold, and verdicts by people in both directions."""
    rows = [
        {"prompt": "Plain question?", "chosen": "Yes.", "rejected": "No.", "margin": 0.75},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky?"}],
         "chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": "Green."}]},
        {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Sun?"}],
         "chosen": [{"role": "assistant", "content": "Hot."}], "rejected": [{"role": "assistant", "content": "Cold."}]},
        {"chosen": "An implicit prompt: good", "rejected": "An implicit prompt: bad", "annotator": "bob"},
        {"prompt": "Tied?", "chosen": "One", "rejected": "Two"},
        {"prompt": "Flipped?", "chosen": "Left", "rejected": "Right"},
    ]
    source = tmp_path / "source.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    project = Project.create(tmp_path / "p")
    import_file(project, source)
    by_prompt = {p.prompt[-1].content if p.prompt else "": p.pair_id for p in project.store.iter_export_pairs()}
    # "Tied?" gets a person's tie: two voices, no majority, so no settled verdict to export.
    project.store.add_judgment(by_prompt["Tied?"], "carol", "tie")
    # "Flipped?" is overruled: the dataset said A, two people say B; the majority is B by consensus.
    project.store.add_judgment(by_prompt["Flipped?"], "carol", "b")
    project.store.add_judgment(by_prompt["Flipped?"], "dave", "b")
    yield project
    project.close()


def test_trl_conversational_keeps_every_decisive_pair(mixed_project, tmp_path):
    out = tmp_path / "out.jsonl"
    report = export_file(mixed_project, out, format="trl-conversational")
    assert (report.written, report.skipped) == (5, {"without a chosen/rejected verdict": 1})
    with reimport(out, tmp_path / "again", "trl") as again:
        expected = preferences(mixed_project)
        assert len(expected) == 5
        assert preferences(again) == expected
        assert ((("user", "Flipped?"),), "Right", "Left", "consensus", None) in expected


def test_trl_strings_keep_every_pair_text_can_hold(mixed_project, tmp_path):
    out = tmp_path / "out.jsonl"
    report = export_file(mixed_project, out, format="trl")
    assert report.written == 4
    assert report.skipped == {
        "without a chosen/rejected verdict": 1,
        "with a system message, which a text prompt has no place for (export as trl-conversational)": 1,
    }
    with reimport(out, tmp_path / "again", "trl") as again:
        expected = {p for p in preferences(mixed_project) if not any(role == "system" for role, _ in p[0])}
        assert preferences(again) == expected
        # The multi-turn prompt went out as an HH-style transcript and came back as messages.
        assert any(len(p[0]) == 3 for p in expected)


def test_exporting_a_reimported_file_gives_the_same_file(mixed_project, tmp_path):
    for format in ("trl", "trl-conversational"):
        first, second = tmp_path / f"1.{format}.jsonl", tmp_path / f"2.{format}.jsonl"
        export_file(mixed_project, first, format=format)
        with reimport(first, tmp_path / f"again-{format}", "trl") as again:
            export_file(again, second, format=format)
        assert second.read_bytes() == first.read_bytes()



def test_a_pair_with_an_empty_prompt_from_an_older_import_is_skipped_on_export(tmp_path):
    """Imports once let empty prompts in; written out, such a pair made a file no import takes."""
    from rlhf_workbench.core.bulk import BulkWriter
    from rlhf_workbench.core.exporting import EMPTY_PROMPT_SKIP

    with Project.create(tmp_path / "p") as project:
        with project.store.transaction(foreign_keys=False):
            writer = BulkWriter(project.store, import_id=None, source="dataset", source_name="old.jsonl")
            writer.add_pair((), "Yes", "No", origin="trl", verdict="a", annotator="dataset:trl")
            writer.add_pair((Message("user", "Sky?"),), "Blue.", "Green.", origin="trl", verdict="a",
                            annotator="dataset:trl")
            writer.flush()
        for format in ("trl", "trl-conversational", "pairs", "hh-rlhf"):
            out = tmp_path / f"out.{format}.jsonl"
            report = export_file(project, out, format=format)
            assert (report.written, report.skipped) == (1, {EMPTY_PROMPT_SKIP: 1}), format
            with reimport(out, tmp_path / f"again-{format}", format if format != "trl-conversational" else "trl") as again:
                assert again.store.counts()["pairs"] == 1
