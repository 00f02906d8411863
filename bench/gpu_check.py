"""The GPU path in one command: `make gpu-check` (or `.venv/bin/python bench/gpu_check.py`).

On a CUDA machine, in under 8 minutes:
1. every training method (reward model, SFT, DPO, PPO, RLOO, GRPO) runs a few steps on the GPU in
   bf16 and in fp16 (fp16 with its loss scaler), each plain and with LoRA and gradient
   checkpointing together, through the same records and runner as the app (start_run, execute);
2. a real CUDA out-of-memory: a reward run checkpoints, then the rest of the GPU's memory is taken
   and the next step runs out; the run must fail saying "out of cuda memory at step N" (not "a
   bug"), keep its checkpoint intact, and resume from it once the memory is back;
3. `bench/rm_vs_trl.py --gpu` and `bench/ppo_vs_trl.py --gpu`, one short repeat each.
It prints one table and, as its last line, one JSON object (`ok` says whether everything passed;
the exit status is 1 when not). Its table goes into bench/RESULTS.md.

Without CUDA it says so and exits 0: there is nothing to check here. Needs no network: the models
are the tiny ones the workbench builds itself, and the benches run offline.

    --dry-run-cpu   the training part on the CPU in fp32 (no OOM, no benches): checks this script
                    itself on a machine without a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUDGET_S = 8 * 60 - 20  # the whole check; what would start past it is reported as skipped
BENCH_TIMEOUT_S = 150
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# Small enough to train in seconds, big enough that the GPU kernels (and bf16/fp16 paths) are real.
MODEL = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
         "vocab_size": 2000}
# (method, command, settings the command fixes, settings for a few steps)
METHODS = (
    ("reward", "train-rm", None, ["max_steps=4", "batch_size=8", "eval_every=4", "save_every=4", "log_every=1"]),
    ("sft", "sft", {"method": "sft"}, ["max_steps=4", "batch_size=8", "eval_every=4", "save_every=4", "log_every=1"]),
    ("dpo", "dpo", {"method": "dpo"}, ["max_steps=4", "batch_size=8", "eval_every=4", "save_every=4", "log_every=1"]),
    ("ppo", "rl", {"method": "ppo"}, ["total_episodes=32", "batch_size=16", "max_new_tokens=16", "save_every=2",
                                      "num_mini_batches=2", "num_ppo_epochs=1", "sample_every=1000"]),
    ("rloo", "rl", {"method": "rloo"}, ["total_episodes=32", "batch_size=16", "num_generations=4",
                                        "max_new_tokens=16", "save_every=2", "sample_every=1000"]),
    ("grpo", "rl", {"method": "grpo"}, ["total_episodes=32", "batch_size=16", "num_generations=4",
                                        "max_new_tokens=16", "save_every=2", "sample_every=1000"]),
)
VARIANTS = (("plain", []), ("lora+gc", ["lora=true", "gradient_checkpointing=true"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run-cpu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.update(OFFLINE)
    began = time.monotonic()
    import torch

    if not torch.cuda.is_available() and not args.dry_run_cpu:
        print(f"no CUDA: torch {torch.__version__} finds no CUDA GPU here, so there is nothing to check "
              "(run `make gpu-check` on a machine with an NVIDIA GPU)")
        print(json.dumps({"cuda": False, "ok": True, "checked": []}))
        return 0
    device = "cpu" if args.dry_run_cpu else "cuda"
    precisions = ("fp32",) if args.dry_run_cpu else ("bf16", "fp16")
    name = "cpu (dry run)" if args.dry_run_cpu else torch.cuda.get_device_name()
    print(f"gpu-check on {name}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        project_path, model = _prepare(work)
        for method, command, fixed, steps in METHODS:
            for precision in precisions:
                for variant, settings in VARIANTS:
                    label = f"{method} {precision} {variant}"
                    if time.monotonic() - began > BUDGET_S:
                        rows.append({"check": label, "ok": None, "note": "skipped: out of time"})
                        continue
                    overrides = [f"device={device}", f"precision={precision}", "seed=0", *steps, *settings,
                                 *_models(method, model, project_path)]
                    rows.append({"check": label, **_train(project_path, command, fixed, overrides, label)})
                    print(_line(rows[-1]), flush=True)
        if not args.dry_run_cpu:
            rows.append({"check": "out of memory", **_timed(lambda: _out_of_memory(project_path, model), began)})
            print(_line(rows[-1]), flush=True)
            for bench, flags in (("rm_vs_trl.py", ["--pairs", "256"]), ("ppo_vs_trl.py", ["--episodes", "32"])):
                rows.append({"check": f"bench/{bench} --gpu",
                             **_timed(lambda b=bench, f=flags: _bench(b, f, began), began)})
                print(_line(rows[-1]), flush=True)

    seconds = time.monotonic() - began
    ok = all(row["ok"] is not False for row in rows) and seconds < BUDGET_S + 20
    print()
    print(_table(rows, name, seconds))
    print(json.dumps({"cuda": not args.dry_run_cpu, "device": name, "ok": ok, "seconds": round(seconds, 1),
                      "checked": rows}))
    return 0 if ok else 1


# -- the training runs -------------------------------------------------------------------------


def _prepare(work: Path) -> tuple[Path, Path]:
    """The demo project (labelled pairs and prompts) and one tiny causal LM, which serves as the
    base of the reward model, the policy, and (as a sequence classifier) PPO's reward model."""
    from rlhf_workbench.core.demo import create_demo_project
    from rlhf_workbench.core.models import build_demo_model

    create_demo_project(work / "project").close()
    return work / "project", build_demo_model(work / "model", MODEL)


def _models(method: str, model: Path, project_path: Path) -> list[str]:
    if method == "reward":
        return [f"base_model={model}"]
    if method in ("sft", "dpo"):
        return [f"policy={model}"]
    return [f"policy={model}", f"reward_model={model}"]


def _train(project_path: Path, command: str, fixed, overrides: list[str], label: str) -> dict:
    """One run through the app's own records and runner, in this process; its outcome."""
    import torch

    from rlhf_workbench.core.events import Finished
    from rlhf_workbench.core.methods import METHODS as ALL
    from rlhf_workbench.core.project import Project
    from rlhf_workbench.core.runs.records import start_run
    from rlhf_workbench.core.runs.terminal import config_from_options
    from rlhf_workbench.core.runs.work import Work, execute

    method = next(m for m in ALL if m.command == command or command in m.aliases)
    started = time.perf_counter()
    try:
        config = config_from_options(method, None, overrides, fixed)
        with Project.open(project_path) as project:
            ctx = start_run(project, kind=method.run_kind(config), name=label, config=config)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        result = execute(Work.job(method.job, config, ctx), lambda event: None, lambda: False)
    except Exception as exc:  # noqa: BLE001 -- reported in the table, the check goes on
        return {"ok": False, "seconds": round(time.perf_counter() - started, 1),
                "note": f"{type(exc).__name__}: {exc}".splitlines()[0][:160]}
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    seconds = round(time.perf_counter() - started, 1)
    if not isinstance(result, Finished):
        return {"ok": False, "seconds": seconds, "note": result.message.splitlines()[0][:160]}
    figures = {k: v for k, v in result.summary.items() if isinstance(v, float)}
    shown = next(((k, v) for k, v in figures.items() if "loss" in k or "score" in k), None)
    note = f"{shown[0]} {shown[1]:.4g}" if shown else ""
    return {"ok": True, "seconds": seconds, "peak_mb": round(peak) if peak is not None else None, "note": note}


# -- a real out-of-memory ---------------------------------------------------------------------


def _out_of_memory(project_path: Path, model: Path) -> dict:
    """A reward run checkpoints at step 2; then everything free on the GPU is taken, and the next
    step runs out of memory. The run must fail saying so, keep step 2 whole, and resume from it."""
    import torch

    from rlhf_workbench.core.events import Checkpoint, Failed, Finished
    from rlhf_workbench.core.methods import METHODS as ALL
    from rlhf_workbench.core.models import damaged_files
    from rlhf_workbench.core.project import Project
    from rlhf_workbench.core.runs.records import resume_run, start_run
    from rlhf_workbench.core.runs.terminal import config_from_options
    from rlhf_workbench.core.runs.work import Work, execute

    method = next(m for m in ALL if m.command == "train-rm")
    config = config_from_options(method, None, [
        f"base_model={model}", "device=cuda", "precision=bf16", "max_steps=6", "batch_size=8", "save_every=2",
        "eval_every=1000", "log_every=1", "keep_last=2"])
    with Project.open(project_path) as project:
        ctx = start_run(project, kind="reward", name="out of memory", config=config)
    ballast: list[torch.Tensor] = []

    def sink(event) -> None:
        if isinstance(event, Checkpoint) and not ballast:
            torch.cuda.empty_cache()  # what the run cached goes back, so the next step must ask again
            free, _ = torch.cuda.mem_get_info()
            while free > 8 * 2**20:
                try:
                    ballast.append(torch.empty(max(free - 4 * 2**20, 2**20), dtype=torch.uint8, device="cuda"))
                except torch.cuda.OutOfMemoryError:
                    break
                free, _ = torch.cuda.mem_get_info()

    result = execute(Work.job(method.job, config, ctx), sink, lambda: False)
    ballast.clear()
    torch.cuda.empty_cache()
    problems = []
    if not isinstance(result, Failed):
        problems.append(f"the run did not fail ({type(result).__name__})")
    elif "out of cuda memory" not in result.message or "bug" in (result.hint or ""):
        problems.append(f"message: {result.message.splitlines()[0][:120]}")
    with Project.open(project_path) as project:
        run = project.store.run(ctx.run_id)
        kept = project.store.checkpoints(ctx.run_id)
        if run["status"] != "failed":
            problems.append(f"status {run['status']}")
        if not kept or kept[-1]["step"] != 2:
            problems.append(f"checkpoints kept: {[c['step'] for c in kept]}")
        elif damaged_files(project.path / kept[-1]["path"]):
            problems.append("the kept checkpoint is damaged")
        again = resume_run(project, ctx.run_id)
    resumed = execute(Work.job(method.job, config, again), lambda event: None, lambda: False)
    if not isinstance(resumed, Finished) or resumed.summary.get("steps") != 6:
        problems.append(f"resume: {getattr(resumed, 'message', resumed.summary if isinstance(resumed, Finished) else '')}")
    message = result.message.splitlines()[0] if isinstance(result, Failed) else ""
    return {"ok": not problems, "note": "; ".join(problems) or f"{message[:90]}; resumed from step 2"}


# -- the GPU benches ---------------------------------------------------------------------------


def _bench(script: str, flags: list[str], began: float) -> dict:
    left = BUDGET_S - (time.monotonic() - began)
    if left < 30:
        return {"ok": None, "note": "skipped: out of time"}
    command = [sys.executable, str(HERE / script), "--gpu", "--repeats", "1", *flags]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=min(BENCH_TIMEOUT_S, left),
                              env={**os.environ, **OFFLINE})
    except subprocess.TimeoutExpired:
        return {"ok": False, "note": f"did not finish in {min(BENCH_TIMEOUT_S, left):.0f} s"}
    lines = done.stdout.strip().splitlines()
    try:
        figures = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "note": f"exit {done.returncode}: {tail[:150]}"}
    # The speed bound is the CPU anchor's; on a GPU the bench reports, it does not judge (exit 1 is
    # "slower than TRL", which this check records without failing on).
    shown = {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    note = ", ".join(f"{k} {v:.3g}" for k, v in list(shown.items())[:4])
    return {"ok": True, "note": note + ("" if done.returncode == 0 else f" (bench exit {done.returncode})")}


def _timed(check, began: float) -> dict:
    if time.monotonic() - began > BUDGET_S:
        return {"ok": None, "note": "skipped: out of time"}
    started = time.perf_counter()
    try:
        outcome = check()
    except Exception as exc:  # noqa: BLE001 -- reported in the table
        traceback.print_exc()
        outcome = {"ok": False, "note": f"{type(exc).__name__}: {exc}".splitlines()[0][:160]}
    return {"seconds": round(time.perf_counter() - started, 1), **outcome}


# -- the report --------------------------------------------------------------------------------


def _status(ok) -> str:
    return "ok" if ok else "skipped" if ok is None else "FAILED"


def _line(row: dict) -> str:
    peak = f"{row['peak_mb']:,} MB" if row.get("peak_mb") is not None else ""
    seconds = f"{row['seconds']:.1f} s" if row.get("seconds") is not None else ""
    return f"  {row['check']:<26} {_status(row['ok']):<8} {seconds:>8} {peak:>10}  {row.get('note', '')}"


def _table(rows: list[dict], device: str, seconds: float) -> str:
    head = f"  {'check':<26} {'result':<8} {'time':>8} {'peak mem':>10}  note"
    passed = sum(row["ok"] is True for row in rows)
    return "\n".join([f"gpu-check on {device}: {passed} of {len(rows)} passed in {seconds:.0f} s",
                      head, "  " + "-" * (len(head) + 30), *(_line(row) for row in rows)])


if __name__ == "__main__":
    sys.exit(main())
