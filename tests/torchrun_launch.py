"""Launching the CLI under torchrun from tests, and killing one of its ranks mid-run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone")
CLI = ("-m", "rlhf_workbench.core.cli")


@dataclass
class Killed:
    output: str  # everything the launch printed, stdout and stderr together
    victim_pid: int
    gone_s: float  # from the kill until torchrun and every rank had exited
    returncode: int


def kill_rank_1_after(args: list[str], env: dict[str, str], line_start: str) -> Killed:
    """Launches `torchrun ... -m rlhf_workbench.core.cli ARGS` on two ranks, SIGKILLs rank 1 once a
    line starting with `line_start` is printed, and waits (60 s at most) for every process to end."""
    psutil = pytest.importorskip("psutil")
    launcher = subprocess.Popen([*TORCHRUN, *CLI, *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    output = []
    try:
        for line in launcher.stdout:
            output.append(line)
            if line.startswith(line_start):
                break
        ranks = [p for p in psutil.Process(launcher.pid).children(recursive=True) if "rlhf_workbench" in " ".join(p.cmdline())]
        assert len(ranks) == 2, ranks
        victim = next(p for p in ranks if p.environ().get("RANK") == "1")
        victim.send_signal(signal.SIGKILL)
        started = time.perf_counter()
        output.append(launcher.stdout.read())
        launcher.wait(timeout=60)
        psutil.wait_procs(ranks, timeout=10)
        gone = time.perf_counter() - started
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ranks), "a rank outlived the launch"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    return Killed("".join(output), victim.pid, gone, launcher.returncode)
