"""What the benchmarks share: running one side of a comparison in a fresh process, profiling it,
and their GPU mode.

`--gpu` (rm_vs_trl.py, ppo_vs_trl.py) runs the same comparison on a CUDA GPU at bf16 autocast
(fp32 master weights on both sides) with a ~100M-parameter Llama instead of the 4-layer one. The
parent sets BENCH_GPU=1 for its children; `gpu_mode()` reads it there.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import subprocess
import sys
from pathlib import Path


def child_env(work: Path, threads: int, **extra: str) -> dict[str, str]:
    """A side's process environment: the torch threads the comparison is specified at, nothing
    fetched (HF_HOME inside the bench's folder), and one hash seed for every run."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                TOKENIZERS_PARALLELISM="false", HF_HOME=str(work / "hf-home"), PYTHONHASHSEED="0", **extra)


def run_child(side: str, command: list[str], env: dict[str, str], *, profile: bool) -> tuple[str, str, dict]:
    """Runs one side in a fresh process (neither side warms the other's caches); its stdout, its
    stderr (printed when profiling: the profiles go there) and the load average before and after.
    Other work on the machine slows both sides unevenly: with 2 threads on 2 busy cores each
    parallel op waits for a time slice, so a busy machine punishes many small ops the most, and the
    load is reported beside every run."""
    load_before = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if profile:
        print(done.stderr, file=sys.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{side} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    load = {"load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
    return done.stdout, done.stderr, load


class profiled:  # noqa: N801 -- read as a function: `with profiled(enabled):`
    """cProfile and torch.profiler around the training call, printed to stderr (the parent shows it)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        if self.enabled:
            import torch.profiler

            self.cprofile = cProfile.Profile()
            self.torch = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.torch.__enter__()
            self.cprofile.enable()
        return self

    def __exit__(self, *exc):
        if not self.enabled:
            return False
        self.cprofile.disable()
        self.torch.__exit__(*exc)
        text = io.StringIO()
        pstats.Stats(self.cprofile, stream=text).sort_stats("cumulative").print_stats(40)
        pstats.Stats(self.cprofile, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue(), file=sys.stderr)
        print(self.torch.key_averages().table(sort_by="self_cpu_time_total", row_limit=30), file=sys.stderr)
        return False


# ~100M parameters with the 4,096-token vocabulary: 14 layers of 7.1M (attention 4 x 768^2, SwiGLU
# MLP 3 x 768 x 2048) and 3.1M of embeddings.
GPU_MODEL = {"hidden_size": 768, "num_hidden_layers": 14, "num_attention_heads": 12, "num_key_value_heads": 12,
             "intermediate_size": 2048}
GPU_ENV = "BENCH_GPU"

# Dense bf16 tensor-core peaks (no sparsity), from the vendors' data sheets, by device-name fragment.
_BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4), ("A100", 312.0),
                     ("L40S", 362.0), ("A10G", 70.0), ("L4", 121.0), ("RTX 4090", 165.2), ("RTX 3090", 71.0))


def gpu_mode() -> bool:
    return os.environ.get(GPU_ENV) == "1"


def enter_gpu_mode() -> None:
    """In the parent, before preparing: refuses without a GPU, then marks the children's mode."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--gpu: this torch finds no CUDA GPU")
    os.environ[GPU_ENV] = "1"


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if gpu_mode() else "cpu"


def bf16_peak_flops(name: str) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None when it is not in the table."""
    for fragment, tflops in _BF16_PEAK_TFLOPS:
        if fragment in name:
            return tflops * 1e12
    return None


def training_flops(model, tokens: int, attention_row_squares: int) -> float:
    """Model FLOPs of training (forward + backward) on `tokens` tokens, padding included: 6 per
    matrix parameter per token, plus attention's 12 x layers x hidden per (query, key) pair, summed
    over rows as width^2 (PaLM's MFU accounting; embeddings are look-ups, not products)."""
    config = model.config
    matrix = sum(p.numel() for name, p in model.named_parameters() if p.ndim == 2 and "embed" not in name)
    return 6.0 * matrix * tokens + 12.0 * config.num_hidden_layers * config.hidden_size * attention_row_squares


def cpu_peak_bytes(step) -> int:
    """The most CPU memory held at once by tensors allocated while `step()` runs, from torch's
    profiler's allocation events (what torch.cuda.max_memory_allocated gives on a GPU; the CPU
    allocator keeps no such figure). tests/test_memory_estimate.py and memory_check.py measure with it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return peak
