"""Tiny jobs for the runner tests. Importable by a spawned child: spawn passes sys.path, which
holds tests/ under pytest. Named by path as "job_fixtures:count" and so on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlhf_workbench.core.errors import JobFailed
from rlhf_workbench.core.events import Checkpoint, Log, Metric, Progress, Sample


@dataclass
class CountConfig:
    steps: int = 5
    sleep_s: float = 0.01
    checkpoint_every: int = 0  # 0: never
    fail_at: int | None = None  # raise JobFailed at this step
    note: str | None = None  # None values are left out of config.toml
    tags: list[str] = field(default_factory=lambda: ["tiny"])


def _checkpoint(ctx, step: int) -> Path:
    # As real jobs do: written under a temporary name, renamed into place when complete.
    final = ctx.run_dir / "checkpoints" / f"step-{step}"
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "state.txt").write_text(str(step))
    os.replace(tmp, final)
    return final


def count(config: CountConfig, ctx, sink, stop) -> dict:
    """Count steps, emitting every kind of event; checkpoint when asked to stop."""
    start = (ctx.resume_step + 1) if ctx.resume_step is not None else 0
    sink(Log(f"counting from {start} to {config.steps}"))
    step = start
    for step in range(start, config.steps):
        if config.fail_at is not None and step == config.fail_at:
            raise JobFailed(f"step {step} went wrong", hint="try fewer steps", step=step)
        sink(Metric(step, {"train/loss": 1.0 / (step + 1), "train/accuracy": step / config.steps}))
        if step % 2 == 0:
            sink(Sample(step, f"prompt {step}", f"response <b>{step}</b>", score=float(step)))
        sink(Progress(step + 1, config.steps, f"step {step + 1}"))
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            sink(Checkpoint(step, str(_checkpoint(ctx, step))))
        if stop():
            sink(Checkpoint(step, str(_checkpoint(ctx, step))))
            return {"steps": step + 1, "stopped": True}
        time.sleep(config.sleep_s)
    return {"steps": config.steps, "final_loss": 1.0 / config.steps, "started_at_step": start}


def understood_failure(config, ctx, sink, stop) -> dict:
    sink(Metric(0, {"train/loss": float("nan")}))
    raise JobFailed("The loss became NaN at step 0", hint="Lower the learning rate")


def bug(config, ctx, sink, stop) -> dict:
    sink(Metric(0, {"train/loss": 1.0}))
    raise ValueError("boom")


def deaf(config, ctx, sink, stop) -> dict:
    """Ignores stop; starts a helper process (as a data loader or a rank would) and reports its pid."""
    helper = subprocess.Popen(["sleep", "60"])
    sink(Log(f"helper {helper.pid}"))
    for step in range(10_000):
        sink(Metric(step, {"train/loss": 1.0}))
        time.sleep(0.02)
    return {}


def dies(config: CountConfig, ctx, sink, stop) -> dict:
    """Dies without a word at step 2: by exit code (fail_at set) or SIGKILL, leaving a helper."""
    helper = subprocess.Popen(["sleep", "60"])
    sink(Log(f"helper {helper.pid}"))
    for step in range(config.steps):
        sink(Metric(step, {"train/loss": 1.0}))
        if step == 2:
            time.sleep(0.2)  # let the events reach the parent, as they would in a longer run
            if config.fail_at is not None:
                os._exit(config.fail_at)
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(config.sleep_s)
    return {}


def qt_loaded(config, ctx, sink, stop) -> dict:
    """Whether this process has loaded Qt (a training child must not)."""
    return {"qt": any(name.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph") for name in sys.modules)}


def nap(seconds: float, *, sink, stop) -> float:
    """A task (unrecorded work): says it started, then naps until `seconds` pass or it is stopped."""
    sink(Progress(0, 1, f"napping in {os.getpid()}"))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stop():
            from rlhf_workbench.core.errors import Stopped

            raise Stopped("woken up; nothing was done")
        time.sleep(0.01)
    return seconds


def deaf_nap(seconds: float, *, sink, stop) -> float:
    """A task that never looks at stop (as a child still importing torch when asked cannot)."""
    sink(Progress(0, 1, f"napping in {os.getpid()}, deaf"))
    time.sleep(seconds)
    return seconds


@dataclass
class BigCheckpointConfig:
    steps: int = 2
    weight_bytes: list[int] = field(default_factory=lambda: [1_000, 50_000_000])  # per step


def big_checkpoints(config: BigCheckpointConfig, ctx, sink, stop) -> dict:
    """Writes real checkpoints (core/training/checkpoints.py) whose weights are `weight_bytes` at
    each step: on a small disk, one of them runs out of room."""
    import torch

    from rlhf_workbench.core.training.checkpoints import save_checkpoint

    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    for step, size in enumerate(config.weight_bytes[: config.steps], start=1):
        sink(Metric(step, {"train/loss": 1.0 / step}))

        def write_weights(folder: Path, size=size) -> None:
            with open(folder / "model.safetensors", "wb") as f:
                for _ in range(0, size, 1 << 16):
                    f.write(b"\0" * (1 << 16))

        folder = save_checkpoint(ctx.run_dir, write_weights=write_weights, optimizer=optimizer, scheduler=scheduler,
                                 scaler=None, state={"step": step}, best=False, keep_last=3)
        sink(Checkpoint(step, str(folder)))
    return {"steps": config.steps}


def killed_process(project_path, config, ctx, *, job: str = "job_fixtures:count", at_step: int = 1) -> None:
    """Executes `job` in a process of its own that SIGKILLs itself once it reports the checkpoint at
    `at_step`, with nobody supervising it: what the app and its child killed together leave behind.
    `config` is rebuilt there from its repr (a dataclass of job_fixtures or of a method's config)."""
    script = (
        "import os, signal, sys\n"
        "from pathlib import PosixPath, WindowsPath\n"
        "from job_fixtures import CountConfig\n"
        "from rlhf_workbench.core.reward.config import RewardConfig\n"
        "from rlhf_workbench.core.events import Checkpoint\n"
        "from rlhf_workbench.core.runs.records import RunContext\n"
        "from rlhf_workbench.core.runs.work import Work, execute\n"
        "def sink(event):\n"
        f"    if isinstance(event, Checkpoint) and event.step == {at_step}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"execute(Work.job({job!r}, {config!r}, {ctx!r}), sink, lambda: False)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=300)
    assert done.returncode == -signal.SIGKILL, done
