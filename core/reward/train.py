"""Training a reward model: one loop, its steps in order.

    run(config, ctx, sink, stop)    the job ("rlhf_workbench.core.reward.train:run"): pairs from the
                                    project, the model from config.base_model, then train()
    train(model, tokenizer, train_pairs, val_pairs, config, sink=, stop=, run_dir=, resume=)
                                    the loop itself, usable without a project (benchmarks call it)

The loop is the shared one (training/loop.py: length-grouped batches in a seeded order, gradient
accumulation, clip, AdamW, scheduler, report, evaluate, checkpoint, stop, exact resume, torchrun);
what is the reward model's own is here: every pair tokenized once, its chosen and rejected
responses stacked into one forward pass, the Bradley-Terry loss, the validation accuracy.

Metric names follow TRL (train/loss, train/accuracy, train/margin, train/mean_reward,
train/learning_rate, train/grad_norm, train/epoch, eval/loss, eval/accuracy, eval/margin,
eval/mean_reward) plus perf/pairs_per_s, perf/tokens_per_s and perf/peak_memory_mb.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import JobFailed
from ..events import Log, Sink, StopFlag
from ..models import LoraSettings, ModelError, load_reward_model
from ..records import MAX_MARGIN
from ..runs.records import RunContext
from ..training import distributed
from ..training.config import config_from_dict
from ..training.device import check_precision, cpu_threads, freed_memory_kept, resolve_device
from ..training.loop import NAN_HINT, Pass, fit
from ..training.pairs import SPLIT_FILE, encode_pair, load_project_pairs, pairs_by_id
from ..training.prefix import pair_row_length
from .config import RewardConfig
from .evaluate import PairRewards, evaluate, shared_length
from .loss import reward_loss

JOB_PATH = "rlhf_workbench.core.reward.train:run"
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
        + (f"; {counts['held_out']:,} on held-out prompts left out" if counts.get("held_out") else "")
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
    objective = _BradleyTerry(tokenizer, train_pairs, val_pairs, config, device)
    return fit(model, objective, config, tokenizer=tokenizer, sink=sink, stop=stop, device=device, threads=threads,
               started=started, run_dir=run_dir, resume=resume, resume_from=resume_from)


class _BradleyTerry:
    """The reward model's objective for the shared loop: each pair's chosen and rejected responses
    stacked into one forward pass, the Bradley-Terry loss, the validation accuracy."""

    noun = "pairs"
    oom_hint = OOM_HINT

    def __init__(self, tokenizer, train_pairs, val_pairs, config: RewardConfig, device):
        self.config, self.device, self.pad_id = config, device, tokenizer.pad_token_id
        # Every pair tokenized once.
        self.train_enc = [encode_pair(tokenizer, p, config.max_length) for p in train_pairs]
        self.val_enc = [encode_pair(tokenizer, p, config.max_length) for p in val_pairs]

    @property
    def nan_hint(self) -> str:
        # Pairs from before imports refused absurd margins, or added by code: their loss is
        # infinite whatever the learning rate, so they are named first when there are any.
        extreme = [m for _, _, m in self.train_enc if m is not None and not abs(m) <= MAX_MARGIN]
        if not extreme:
            return NAN_HINT
        largest = max(extreme, key=lambda m: abs(m) if m == m else math.inf)
        return (
            f"most likely the data: {len(extreme):,} training pairs have a margin beyond ±{MAX_MARGIN:g} (e.g. "
            f"{largest:g}), which makes their loss infinite; re-import them without it. Otherwise: " + NAN_HINT
        )

    def wrap(self, model):
        self.scorer = PairRewards(model)
        self.scorer.share_if_worth(self.train_enc)
        return self.scorer

    def lengths(self) -> list[int]:
        if self.scorer.share and self.scorer.packs:  # one row a pair: its prompt and both responses
            return [pair_row_length(len(c), len(r), shared_length(c, r), True) for c, r, _ in self.train_enc]
        if self.scorer.share:  # each pair's prompt computed once: batched by prompt, then response
            return [shared_length(c, r) for c, r, _ in self.train_enc]
        return [max(len(c), len(r)) for c, r, _ in self.train_enc]

    def rest_lengths(self) -> list[int] | None:
        if not self.scorer.share or self.scorer.packs:
            return None
        return [max(len(c), len(r)) - shared_length(c, r) for c, r, _ in self.train_enc]

    @property
    def has_validation(self) -> bool:
        return bool(self.val_enc)

    def forward(self, net, indices: list[int]) -> Pass:
        rewards = net(self.train_enc, indices, self.pad_id, self.device, self.config.precision)
        chosen, rejected = rewards[: len(indices)], rewards[len(indices) :]
        margins = [self.train_enc[i][2] for i in indices]
        margin = torch.tensor([m or 0.0 for m in margins]) if any(m is not None for m in margins) else None
        loss = reward_loss(chosen, rejected, margin=margin, center_rewards_coefficient=self.config.center_rewards_coefficient)
        with torch.no_grad():
            chosen, rejected = chosen.detach().reshape(-1), rejected.detach().reshape(-1)
            figures = {
                "train/accuracy": (chosen > rejected).float().mean(),
                "train/margin": (chosen - rejected).mean(),
                "train/mean_reward": torch.cat([chosen, rejected]).mean(),
            }
        tokens = sum(len(self.train_enc[i][0]) + len(self.train_enc[i][1]) for i in indices)
        return Pass(loss, figures, len(indices), tokens)

    def evaluate(self, model) -> dict[str, float]:
        return evaluate(model, self.val_enc, self.pad_id, self.config, self.device) if self.val_enc else {}

    def rank(self, figures: dict[str, float]) -> tuple[float, ...]:
        return (figures["eval/accuracy"], -figures["eval/loss"])

    def summary(self) -> dict[str, int]:
        return {"train_pairs": len(self.train_enc), "val_pairs": len(self.val_enc)}
