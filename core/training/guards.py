"""What stops a training run cleanly instead of crashing it or writing spoilt weights: running out
of device memory, and a loss or gradient norm that is no longer a number.

Both end the run with a JobFailed that says where (the step) and what to try (the method's
hint); no checkpoint is written from weights a NaN has reached, so the last good one is kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..errors import JobFailed
from .device import is_out_of_memory


@contextmanager
def out_of_memory_fails(device: torch.device, *, at: str, step: int, hint: str, optimizer=None) -> Iterator[None]:
    """Turns running out of `device`'s memory inside the block into the JobFailed that says so
    ("out of cuda memory at update 12: ..."), giving back what it can first."""
    try:
        yield
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise JobFailed(f"out of {device.type} memory at {at}: {str(exc).splitlines()[0]}", hint=hint, step=step) from None


def check_finite(value: float, what: str, *, at: str, step: int, hint: str) -> None:
    """Raises the JobFailed that names `what` ("the loss") when `value` is NaN or infinite."""
    if not math.isfinite(value):
        raise JobFailed(f"{what} became {value} at {at}", hint=hint, step=step)
