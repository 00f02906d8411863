"""Exporting runs' figures (core/run_export.py, `rlhf-workbench runs --export`): TensorBoard event
files read back with TensorBoard's own reader, CSV read back with the csv module, the checksum and
the varints against TensorBoard's own code, and nothing partial when an export fails. Runs are real
rows of a real project with figures as a job's recorder writes them; nothing trains."""

from __future__ import annotations

import csv
import math
import os
import struct

import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

from rlhf_workbench.core import run_export
from rlhf_workbench.core.cli import main
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.run_export import crc32c, event_bytes, export_runs, masked_crc32c, tf_record
from rlhf_workbench.core.runs.records import start_run

T0 = 1_700_000_000.25
# Figures with odd names (unicode, spaces, several slashes), steps past 32 bits, values TensorBoard
# keeps only as 32-bit floats (0.1, a third) or not at all (beyond float32's range: infinite).
FIGURES = {
    "rm": [(0, "train/loss", 0.6931471805599453, 0.0), (1, "train/loss", 0.1, 1.5), (1, "eval/accuracy", 1 / 3, 1.5),
           (2, "train/loss", -2.5e-8, 3.0), (2, "perf/Durchsatz (Paare/s) ✓", 12.75, 3.25),
           (2**33 + 1, "train/loss", 1e39, 4.0), (2**53 + 7, "a/b/c d/é", -math.inf, 5.0)],
    "dpo": [(5, "train/loss", 0.5, 10.0), (10, "train/loss", 0.25, 20.0), (10, "rewards/margins", 3.0, 20.0)],
    "empty": [],
}


@pytest.fixture
def runs(project):
    ids = {}
    for key, config, kind in (("rm", RewardConfig(max_steps=3), "reward"), ("dpo", OfflineConfig(), "dpo"),
                              ("empty", RewardConfig(), "reward")):
        ctx = start_run(project, kind=kind, name=key, config=config)
        project.store.save_run_records(ctx.run_id, metrics=[(s, n, v, T0 + t) for s, n, v, t in FIGURES[key]])
        ids[key] = ctx.run_id
    return ids


@pytest.fixture
def out(tmp_path):
    """An empty folder to export into (the project is in tmp_path / "p")."""
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


def _float32(value: float) -> float:
    try:
        return struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


def _expected(key):
    """Per figure, its (step, value as TensorBoard keeps it, wall time) in step order."""
    out = {}
    for step, name, value, t in sorted(FIGURES[key]):
        out.setdefault(name, []).append((step, _float32(value), T0 + t))
    return out


def _scalars(folder):
    reader = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    reader.Reload()
    return {tag: [(e.step, e.value, e.wall_time) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def test_crc32c_and_its_mask_match_tensorboards_own():
    assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C (RFC 3720)
    assert crc32c(b"") == 0
    for n in (1, 3, 8, 255, 4096):
        data = os.urandom(n)
        assert crc32c(data) == pywrap_tensorflow.crc32c(data)
        assert masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)


@pytest.mark.parametrize("step", [0, 1, 127, 128, 300, 2**31 - 1, 2**31, 2**32 + 5, 2**53 + 1, 2**63 - 1, -1, -(2**63)])
def test_events_decode_with_tensorboards_protobuf(step):
    event = Event.FromString(event_bytes(T0, step, scalar=("loss/ünïcode ✓/a b", 0.1)))
    assert event.step == step and event.wall_time == T0
    (value,) = event.summary.value
    assert value.tag == "loss/ünïcode ✓/a b" and value.simple_value == _float32(0.1)
    assert Event.FromString(event_bytes(T0, 0, file_version="brain.Event:2")).file_version == "brain.Event:2"
    with pytest.raises(WorkbenchError):
        event_bytes(T0, 2**64, scalar=("x", 1.0))


def test_records_pass_tensorboards_checksums(tmp_path):
    path = tmp_path / "events.out.tfevents.1.test"
    payloads = [event_bytes(T0, step, scalar=("t", float(step))) for step in (1, 2**40)] + [b"x" * 300]
    path.write_bytes(b"".join(tf_record(p) for p in payloads))
    reader = pywrap_tensorflow.PyRecordReader_New(str(path))  # raises DataLossError on a wrong checksum
    read = []
    for _ in payloads:
        reader.GetNext()
        read.append(reader.record())
    assert read == payloads


def test_tensorboard_reads_back_every_step_value_and_tag(project, runs, tmp_path):
    out = tmp_path / "exported"  # not there yet: made by the export
    report = export_runs(project, [runs["rm"], runs["dpo"], runs["empty"]], out)
    assert sorted(p.name for p in out.iterdir()) == sorted(runs.values())
    for key, run_id in runs.items():
        events = [p for p in (out / run_id).iterdir() if p.name.startswith("events.out.tfevents.")]
        assert len(events) == 1 and events[0].name.split(".")[3].isdigit()  # events.out.tfevents.<time>.<host>
        assert _scalars(out / run_id) == _expected(key)
        assert report.values[run_id] == len(FIGURES[key])
        assert set(report.files[run_id]) == {events[0], out / run_id / f"{run_id}.csv"}
    # What `tensorboard --logdir exported` loads: one run per folder, named by the run's id.
    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(out))
    multiplexer.Reload()
    assert sorted(multiplexer.Runs()) == sorted(runs.values())
    assert [e.value for e in multiplexer.Scalars(runs["dpo"], "train/loss")] == [0.5, 0.25]


def test_csv_has_a_row_per_step_and_a_column_per_figure(project, runs, out):
    export_runs(project, [runs["rm"], runs["empty"]], out, formats=["csv"])
    run_id = runs["rm"]
    assert sorted(p.name for p in (out / run_id).iterdir()) == [f"{run_id}.csv"]
    with (out / run_id / f"{run_id}.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    names = sorted({n for _, n, _, _ in FIGURES["rm"]})
    assert rows[0] == ["step", "wall_time", "elapsed_s", *names]
    steps = sorted({s for s, _, _, _ in FIGURES["rm"]})
    assert [int(row[0]) for row in rows[1:]] == steps
    for row in rows[1:]:
        step = int(row[0])
        here = [(n, v, t) for s, n, v, t in FIGURES["rm"] if s == step]
        assert float(row[1]) == T0 + max(t for _, _, t in here)
        assert float(row[2]) == max(t for _, _, t in here)  # the first figure came at T0 + 0
        cells = dict(zip(names, row[3:]))
        for name in names:
            value = next((v for n, v, _ in here if n == name), None)
            assert (cells[name] == "") if value is None else float(cells[name]) == value  # every digit kept
    with (out / runs["empty"] / f"{runs['empty']}.csv").open(encoding="utf-8-sig", newline="") as fh:
        assert list(csv.reader(fh)) == [["step", "wall_time", "elapsed_s"]]


def test_exporting_again_replaces_the_runs_folder_and_leaves_the_rest(project, runs, out):
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    export_runs(project, [runs["dpo"]], out)
    project.store.save_run_records(runs["dpo"], metrics=[(11, "train/loss", 0.125, T0 + 30)])
    report = export_runs(project, [runs["dpo"]], out, formats=["tensorboard"])
    assert report.replaced == [runs["dpo"]]
    assert sorted(p.name for p in out.iterdir()) == sorted(["notes.txt", runs["dpo"]])  # no temporary folder left
    files = list((out / runs["dpo"]).iterdir())
    assert len(files) == 1  # the new event file alone: no stale one, and no CSV this time
    assert [s for s, _, _ in _scalars(out / runs["dpo"])["train/loss"]] == [5, 10, 11]


def test_a_failure_part_way_leaves_nothing(project, runs, out, monkeypatch):
    def fail(path, history):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_export, "write_csv", fail)
    with pytest.raises(WorkbenchError, match="No space left on device.*nothing was written"):
        export_runs(project, [runs["rm"], runs["dpo"]], out / "new")
    assert list(out.iterdir()) == []  # not even the folder
    (out / "old").mkdir()
    with pytest.raises(WorkbenchError, match="nothing was written"):
        export_runs(project, [runs["rm"]], out / "old")
    assert list((out / "old").iterdir()) == []


def test_refuses_unknown_runs_formats_and_folders_it_cannot_write(project, runs, out):
    with pytest.raises(WorkbenchError, match="has no run 'nope'"):
        export_runs(project, [runs["rm"], "nope"], out / "new")
    with pytest.raises(WorkbenchError, match="the formats are tensorboard, csv"):
        export_runs(project, [runs["rm"]], out / "new", formats=["parquet"])
    (out / "a file").write_text("", encoding="utf-8")
    with pytest.raises(WorkbenchError, match="is a file"):
        export_runs(project, [runs["rm"]], out / "a file")
    with pytest.raises(WorkbenchError, match="cannot export there"):
        export_runs(project, [runs["rm"]], out / "a file" / "out")
    assert sorted(p.name for p in out.iterdir()) == ["a file"]


def test_cli_exports_and_says_what_it_wrote(project, runs, tmp_path, capsys):
    out = tmp_path / "exported"
    args = ["runs", str(project.path), "--export", runs["rm"], runs["dpo"], "--to", str(out)]
    assert main(args + ["--format", "csv"]) == 0
    printed = capsys.readouterr().out
    assert f"{runs['rm']}: 7 values -> {out / runs['rm']}/ ({runs['rm']}.csv)" in printed
    assert "tensorboard --logdir" not in printed
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "(replacing its earlier export)" in printed and f"tensorboard --logdir {out}" in printed
    assert _scalars(out / runs["dpo"]) == _expected("dpo")

    assert main(["runs", str(project.path), "--export", runs["rm"], "missing-run", "--to", str(tmp_path / "x")]) == 1
    assert "has no run 'missing-run'" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["runs", str(project.path), "--export", runs["rm"]]) == 1
    assert "--to DIR" in capsys.readouterr().err
    assert main(["runs", str(project.path), "--to", str(tmp_path / "x")]) == 1
    assert "add --export" in capsys.readouterr().err
