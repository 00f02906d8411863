"""Large imports in two processes (core/import_pipeline.py) give exactly what one process gives.

Real child processes, real files, real SQLite. `pipeline=True` makes the reading process read every
row (the shared files are smaller than the size at which an import chooses it by itself); the
default hands over from this process to the reading one mid-file, tested on its own below.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhf_workbench.core import import_rows, importing
from rlhf_workbench.core.bulk import BulkWriter
from rlhf_workbench.core.errors import ConfigError, InputError, Stopped, WorkbenchError
from rlhf_workbench.core.formats import ReadOptions, get_format
from rlhf_workbench.core.formats.rows import RowSource
from rlhf_workbench.core.import_pipeline import READER_NAME, PipelineReader, ReadTask
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.project import Project

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HH = SHARED / "hh-rlhf-harmless" / "pairs.jsonl"
OASST = SHARED / "oasst-en100" / "trees.jsonl"
BAD = Path(__file__).parent / "fixtures" / "bad"

needs_shared = pytest.mark.skipif(not HH.is_file() or not OASST.is_file(), reason="the shared sample data is missing")

# Every column but the times, which differ between two imports.
_COLUMNS = {
    "prompts": "id, hash, messages",
    "responses": "id, hash, prompt_id, text, source, source_name",
    "pairs": "id, hash, prompt_id, response_a_id, response_b_id, origin, margin, meta, import_id, human_verdicts",
    "judgments": "id, pair_id, annotator, verdict, shown_left, rationale, seconds, undone, import_key, import_id",
    "imports": "id, path, format",
}


def _contents(project: Project) -> dict[str, list[tuple]]:
    conn = project.store.conn
    return {table: conn.execute(f"SELECT {cols} FROM {table} ORDER BY id").fetchall() for table, cols in _COLUMNS.items()}


def _report(report) -> dict:
    data = report.to_json()
    del data["seconds"]
    return data


def _readers() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name == READER_NAME]


def _import_both(tmp_path, path, **how):
    """Import `path` into two fresh projects, one way each: (contents, report) per way."""
    results = {}
    for pipeline in (False, True):
        with Project.create(tmp_path / f"p-{pipeline}") as project:
            report = import_file(project, path, pipeline=pipeline, **how)
            results[pipeline] = _contents(project), _report(report)
    return results[False], results[True]


@needs_shared
@pytest.mark.parametrize("path", [HH, OASST], ids=["hh-rlhf", "oasst"])
def test_both_ways_store_the_same_rows_and_report_the_same(tmp_path, path):
    (rows_here, report_here), (rows_piped, report_piped) = _import_both(tmp_path, path)
    assert rows_piped == rows_here
    assert report_piped == report_here
    assert report_here["pairs_added"] > 700 and report_here["judgments_added"] == report_here["pairs_added"]
    assert not _readers()


@needs_shared
def test_a_second_import_through_the_pipeline_adds_nothing(tmp_path):
    """The reading process hashes; the importing one finds every hash already stored."""
    with Project.create(tmp_path / "p") as project:
        first = import_file(project, HH, pipeline=False)
        again = import_file(project, HH, pipeline=True)
        assert again.pairs_added == 0 and again.pairs_existing == first.pairs_added
        assert again.judgments_added == 0 and again.judgments_existing == first.judgments_added
        assert project.store.counts()["pairs"] == first.pairs_added


@needs_shared
def test_the_handover_mid_file_yields_the_same_items_as_one_process(monkeypatch):
    """The importing process reads the first batches itself; the reading process, once started,
    goes on after the last row read here. Together they give exactly one process's items."""
    monkeypatch.setattr(import_rows, "BATCH_ROWS", 64)
    fmt, options = get_format("hh-rlhf"), ReadOptions()
    expected = [b for b in import_rows.prepared_batches(fmt, RowSource(HH), options, False)]
    task = ReadTask(str(HH), "jsonl", fmt.name, {}, None, options.max_chars, False, 64)
    reader = PipelineReader(task)
    try:
        here = import_rows.prepared_batches(fmt, RowSource(HH), options, False)

        def slow_start():
            # After five batches, wait until the reading process is ready; the sixth, already
            # being read here, is still used, and so is a seventh, read here while the reading
            # process gets to its start; it takes over after that.
            for n, batch in enumerate(here):
                yield batch
                if n == 4:
                    assert reader._conn.poll(30), "the reading process did not start"

        got = list(reader.batches(slow_start()))
    finally:
        reader.close()
    assert reader.stats["skipped_rows"] == 7 * 64
    assert len(got) == len(expected)
    for (items, *rest), (e_items, *e_rest) in zip(got, expected):
        # The reading process may leave the hashes to the importing one: compare them computed.
        assert BulkWriter.hash_items(items) == e_items
        assert rest == e_rest  # rejected, rows, records, bytes read, skipped


@needs_shared
@pytest.mark.slow
def test_chosen_by_size_it_reads_here_first_and_stores_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(importing, "PIPELINE_MIN_BYTES", 0)
    monkeypatch.setattr(import_rows, "BATCH_ROWS", 32)
    monkeypatch.delenv(importing.PIPELINE_ENV, raising=False)
    with Project.create(tmp_path / "single") as project:
        import_file(project, HH, pipeline=False)
        expected = _contents(project)
    calls = []

    def progress(event):
        calls.append(event.step)
        time.sleep(0.01)  # slow enough here that the reading process usually takes over

    with Project.create(tmp_path / "auto") as project:
        import_file(project, HH, sink=progress)
        assert _contents(project) == expected
    assert calls == sorted(calls) and calls[-1] == HH.stat().st_size
    assert not _readers()


def _with_bad_rows(tmp_path: Path, bad: dict[int, str]) -> Path:
    """The shared HH file with some lines (1-based) replaced."""
    lines = HH.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, text in bad.items():
        lines[number - 1] = text + "\n"
    path = tmp_path / "hh_with_bad_rows.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


_BAD_ROWS = {
    700: json.dumps({"chosen": 42, "rejected": "\n\nHuman: hi\n\nAssistant: no"}),
    900: '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: a", "rejected": ',  # truncated JSON
    901: json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: same", "rejected": "\n\nHuman: hi\n\nAssistant: same"}),
    1500: json.dumps(["not", "an", "object"]),
}


@needs_shared
def test_a_bad_row_mid_file_raises_the_same_error_both_ways_and_changes_nothing(tmp_path):
    path = _with_bad_rows(tmp_path, _BAD_ROWS)
    with Project.create(tmp_path / "p") as project:
        import_file(project, BAD.parent / "pairs.jsonl")
        before = list(project.store.conn.iterdump())
        errors = {}
        for pipeline in (False, True):
            with pytest.raises(InputError) as caught:
                import_file(project, path, pipeline=pipeline)
            errors[pipeline] = caught.value
            assert list(project.store.conn.iterdump()) == before
    here, piped = errors[False], errors[True]
    assert (piped.path, piped.line, piped.field, piped.reason) == (here.path, 700, "chosen", here.reason)
    assert str(piped) == str(here) and str(path) in str(piped) and "line 700" in str(piped)
    assert not _readers()


@needs_shared
def test_skip_bad_rejects_the_same_rows_both_ways(tmp_path):
    path = _with_bad_rows(tmp_path, _BAD_ROWS)
    (rows_here, report_here), (rows_piped, report_piped) = _import_both(tmp_path, path, skip_bad=True)
    assert rows_piped == rows_here
    assert report_piped == report_here
    assert [r.split(":")[0] for r in report_here["rejected"]] == [
        "line 700, field 'chosen'", "line 900", "line 901", "line 1500"
    ]
    assert report_here["pairs_added"] == 1812 - 4


def _outcome(tmp_path, path, **how):
    """(report or error, rows) of importing `path` into a fresh project, one way and the other."""
    results = []
    for pipeline in (False, True):
        with Project.create(tmp_path / f"p-{pipeline}-{len(list(tmp_path.iterdir()))}") as project:
            try:
                outcome = _report(import_file(project, path, pipeline=pipeline, **how))
            except InputError as exc:
                outcome = ("InputError", str(exc), exc.line, exc.field)
            results.append((outcome, _contents(project)))
    return results


@pytest.mark.parametrize("name", sorted(p.name for p in BAD.iterdir()))
def test_each_bad_fixture_gives_the_same_error_both_ways(tmp_path, name):
    here, piped = _outcome(tmp_path, BAD / name)
    assert piped == here
    assert here[0][0] == "InputError"


@pytest.mark.parametrize("name", ["mixed_good_and_bad.jsonl", "wrong_field_count.csv"])
def test_skip_bad_on_bad_fixtures_gives_the_same_report_both_ways(tmp_path, name):
    here, piped = _outcome(tmp_path, BAD / name, skip_bad=True)
    assert piped == here
    assert here[0]["rejected_count"] > 0 and here[0]["pairs_added"] > 0


@needs_shared
def test_cancel_stops_the_reading_process_and_rolls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(import_rows, "BATCH_ROWS", 64)
    with Project.create(tmp_path / "p") as project:
        before = list(project.store.conn.iterdump())
        asked = []

        def stop():
            asked.append(1)
            return len(asked) > 5

        with pytest.raises(Stopped, match="nothing was imported"):
            import_file(project, HH, pipeline=True, stop=stop)
        assert list(project.store.conn.iterdump()) == before
        assert not _readers()
        # The project is usable afterwards.
        assert import_file(project, HH, pipeline=True).pairs_added == 1812


@needs_shared
def test_a_killed_reading_process_gives_a_clear_error_and_rolls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(import_rows, "BATCH_ROWS", 16)
    with Project.create(tmp_path / "p") as project:
        import_file(project, BAD.parent / "pairs.jsonl")
        before = list(project.store.conn.iterdump())
        killed = []

        def progress(event):
            readers = _readers()
            if event.step and readers and not killed:
                killed.append(readers[0].pid)
                os.kill(readers[0].pid, signal.SIGKILL)

        started = time.monotonic()
        with pytest.raises(WorkbenchError) as caught:
            import_file(project, HH, pipeline=True, sink=progress)
        assert time.monotonic() - started < 10
        assert killed, "the reading process was never seen"
        message = str(caught.value)
        assert str(HH) in message and "was killed (SIGKILL)" in message and "nothing was imported" in message
        assert list(project.store.conn.iterdump()) == before
        assert not _readers()


def test_small_files_stay_in_one_process_and_the_setting_forces_either_way(project, monkeypatch):
    small = BAD.parent / "pairs.jsonl"
    seen = []

    def progress(event):
        seen.append(len(_readers()))

    monkeypatch.delenv(importing.PIPELINE_ENV, raising=False)
    import_file(project, small, sink=progress)
    assert set(seen) == {0}

    seen.clear()
    monkeypatch.setenv(importing.PIPELINE_ENV, "1")
    report = import_file(project, small, sink=progress)
    assert report.pairs_existing == 2 and max(seen) == 1

    monkeypatch.setattr(importing, "PIPELINE_MIN_BYTES", 0)
    seen.clear()
    monkeypatch.setenv(importing.PIPELINE_ENV, "0")
    import_file(project, small, sink=progress)
    assert set(seen) == {0}

    monkeypatch.setenv(importing.PIPELINE_ENV, "sometimes")
    with pytest.raises(ConfigError, match=importing.PIPELINE_ENV):
        import_file(project, small)
    assert not _readers()


_UNGUARDED_SCRIPT = """\
import os
import sys
from pathlib import Path
from rlhf_workbench.core import importing
from rlhf_workbench.core.project import Project

importing.PIPELINE_MIN_BYTES = 0  # any file is "large"
folder = Path(sys.argv[1])
with open(folder / "runs.txt", "a") as f:
    f.write("ran\\n")
with Project.create(folder / f"p{os.getpid()}") as project:
    report = importing.import_file(project, sys.argv[2])
print(report.pairs_added)
"""


@pytest.mark.slow
def test_an_unguarded_script_is_never_run_again_by_an_import(tmp_path):
    """A spawned process imports the main module again: a script without the
    `if __name__ == "__main__":` guard would run a second time in it. Chosen by size, an import
    stays in one process for such a script; forced, it fails with a clear error instead of a hang."""
    script = tmp_path / "unguarded.py"
    script.write_text(_UNGUARDED_SCRIPT)
    data = BAD.parent / "pairs.jsonl"
    env = {k: v for k, v in os.environ.items() if k != importing.PIPELINE_ENV}
    done = subprocess.run([sys.executable, str(script), str(tmp_path), str(data)], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2"]
    assert (tmp_path / "runs.txt").read_text().split() == ["ran"]

    env[importing.PIPELINE_ENV] = "1"
    (tmp_path / "runs.txt").unlink()
    done = subprocess.run([sys.executable, str(script), str(tmp_path), str(data)], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode != 0
    assert "if __name__ == '__main__':" in done.stderr.splitlines()[-1]
    assert "nothing was imported" in done.stderr.splitlines()[-1]


def test_the_reading_process_needs_neither_the_project_nor_the_store():
    """What the reading process imports (import_pipeline, formats, importing, bulk) leaves out the
    store and sqlite-utils, which imports pandas where that is installed: ~0.4 s of the reading
    process's start, during which the importing process works alone."""
    code = (
        "import sys\n"
        "import rlhf_workbench.core.import_pipeline, rlhf_workbench.core.importing, rlhf_workbench.core.bulk\n"
        "from rlhf_workbench.core.formats import get_format\n"
        "get_format('hh-rlhf')\n"
        "print(sorted(m for m in ('sqlite_utils', 'pandas', 'rlhf_workbench.core.store', 'rlhf_workbench.core.project') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_large_messages_arrive_whole_through_the_reused_buffer(tmp_path, monkeypatch):
    """PipelineReader reads messages into one buffer that grows: messages of growing and
    shrinking sizes (a batch of long rows after short ones, and back) come out exactly."""
    rows = []
    for i, size in enumerate([10, 200_000, 50, 900_000, 20, 300_000]):
        text = f"{i} " + "é" * size
        rows.append(json.dumps({"chosen": f"\n\nHuman: q{i}\n\nAssistant: {text}a", "rejected": f"\n\nHuman: q{i}\n\nAssistant: {text}b"}))
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setattr(import_rows, "BATCH_ROWS", 1)
    (rows_here, report_here), (rows_piped, report_piped) = _import_both(tmp_path, path, format="hh-rlhf")
    assert rows_piped == rows_here and report_piped == report_here
    assert report_here["pairs_added"] == 6


@pytest.mark.parametrize("skip", [0, 1, 2, 3, 5, 6, 50])
def test_skipping_json_lines_without_reading_them_gives_the_rows_after(tmp_path, skip):
    """The reading process passes over the rows the importing one has read without parsing them:
    what comes after is what reading them all gives (blank lines, a byte order mark and bad
    lines count as they do when read)."""
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n{"a": 2}\n   \n{"a": tru\n{"a": 4}\n{"a": 5}\n\n')
    everything = list(RowSource(path).rows())
    source = RowSource(path)
    after = list(source.rows(skip))
    assert [(item.line, getattr(item, "data", None)) for item in after] == [
        (item.line, getattr(item, "data", None)) for item in everything[skip:]
    ]
    assert source.bytes_read == path.stat().st_size
