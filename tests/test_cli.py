"""The `rlhf-workbench` command, run as a person runs it: a real child process, real files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HH = SHARED / "hh-rlhf-harmless" / "pairs.jsonl"
CLI = Path(sys.executable).with_name("rlhf-workbench")


def run(*args, env=None, check=True):
    result = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=300, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("command", ["init", "demo", "import", "export", "stats", "formats"])
def test_every_subcommand_has_help(command):
    result = run(command, "--help")
    assert "usage: rlhf-workbench" in result.stdout


def test_top_level_help_lists_the_subcommands():
    result = run("--help")
    for command in ("init", "demo", "import", "export", "stats"):
        assert command in result.stdout


@pytest.mark.slow
def test_init_import_stats_export_round_trip(tmp_path):
    project = tmp_path / "hh"
    assert "created project" in run("init", project).stdout
    out = run("import", project, HH).stdout
    assert "1,812 pairs added" in out
    again = run("import", project, HH).stdout
    assert "0 pairs added" in again and "1,812 already in the project" in again

    stats = json.loads(run("stats", project, "--json").stdout)
    assert stats["counts"]["pairs"] == 1812
    assert stats["pairs_by_origin"] == {"hh-rlhf": 1812}
    assert stats["judgments_by_annotator"] == {"dataset:hh-rlhf": {"a": 1812}}
    assert "dataset:hh-rlhf" in run("stats", project).stdout

    exported = tmp_path / "hh-trl.jsonl"
    assert "1,812 pairs written" in run("export", project, exported, "--format", "trl").stdout
    assert sum(1 for _ in exported.open()) == 1812

    copy = tmp_path / "copy"
    run("init", copy)
    run("import", copy, exported)
    copy_stats = json.loads(run("stats", copy, "--json").stdout)
    assert copy_stats["counts"]["pairs"] == 1812
    assert copy_stats["judgments_by_annotator"] == {"dataset:hh-rlhf": {"a": 1812}}


@pytest.mark.slow
def test_a_bad_file_fails_with_one_line_naming_file_and_line_and_changes_nothing(tmp_path):
    project = tmp_path / "p"
    run("init", project)
    bad = tmp_path / "bad.jsonl"
    lines = HH.read_text(encoding="utf-8").splitlines()[:5]
    lines[3] = lines[3][: len(lines[3]) // 2]  # a truncated record in the middle
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run("import", project, bad, check=False)
    assert result.returncode == 1
    message = result.stderr.strip()
    assert message.count("\n") == 0, message
    assert message.startswith("error: ") and "bad.jsonl" in message and "line 4" in message
    assert json.loads(run("stats", project, "--json").stdout)["counts"]["pairs"] == 0

    result = run("import", project, bad, "--skip-bad", "--json")
    [report] = json.loads(result.stdout)
    assert report["pairs_added"] == 4 and report["rejected_count"] == 1
    assert report["rejected"][0].startswith("line 4")


def test_opening_something_that_is_not_a_project_fails_cleanly(tmp_path):
    result = run("stats", tmp_path, check=False)
    assert result.returncode == 1
    assert "not an RLHF Workbench project" in result.stderr


def test_demo_creates_a_project_with_judged_and_unjudged_pairs(tmp_path):
    assert "created the demo project" in run("demo", tmp_path / "demo").stdout
    stats = json.loads(run("stats", tmp_path / "demo", "--json").stdout)
    pairs = stats["counts"]["pairs"]
    assert pairs >= 200
    # The demo's own labels are not people's: every pair is still there for a person to judge, but
    # those of the prompts held out to evaluate (whose verdicts would train nothing)...
    assert stats["heldout_prompts"] == 36
    assert stats["unlabelled_pairs"] == pairs - 36
    # ...and some pairs come with a label, the rest without.
    assert 0 < sum(stats["judgments_by_annotator"]["dataset:demo"].values()) < pairs


def test_a_bad_mapping_is_a_usage_error(tmp_path):
    run("init", tmp_path / "p")
    result = run("import", tmp_path / "p", HH, "--map", "prompt", check=False)
    assert result.returncode == 2
    assert "TARGET=COLUMN" in result.stderr


def test_formats_lists_readers_and_writers():
    out = run("formats").stdout
    for name in ("hh-rlhf", "trl", "oasst", "arena", "pairs", "mapped"):
        assert name in out


def test_names_from_data_reach_the_terminal_escaped(tmp_path):
    """An annotator named with a terminal escape (from a file) turned the terminal red in `stats`;
    the import summary printed a file name holding one as it was."""
    project = tmp_path / "p"
    run("init", project)
    data = tmp_path / "red\x1b[31m.jsonl"
    data.write_text(json.dumps({"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon.",
                                "annotator": "\x1b[31mbob\u202e\r"}) + "\n")
    imported = run("import", project, data, "-q")
    stats = run("stats", project)
    for output in (imported.stdout + imported.stderr, stats.stdout):
        assert "\x1b" not in output and "\u202e" not in output and "\r" not in output
    assert "\\x1b[31mbob\\u202e\\r" in stats.stdout
    assert "red\\x1b[31m.jsonl" in imported.stdout
    # JSON keeps the name exactly (json escapes it), for programs that read it.
    assert "\x1b[31mbob\u202e\r" in json.loads(run("stats", project, "--json").stdout)["judgments_by_annotator"]

    from rlhf_workbench.core.project import Project
    from rlhf_workbench.core.reward.config import RewardConfig
    from rlhf_workbench.core.runs.records import start_run

    with Project.open(project) as opened:
        start_run(opened, kind="reward", name="\x1b]0;owned\x07run", config=RewardConfig())
    listed = run("runs", project).stdout
    assert "\x1b" not in listed and "\x07" not in listed and "\\x1b]0;owned\\x07run" in listed


def test_for_terminal_leaves_ordinary_text_alone():
    from rlhf_workbench.core.terminal import for_terminal

    assert for_terminal("dataset:hh-rlhf  ünïcode 中文") == "dataset:hh-rlhf  ünïcode 中文"
    assert for_terminal("a\nb\tc\x07") == "a\\nb\\tc\\x07"
    assert for_terminal("line 1\nline 2\x1b", keep_newlines=True) == "line 1\nline 2\\x1b"


def test_import_reads_verdict_values_and_several_annotator_columns(tmp_path):
    project = tmp_path / "p"
    run("init", project)
    data = tmp_path / "pandalm.csv"
    data.write_text("instruction,output_1,output_2,annotator1,annotator2\nQ1,x1,y1,1,0\nQ2,x2,y2,2,2\n")
    mapping = "prompt=instruction,response_a=output_1,response_b=output_2,verdict=annotator1+annotator2"
    bad = run("import", project, data, "--map", mapping, "--verdict-values", "0=tie,1=a,2=c", check=False)
    assert bad.returncode == 2 and "argument --verdict-values: '2=c': 'c' is not a verdict" in bad.stderr
    unmapped = run("import", project, data, "--map", mapping, "--verdict-values", "1=a,2=b", check=False)
    assert unmapped.returncode == 1 and "line 2, field 'annotator2': is '0', which --verdict-values" in unmapped.stderr
    result = run("import", project, data, "-q", "--map", mapping, "--verdict-values", "0=tie,1=a,2=b")
    assert "2 pairs added, 4 verdicts added" in result.stdout
    stats = json.loads(run("stats", project, "--json").stdout)["judgments_by_annotator"]
    assert stats == {"dataset:mapped:annotator1": {"a": 1, "b": 1}, "dataset:mapped:annotator2": {"b": 1, "tie": 1}}
