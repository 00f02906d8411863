"""Exporting runs' figures to take them elsewhere: TensorBoard event files and CSV.

    report = export_runs(project, ["rm-20261121-142501-3f9a", "dpo-..."], Path("exported"))
    # exported/rm-20261121-142501-3f9a/events.out.tfevents.1763731501.laptop   tensorboard --logdir exported
    # exported/rm-20261121-142501-3f9a/rm-20261121-142501-3f9a.csv              a spreadsheet

Each run gets a folder of its own, named by its id, so that `tensorboard --logdir OUT` shows the
runs side by side, each figure under its own name (`train/loss`: TensorBoard groups by the part
before the slash). The figures come from the project's database as the Runs tab draws them.

The event files are written here, with no TensorBoard or TensorFlow installed: a TFRecord file
(each record its length, the masked CRC-32C of the length, the bytes, their masked CRC-32C) of
`tensorflow.Event` protocol buffers, of which the few fields a scalar needs are encoded by hand.
TensorBoard stores a scalar's `simple_value` as a 32-bit float; the CSV keeps every digit.

Nothing is left half written: everything goes into a temporary folder first (inside OUT, or beside
it when OUT does not exist yet), and each run's folder is renamed into place once all are written.
Exporting a run again replaces its folder in OUT (its new figures, no stale event file beside them).
"""

from __future__ import annotations

import csv
import math
import re
import secrets
import shutil
import socket
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Stopped, WorkbenchError
from .events import Progress, Sink
from .project import Project

FORMATS = ("tensorboard", "csv")
_TEMP_PREFIX = ".rlhf-workbench-export-"


@dataclass
class ExportReport:
    """What an export wrote: the folder, and per run its files and how many figures' values."""

    folder: Path
    files: dict[str, list[Path]] = field(default_factory=dict)  # run id -> its files, in OUT
    values: dict[str, int] = field(default_factory=dict)  # run id -> how many (step, figure) values
    replaced: list[str] = field(default_factory=list)  # runs whose earlier export in OUT was replaced

    def lines(self) -> list[str]:
        """One line per run, for a terminal or a message box."""
        out = []
        for run_id, files in self.files.items():
            names = ", ".join(path.name for path in files)
            again = " (replacing its earlier export)" if run_id in self.replaced else ""
            out.append(f"{run_id}: {self.values[run_id]:,} values -> {files[0].parent}/ ({names}){again}")
        return out


def export_runs(
    project: Project,
    run_ids: Sequence[str],
    out: Path,
    *,
    formats: Iterable[str] = FORMATS,
    sink: Sink | None = None,
    stop: Callable[[], bool] | None = None,
) -> ExportReport:
    """Writes each run's figures into `out/<run id>/` in the given formats ("tensorboard", "csv").

    Raises WorkbenchError, having written nothing, for a run the project does not have, an unknown
    format, or a folder that cannot be written; `Stopped` when `stop()` says so before the end."""
    formats = tuple(dict.fromkeys(formats))
    unknown_formats = [f for f in formats if f not in FORMATS]
    if unknown_formats or not formats:
        raise WorkbenchError(f"cannot export to {', '.join(unknown_formats) or 'no format'}: "
                             f"the formats are {', '.join(FORMATS)}")
    run_ids = list(dict.fromkeys(run_ids))
    if not run_ids:
        raise WorkbenchError("no run to export")
    store = project.store
    missing = [run_id for run_id in run_ids if store.run(run_id) is None]
    if missing:
        raise WorkbenchError(f"{project.path}: has no run {', '.join(repr(m) for m in missing)} "
                             "(`rlhf-workbench runs PROJECT` lists them)")
    names = [_folder_name(run_id) for run_id in run_ids]
    if len(set(names)) < len(names):
        raise WorkbenchError("two of these runs' ids make the same folder name; export them one at a time")
    out = Path(out).expanduser().absolute()
    temp = _temporary_folder(out)
    report = ExportReport(folder=out)
    try:
        try:
            for done, (run_id, name) in enumerate(zip(run_ids, names)):
                if stop is not None and stop():
                    raise Stopped("Exporting was cancelled; nothing was written")
                if sink is not None:
                    sink(Progress(done, len(run_ids), f"Exporting run {run_id} ({done + 1} of {len(run_ids)})"))
                history = store.metric_history(run_id)
                folder = temp / name
                folder.mkdir()
                written = []
                if "tensorboard" in formats:
                    written.append(write_event_file(folder, history))
                if "csv" in formats:
                    written.append(write_csv(folder / f"{name}.csv", history))
                report.files[run_id] = [out / name / path.name for path in written]
                report.values[run_id] = sum(len(points) for points in history.values())
        except OSError as exc:
            raise WorkbenchError(f"{out}: the export could not be written ({exc.strerror or exc}); nothing was "
                                 "written there") from None
        _move_into_place(temp, out, list(zip(run_ids, names)), report)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    if sink is not None:
        sink(Progress(len(run_ids), len(run_ids), f"Exported {len(run_ids)} runs to {out}"))
    return report


def _folder_name(run_id: str) -> str:
    """A run's folder in OUT: its id (ids are made of letters, digits and dashes), made safe if not."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
    return name if name.strip(".") else f"run_{name}"


def _temporary_folder(out: Path) -> Path:
    """A new folder on the same file system as `out` (moving from it is a rename): inside `out`
    when it exists, else beside it. Made with mkdir, so it has the permissions any new folder gets."""
    if out.exists() and not out.is_dir():
        raise WorkbenchError(f"{out}: is a file, not a folder to export into")
    where = out if out.is_dir() else out.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
        for _attempt in range(20):
            temp = where / f"{_TEMP_PREFIX}{secrets.token_hex(4)}"
            try:
                temp.mkdir()
            except FileExistsError:
                continue
            return temp
    except OSError as exc:
        raise WorkbenchError(f"{out}: cannot export there ({exc.strerror or exc})") from None
    raise WorkbenchError(f"{where}: could not find a free name for a temporary folder")


def _move_into_place(temp: Path, out: Path, runs: list[tuple[str, str]], report: ExportReport) -> None:
    """Renames what `temp` holds into `out`: the whole folder when `out` is new, else each run's
    folder (one exported before is replaced, and put back if the new one cannot take its place)."""
    try:
        if not out.exists():
            temp.rename(out)
            return
    except OSError as exc:
        raise WorkbenchError(f"{out}: the export could not be put in place ({exc.strerror or exc}); nothing was "
                             "written there") from None
    replaced = temp / ".replaced"
    moved: list[str] = []
    try:
        replaced.mkdir()
        for run_id, name in runs:
            target = out / name
            had = target.exists() or target.is_symlink()
            if had:
                target.rename(replaced / name)
            try:
                (temp / name).rename(target)
            except OSError:
                if had:
                    (replaced / name).rename(target)
                raise
            moved.append(run_id)
            if had:
                report.replaced.append(run_id)
    except OSError as exc:
        done = f"only {', '.join(moved)} exported" if moved else "nothing was written there"
        raise WorkbenchError(f"{out}: the export could not be put in place ({exc.strerror or exc}); {done}") from None


# -- CSV ---------------------------------------------------------------------------------------------


def write_csv(path: Path, history: dict[str, list[tuple[int, float, float]]]) -> Path:
    """One row per step, one column per figure (step, wall_time, elapsed_s, then the figures by name).

    Wide rather than long (step, figure, value): a person who opens it in a spreadsheet wants to
    chart a figure against the step, which is two columns of a wide table and a pivot table away
    in a long one. A figure not logged at a step (validation every 50 steps) leaves its cell
    empty. `wall_time` is seconds since 1970 (UTC) when the step's last figure was reported, as
    TensorBoard has it; `elapsed_s` the seconds since the run's first figure. Values keep every
    digit (Python's shortest exact form). Written as UTF-8 with a byte-order mark, which is what
    makes Excel read a non-ASCII figure name right (other spreadsheets and csv readers skip it).
    If a figure was logged twice at one step, its last value is the one kept.
    """
    names = sorted(history)
    rows: dict[int, dict[str, float]] = {}
    times: dict[int, float] = {}
    for name, points in history.items():
        for step, value, wall_time in points:
            rows.setdefault(step, {})[name] = value
            times[step] = max(times.get(step, wall_time), wall_time)
    start = min(times.values(), default=0.0)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "wall_time", "elapsed_s", *names])
        for step in sorted(rows):
            values = rows[step]
            writer.writerow([step, repr(times[step]), repr(round(times[step] - start, 6)),
                             *(repr(values[name]) if name in values else "" for name in names)])
    return path


# -- TensorBoard's event files ---------------------------------------------------------------------


def write_event_file(folder: Path, history: dict[str, list[tuple[int, float, float]]]) -> Path:
    """An event file of every figure's scalars, in step order, named as TensorBoard's own writer
    names its files (`events.out.tfevents.<seconds>.<host>`); returns its path."""
    points = sorted((step, wall_time, name, value) for name, series in history.items()
                    for step, value, wall_time in series)
    start = points[0][1] if points else time.time()
    path = folder / f"events.out.tfevents.{int(start):010d}.{_host()}"
    with path.open("wb") as fh:
        # The first record says which version of the format follows (what TensorBoard's writers write).
        fh.write(tf_record(event_bytes(start, 0, file_version="brain.Event:2")))
        for step, wall_time, name, value in points:
            fh.write(tf_record(event_bytes(wall_time, step, scalar=(name, value))))
    return path


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"


def event_bytes(wall_time: float, step: int, *, file_version: str | None = None,
                scalar: tuple[str, float] | None = None) -> bytes:
    """A `tensorflow.Event` (tensorboard/compat/proto/event.proto) as protobuf's wire format: field
    1 wall_time (double), 2 step (int64), 3 file_version (string), 5 summary (Summary: field 1 a
    repeated Value: field 1 tag (string), 2 simple_value (float))."""
    message = _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(step)
    if file_version is not None:
        message += _length_delimited(3, file_version.encode("utf-8"))
    if scalar is not None:
        tag, value = scalar
        value_message = _length_delimited(1, tag.encode("utf-8")) + _key(2, 5) + _float32(value)
        message += _length_delimited(5, _length_delimited(1, value_message))
    return message


def _float32(value: float) -> bytes:
    """The value as a little-endian 32-bit float; one beyond its range is infinite, as TensorFlow makes it."""
    try:
        return struct.pack("<f", value)
    except OverflowError:
        return struct.pack("<f", math.copysign(math.inf, value))


def _key(field_number: int, wire_type: int) -> bytes:
    return _varint(field_number << 3 | wire_type)


def _length_delimited(field_number: int, data: bytes) -> bytes:
    return _key(field_number, 2) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint; a negative int64 as its two's complement (ten bytes)."""
    if not -(1 << 63) <= value < (1 << 64):
        raise WorkbenchError(f"step {value} does not fit TensorBoard's 64-bit steps")
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tf_record(data: bytes) -> bytes:
    """One TFRecord: the length (uint64, little-endian), its masked CRC-32C, the data, its masked CRC-32C."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked checksum: CRC-32C rotated right by 15 bits plus a constant (mod 2**32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli's polynomial, reflected
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as iSCSI and TFRecord use it: crc32c(b"123456789") == 0xE3069283."""
    crc, table = 0xFFFFFFFF, _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
