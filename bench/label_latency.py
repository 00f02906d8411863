"""From a verdict key press to the next pair painted, in a project of 100,000 pairs.

    .venv/bin/python bench/label_latency.py [--pairs N] [--presses N]

Builds a project of N pairs (HH-RLHF records from the shared sample, each made unique; imported
with the real importer), opens the real main window offscreen on its Label tab, and presses
verdict keys: for each press, the time from just before the key event is delivered until the
left response's viewport has painted the next pair. That span includes committing the verdict to
SQLite (synchronous=FULL, so an fsync), fetching the next pair, and laying out both responses.

Target (issue 3): p95 under 16 ms, one frame at 60 Hz. The last line is one JSON object with
p50_ms, p95_ms, pairs (and a few more).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_bench import build_file  # noqa: E402  (the same 100,000 unique HH records)
from PySide6.QtCore import QEvent, QObject, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

TARGET_P95_MS = 16.0
KEYS = [Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_T, Qt.Key.Key_X, Qt.Key.Key_Space]


class PaintWatch(QObject):
    """Notes which pair was on screen the last time the viewport painted."""

    def __init__(self, page):
        super().__init__()
        self.page = page
        self.painted_pair: int | None = None

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.Paint:
            current = self.page.session.current
            self.painted_pair = current.pair_id if current is not None else None
        return False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)

    from rlhf_workbench.app.main import configure_application, create_main_window, parse_args
    from rlhf_workbench.core.importing import import_file
    from rlhf_workbench.core.project import Project

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["RLHF_WORKBENCH_HOME"] = str(tmp_path / "home")
        source = tmp_path / "hh.jsonl"
        build_file(source, args.pairs, seed=0)
        with Project.create(tmp_path / "project", name="latency") as project:
            report = import_file(project, source)
        pairs = report.pairs_added

        app = QApplication.instance() or QApplication(sys.argv[:1])
        configure_application(app)
        window = create_main_window(parse_args([str(tmp_path / "project"), "--annotator", "bench"]))
        window.resize(1280, 820)
        window.show_tab(1)
        page = window.label_view.judge_page
        for _ in range(20):
            app.processEvents()
        watch = PaintWatch(page)
        page.left.text.viewport().installEventFilter(watch)

        times_ms: list[float] = []
        for n in range(args.warmup + args.presses):
            before = page.session.current.pair_id
            start = time.perf_counter()
            QTest.keyClick(page, KEYS[n % len(KEYS)])
            after = page.session.current.pair_id
            assert after != before, "the key press did not move to the next pair"
            while watch.painted_pair != after:
                app.processEvents()
            elapsed = (time.perf_counter() - start) * 1000
            if n >= args.warmup:
                times_ms.append(elapsed)
            # Let deferred work (progress counts, status bar) run between presses, as it does
            # between a person's key presses; it is not part of the key-to-paint span.
            app.processEvents()
        window.close()

    result = {
        "p50_ms": round(statistics.median(times_ms), 3),
        "p95_ms": round(percentile(times_ms, 0.95), 3),
        "max_ms": round(max(times_ms), 3),
        "pairs": pairs,
        "presses": len(times_ms),
        "target_p95_ms": TARGET_P95_MS,
        "met": percentile(times_ms, 0.95) < TARGET_P95_MS,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(f"key press → next pair painted, {len(times_ms)} presses on {pairs:,} pairs:")
    print(f"  p50 {result['p50_ms']:.2f} ms   p95 {result['p95_ms']:.2f} ms   max {result['max_ms']:.2f} ms")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
