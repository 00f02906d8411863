"""Where training runs and in what precision: the device, autocast, threads, peak memory.

Refusals are ConfigErrors naming the setting, raised before any model is loaded. Every training
method's loop takes its device, precision and threads from here.
"""

from __future__ import annotations

import contextlib
import sys

import torch

from ..errors import ConfigError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """'auto' is a CUDA GPU, else Apple's MPS, else the CPU; a named device must exist."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        built = "built without CUDA" if torch.version.cuda is None else "finds no CUDA GPU"
        raise ConfigError(f"device: cuda was asked for, but this torch ({torch.__version__}) {built}; use auto or cpu")
    if name == "mps" and not mps:
        raise ConfigError("device: mps was asked for, but Apple's MPS is not available here; use auto or cpu")
    return torch.device(name)


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision: fp16 needs a CUDA GPU (training on {device.type}); use bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision: this GPU has no bf16; use fp16 or fp32")


def autocast(precision: str, device: torch.device):
    """Mixed precision for the forward pass; the master weights stay float32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


# Below this many parameters a model's matrices are too small for several CPU threads to help,
# and the threads' waiting costs much when other programs share the cores: the demo model
# (0.2M) ran 5x slower on 2 threads than on 1 on a busy 2-core machine.
SMALL_MODEL_PARAMS = 20_000_000


@contextlib.contextmanager
def cpu_threads(requested: int | None, device: torch.device, n_params: int):
    """Sets torch's CPU threads for a training run and puts the previous number back after.

    `requested` None: one thread for a small model on the CPU, else torch's default.
    """
    before = torch.get_num_threads()
    n = requested
    if n is None and device.type == "cpu" and n_params < SMALL_MODEL_PARAMS:
        n = 1
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


# mallopt's parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


@contextlib.contextmanager
def freed_memory_kept(device: torch.device):
    """While training on a CPU with glibc, freed memory stays with the process for the next step.

    glibc's malloc serves blocks over its mmap threshold (which grows with use, up to 32 MB)
    from fresh pages and unmaps them when they are freed, so every step's bigger tensors are
    page-faulted in anew: for one forward and backward of a 5M-parameter policy over 64 responses
    (logits of 55 MB), 1.0 s became 0.81 s with this. Here big blocks come from the heap, which
    is not trimmed; the usual settings come back after the run. Elsewhere (CUDA, macOS, musl)
    nothing changes.
    """
    libc = _glibc() if device.type == "cpu" else None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    libc.mallopt(_M_TOP_PAD, 64 * 2**20)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, 65536)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
        libc.mallopt(_M_TOP_PAD, 128 * 1024)
        libc.malloc_trim(0)


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- only glibc has it, and only glibc's mallopt takes these
    except (OSError, AttributeError):
        return None
    return libc


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """The device's peak allocation (CUDA), what MPS holds now, or the process's peak RSS (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    try:
        import resource
    except ImportError:  # Windows
        try:
            import psutil

            return psutil.Process().memory_info().peak_wset / 2**20
        except (ImportError, AttributeError):
            return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
