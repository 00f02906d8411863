"""Data as it is published: compressed files (HH-RLHF's own are *.jsonl.gz) and Parquet / Arrow
(what the Hugging Face hub and `datasets` hold) import as their content, detected by their columns.

The shared HH-RLHF sample is compressed and converted here, in a temporary folder: each form must
store exactly the pairs the plain file stores.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import pytest

from rlhf_workbench.core.errors import InputError
from rlhf_workbench.core.formats import detect
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.project import Project

HH_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless" / "pairs.jsonl"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def hh_plain(tmp_path_factory):
    """The pairs the plain shared file gives: what every other form must give."""
    if not HH_FILE.exists():
        pytest.skip(f"the shared HH-RLHF sample is not at {HH_FILE}")
    with Project.create(tmp_path_factory.mktemp("plain") / "p") as project:
        report = import_file(project, HH_FILE)
        return report, _stored(project)


def _stored(project):
    return [(p.prompt, p.response_a, p.response_b, p.verdict, p.annotator) for p in project.store.iter_export_pairs()]


def _import(path: Path, folder: Path, **kwargs):
    with Project.create(folder) as project:
        report = import_file(project, path, **kwargs)
        return report, _stored(project)


def _zstd(data: bytes, path: Path) -> Path:
    import pyarrow as pa

    with pa.CompressedOutputStream(str(path), "zstd") as out:
        out.write(data)
    return path


@pytest.mark.parametrize("pipeline", [False, True])
def test_the_shared_hh_file_gzipped_imports_as_its_content(hh_plain, tmp_path, pipeline):
    """It was refused: "looks like a binary file, not text"."""
    path = tmp_path / "test.jsonl.gz"
    path.write_bytes(gzip.compress(HH_FILE.read_bytes()))
    assert detect(path).format.name == "hh-rlhf"
    report, pairs = _import(path, tmp_path / "p", pipeline=pipeline)  # True: read in a second process too
    assert pairs == hh_plain[1]
    assert (report.format, report.pairs_added, report.rows) == ("hh-rlhf", 1812, 1812)


@pytest.mark.parametrize("compress", ["bz2", "xz", "zstd", "gzip-no-suffix"])
def test_every_compression_is_recognised_by_its_bytes(tmp_path, compress):
    data = (FIXTURES / "pairs.jsonl").read_bytes()
    path = tmp_path / "pairs.jsonl"
    if compress == "bz2":
        path = path.with_suffix(".jsonl.bz2")
        path.write_bytes(bz2.compress(data))
    elif compress == "xz":
        path = path.with_suffix(".jsonl.xz")
        path.write_bytes(lzma.compress(data))
    elif compress == "zstd":
        path = _zstd(data, path.with_suffix(".jsonl.zst"))
    else:
        path = tmp_path / "download"  # a name that says nothing
        path.write_bytes(gzip.compress(data))
    _, expected = _import(FIXTURES / "pairs.jsonl", tmp_path / "plain")
    report, pairs = _import(path, tmp_path / "p")
    assert report.format == "pairs" and pairs == expected


def test_a_compressed_csv_is_sniffed_from_its_content_and_the_name_inside(tmp_path):
    path = tmp_path / "pairs.csv.gz"
    path.write_bytes(gzip.compress((FIXTURES / "pairs.csv").read_bytes()))
    detection = detect(path)
    assert (detection.source.container, detection.source.compression) == ("csv", "gzip")
    _, expected = _import(FIXTURES / "pairs.csv", tmp_path / "plain")
    assert _import(path, tmp_path / "p")[1] == expected


def test_errors_name_the_line_of_the_content_and_a_damaged_stream_changes_nothing(tmp_path):
    good = {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}
    lines = [json.dumps(good), json.dumps({**good, "prompt": "Capital of Italy?"}), "{not json", json.dumps(good)]
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    with Project.create(tmp_path / "p") as project:
        with pytest.raises(InputError) as caught:
            import_file(project, path)
        assert caught.value.line == 3 and "not valid JSON" in caught.value.reason

        whole = gzip.compress(HH_FILE.read_bytes() if HH_FILE.exists() else (FIXTURES / "pairs.jsonl").read_bytes())
        cut = tmp_path / "cut.jsonl.gz"
        cut.write_bytes(whole[: len(whole) // 2])
        with pytest.raises(InputError, match="the gzip data is damaged or cut short after line"):
            import_file(project, cut)
        assert project.store.counts()["pairs"] == 0


@pytest.fixture(scope="module")
def hh_table(hh_plain):
    import pyarrow as pa

    rows = [json.loads(line) for line in HH_FILE.read_text(encoding="utf-8").splitlines()]
    return pa.Table.from_pylist(rows)


def test_the_shared_hh_file_as_parquet_imports_like_json_lines(hh_plain, hh_table, tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(hh_table, path, row_group_size=500)  # several row groups, several batches
    detection = detect(path)
    assert (detection.format.name, detection.source.container) == ("hh-rlhf", "parquet")
    report, pairs = _import(path, tmp_path / "p")
    assert pairs == hh_plain[1] and report.pairs_added == 1812


def test_an_arrow_file_saved_by_datasets_imports(hh_plain, hh_table, tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset(hh_table).save_to_disk(str(tmp_path / "saved"))
    [path] = (tmp_path / "saved").glob("*.arrow")
    with pytest.raises(InputError, match=f"is a folder; choose one of its Arrow files: {path.name}"):
        detect(tmp_path / "saved")
    report, pairs = _import(path, tmp_path / "p")
    assert (report.format, pairs) == ("hh-rlhf", hh_plain[1])


def test_parquet_columns_decide_the_format_and_rows_number_errors(tmp_path):
    """Conversational TRL rows as the hub serves them (lists of role/content structs), with the
    row number in an error as a JSON lines file gives the line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def said(role, content):
        return {"role": role, "content": content}

    rows = [
        {"prompt": [said("user", "Sky?")], "chosen": [said("assistant", "Blue.")],
         "rejected": [said("assistant", "Green.")], "score_chosen": 9.0},
        {"prompt": [said("user", "Sea?")], "chosen": [said("assistant", "Wet.")],
         "rejected": [said("assistant", "Wet.")], "score_chosen": 5.0},
    ]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows[:1]), path)
    report, [pair] = _import(path, tmp_path / "p")
    assert report.format == "trl" and pair[:3] == (pair[0], "Blue.", "Green.")
    assert report.ignored_columns == ["score_chosen"]
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(InputError) as caught:
        _import(path, tmp_path / "q")
    assert caught.value.line == 2 and "same conversation" in caught.value.reason


def test_a_damaged_parquet_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 100)
    with pytest.raises(InputError, match="is not a readable Parquet file"):
        detect(path)


def test_a_compressed_file_handed_over_to_the_reading_process_mid_file_stores_the_same(hh_plain, tmp_path, monkeypatch):
    """Chosen by size, the importing process reads the first batches and the reading process goes
    on after them: both must count the content's rows, and progress ends at the file's size."""
    import time

    from rlhf_workbench.core import import_rows, importing

    monkeypatch.setattr(importing, "PIPELINE_MIN_BYTES", 0)
    monkeypatch.setattr(import_rows, "BATCH_ROWS", 32)
    monkeypatch.delenv(importing.PIPELINE_ENV, raising=False)
    path = tmp_path / "test.jsonl.xz"
    path.write_bytes(lzma.compress(HH_FILE.read_bytes()))
    calls = []

    def progress(event):
        calls.append(event.step)
        time.sleep(0.01)  # slow enough here that the reading process usually takes over

    with Project.create(tmp_path / "p") as project:
        import_file(project, path, sink=progress)
        assert _stored(project) == hh_plain[1]
    assert calls == sorted(calls) and calls[-1] == path.stat().st_size
