"""Several processes training one model: torch.distributed under `torchrun`.

torchrun starts one process per device and tells each who it is through the environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `setup` joins them into one process group,
NCCL when they train on CUDA and gloo otherwise; `cleanup` leaves it. Outside torchrun (or with
a world of one) nothing is set up and every helper here answers as a single process would, so
callers use them unconditionally and the single-process path stays exactly as it was.

Rank 0 is the main process: it alone writes to the project (the run record, metrics,
checkpoints) and prints. The others compute and drop their events (`drop_events`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from typing import Any

import torch

from ..errors import JobFailed

TIMEOUT_ENV = "RLHF_WORKBENCH_DIST_TIMEOUT_S"
# How long a collective may wait for a peer before it fails. Not the 60 s a dead rank would
# suggest: torchrun already tears every rank down when one exits, so this is only the backstop
# for a rank that hangs alive, and rank 0 alone writes checkpoints while the others wait for it
# in the next step's all-reduce; a large model's checkpoint may take minutes to write.
DEFAULT_TIMEOUT_S = 600.0
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched() -> bool:
    """Whether this process is one of several that torchrun (or a launcher like it) started."""
    if not all(name in os.environ for name in _ENV):
        return False
    try:
        return int(os.environ["WORLD_SIZE"]) > 1
    except ValueError:
        return False


def env_world_size() -> int:
    """The world size torchrun announced (1 when not launched): known before `setup`."""
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if active() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_main() -> bool:
    return rank() == 0


def timeout() -> datetime.timedelta:
    try:
        seconds = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        seconds = DEFAULT_TIMEOUT_S
    return datetime.timedelta(seconds=max(1.0, seconds))


def setup(device: str = "auto") -> bool:
    """Joins the process group when launched by torchrun; returns whether it did.

    `device` is the config's device setting: CUDA (NCCL, one GPU per local rank) unless it asks
    for the CPU or there is no GPU, else gloo.
    """
    if not launched():
        return False
    if active():
        return True
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        # "cuda" then means this rank's own GPU everywhere the loop says device("cuda").
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    torch.distributed.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout())
    return True


def cleanup() -> None:
    if active():
        torch.distributed.destroy_process_group()


def backend_device() -> torch.device:
    """Where tensors for collectives must live: NCCL reduces only CUDA tensors."""
    if active() and torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks (float64, so sums of many figures keep their digits)."""
    return _all_reduce(values, torch.distributed.ReduceOp.SUM) if active() else list(values)


def all_reduce_max(values: list[float]) -> list[float]:
    return _all_reduce(values, torch.distributed.ReduceOp.MAX) if active() else list(values)


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any: ranks decide together to stop."""
    return bool(all_reduce_max([1.0 if flag else 0.0])[0]) if active() else flag


def _all_reduce(values: list[float], op) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=backend_device())
    torch.distributed.all_reduce(t, op=op)
    return t.cpu().tolist()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank (anything picklable)."""
    if not active():
        return obj
    box = [obj if rank() == src else None]
    torch.distributed.broadcast_object_list(box, src=src, device=backend_device())
    return box[0]


def shard(indices: list[int]) -> list[int]:
    """This rank's share of a global batch: every world_size-th pair from its rank on.

    Strided rather than contiguous: a batch is sorted longest first, so strided shares pad to
    about the same length and no rank waits on another with all the long pairs.
    """
    return indices[rank() :: world_size()]


def drop_events(event) -> None:
    """The sink of every rank but the main one: rank 0 reports for all."""


def peer_lost(exc: BaseException) -> bool:
    """Whether a failure is a collective that lost its peers (another rank ended first)."""
    if world_size() == 1:
        return False
    text = str(exc)
    return isinstance(exc, torch.distributed.DistError) or any(w in text for w in ("gloo", "NCCL", "Connection"))


@contextlib.contextmanager
def peers_lost_reported():
    """Turns a collective that lost its peers into the job failure that says so. Not a bug here:
    another rank ended first, and it (or torchrun) says why."""
    try:
        yield
    except RuntimeError as exc:
        if not peer_lost(exc):
            raise
        raise JobFailed(
            f"lost contact with the other ranks: {str(exc).splitlines()[0]}",
            hint="another rank stopped or failed first; torchrun's report names it and its output says why",
        ) from None


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """The global batch from every rank's rows, in the order `shard` dealt them.

    Rank r holds global rows r, r + world, r + 2 x world, ...; every rank holds as many rows, and
    the tensors agree in every dimension (callers pad them to a common width first).
    """
    if not active():
        return local
    parts = [torch.empty_like(local) for _ in range(world_size())]
    torch.distributed.all_gather(parts, local.contiguous())
    # [world, rows, ...] -> [rows, world, ...] -> global rows in dealing order.
    return torch.stack(parts, dim=1).reshape(-1, *local.shape[1:])


def gather_objects(local: list[Any]) -> list[Any]:
    """`gather_rows` for lists of picklable things (decoded responses)."""
    if not active():
        return list(local)
    parts: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(parts, list(local))
    return [part[i] for i in range(len(parts[0])) for part in parts]


# About 100 MB of fp32 per all-reduce: few messages, and never a second copy of a large model's gradients.
GRADIENT_BUCKET_ELEMENTS = 25 * 2**20


def sum_gradients(params: list[torch.nn.Parameter]) -> None:
    """Adds up every parameter's gradient over the ranks, in place (a missing one counts as zero).

    For losses that each rank already scales by the global batch's size: the sum is then the
    gradient one process would have computed over the whole batch.
    """
    if not active():
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_kind: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in params:  # one flat buffer holds one dtype on one device
        by_kind.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in by_kind.values():
        bucket: list[torch.Tensor] = []
        size = 0
        for grad in grads:
            bucket.append(grad)
            size += grad.numel()
            if size >= GRADIENT_BUCKET_ELEMENTS:
                _sum_bucket(bucket)
                bucket, size = [], 0
        if bucket:
            _sum_bucket(bucket)


def _sum_bucket(grads: list[torch.Tensor]) -> None:
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    flat = _flatten_dense_tensors(grads)
    torch.distributed.all_reduce(flat)
    for grad, summed in zip(grads, _unflatten_dense_tensors(flat, grads)):
        grad.copy_(summed)
