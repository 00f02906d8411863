"""A run on several local GPUs from the app: the command a person would type, under torchrun.

The app runs a job in a child process (ChildRunner). With more than one GPU chosen it starts
`TorchrunRunner` instead, which launches

    python -m torch.distributed.run --standalone --nproc_per_node=N \\
        -m rlhf_workbench.core.cli COMMAND PROJECT --app-run RUN_ID --events

the launch the README's "Several GPUs" describes, on the run the app already created (or with
--resume RUN_ID). Rank 0 executes and records the run as always and prints each event as one JSON
line (events.event_line); a reader thread turns them back into events for the app, and keeps
everything else the launch prints in the run folder's torchrun.log. It is supervised as a child is
(ProcessRunner): the same stop, kill, join and report of an unexpected end.

Stop is SIGTERM to torchrun, which passes it to every rank: they stop together after the update
in progress and rank 0 writes a checkpoint (core/runs/terminal.py). Kill ends the whole group.

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

from ..errors import JobFailed
from ..events import Failed, Finished, Log, Sink, parse_event_line
from .child import _KILL, STOP_GRACE_S, ProcessRunner, _live
from .records import RunContext, error_text, record_end
from .work import Work

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


def launch_command(command: str, ctx: RunContext, processes: int) -> list[str]:
    """The torchrun launch of the CLI's training `command` (train-rm, ppo, ...) on the run `ctx`."""
    run = ["--resume", ctx.run_id] if ctx.resume else ["--app-run", ctx.run_id]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "rlhf_workbench.core.cli", command, str(ctx.project_path), *run, "--events",
    ]


class TorchrunRunner(ProcessRunner):
    """The job of `ctx` on `processes` ranks of this machine, through the CLI's `command`."""

    def __init__(self, command: str, ctx: RunContext, processes: int, on_event: Sink | None = None):
        if not can_launch():
            raise JobFailed("this build of the app cannot start torchrun",
                            hint="several GPUs need the workbench installed with pip (see the README)")
        super().__init__(Work(command, run=ctx, what="torchrun launch"), on_event)
        self.ctx = ctx
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._log = open(ctx.run_dir / LOG_NAME, "a", encoding="utf-8")  # noqa: SIM115 -- closed by the reader
        try:
            self._process = subprocess.Popen(
                launch_command(command, ctx, processes), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace", bufsize=1,
                start_new_session=True,  # its own group: Kill ends torchrun and every rank together
            )
        except OSError as exc:
            self._log.close()
            failed = Failed(f"Could not start torchrun: {exc}")
            record_end(ctx, "failed", error_text(failed))
            raise JobFailed(failed.message) from exc
        _live.add(self)
        self._reader = threading.Thread(target=self._read, name=f"{ctx.run_id} torchrun", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask every rank to checkpoint and stop; end them all if they have not within grace_s
        plus torchrun's own grace. Returns at once."""
        super().stop(grace_s)

    def _ask_to_stop(self) -> None:
        self._signal(signal.SIGTERM, group=False)  # torchrun passes it on to the ranks

    def _insist_extra_s(self) -> float:
        return TORCHRUN_GRACE_S

    def _insist(self, grace_s: float) -> None:
        # torchrun already sends its ranks SIGTERM, then SIGKILL after its own grace.
        if not self._wait_for_exit(grace_s + TORCHRUN_GRACE_S):
            self._ended_by = "stop"
            self._signal_group(_KILL)

    def _wait_for_exit(self, timeout: float) -> bool:
        try:
            self._process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _exit_code(self) -> int | None:
        return self._process.returncode

    def _signal_group(self, sig: int) -> None:
        self._signal(sig, group=True)

    def _signal(self, sig: int, *, group: bool) -> None:
        try:
            if group:
                os.killpg(self._process.pid, sig)
            else:
                self._process.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass  # already gone

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
            self._signal_group(_KILL)  # no rank outlives the launch
        except Exception as exc:  # noqa: BLE001 -- never leave a listener waiting for an end that will not come
            final = Failed(f"Lost track of the torchrun launch: {type(exc).__name__}: {exc}")
        finally:
            self._log.close()
            self._end(final)

    def _asked_end(self, how: str) -> tuple[str, str | None]:
        return (f"The run's ranks were ended before they finished ({how})",
                "Work since the last checkpoint is lost; the run can be resumed from that checkpoint.")

    def _unexpected_end(self, how: str, signame: str | None) -> tuple[str, str | None]:
        errors = [line for line in self._tail if line.startswith("error:")]
        hint = "; ".join(errors[-2:]) if errors else f"what it printed is in {self.ctx.run_dir / LOG_NAME}"
        return f"The torchrun launch ended before the run did ({how})", hint
