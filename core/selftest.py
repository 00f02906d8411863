"""`rlhf-workbench --selftest`: does this installation work, end to end, without a display?

Run by the frozen app (packaging/) and by the tests; prints one line and exits 0, or exits
non-zero with the step that failed and why. In a temporary folder (deleted afterwards, and used
as RLHF_WORKBENCH_HOME, so the person's own projects, settings and demo model are never touched)
it:

1. creates the demo project;
2. exports its judged pairs (hh-rlhf) and imports them into a new project through the import
   pipeline's reading process (a spawned child: the frozen app's multiprocessing start-up);
3. trains the tiny demo reward model for a few steps in a child process, through the very runner
   the GUI's Reward model tab uses (`runs.child.ChildRunner`, `import_main=False`, the job at
   `reward.method.REWARD_MODEL.job`), and checks that the run finished, was recorded and left a
   checkpoint;
4. scores a text with that checkpoint in another spawned child, through the same runner, as the
   tab's *Score a text* does.

Hugging Face's offline switches are set for the whole test, so it passes with no network, as the
installed app must. Nothing here imports torch in this process: it all happens in the children,
as in the GUI. Never imports Qt (app/selftest.py adds the window's part).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_STEPS = 12
DEFAULT_TIMEOUT_S = 240.0
SCORED_TEXT = "User: What is 2 + 3?\n\nAssistant: 2 + 3 = 5. Happy to help!"
_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class SelftestFailed(Exception):
    """A step failed: `step` names it, the message says why."""

    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")
        self.step = step


@dataclass
class SelftestResult:
    version: str
    frozen: bool
    seconds: float = 0.0
    figures: dict[str, object] = field(default_factory=dict)

    def summary(self) -> str:
        f = self.figures
        where = "frozen app" if self.frozen else "from source"
        return (
            f"selftest ok: rlhf-workbench {self.version} ({where}): demo project {f['demo_pairs']} pairs; "
            f"imported {f['imported_pairs']} pairs in a reading process; trained the demo reward model "
            f"{f['steps']} steps in a child process (loss {f['loss']:.3f}, run {f['run_status']}); "
            f"scored a text: {f['score']:+.4f}; "
            + (f"window drawn ({f['window']}); " if "window" in f else "")
            + f"{self.seconds:.1f} s"
        )


def run_selftest(
    *,
    steps: int = DEFAULT_STEPS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workdir: str | Path | None = None,
    keep: bool = False,
    say: Callable[[str], None] | None = None,
) -> SelftestResult:
    """Run every step; returns the figures or raises SelftestFailed. `say` hears each step."""
    from . import __version__

    say = say or (lambda line: None)
    started = time.monotonic()
    deadline = started + timeout_s
    result = SelftestResult(version=__version__, frozen=bool(getattr(sys, "frozen", False)))
    base = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="rlhf-workbench-selftest-"))
    base.mkdir(parents=True, exist_ok=True)
    saved_env = {name: os.environ.get(name) for name in ("RLHF_WORKBENCH_HOME", *_OFFLINE)}
    # Children inherit the environment: the demo model is built, and runs are written, under base.
    os.environ["RLHF_WORKBENCH_HOME"] = str(base / "home")
    os.environ.update(_OFFLINE)
    try:
        _steps(result, base, steps, deadline, say)
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


def _steps(result: SelftestResult, base: Path, steps: int, deadline: float, say) -> None:
    from .demo import create_demo_project
    from .errors import WorkbenchError
    from .exporting import export_file
    from .importing import import_file
    from .project import Project

    f = result.figures
    step = "demo project"
    try:
        say("creating the demo project")
        demo = create_demo_project(base / "demo")
        with demo:
            f["demo_pairs"] = demo.store.counts()["pairs"]
            if not f["demo_pairs"]:
                raise SelftestFailed(step, "the demo project has no pairs")

            step = "import"
            say("exporting the judged pairs and importing them into a new project (reading process)")
            exported = base / "demo-pairs.hh-rlhf.jsonl"
            written = export_file(demo, exported, format="hh-rlhf").written
            with Project.create(base / "imported", name="imported") as imported:
                report = import_file(imported, exported, pipeline=True)
            f["imported_pairs"] = report.pairs_added
            if report.pairs_added != written or report.rejected_count:
                raise SelftestFailed(
                    step, f"wrote {written} pairs but imported {report.pairs_added} ({report.rejected_count} rejected)"
                )

            step = "training"
            say(f"training the demo reward model for {steps} steps in a child process")
            _train(demo, steps, deadline, f)

            step = "scoring"
            say("scoring a text with the checkpoint in a child process")
            f["score"] = _score(f["checkpoint"], deadline)
    except SelftestFailed:
        raise
    except WorkbenchError as exc:
        raise SelftestFailed(step, str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 -- any failure is the answer, with its type
        raise SelftestFailed(step, f"{type(exc).__name__}: {exc}") from exc


def _train(project, steps: int, deadline: float, figures: dict) -> None:
    from .events import Checkpoint, Failed, Finished, Metric
    from .reward.config import RewardConfig
    from .reward.method import REWARD_MODEL
    from .runs.child import ChildRunner
    from .runs.records import start_run
    from .runs.work import Work

    config = RewardConfig(
        base_model="demo",
        max_steps=steps,
        log_every=max(1, steps // 4),
        eval_every=steps,
        save_every=steps,
        device="cpu",
    ).validate()
    ctx = start_run(project, kind="reward", name="selftest", config=config)
    # Exactly what the GUI's JobController does: a spawned child that never imports this
    # program's main module (in the app, that module imports Qt).
    job = ChildRunner(Work.job(REWARD_MODEL.job, config, ctx), import_main=False)
    losses: list[float] = []
    checkpoints: list[str] = []
    result = None
    try:
        for event in job.events(timeout=max(1.0, deadline - time.monotonic())):
            if isinstance(event, Metric) and "train/loss" in event.values:
                losses.append(event.values["train/loss"])
            elif isinstance(event, Checkpoint):
                checkpoints.append(event.path)
            elif isinstance(event, (Finished, Failed)):
                result = event
    except Exception as exc:  # queue.Empty: the deadline passed
        job.kill()
        job.join(10.0)
        raise SelftestFailed("training", f"no end within the time limit ({type(exc).__name__})") from exc
    job.join(30.0)
    if isinstance(result, Failed):
        hint = f" ({result.hint})" if result.hint else ""
        raise SelftestFailed("training", f"{result.message}{hint}")
    if not isinstance(result, Finished) or result.stopped:
        raise SelftestFailed("training", f"the run ended without finishing: {result!r}")
    if not losses or not all(math.isfinite(v) for v in losses):
        raise SelftestFailed("training", f"no finite training loss was reported: {losses}")
    if not checkpoints:
        raise SelftestFailed("training", "the run reported no checkpoint")
    run = project.store.run(ctx.run_id)
    if run is None or run["status"] != "finished":
        raise SelftestFailed("training", f"the run is recorded as {run and run['status']!r}, not 'finished'")
    checkpoint = Path(checkpoints[-1])
    if not checkpoint.is_absolute():
        checkpoint = project.path / checkpoint
    if not (checkpoint / "model.safetensors").is_file() and not any(checkpoint.glob("*.safetensors")):
        raise SelftestFailed("training", f"{checkpoint} holds no safetensors weights")
    figures.update(steps=result.summary.get("steps", steps), loss=losses[-1], run_status=run["status"],
                   checkpoint=str(checkpoint), child_pid=job.pid)


def _score(checkpoint: str, deadline: float) -> float:
    from .events import Finished
    from .runs.child import ChildRunner
    from .runs.work import Work

    # As the Reward model tab's "Score a text": a fresh spawned child, so torch loads there.
    work = Work.task("rlhf_workbench.core.reward.remote:score_texts", checkpoint, [SCORED_TEXT], what="scoring")
    runner = ChildRunner(work, import_main=False)
    if not runner.join(max(1.0, deadline - time.monotonic())):
        runner.kill()
        raise SelftestFailed("scoring", "the scoring process did not answer in time")
    if not isinstance(runner.result, Finished):
        raise SelftestFailed("scoring", runner.result.message)
    scores = runner.result.value
    if len(scores) != 1 or not math.isfinite(scores[0]):
        raise SelftestFailed("scoring", f"expected one finite score, got {scores}")
    return float(scores[0])


def main(argv: list[str] | None = None) -> int:
    """`python -m rlhf_workbench.core.selftest [--steps N] [--verbose]`: the headless part alone."""
    import argparse

    multiprocessing.freeze_support()
    parser = argparse.ArgumentParser(prog="rlhf-workbench --selftest", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_and_report(args)


def add_arguments(parser) -> None:
    parser.add_argument("--selftest-steps", type=int, default=DEFAULT_STEPS, metavar="N",
                        help=f"selftest: optimizer steps of the demo reward model (default {DEFAULT_STEPS})")
    parser.add_argument("--selftest-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help=f"selftest: give up after this many seconds (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--selftest-keep", action="store_true",
                        help="selftest: keep the temporary folder and print where it is")
    parser.add_argument("--verbose", action="store_true", help="selftest: say each step on stderr")


def run_and_report(args, extra: Callable[[SelftestResult], None] | None = None) -> int:
    """Runs the selftest from parsed arguments; prints the one-line summary (stdout) or the
    failure (stderr). `extra` runs after the core steps (the app checks its window there)."""
    say = (lambda line: print(f"selftest: {line}", file=sys.stderr, flush=True)) if args.verbose else None
    workdir = Path(tempfile.mkdtemp(prefix="rlhf-workbench-selftest-")) if args.selftest_keep else None
    try:
        result = run_selftest(steps=args.selftest_steps, timeout_s=args.selftest_timeout, workdir=workdir,
                              keep=args.selftest_keep, say=say)
        if extra is not None:
            started = time.monotonic()
            extra(result)
            result.seconds += time.monotonic() - started
    except SelftestFailed as exc:
        print(f"selftest FAILED at {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:  # noqa: BLE001 -- whatever it is, it is the reason
        print(f"selftest FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    print(result.summary(), flush=True)
    if workdir is not None:
        print(f"selftest: files kept in {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
