"""Training a reward model: one loop, its steps in order.

    run(config, ctx, sink, stop)    the job ("rlhf_workbench.core.reward.train:run"): pairs from the
                                    project, the model from config.base_model, then train()
    train(model, tokenizer, train_pairs, val_pairs, config, sink=, stop=, run_dir=, resume=)
                                    the loop itself, usable without a project (benchmarks call it)

The loop: tokenize every pair once; per epoch, length-grouped batches in a seeded order; per
optimizer step, gradient_accumulation_steps forward/backward passes (chosen and rejected stacked
into one forward), clip, AdamW, scheduler; then report, evaluate, checkpoint, and check stop().

Metric names follow TRL (train/loss, train/accuracy, train/margin, train/mean_reward,
train/learning_rate, train/grad_norm, train/epoch, eval/loss, eval/accuracy, eval/margin,
eval/mean_reward) plus perf/pairs_per_s, perf/tokens_per_s and perf/peak_memory_mb.

A resumed run continues exactly: the data order of an epoch is a function of (seed, epoch), and a
checkpoint holds the position in it, the optimizer, the scheduler and every RNG.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import JobFailed
from ..events import Checkpoint, Log, Metric, Progress, Sink, StopFlag
from ..models import LoraSettings, ModelError, load_reward_model
from ..runs.records import RunContext
from ..training import checkpoints as ckpt
from ..training import distributed
from ..training.config import config_from_dict
from ..training.device import (
    check_precision,
    cpu_threads,
    freed_memory_kept,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
)
from ..training.guards import check_finite, out_of_memory_fails
from ..training.optim import adamw, loss_scaler, lr_schedule
from ..training.pairs import (
    SPLIT_FILE,
    batches_per_epoch,
    collate,
    encode_pair,
    epoch_batches,
    load_project_pairs,
    pairs_by_id,
)
from .config import RewardConfig
from .evaluate import evaluate, forward_rewards
from .loss import batch_metrics, reward_loss

JOB_PATH = "rlhf_workbench.core.reward.train:run"
PROGRESS_EVERY_S = 0.5
NAN_HINT = (
    "lower learning_rate, train in fp32, and keep max_grad_norm on (e.g. 1.0); the last good checkpoint is kept"
)
OOM_HINT = (
    "lower batch_size (raise gradient_accumulation_steps to keep the global batch), turn on "
    "gradient_checkpointing, train with LoRA, use bf16, or lower max_length"
)


def as_config(config: RewardConfig | dict[str, Any]) -> RewardConfig:
    return config if isinstance(config, RewardConfig) else config_from_dict(RewardConfig, dict(config))


# -- the job ---------------------------------------------------------------------------------------


def run(config: RewardConfig | dict[str, Any], ctx: RunContext, sink: Sink, stop: StopFlag) -> dict[str, Any]:
    config = as_config(config).validate()
    check_precision(config.precision, resolve_device(config.device))  # refuse before loading anything
    split_path = ctx.run_dir / SPLIT_FILE
    project = ctx.open_project()
    try:
        if ctx.resume and split_path.is_file():
            # The pairs the run started with, even if labels changed since: resuming continues it.
            split = json.loads(split_path.read_text(encoding="utf-8"))
            train_pairs, _ = pairs_by_id(project.store, split["train_ids"], include_ties=config.include_ties)
            val_pairs, _ = pairs_by_id(project.store, split["val_ids"])
        else:
            data = load_project_pairs(
                project.store,
                validation_fraction=config.validation_fraction,
                seed=config.seed,
                include_ties=config.include_ties,
            )
            if not data.train:
                raise JobFailed(_no_pairs_message(data.counts), hint="label pairs in the Label tab, or import labelled data")
            train_pairs, val_pairs = data.train, data.val
            split = {"train_ids": data.train_ids, "val_ids": data.val_ids, "max_length": config.max_length, "counts": data.counts}
            if distributed.is_main():  # every rank drew the same split; one writes it
                split_path.write_text(json.dumps(split), encoding="utf-8")
            sink(Log(_data_line(data.counts, len(data.train_ids), len(data.val_ids))))
    finally:
        project.close()
    lora = LoraSettings(config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules) if config.lora else None
    torch.manual_seed(config.seed)  # the new reward head starts the same every time
    try:
        model, tokenizer = load_reward_model(config.base_model, trust_remote_code=config.trust_remote_code, lora=lora)
    except ModelError as exc:
        raise JobFailed(str(exc), hint="base_model: choose another model folder") from None
    return train(
        model, tokenizer, train_pairs, val_pairs, config, sink=sink, stop=stop, run_dir=ctx.run_dir,
        resume=ctx.resume, resume_from=getattr(ctx, "resume_checkpoint", None),
    )


def _no_pairs_message(counts: dict[str, int]) -> str:
    if counts["pairs"] == 0:
        return "the project has no pairs yet: import preference data or generate pairs first"
    return (
        f"no labelled pairs to train on: the project has {counts['pairs']:,} pairs but none has a settled "
        f"A-or-B verdict ({counts['ties']:,} ties, {counts['both_bad']:,} both bad, {counts['unsettled']:,} "
        "unlabelled or disputed); a reward model learns from pairs judged 'A better' or 'B better'"
    )


def _data_line(counts: dict[str, int], n_train: int, n_val: int) -> str:
    return (
        f"{n_train:,} training and {n_val:,} validation pairs (split by prompt) out of {counts['pairs']:,}: "
        f"{counts['decisive']:,} decisive, {counts['ties']:,} ties, {counts['both_bad']:,} both bad, "
        f"{counts['unsettled']:,} without a settled verdict"
    )


# -- the loop ----------------------------------------------------------------------------------------


def train(
    model,
    tokenizer,
    train_pairs: Sequence[tuple],
    val_pairs: Sequence[tuple],
    config: RewardConfig,
    *,
    sink: Sink,
    stop: StopFlag,
    run_dir: Path | None = None,
    resume: bool = False,
    resume_from: Path | None = None,
) -> dict[str, Any]:
    """Trains `model` (a one-output sequence classifier) on the pairs; returns the summary.

    With `resume`, continues from `resume_from` or else the last complete checkpoint in
    `run_dir`; the model must be built as for the original run (same base, same LoRA settings).
    """
    started = time.perf_counter()
    config.validate()
    config.check_world(distributed.world_size())
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    n_params = sum(p.numel() for p in model.parameters())
    with (
        cpu_threads(config.torch_threads, device, n_params) as threads,
        freed_memory_kept(device),
        distributed.peers_lost_reported(),
    ):
        return _train(model, tokenizer, train_pairs, val_pairs, config, device, threads, started,
                      sink=sink, stop=stop, run_dir=run_dir, resume=resume, resume_from=resume_from)


def _train(model, tokenizer, train_pairs, val_pairs, config, device, threads, started, *, sink, stop, run_dir,
           resume, resume_from) -> dict[str, Any]:
    if not train_pairs:
        raise JobFailed("no training pairs", hint="label pairs as 'A better' or 'B better' first")
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise JobFailed("the tokenizer has neither a pad token nor an end-of-text token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    pad_id = tokenizer.pad_token_id

    # 1. Tokenize every pair once.
    train_enc = [encode_pair(tokenizer, p, config.max_length) for p in train_pairs]
    val_enc = [encode_pair(tokenizer, p, config.max_length) for p in val_pairs]
    lengths = [max(len(c), len(r)) for c, r, _ in train_enc]

    # 2. The schedule: optimizer steps, warm-up, decay.
    accum = config.gradient_accumulation_steps
    n_batches = batches_per_epoch(len(train_enc), config.batch_size)
    steps_per_epoch = math.ceil(n_batches / accum)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    warmup = math.ceil(config.warmup_ratio * total_steps)

    # 3. Model, optimizer, scheduler, loss scaler.
    model.to(device)
    model.train()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
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
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best_step": None, "best_accuracy": None, "best_loss": None}
    resumed_from = None
    if resume:
        resumed_from = resume_from or (ckpt.latest_checkpoint(run_dir) if run_dir is not None else None)
    if resumed_from is not None:
        saved = ckpt.restore(resumed_from, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        state.update({key: saved[key] for key in state})
        sink(Log(f"resumed from {resumed_from} at step {state['step']} of {total_steps}"))
    else:
        if resume:
            sink(Log("nothing to resume from (no complete checkpoint); starting at step 0", "warning"))
        _seed_everything(config.seed)
    # Under torchrun every rank holds the whole model; DDP averages the gradients in backward().
    # The plain model stays what is evaluated and saved (its state has no "module." prefix).
    world = distributed.world_size()
    net = _ddp(model, device) if world > 1 else model
    n_params = sum(p.numel() for p in model.parameters())
    where = f"cpu ({threads} thread{'s' if threads != 1 else ''})" if device.type == "cpu" else str(device)
    shares = f"{config.batch_size // world} per rank x {world} ranks x {accum}" if world > 1 else f"{config.batch_size} x {accum}"
    sink(Log(
        f"training on {where} in {config.precision}: {len(train_enc):,} training pairs, {len(val_enc):,} "
        f"validation pairs; global batch {config.batch_size * accum} pairs ({shares}); "
        f"{total_steps:,} steps ({total_steps / steps_per_epoch:.3g} epochs); "
        f"{sum(p.numel() for p in params):,} of {n_params:,} parameters trained"
        + (f"; checkpoints in {ckpt.checkpoints_dir(run_dir)}" if run_dir is not None else "")
    ))

    # 5. The loop.
    reset_peak_memory(device)
    session_start, session_steps = time.perf_counter(), 0
    window = _Window()
    sink(Progress(state["step"], total_steps, f"step {state['step']:,} of {total_steps:,}", None))
    last_progress = 0.0
    last_eval: dict[str, float] | None = None
    epoch_cache: tuple[int, list[list[int]]] = (-1, [])
    while state["step"] < total_steps:
        if epoch_cache[0] != state["epoch"]:
            epoch_cache = (state["epoch"], epoch_batches(lengths, config.batch_size, config.seed, state["epoch"]))
        group = epoch_cache[1][state["batch"] : state["batch"] + accum]
        step = state["step"] + 1
        with out_of_memory_fails(device, at=f"step {step}", step=step, hint=OOM_HINT, optimizer=optimizer):
            lr = scheduler.get_last_lr()[0]
            for micro, indices in enumerate(group):
                weight, counted = 1.0, True
                if world > 1:
                    indices, weight, counted = _share(indices, world)
                batch = collate(train_enc, indices, pad_id)
                # Gradients are averaged over the ranks once per optimizer step, on the last pass.
                syncing = contextlib.nullcontext() if world == 1 or micro == len(group) - 1 else net.no_sync()
                with syncing:
                    rewards = forward_rewards(net, batch, device, config.precision)
                    chosen, rejected = rewards[: len(indices)], rewards[len(indices) :]
                    loss = reward_loss(
                        chosen, rejected, margin=batch["margin"], center_rewards_coefficient=config.center_rewards_coefficient
                    )
                    scaled = loss / len(group) if world == 1 else loss * weight / len(group)
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                # Read back only now, with the backward pass already queued: on a GPU the one
                # wait per batch then overlaps with work instead of idling the device.
                metrics = batch_metrics(chosen, rejected)
                loss_value = loss.item()
                if counted:
                    check_finite(loss_value, "the loss", at=f"step {step}", step=step, hint=NAN_HINT)
                    window.add(loss_value, metrics, len(indices), int(batch["attention_mask"].sum()))
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
                check_finite(grad_norm, "the gradient norm", at=f"step {step}", step=step, hint=NAN_HINT)

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
        if val_enc and (step % config.eval_every == 0 or done):
            fresh = last_eval = _evaluate(model, val_enc, pad_id, config, device, sink, step)
        if run_dir is not None and (step % config.save_every == 0 or done):
            if val_enc and fresh is None:
                fresh = last_eval = _evaluate(model, val_enc, pad_id, config, device, sink, step)
            if main:
                _save(run_dir, model, tokenizer, optimizer, scheduler, scaler, state, fresh, bool(val_enc), config, sink)
        if not done and (stop() if world == 1 else distributed.any_rank(stop())):
            if run_dir is not None and main:
                _save(run_dir, model, tokenizer, optimizer, scheduler, scaler, state, None, bool(val_enc), config, sink)
            sink(Log(f"stopped at step {step:,} of {total_steps:,}; resume continues from here"))
            return _summary(state, train_enc, val_enc, last_eval, run_dir, started, stopped=True)
    return _summary(state, train_enc, val_enc, last_eval, run_dir, started, stopped=False)


def _ddp(model, device):
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _share(indices: list[int], world: int) -> tuple[list[int], float, bool]:
    """(this rank's pairs of a global batch, its loss weight, whether they count).

    DDP averages gradients over ranks, so weighting a rank's mean loss by world x its share of
    the batch makes the step the single-process step over the whole batch, also for the short
    last batch of an epoch. A rank left with nothing (a batch smaller than the world) still runs
    a pass, on one pair weighted 0, since every rank must join every gradient all-reduce.
    """
    mine = distributed.shard(indices)
    if not mine:
        return indices[:1], 0.0, False
    return mine, len(mine) * world / len(indices), True


def _evaluate(model, val_enc, pad_id, config, device, sink, step) -> dict[str, float]:
    figures = evaluate(model, val_enc, pad_id, config, device)
    sink(Metric(step, figures))
    return figures


def _save(run_dir, model, tokenizer, optimizer, scheduler, scaler, state, figures, has_val, config, sink) -> None:
    if not has_val:
        best = True  # nothing to compare by: the latest is the best there is
    elif figures is None:
        best = False  # a stop checkpoint, saved without validation
    else:
        acc, loss = figures["eval/accuracy"], figures["eval/loss"]
        best = False
        if state["best_accuracy"] is None or (acc, -loss) > (state["best_accuracy"], -state["best_loss"]):
            state.update(best_step=state["step"], best_accuracy=acc, best_loss=loss)
            best = True
    folder = ckpt.save_checkpoint(
        run_dir, model=model, tokenizer=tokenizer, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
        state={**state, "eval": figures}, best=best, keep_last=config.keep_last,
    )
    sink(Checkpoint(state["step"], str(folder), best))


def _summary(state, train_enc, val_enc, last_eval, run_dir, started, *, stopped: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "steps": state["step"],
        "train_pairs": len(train_enc),
        "val_pairs": len(val_enc),
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


class _Window:
    """Training figures since the last report, weighted by pairs; throughput over the same time."""

    def __init__(self):
        self.start = time.perf_counter()
        self.sums: dict[str, float] = {}
        self.pairs = 0
        self.tokens = 0

    def add(self, loss: float, metrics: dict[str, float], pairs: int, tokens: int) -> None:
        for name, value in (("loss", loss), *((k, metrics[k]) for k in ("accuracy", "margin", "mean_reward"))):
            self.sums[name] = self.sums.get(name, 0.0) + value * pairs
        self.pairs += pairs
        self.tokens += tokens

    def flush(self, now: float, reduce=None) -> dict[str, float]:
        """`reduce` (ranks' sums) turns every rank's window into the global batch's figures."""
        seconds = max(now - self.start, 1e-9)
        if reduce is not None:
            names = ("loss", "accuracy", "margin", "mean_reward")
            *sums, self.pairs, self.tokens = reduce([self.sums.get(k, 0.0) for k in names] + [self.pairs, self.tokens])
            self.sums = dict(zip(names, sums))
        values = {f"train/{k}": v / self.pairs for k, v in self.sums.items()}
        values["perf/pairs_per_s"] = self.pairs / seconds
        values["perf/tokens_per_s"] = self.tokens / seconds
        self.__init__()
        return values


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
