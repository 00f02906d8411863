"""The loop every method that learns from a fixed dataset shares (the reward model, DPO, SFT): epochs
of length-grouped batches, gradient accumulation, clipping, AdamW and its schedule, reports,
evaluation, checkpoints, exact resume, stops, and the ranks of torchrun. A method says what one
micro-batch costs and what evaluation measures (an `Objective`); `fit` does the rest.

    fit(model, objective, config, tokenizer=, sink=, stop=, device=, run_dir=, resume=, ...)

The config is the method's own dataclass; fit reads the fields every such method has: batch_size,
gradient_accumulation_steps, epochs, max_steps, learning_rate, weight_decay, warmup_ratio,
lr_scheduler, max_grad_norm, precision, gradient_checkpointing, seed, log_every, eval_every,
save_every, keep_last.

A resumed run continues exactly: the data order of an epoch is a function of (seed, epoch), and a
checkpoint holds the position in it, the optimizer, the scheduler and every RNG.

Under torchrun every rank holds the whole model and DDP averages the gradients in backward(); each
rank takes its share of every batch, weighted so that the step is the single-process step.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..events import Checkpoint, Log, Metric, Progress, Sink, StopFlag
from . import checkpoints as ckpt
from . import distributed
from .device import peak_memory_mb, reset_peak_memory
from .guards import check_finite, out_of_memory_fails
from .optim import adamw, loss_scaler, lr_schedule
from .pairs import batches_per_epoch, epoch_batches

PROGRESS_EVERY_S = 0.5
# The causes in the order they are met: a NaN is a learning rate too high far more often than
# anything else, then half precision overflowing, then unclipped gradients; bad data last (a
# method whose data can say so puts it first: Objective.nan_hint).
NAN_HINT = (
    "likely causes, most likely first: (1) learning_rate too high for this model (try a tenth of it); "
    "(2) fp16/bf16 overflow (train in fp32); (3) max_grad_norm off (set it, e.g. 1.0); (4) extreme values in "
    "the data, such as a huge margin. The last good checkpoint is kept"
)


@dataclass
class Pass:
    """One micro-batch's forward: the loss to back-propagate (the mean over its examples) and the
    figures reported beside it (means over its examples, as 0-d tensors: read back after backward)."""

    loss: torch.Tensor
    figures: dict[str, torch.Tensor]
    examples: int
    tokens: int


class Objective(Protocol):
    """What a method adds to the loop."""

    noun: str  # what one training example is, plural ("pairs", "sequences"): in logs and perf/<noun>_per_s
    oom_hint: str  # what to change when a step runs out of memory
    # Optional: what to try when the loss or gradients stop being numbers, where the method's data
    # can tell more than NAN_HINT (read with getattr; NAN_HINT without it).
    # nan_hint: str

    def lengths(self) -> Sequence[int]:
        """Each training example's length in tokens (batches are grouped by it)."""

    def rest_lengths(self) -> Sequence[int] | None:
        """For pairs whose prompt is computed once: lengths() are the prompts' and these the responses'
        after it (training/pairs.py epoch_batches); None otherwise."""

    def forward(self, net, indices: list[int]) -> Pass:
        """The loss of the training examples at `indices` through `net` (the model, or DDP around it)."""

    def evaluate(self, model) -> dict[str, float]:
        """Validation figures (eval/...), {} when there is nothing to validate on."""

    def rank(self, figures: dict[str, float]) -> tuple[float, ...]:
        """How good a checkpoint's validation figures are: the highest is kept as `best`."""

    def summary(self) -> dict[str, Any]:
        """What the run's summary says of the data (train_pairs, val_pairs...)."""

    @property
    def has_validation(self) -> bool: ...

    def wrap(self, model) -> torch.nn.Module:
        """The module the loop calls forward on and DDP wraps (the model itself, or a module around it)."""


def fit(
    model,
    objective: Objective,
    config,
    *,
    tokenizer,
    sink: Sink,
    stop: StopFlag,
    device: torch.device,
    threads: int,
    started: float,
    run_dir: Path | None = None,
    resume: bool = False,
    resume_from: Path | None = None,
    save_model: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Trains `model` on the objective's examples; returns the run's summary."""
    nan_hint = getattr(objective, "nan_hint", None) or NAN_HINT
    # 1. The model, and what the method calls on it (which may decide how it batches).
    model.to(device)
    model.train()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    net = objective.wrap(model)

    # 2. The schedule: optimizer steps, warm-up, decay.
    lengths, rest_lengths = objective.lengths(), objective.rest_lengths()
    n_examples = len(lengths)
    accum = config.gradient_accumulation_steps
    n_batches = batches_per_epoch(n_examples, config.batch_size)
    steps_per_epoch = math.ceil(n_batches / accum)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    warmup = math.ceil(config.warmup_ratio * total_steps)

    # 3. Optimizer, scheduler, loss scaler.
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(
        [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},  # biases and norms
        ],
        lr=config.learning_rate,
    )
    scheduler = lr_schedule(optimizer, config.lr_scheduler, warmup_steps=warmup, total_steps=total_steps)
    scaler = loss_scaler(config.precision)

    # 4. Start fresh, or continue from the last complete checkpoint.
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best_step": None, "best_rank": None}
    resumed_from = None
    if resume:
        resumed_from = resume_from or (ckpt.latest_checkpoint(run_dir) if run_dir is not None else None)
    if resumed_from is not None:
        saved = ckpt.restore(resumed_from, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        state.update({key: saved.get(key) for key in state})
        sink(Log(f"resumed from {resumed_from} at step {state['step']} of {total_steps}"))
    else:
        if resume:
            sink(Log("nothing to resume from (no complete checkpoint); starting at step 0", "warning"))
        seed_everything(config.seed)
    # Under torchrun every rank holds the whole model; DDP averages the gradients in backward().
    # The plain model stays what is evaluated and saved (its state has no "module." prefix).
    world = distributed.world_size()
    if world > 1:
        net = _ddp(net, device)
    n_params = sum(p.numel() for p in model.parameters())
    where = f"cpu ({threads} thread{'s' if threads != 1 else ''})" if device.type == "cpu" else str(device)
    shares = f"{config.batch_size // world} per rank x {world} ranks x {accum}" if world > 1 else f"{config.batch_size} x {accum}"
    counts = objective.summary()
    sink(Log(
        f"training on {where} in {config.precision}: "
        + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in counts.items())
        + f"; global batch {config.batch_size * accum} {objective.noun} ({shares}); "
        f"{total_steps:,} steps ({total_steps / steps_per_epoch:.3g} epochs); "
        f"{sum(p.numel() for p in params):,} of {n_params:,} parameters trained"
        + (f"; checkpoints in {ckpt.checkpoints_dir(run_dir)}" if run_dir is not None else "")
    ))

    def save(figures: dict[str, float] | None) -> None:
        if not objective.has_validation:
            best = True  # nothing to compare by: the latest is the best there is
        elif figures is None:
            best = False  # a stop checkpoint, saved without validation
        else:
            rank = list(objective.rank(figures))
            best = state["best_rank"] is None or rank > state["best_rank"]
            if best:
                state.update(best_step=state["step"], best_rank=rank)
        folder = ckpt.save_checkpoint(
            run_dir, model=model, tokenizer=tokenizer, write_weights=save_model, optimizer=optimizer,
            scheduler=scheduler, scaler=scaler, state={**state, "eval": figures}, best=best, keep_last=config.keep_last,
        )
        sink(Checkpoint(state["step"], str(folder), best))

    def evaluate(step: int) -> dict[str, float]:
        figures = objective.evaluate(model)
        if figures:
            sink(Metric(step, figures))
        return figures

    # 5. The loop.
    reset_peak_memory(device)
    session_start, session_steps = time.perf_counter(), 0
    window = Window(objective.noun)
    sink(Progress(state["step"], total_steps, f"step {state['step']:,} of {total_steps:,}", None))
    last_progress = 0.0
    last_eval: dict[str, float] | None = None
    epoch_cache: tuple[int, list[list[int]]] = (-1, [])
    while state["step"] < total_steps:
        if epoch_cache[0] != state["epoch"]:
            batches = epoch_batches(lengths, config.batch_size, config.seed, state["epoch"], rest_lengths)
            epoch_cache = (state["epoch"], batches)
        group = epoch_cache[1][state["batch"] : state["batch"] + accum]
        step = state["step"] + 1
        with out_of_memory_fails(device, at=f"step {step}", step=step, hint=objective.oom_hint, optimizer=optimizer):
            lr = scheduler.get_last_lr()[0]
            for micro, indices in enumerate(group):
                weight, counted = 1.0, True
                if world > 1:
                    indices, weight, counted = share(indices, world)
                # Gradients are averaged over the ranks once per optimizer step, on the last pass.
                syncing = contextlib.nullcontext() if world == 1 or micro == len(group) - 1 else net.no_sync()
                with syncing:
                    result = objective.forward(net, indices)
                    scaled = result.loss / len(group) if world == 1 else result.loss * weight / len(group)
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                # Read back only now, with the backward pass already queued: on a GPU the one
                # wait per batch then overlaps with work instead of idling the device.
                names = list(result.figures)
                values = torch.stack([result.loss.detach().float(), *(result.figures[k].float() for k in names)]).tolist()
                if counted:
                    check_finite(values[0], "the loss", at=f"step {step}", step=step, hint=nan_hint)
                    window.add({"train/loss": values[0], **dict(zip(names, values[1:]))}, result.examples, result.tokens)
            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm or float("inf"))
            if scaler is not None:
                scaler.step(optimizer)  # skips the step when fp16 gradients overflowed
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            grad_norm = grad_norm.item()
            if scaler is None:
                # The weights in memory are spoilt now, but no checkpoint is written from them.
                check_finite(grad_norm, "the gradient norm", at=f"step {step}", step=step, hint=nan_hint)

        state["step"] = step
        state["batch"] += len(group)
        if state["batch"] >= len(epoch_cache[1]):
            state["epoch"], state["batch"] = state["epoch"] + 1, 0
        session_steps += 1
        done = step >= total_steps

        # 6. Report.
        now = time.perf_counter()
        if step % config.log_every == 0 or done:
            values = window.flush(now) if world == 1 else window.flush(now, distributed.all_reduce_sum)
            values.update({
                "train/learning_rate": lr,
                "train/grad_norm": grad_norm,
                "train/epoch": state["epoch"] + state["batch"] / max(1, len(epoch_cache[1])),
                "perf/peak_memory_mb": peak_memory_mb(device) if world == 1 else distributed.all_reduce_max([peak_memory_mb(device)])[0],
            })
            sink(Metric(step, values))
        if now - last_progress >= PROGRESS_EVERY_S or done:
            last_progress = now
            eta = (now - session_start) / session_steps * (total_steps - step)
            sink(Progress(step, total_steps, f"step {step:,} of {total_steps:,}", eta))

        # 7. Evaluate and checkpoint (a checkpoint's validation figures are always its own step's).
        # Every rank evaluates the whole validation set (the same figures, no messages, so no rank
        # falls out of step); only the main rank saves, the others wait for it in the next step.
        main = distributed.is_main()
        fresh = None
        if objective.has_validation and (step % config.eval_every == 0 or done):
            fresh = last_eval = evaluate(step)
        if run_dir is not None and (step % config.save_every == 0 or done):
            if objective.has_validation and fresh is None:
                fresh = last_eval = evaluate(step)
            if main:
                save(fresh)
        if not done and (stop() if world == 1 else distributed.any_rank(stop())):
            if run_dir is not None and main:
                save(None)
            sink(Log(f"stopped at step {step:,} of {total_steps:,}; resume continues from here"))
            return _summary(state, counts, last_eval, run_dir, started, stopped=True)
    return _summary(state, counts, last_eval, run_dir, started, stopped=False)


def _ddp(module, device):
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def share(indices: list[int], world: int) -> tuple[list[int], float, bool]:
    """(this rank's examples of a global batch, its loss weight, whether they count).

    DDP averages gradients over ranks, so weighting a rank's mean loss by world x its share of
    the batch makes the step the single-process step over the whole batch, also for the short
    last batch of an epoch. A rank left with nothing (a batch smaller than the world) still runs
    a pass, on one example weighted 0, since every rank must join every gradient all-reduce.
    """
    mine = distributed.shard(indices)
    if not mine:
        return indices[:1], 0.0, False
    return mine, len(mine) * world / len(indices), True


def _summary(state, counts, last_eval, run_dir, started, *, stopped: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "steps": state["step"],
        **counts,
        "seconds": round(time.perf_counter() - started, 3),
        "stopped": stopped,
    }
    if last_eval:
        summary.update(last_eval)
    if run_dir is not None:
        best = ckpt.best_checkpoint(run_dir) or (ckpt.checkpoints_dir(run_dir) / "last")
        if best.exists():
            summary["best_checkpoint"] = str(best)
        if state["best_step"] is not None:
            summary["best_step"] = state["best_step"]
    return summary


class Window:
    """Training figures since the last report, weighted by examples; throughput over the same time."""

    def __init__(self, noun: str):
        self.noun = noun
        self.start = time.perf_counter()
        self.sums: dict[str, float] = {}
        self.examples = 0
        self.tokens = 0

    def add(self, figures: dict[str, float], examples: int, tokens: int) -> None:
        for name, value in figures.items():
            self.sums[name] = self.sums.get(name, 0.0) + value * examples
        self.examples += examples
        self.tokens += tokens

    def flush(self, now: float, reduce=None) -> dict[str, float]:
        """`reduce` (ranks' sums) turns every rank's window into the global batch's figures."""
        seconds = max(now - self.start, 1e-9)
        if reduce is not None:
            names = sorted(self.sums)
            *sums, self.examples, self.tokens = reduce([self.sums[k] for k in names] + [self.examples, self.tokens])
            self.sums = dict(zip(names, sums))
        values = {k: v / max(self.examples, 1) for k, v in self.sums.items()}
        values[f"perf/{self.noun}_per_s"] = self.examples / seconds
        values["perf/tokens_per_s"] = self.tokens / seconds
        self.__init__(self.noun)
        return values


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
