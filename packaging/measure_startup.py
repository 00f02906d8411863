"""Start-up time, launch to window shown, of the built app and of `make run`'s command.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python packaging/measure_startup.py [--runs 5]

Each command is started with `--demo --quit-when-shown` (app/main.py): the window prints
"window shown" once it has painted, then quits. The time is from just before the process is
started here to that line being read, so it includes everything a person waits for. The first
run of each creates the demo project in a fresh data folder (a first start); the runs after it
find it there (a usual start). Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def time_to_window(command: list[str], env: dict[str, str], timeout: float = 120.0) -> float:
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if line.startswith("window shown"):
                elapsed = time.perf_counter() - started
                process.wait(timeout)
                return elapsed
        raise RuntimeError(f"{command[0]} ended (exit code {process.wait()}) without showing its window")
    finally:
        if process.poll() is None:
            process.kill()


def measure(name: str, command: list[str], runs: int) -> dict:
    home = tempfile.mkdtemp(prefix="pkghome-startup-")
    env = dict(os.environ, RLHF_WORKBENCH_HOME=home)
    first = time_to_window(command, env)
    later = [time_to_window(command, env) for _ in range(runs)]
    return {"name": name, "first_start_s": round(first, 2), "median_s": round(statistics.median(later), 2),
            "min_s": round(min(later), 2), "max_s": round(max(later), 2), "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "rlhf-workbench" / "rlhf-workbench")
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    args = parser.parse_args()
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        print("error: needs a display: run it under xvfb-run", file=sys.stderr)
        return 1
    flags = ["--demo", "--quit-when-shown"]
    results = [
        measure("frozen app", [str(args.bundle), *flags], args.runs),
        measure("make run (.venv/bin/rlhf-workbench)", [str(args.venv / "bin" / "rlhf-workbench"), *flags], args.runs),
    ]
    for r in results:
        print(f"{r['name']:40s} first start {r['first_start_s']:5.2f} s; then median {r['median_s']:.2f} s "
              f"(min {r['min_s']:.2f}, max {r['max_s']:.2f}, {r['runs']} runs)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
