"""Exporting a project's pairs to an outside format.

Each pair goes out with the verdict `store.settle_verdict` gives it (one judgment: that verdict;
several: the strict majority; skips ignored). Formats that can only say "chosen/rejected" skip
pairs without a decisive verdict and say how many and why. The file is written to a temporary
name and renamed into place, so a failed export never leaves half a file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import WorkbenchError, disk_full_error, is_disk_full_os_error
from .formats import WriteReport, get_format
from .project import Project
from .records import ExportPair
from .store import Store

EMPTY_PROMPT_SKIP = "with an empty prompt, which no format reads back (imported before such pairs were refused)"


@dataclass
class ExportReport:
    path: str
    format: str
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"{self.written:,} pairs written to {self.path} ({self.format})"
        if self.skipped:
            text += "; skipped: " + ", ".join(f"{n:,} {reason}" for reason, n in self.skipped.items())
        return text


def export_file(
    target: Project | Store,
    path: str | Path,
    *,
    format: str,
    annotators: Sequence[str] | None = None,
) -> ExportReport:
    store = target.store if isinstance(target, Project) else target
    fmt = get_format(format)
    if fmt.write is None:
        raise WorkbenchError(f"the {fmt.name} format can be imported but not exported")
    path = Path(path)
    if path.is_dir():
        raise WorkbenchError(f"{path}: is a folder; give a file name to export to")
    if not path.parent.exists():
        raise WorkbenchError(f"{path.parent}: no such folder")
    empty_prompts = 0

    def with_a_prompt(pairs: Iterable[ExportPair]) -> Iterator[ExportPair]:
        # Imports once let pairs with an empty prompt in (a misspelt prompt column); no format
        # reads such a pair back now, so a file holding one could not be imported again.
        nonlocal empty_prompts
        for pair in pairs:
            if pair.prompt:
                yield pair
            else:
                empty_prompts += 1

    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            report: WriteReport = fmt.write(with_a_prompt(store.iter_export_pairs(annotators=annotators)), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if is_disk_full_os_error(exc):
            raise disk_full_error(path, "nothing was exported", cause=exc) from exc
        raise
    skipped = dict(report.skipped)
    if empty_prompts:
        skipped[EMPTY_PROMPT_SKIP] = empty_prompts
    return ExportReport(str(path), fmt.name, report.written, skipped)
