"""Import speed and next-pair latency on a 100,000-record HH-RLHF file.

    .venv/bin/python bench/import_bench.py [--records N] [--seed S] [--profile]

Builds an HH-format JSON lines file (records resampled from the shared HH-RLHF sample, each made
unique by a distinct suffix on the human's first turn, so that deduplication skips none) in a
temporary folder, then measures:

- import_s: importing it into a fresh project with `import_file` (format auto-detected);
- json_s: merely reading the same file and `json.loads`-ing every line (best of three);
- ratio: import_s / json_s, which must be at most 4;
- next_pair_ms_median: the median time of `Store.next_unlabelled_pair_id()` on that project
  (must be under 5 ms), and again once most pairs carry a person's verdict.

It prints a table and, as its last line, one JSON object with those keys (and a few more).
See bench/README.md for what the figures mean and the latest ones from this machine.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rlhf_workbench.core.formats import ReadOptions, get_format
from rlhf_workbench.core.formats.rows import RowSource
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.records import conversation_to_json

if TYPE_CHECKING:
    from rlhf_workbench.core.store import Store

# The project and the store are imported inside the functions that use them: the import's reading
# process (a spawned interpreter) runs this script's top level again, and the store's sqlite-utils
# imports pandas where that is installed (~0.4 s), time in which only the importing process works.
# A user's script that imports a large file gains the same way from light top-level imports.

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCE = SHARED_DATA / "hh-rlhf-harmless" / "pairs.jsonl"

MAX_RATIO = 4.0
MAX_NEXT_PAIR_MS = 5.0
NEXT_PAIR_CALLS = 2000
HUMAN_SHARE = 0.9  # "most pairs have a person's verdict": the first 90% in id order
_FIRST_ANSWER = "\n\nAssistant:"


def build_file(path: Path, records: int, seed: int) -> int:
    """Write `records` unique HH records to `path`; returns the file's size in bytes."""
    source = [json.loads(line) for line in SOURCE.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for i in range(records):
            record = rng.choice(source)
            chosen, rejected = record["chosen"], record["rejected"]
            # The first human turn ends at the first "\n\nAssistant:"; it is the same in both
            # transcripts, so the suffix keeps their shared prompt shared.
            cut = chosen.index(_FIRST_ANSWER)
            assert rejected[:cut] == chosen[:cut]
            suffix = f" (variant {i})"
            f.write(
                json.dumps(
                    {"chosen": chosen[:cut] + suffix + chosen[cut:], "rejected": rejected[:cut] + suffix + rejected[cut:]},
                    ensure_ascii=False,
                )
                + "\n"
            )
    return path.stat().st_size


def time_json(path: Path, repeats: int = 3) -> float:
    """Best of `repeats`: read the file line by line and json.loads each line, nothing more."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        with open(path, "rb") as f:
            for line in f:
                json.loads(line)
        best = min(best, time.perf_counter() - started)
    return best


def time_next_pair(store: Store, after_id: int = 0) -> tuple[float, float, int | None]:
    """(median ms, 95th percentile ms, the id it returned) of next_unlabelled_pair_id(after_id):
    NEXT_PAIR_CALLS calls, or as many as fit in about two seconds where each is slow (at least 20)."""
    result = store.next_unlabelled_pair_id(after_id)  # warm the page cache and the statement cache
    times = []
    deadline = time.perf_counter() + 2.0
    for n in range(NEXT_PAIR_CALLS):
        if n >= 20 and time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        store.next_unlabelled_pair_id(after_id)
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times) * 1000, times[int(0.95 * (len(times) - 1))] * 1000, result


def add_human_verdicts(store: Store, share: float) -> int:
    """Give the first `share` of the pairs (in id order, as a person labelling in order leaves them)
    a person's verdict, written straight in SQL in one transaction. Returns the last labelled id.

    This is the worst case for a query that starts from the first pair: it has to step over every
    labelled pair before it finds one that is not."""
    from rlhf_workbench.core.store import now_iso

    ids = store.pair_ids()
    labelled = ids[: int(len(ids) * share)]
    created = now_iso()
    with store.transaction():
        store.conn.executemany(
            """INSERT INTO judgments(pair_id, annotator, verdict, shown_left, seconds, created_at)
               VALUES (?, 'bench-person', ?, 'a', 3.0, ?)""",
            ((pair_id, "a" if pair_id % 3 else "b", created) for pair_id in labelled),
        )
    return labelled[-1] if labelled else 0


def time_stages(path: Path) -> dict[str, float]:
    """Where an import's time goes, by redoing its stages without a database, streaming as the
    import does: (1) reading rows and json.loads, (2) the same plus splitting the HH transcripts
    into the canonical prompt JSON and the two responses (the format's fast path, `pair_row`, as
    the import uses it; the general `parse_row` for the rows it leaves), (3) the same plus the five
    content hashes per record. Differences give each stage's share; what the import takes beyond
    (3) is SQLite (inserts, index updates, commit), moving rows between the two processes and
    the import's own bookkeeping."""
    from rlhf_workbench.core.bulk import BulkWriter

    fmt = get_format("hh-rlhf")
    options = ReadOptions()

    def split(row: dict) -> tuple:
        fast = fmt.pair_row(row, options.max_chars)
        if fast is not None:
            return fast
        (r,) = fmt.parse_row(row, options)
        return conversation_to_json(r.prompt), r.response_a, r.response_b

    def rows() -> float:
        started = time.perf_counter()
        for _ in RowSource(path).rows():
            pass
        return time.perf_counter() - started

    def parsed() -> float:
        started = time.perf_counter()
        for row in RowSource(path).rows():
            split(row.data)
        return time.perf_counter() - started

    def hashed() -> float:
        hash_pair = BulkWriter.hash_pair
        started = time.perf_counter()
        for row in RowSource(path).rows():
            prompt_json, a, b = split(row.data)
            hash_pair((None, prompt_json, None, a, None, b, None, "hh-rlhf", None, None, "a", "dataset:hh-rlhf", None))
        return time.perf_counter() - started

    gc.collect()
    read_s, parse_s, hash_s = rows(), parsed(), hashed()
    return {"read_json_s": read_s, "hh_parse_s": parse_s - read_s, "json_and_hashes_s": hash_s - parse_s}


def time_datasets(path: Path, cache_dir: Path) -> float | None:
    """HF datasets' JSON loader on the same file, where `datasets` is installed (it is not by default)."""
    try:
        import datasets  # noqa: F401
    except ImportError:
        return None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    started = time.perf_counter()
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache_dir))
    assert len(ds) > 0
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="how many HH records to import (default 100,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for resampling the shared records")
    parser.add_argument("--profile", action="store_true", help="also profile a second import with cProfile and print the top functions")
    parser.add_argument("--no-breakdown", action="store_true", help="skip timing the import's stages apart")
    args = parser.parse_args(argv)
    from rlhf_workbench.core.project import Project

    if not SOURCE.is_file():
        print(f"the shared HH-RLHF sample is missing: {SOURCE}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="rlhf-bench-") as tmp:
        tmp = Path(tmp)
        data = tmp / "hh-bench.jsonl"
        size = build_file(data, args.records, args.seed)

        json_s = time_json(data)

        project = Project.create(tmp / "project")
        gc.collect()
        started = time.perf_counter()
        report = import_file(project, data)
        import_s = time.perf_counter() - started
        assert report.pairs_added == args.records, f"expected {args.records:,} pairs, got {report.pairs_added:,}"
        assert report.judgments_added == args.records, report.summary()
        assert report.format == "hh-rlhf", report.format

        started = time.perf_counter()
        again = import_file(project, data)
        reimport_s = time.perf_counter() - started
        assert again.pairs_added == 0 and again.pairs_existing == args.records, again.summary()

        next_ms, next_p95, first = time_next_pair(project.store)
        assert first == min(project.store.pair_ids())
        last_labelled = add_human_verdicts(project.store, HUMAN_SHARE)
        labelled_ms, labelled_p95, found = time_next_pair(project.store)
        assert found is not None and found > last_labelled, (found, last_labelled)
        resume_ms, resume_p95, _ = time_next_pair(project.store, after_id=last_labelled)
        project.close()  # checkpoints the write-ahead log into project.db
        db_bytes = sum(f.stat().st_size for f in (tmp / "project").glob("project.db*"))

        datasets_s = time_datasets(data, tmp / "hf-cache")
        stages = {} if args.no_breakdown else time_stages(data)

        if args.profile:
            profile_import(data, tmp / "profiled")

    ratio = import_s / json_s
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [
        ("records", f"{args.records:,}", f"{size / 1e6:.1f} MB of HH JSON lines"),
        ("json.loads every line", f"{json_s:.2f} s", "best of 3, reading included"),
        ("import (auto-detected)", f"{import_s:.2f} s", f"{args.records / import_s:,.0f} records/s"),
        ("ratio import / json", f"{ratio:.2f}", f"must be <= {MAX_RATIO:g}: {'ok' if ratio <= MAX_RATIO else 'TOO SLOW'}"),
        *(
            [
                ("  of which: read + json.loads", f"{stages['read_json_s']:.2f} s", "rows.RowSource"),
                ("  of which: HH split + prompt JSON", f"{stages['hh_parse_s']:.2f} s", "formats/hh_rlhf.pair_row"),
                ("  of which: content hashes", f"{stages['json_and_hashes_s']:.2f} s", "5 BLAKE2b digests/record"),
                ("  of which: SQLite + the rest", f"{import_s - sum(stages.values()):.2f} s", "wall minus the above (two processes)"),
            ]
            if stages
            else []
        ),
        ("re-import (all duplicates)", f"{reimport_s:.2f} s", "adds nothing"),
        ("next pair, fresh project", f"{next_ms:.3f} ms", f"median of up to {NEXT_PAIR_CALLS} calls; p95 {next_p95:.3f} ms"),
        (f"next pair, {HUMAN_SHARE:.0%} labelled, from start", f"{labelled_ms:.3f} ms", f"p95 {labelled_p95:.3f} ms"),
        (f"next pair, {HUMAN_SHARE:.0%} labelled, from last", f"{resume_ms:.3f} ms", f"p95 {resume_p95:.3f} ms"),
        ("HF datasets load_dataset('json')", f"{datasets_s:.2f} s" if datasets_s is not None else "n/a", "not installed" if datasets_s is None else "for comparison"),
        ("project.db", f"{db_bytes / 1e6:.1f} MB", "after closing (log checkpointed)"),
        ("peak memory (RSS)", f"{rss_mb:.0f} MB", ""),
    ]
    print(f"\nImport bench: Python {platform.python_version()}, SQLite {sqlite_version()}, {os.cpu_count()} CPUs")
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>12}  {note}")
    # The bounds: the import ratio, and the next-pair query on the imported project.
    ok = ratio <= MAX_RATIO and next_ms < MAX_NEXT_PAIR_MS
    print(f"  {'verdict':<{width}}  {'PASS' if ok else 'FAIL':>12}  import ratio <= {MAX_RATIO:g} and next pair < {MAX_NEXT_PAIR_MS:g} ms")
    if max(labelled_ms, resume_ms) >= MAX_NEXT_PAIR_MS:
        print(
            f"  note: with {HUMAN_SHARE:.0%} of the pairs labelled, the next-pair query takes "
            f"{max(labelled_ms, resume_ms):.1f} ms (it steps over every labelled pair); see bench/README.md"
        )
    print(
        json.dumps(
            {
                "import_s": round(import_s, 3),
                "json_s": round(json_s, 3),
                "ratio": round(ratio, 3),
                "next_pair_ms_median": round(next_ms, 4),
                "next_pair_ms_median_labelled_from_start": round(labelled_ms, 4),
                "next_pair_ms_median_labelled_from_last": round(resume_ms, 4),
                "reimport_s": round(reimport_s, 3),
                "records": args.records,
                "file_mb": round(size / 1e6, 1),
                "db_mb": round(db_bytes / 1e6, 1),
                "peak_rss_mb": round(rss_mb),
                "datasets_s": round(datasets_s, 3) if datasets_s is not None else None,
                **{key: round(value, 3) for key, value in stages.items()},
                "ok": ok,
            }
        )
    )
    return 0 if ok else 1


def profile_import(data: Path, folder: Path) -> None:
    from rlhf_workbench.core.project import Project

    project = Project.create(folder)
    profiler = cProfile.Profile()
    profiler.enable()
    import_file(project, data)
    profiler.disable()
    project.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
    stats.print_stats(25)
    print("\ncProfile of a second import (sorted by own time; profiling slows it down):")
    print(out.getvalue())


def sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


if __name__ == "__main__":
    sys.exit(main())
