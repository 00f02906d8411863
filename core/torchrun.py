"""A run on several local GPUs from the app: the command a person would type, under torchrun.

The app runs a job in a child process (core.runners.ChildJob). With more than one GPU chosen it
starts `TorchrunJob` instead, which launches

    python -m torch.distributed.run --standalone --nproc_per_node=N \\
        -m rlhf_workbench.core.cli train-rm|ppo PROJECT --app-run RUN_ID --events

the launch the README's "Several GPUs" describes, on the run the app already created (or with
--resume RUN_ID). Rank 0 executes and records the run as always and prints each event as one JSON
line (events.event_line); a reader thread turns them back into events for the app, and keeps
everything else the launch prints in the run folder's torchrun.log.

Stop is SIGTERM to torchrun, which passes it to every rank: they stop together after the update
in progress and rank 0 writes a checkpoint (core/terminal_runs.py). Kill ends the whole group.

This module never imports torch: the window asks `visible_gpu_count` while it starts.
"""

from __future__ import annotations

import collections
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .events import Event, Failed, Finished, Log, Metric, Progress, Sink, parse_event_line
from .jobs import JobFailed, RunContext, error_text
from .runners import STOP_GRACE_S, record_end

# The jobs that have a command; strings, since importing the jobs would import torch.
COMMANDS = {
    "rlhf_workbench.core.reward.train:run": "train-rm",
    "rlhf_workbench.core.ppo.train:run": "ppo",
}
LOG_NAME = "torchrun.log"
# torchrun gives its ranks this long between its SIGTERM and its SIGKILL.
TORCHRUN_GRACE_S = 30.0
_TAIL_LINES = 40


@functools.lru_cache(maxsize=1)
def visible_gpu_count() -> int:
    """The NVIDIA GPUs this process may use, without importing torch (and so without CUDA): as
    many as CUDA_VISIBLE_DEVICES names when it is set, else as many as the driver lists (its
    /proc folder on Linux, read in microseconds while the window starts; `nvidia-smi -L` elsewhere)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and not d.strip().startswith("-")])
    driver = Path("/proc/driver/nvidia/gpus")
    if driver.is_dir():
        return sum(1 for _ in driver.iterdir())
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listed.splitlines() if line.startswith("GPU "))


def can_launch() -> bool:
    """Whether this program can start torchrun: not from a frozen app, whose executable is no
    Python interpreter that `-m torch.distributed.run` could be given to."""
    return not getattr(sys, "frozen", False)


def launch_command(job_path: str, ctx: RunContext, processes: int) -> list[str]:
    command = COMMANDS.get(job_path)
    if command is None:
        raise JobFailed(f"{job_path} cannot run on several GPUs (only reward-model training and PPO can)")
    run = ["--resume", ctx.run_id] if ctx.resume else ["--app-run", ctx.run_id]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "rlhf_workbench.core.cli", command, str(ctx.project_path), *run, "--events",
    ]


class TorchrunJob:
    """A job on `processes` ranks of this machine, with ChildJob's interface (on_event is called
    from a reader thread; `result` is the final Finished or Failed)."""

    def __init__(self, job_path: str, ctx: RunContext, processes: int, on_event: Sink | None = None):
        if not can_launch():
            raise JobFailed("this build of the app cannot start torchrun",
                            hint="several GPUs need the workbench installed with pip (see the README)")
        self.ctx = ctx
        self.result: Finished | Failed | None = None
        self.last_step: int | None = None
        self._on_event = on_event or (lambda event: None)
        self._done = threading.Event()
        self._ended_by: str | None = None
        self._insister: threading.Thread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._log = open(ctx.run_dir / LOG_NAME, "a", encoding="utf-8")  # noqa: SIM115 -- closed by the reader
        try:
            self._process = subprocess.Popen(
                launch_command(job_path, ctx, processes), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace", bufsize=1,
                start_new_session=True,  # its own group: Kill ends torchrun and every rank together
            )
        except OSError as exc:
            self._log.close()
            failed = Failed(f"Could not start torchrun: {exc}")
            record_end(ctx, "failed", error_text(failed))
            raise JobFailed(failed.message) from exc
        self._reader = threading.Thread(target=self._read, name=f"{ctx.run_id} torchrun", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask every rank to checkpoint and stop; end them all if they have not within grace_s
        plus torchrun's own grace. Returns at once."""
        if self._done.is_set():
            return
        self._signal(signal.SIGTERM, group=False)  # torchrun passes it on to the ranks
        if self._insister is None:
            self._insister = threading.Thread(target=self._insist, args=(grace_s + TORCHRUN_GRACE_S,), daemon=True)
            self._insister.start()

    def kill(self) -> None:
        if not self._done.is_set():
            self._ended_by = self._ended_by or "kill"
            self._signal(signal.SIGKILL, group=True)

    def join(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        self.stop(grace_s=timeout)
        if not self.join(timeout + TORCHRUN_GRACE_S):
            self.kill()
            self.join(10.0)
        return self._ended_by is None

    # -- supervising ---------------------------------------------------------------------------

    def _insist(self, wait_s: float) -> None:
        try:
            self._process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            self._ended_by = "stop"
            self._signal(signal.SIGKILL, group=True)

    def _signal(self, sig: int, *, group: bool) -> None:
        try:
            if group:
                os.killpg(self._process.pid, sig)
            else:
                self._process.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass  # already gone

    def _deliver(self, event: Event) -> None:
        if isinstance(event, (Metric, Progress)):
            self.last_step = event.step
        if isinstance(event, (Finished, Failed)):
            self.result = event
        self._on_event(event)

    def _read(self) -> None:
        final: Finished | Failed | None = None
        try:
            for line in self._process.stdout:
                event = parse_event_line(line)
                if event is None:
                    self._log.write(line)
                    self._log.flush()
                    self._tail.append(line.rstrip())
                    if line.startswith("error:"):  # a rank says why it failed
                        self._deliver(Log(line.strip(), "warning"))
                elif isinstance(event, (Finished, Failed)):
                    final = event  # delivered once every rank is gone
                else:
                    self._deliver(event)
            self._process.wait()
            self._signal(signal.SIGKILL, group=True)  # no rank outlives the launch
            self._deliver(final if final is not None else self._died())
        except Exception as exc:  # noqa: BLE001 -- never leave a listener waiting for an end that will not come
            self._deliver(Failed(f"Lost track of the torchrun launch: {type(exc).__name__}: {exc}"))
        finally:
            self._log.close()
            self._done.set()

    def _died(self) -> Failed:
        code = self._process.returncode
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        errors = [line for line in self._tail if line.startswith("error:")]
        log = self.ctx.run_dir / LOG_NAME
        if self._ended_by is not None:
            message, status = f"The run's ranks were ended before they finished ({how})", "cancelled"
            hint = "Work since the last checkpoint is lost; the run can be resumed from that checkpoint."
        else:
            message, status = f"The torchrun launch ended before the run did ({how})", "failed"
            hint = "; ".join(errors[-2:]) if errors else f"what it printed is in {log}"
        failed = Failed(message, hint=hint, step=self.last_step)
        record_end(self.ctx, status, error_text(failed))
        return failed


def run_on_ranks(job_path: str, config: Any, ctx: RunContext, processes: int, on_event: Sink | None = None):
    """Start the job on `processes` local ranks (a ChildJob when one is enough)."""
    if processes <= 1:
        from .runners import run_in_child

        return run_in_child(job_path, config, ctx, on_event, import_main=False)
    return TorchrunJob(job_path, ctx, processes, on_event)
