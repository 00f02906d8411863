"""Online RL on a language model (PPO, RLOO, GRPO): one loop, its steps in order.

    run(config, ctx, sink, stop)        the job ("rlhf_workbench.core.rl.train:run"): the project's
                                        prompts and the models the config names, then train()
    train(models, prompts, config, sink=, stop=, run_dir=, resume=)
                                        the loop itself, usable without a project (benchmarks call it)

Each update, whichever the method (only steps 3 and 4's loss differ: objectives.py):
1. rollout: the next prompts (a seeded order, epoch after epoch), one sampled response each for
   PPO, a group of `num_generations` for RLOO and GRPO, with the log-prob of every drawn token
   (training/rollout.py);
2. scoring: the reference's log-probs (when the method keeps a KL to it), PPO's values, the reward
   model's scores (the response decoded and rendered as the reward model was trained on it), the
   missing-EOS penalty and PPO's score normalisation;
3. rewards and advantages: PPO's per-token KL penalty, the score on the last real token, GAE and
   whitening (algorithm.py); RLOO's leave-one-out and GRPO's group-mean baselines (group.py);
4. the update: `num_ppo_epochs` (PPO) or `num_iterations` (RLOO, GRPO) passes over shuffled
   minibatches, each an optimizer step over the method's loss, gradients clipped (learner.py);
5. report (TRL's metric names), watchdogs, samples, checkpoint, stop?

Dropout is off throughout (every model stays in eval mode), so the log-probs of the rollout and of
the first update pass agree and the first ratio is exactly 1 up to rounding.

A resumed run continues exactly: the prompts, the sampling and the minibatch order of an update
are functions of (seed, update), and a checkpoint holds the models, the optimizer, the KL
controller and the running score statistics.

Under torchrun (core.training.distributed) each rank samples and scores its share of the update's prompts
(rows rank, rank + world, ...), drawing the random numbers those rows would get in one process.
The ranks then gather the per-token figures of the whole batch (a few numbers per token), so
rewards, GAE, whitening, the KL controller and every reported figure are the single-process
ones. In the update each rank computes the loss of its own rows of every minibatch, normalised
by the whole minibatch's token count, and the ranks sum their gradients before the step: the
step one process would take. Not DDP: one all-reduce per optimizer step covers the policy and
value models together, whatever rows each rank happens to hold in that minibatch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import JobFailed
from ..events import Checkpoint, Log, Metric, Progress, Sample, Sink, StopFlag
from ..models import ModelError
from ..runs.records import RunContext
from ..training import distributed
from ..training.checkpoints import latest_checkpoint
from ..training.config import config_from_dict
from ..training.device import (
    autocast,
    check_precision,
    cpu_threads,
    freed_memory_kept,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
)
from ..training.guards import check_finite, out_of_memory_fails
from ..training.rollout import (
    Rollout,
    decode_responses,
    encode_prompts,
    length_groups,
    prompt_groups,
    response_logprobs,
    reward_scores,
    sample,
    token_values,
)
from ..training.run_models import LATEST_REWARD_MODEL, PINNED_MODELS_FILE, latest_reward_run, resolve_reward_model
from . import algorithm as alg
from . import checkpoint as ckpt
from .config import METHOD_TITLES, RLConfig
from .learner import NAN_HINT, Learner
from .models import RLModels, load_models
from .objectives import Scored, objective_for
from .watchdogs import Watchdogs

JOB_PATH = "rlhf_workbench.core.rl.train:run"
PROMPTS_FILE = "prompts.json"
REWARD_MAX_LENGTH = 2048
OOM_HINT = (
    "lower batch_size or raise num_mini_batches / gradient_accumulation_steps, lower max_new_tokens, turn on "
    "gradient_checkpointing or LoRA, or use bf16"
)

__all__ = ["JOB_PATH", "RLModels", "run", "train"]


def as_config(config: RLConfig | dict[str, Any]) -> RLConfig:
    return config if isinstance(config, RLConfig) else config_from_dict(RLConfig, dict(config))


# -- the job ---------------------------------------------------------------------------------------


def run(config: RLConfig | dict[str, Any], ctx: RunContext, sink: Sink, stop: StopFlag) -> dict[str, Any]:
    config = as_config(config).validate()
    check_precision(config.precision, resolve_device(config.device))  # refuse before loading anything
    prompts_path = ctx.run_dir / PROMPTS_FILE
    project = ctx.open_project()
    try:
        if ctx.resume and prompts_path.is_file():
            prompts = json.loads(prompts_path.read_text(encoding="utf-8"))  # the prompts the run started with
        else:
            prompts = project_prompts(project.store, config.prompt_origin)
            if not prompts:
                where = f" of pairs whose origin starts with {config.prompt_origin!r}" if config.prompt_origin else ""
                raise JobFailed(
                    f"the project has no prompts{where} to train on",
                    hint="import prompts or preference data, or clear prompt_origin",
                )
            if distributed.is_main():  # every rank read the same prompts; one writes them down
                prompts_path.write_text(json.dumps(prompts), encoding="utf-8")
            sink(Log(f"{len(prompts):,} prompts" + (f" from pairs of origin {config.prompt_origin}*" if config.prompt_origin else "")))
        try:
            config = _pin_reward_model(config, project, ctx, sink)
            torch.manual_seed(config.seed)  # a new value head starts the same every time
            models = load_models(config, project, log=lambda message: sink(Log(message, "warning")))
        except ModelError as exc:
            raise JobFailed(str(exc), hint="choose another model in the RL tab (or fix the config)") from None
    finally:
        project.close()
    return train(models, prompts, config, sink=sink, stop=stop, run_dir=ctx.run_dir, resume=ctx.resume,
                 resume_from=getattr(ctx, "resume_checkpoint", None))


def _pin_reward_model(config: RLConfig, project, ctx: RunContext, sink: Sink) -> RLConfig:
    """The config with reward_model as the checkpoint it meant when this run started: 'latest' is
    the project's newest finished reward run, and a run is the checkpoint its `best` named then.

    A resumed run reads that back, so a reward model trained while it was stopped does not score
    the rest of it, nor does the same reward run's new best if that run was resumed meanwhile
    (`best` is a link that moves). The folder is written into models.json, where the reward run's
    pruning finds it and keeps it (core/training/dependents.py).
    """
    pinned_path = ctx.run_dir / PINNED_MODELS_FILE
    if ctx.resume and pinned_path.is_file():
        pinned = json.loads(pinned_path.read_text(encoding="utf-8"))
        reward_model, checkpoint = pinned["reward_model"], pinned.get("reward_checkpoint")
    else:
        reward_model = latest_reward_run(project) if config.reward_model.strip() == LATEST_REWARD_MODEL else config.reward_model
        checkpoint = None
        if project.store.run(reward_model.strip()) is not None:
            folder = resolve_reward_model(reward_model, project).resolve()
            checkpoint = folder.relative_to(project.path.resolve()).as_posix() if folder.is_relative_to(
                project.path.resolve()) else str(folder)
        if distributed.is_main():
            pinned_path.write_text(json.dumps({"reward_model": reward_model, **(
                {"reward_checkpoint": checkpoint} if checkpoint else {})}), encoding="utf-8")
    if reward_model != config.reward_model:
        sink(Log(f"reward_model: {config.reward_model!r} is reward-model run {reward_model}"))
    if checkpoint:
        folder = project.path / checkpoint
        if folder.is_dir():
            sink(Log(f"reward_model: run {reward_model} scores with its checkpoint {folder}"))
            return dataclasses.replace(config, reward_model=str(folder))
        sink(Log(f"reward_model: the checkpoint {folder} this run started with is gone; scoring with run "
                 f"{reward_model}'s best instead", "warning"))
    return dataclasses.replace(config, reward_model=reward_model)


def project_prompts(store, origin_prefix: str | None) -> list[list[dict[str, str]]]:
    """Every prompt of the project (or of its pairs with this origin prefix) as chat messages, in id
    order, less the held-out ones (Evaluate samples there: no run trains on them)."""
    heldout = set(store.heldout_prompt_ids())
    ids = [prompt_id for prompt_id, _ in store.prompt_ids_for_comparison(origin_prefix, "") if prompt_id not in heldout]
    messages = store.prompt_messages(ids)
    return [json.loads(messages[i]) for i in ids]


# -- the loop ----------------------------------------------------------------------------------------


def train(
    models: RLModels,
    prompts: Sequence[Any],
    config: RLConfig,
    *,
    sink: Sink,
    stop: StopFlag,
    run_dir: Path | None = None,
    resume: bool = False,
    resume_from: Path | None = None,
) -> dict[str, Any]:
    """Trains `models.policy` (and PPO's value model) by `config.method` on `prompts`; returns the summary."""
    started = time.perf_counter()
    config.validate()
    if not prompts:
        raise JobFailed("no prompts to train on")
    config.check_world(distributed.world_size())
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    n_params = sum(p.numel() for p in models.policy.parameters())
    with (
        cpu_threads(config.torch_threads, device, n_params) as threads,
        freed_memory_kept(device),
        distributed.peers_lost_reported(),
    ):
        return _Trainer(models, prompts, config, device, sink, stop, run_dir).run(threads, resume, resume_from, started)


class _Trainer:
    def __init__(self, models: RLModels, prompts, config: RLConfig, device, sink: Sink, stop: StopFlag, run_dir):
        self.models, self.prompts, self.config, self.device = models, list(prompts), config, device
        self.sink, self.stop, self.run_dir = sink, stop, run_dir
        self.tokenizer = models.tokenizer
        if self.tokenizer.pad_token_id is None:
            raise JobFailed("the policy's tokenizer has no pad token and no end-of-text token to pad with")
        self.eos_id = self.tokenizer.eos_token_id
        self.encoded = encode_prompts(self.tokenizer, self.prompts, config.max_prompt_length)
        self.total_updates = max(1, math.ceil(config.total_episodes / config.batch_size))
        self.objective = objective_for(config)
        self.group = config.group_size
        self.kl = alg.AdaptiveKLController(config.kl_coef, config.target_kl, config.kl_horizon)
        self.score_moments = alg.RunningMoments()
        self.watchdogs = Watchdogs.from_config(config)
        self.autocast = autocast(config.precision, device) if config.precision != "fp32" else None
        # In fp32 the sampling loop's log-probs are the policy's (to ~1e-6); in lower precision the
        # KV-cache path and a full forward round differently, so the old log-probs are recomputed.
        self.reuse_sampling_logprobs = config.precision == "fp32"
        self.state: dict[str, Any] = {"step": 0, "episodes": 0}
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.n_params = sum(p.numel() for p in models.policy.parameters())
        self.reward_params = sum(p.numel() for p in models.reward.parameters())
        self.gold = model_gold(models, config) or demo_gold(self.prompts)

    # -- set-up ----------------------------------------------------------------------------------

    def run(self, threads: int, resume: bool, resume_from: Path | None, started: float) -> dict[str, Any]:
        models, config = self.models, self.config
        for model in (models.policy, models.value, models.reward, models.reference, models.gold):
            if model is not None:
                model.to(self.device)
                model.eval()  # dropout off everywhere (see the module docstring)
        if config.gradient_checkpointing:
            for model in (models.policy, models.value):
                if model is not None:
                    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.learner = Learner(models, config, self.objective, self.total_updates, self.autocast, self.n_params)

        resumed_from = None
        if resume:
            resumed_from = resume_from or (latest_checkpoint(self.run_dir) if self.run_dir is not None else None)
            resumed_from = distributed.broadcast_object(resumed_from)  # rank 0's view: all restore one checkpoint
        if resumed_from is not None:
            saved = ckpt.restore(resumed_from, models, optimizer=self.learner.optimizer, scheduler=self.learner.scheduler,
                                 scaler=self.learner.scaler)
            self._load_state(saved)
            self.sink(Log(f"resumed from {resumed_from} at update {self.state['step']} of {self.total_updates}"))
        else:
            if resume:
                self.sink(Log("nothing to resume from (no complete checkpoint); starting at update 0", "warning"))
            random.seed(config.seed)
            np.random.seed(config.seed % 2**32)
        where = f"cpu ({threads} thread{'s' if threads != 1 else ''})" if self.device.type == "cpu" else str(self.device)
        policy_params = sum(p.numel() for p in models.policy.parameters())
        method = METHOD_TITLES[config.method]
        groups = f" ({config.prompts_per_update} prompts x {self.group})" if self.group > 1 else ""
        trained = "policy + value" if models.value is not None else "policy"
        if not models.has_reference:
            reference = "; no reference (beta 0)"
        elif models.reference is None:
            reference = "; reference = policy without its LoRA adapter"
        else:
            reference = ""
        self.sink(Log(
            f"{method} on {where} in {config.precision}: {len(self.prompts):,} prompts, {self.total_updates:,} updates "
            f"of {config.batch_size} episodes{groups}, {config.epochs} epochs x {config.num_mini_batches} minibatches; "
            f"policy {policy_params:,} parameters, {sum(p.numel() for p in self.learner.params):,} trained ({trained})"
            + reference
            + (f"; {self.world} ranks, {config.batch_size // self.world} episodes each" if self.world > 1 else "")
        ))
        if models.gold is not None:
            self.sink(Log(f"gold: reward model {config.gold_model} (objective/gold_score, its mean score of each "
                          "update's answers), beside the reward model's score (the proxy)"))
        elif self.gold is not None:
            self.sink(Log("gold: the demo's own rules (objective/gold_score, the share of each update's answers that "
                          "follow them), beside the reward model's score (the proxy)"))
        return self._loop(started)

    # -- the loop ------------------------------------------------------------------------------------

    def _loop(self, started: float) -> dict[str, Any]:
        reset_peak_memory(self.device)
        session_start, session_updates = time.perf_counter(), 0
        last: dict[str, float] = {}
        step = self.state["step"]
        self.sink(Progress(step, self.total_updates, f"update {step:,} of {self.total_updates:,}", None))
        while self.state["step"] < self.total_updates:
            update = self.state["step"] + 1
            with out_of_memory_fails(self.device, at=f"update {update}", step=update, hint=OOM_HINT,
                                     optimizer=self.learner.optimizer):
                figures, responses, batch_prompts, scores, per_response = self._update(update)
            self.state["step"] = update
            self.state["episodes"] += len(responses)
            session_updates += 1
            done = update >= self.total_updates
            figures["episodes"] = float(self.state["episodes"])
            figures["perf/peak_memory_mb"] = (
                peak_memory_mb(self.device) if self.world == 1 else distributed.all_reduce_max([peak_memory_mb(self.device)])[0]
            )
            self.sink(Metric(update, figures))
            last = figures
            for message in self.watchdogs.check(figures, responses):
                self.sink(Log(f"update {update}: {message}", "warning"))
            if self.config.samples_per_report and (update % self.config.sample_every == 0 or update == 1 or done):
                # The first samples_per_report prompts, each with its whole group (RLOO, GRPO): the
                # table shows the responses side by side with the advantages their group gave them.
                for i in range(min(self.config.samples_per_report * self.group, len(responses))):
                    extra = {name: float(values[i]) for name, values in per_response.items()}
                    if self.group > 1:
                        extra["group"] = float(i // self.group)
                    self.sink(Sample(update, _prompt_line(batch_prompts[i]), responses[i], float(scores[i]), extra))
            now = time.perf_counter()
            eta = (now - session_start) / session_updates * (self.total_updates - update)
            self.sink(Progress(update, self.total_updates, f"update {update:,} of {self.total_updates:,}", eta))
            if self.run_dir is not None and (update % self.config.save_every == 0 or done):
                self._save()
            if not done and (self.stop() if self.world == 1 else distributed.any_rank(self.stop())):
                if self.run_dir is not None:
                    self._save()
                self.sink(Log(f"stopped at update {update:,} of {self.total_updates:,}; resume continues from here"))
                return self._summary(last, started, stopped=True)
        return self._summary(last, started, stopped=False)

    def _update(self, update: int):
        config, models, objective = self.config, self.models, self.objective
        generator = torch.Generator(device=self.device).manual_seed(alg.mix_seed(config.seed, update))
        indices = self._batch_indices(update)  # a group's responses are consecutive rows
        batch_prompts = [self.prompts[i] for i in indices]
        mine = distributed.shard(indices)  # all of them in one process

        # 1. Rollout.
        t0 = time.perf_counter()
        rollout = sample(
            models.policy, [self.encoded[i] for i in mine], pad_id=self.tokenizer.pad_token_id, eos_id=self.eos_id,
            max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
            generator=generator, autocast=self.autocast, shard=(self.rank, self.world),
        )
        responses = [text.strip() for text in decode_responses(self.tokenizer, rollout)]
        t1 = time.perf_counter()

        # 2. Scoring: old and reference log-probs, values, scores.
        ref_logprobs = values = None
        together = prompt_groups(len(mine), self.group, self.rank, self.world, rollout.tokens.device)
        with torch.no_grad(), (self.autocast or nullcontext()):
            old_logprobs = rollout.logprobs if self.reuse_sampling_logprobs else _by_length(
                rollout, lambda part: response_logprobs(models.policy, part, config.temperature, n_params=self.n_params),
                self.n_params, together)
            if models.has_reference:
                with models.reference_model() as reference:
                    ref_logprobs = _by_length(
                        rollout, lambda part: response_logprobs(reference, part, config.temperature, n_params=self.n_params),
                        self.n_params, together)
            if models.value is not None:
                values = _by_length(rollout, lambda part: token_values(models.value, part), self.n_params)
            scores = reward_scores(models.reward, models.reward_tokenizer, [self.prompts[i] for i in mine], responses,
                                   max_length=REWARD_MAX_LENGTH, together=together, n_params=self.reward_params)
        lengths, ended = rollout.response_lengths, rollout.ended
        if self.world > 1:  # from here on, the whole batch's figures on every rank
            old_logprobs, ref_logprobs, values, scores, lengths, ended, responses = self._gather(
                old_logprobs, ref_logprobs, values, scores, lengths, ended, responses)
        mask = torch.arange(old_logprobs.shape[1], device=lengths.device)[None, :] < lengths[:, None]
        old_logprobs = old_logprobs.float().masked_fill(~mask, 1.0)
        if ref_logprobs is not None:
            ref_logprobs = ref_logprobs.float().masked_fill(~mask, 1.0)
        raw_scores = scores.clone()
        if config.missing_eos_penalty is not None:
            scores = scores - config.missing_eos_penalty * (~ended).float()
        penalised = scores.clone()
        if config.normalize_scores:
            self.score_moments.update(scores)
            scores = (scores - self.score_moments.mean) / self.score_moments.std
        t2 = time.perf_counter()

        # 3. Rewards and advantages: the method's (objectives.py).
        kl_coef = self.kl.value
        targets = objective.targets(
            Scored(old_logprobs, ref_logprobs, values, scores, raw_scores, mask, lengths), kl_coef)

        # 4. The update.
        stats = self.learner.learn(update, rollout, old_logprobs, targets, mask)
        t3 = time.perf_counter()

        # 5. Figures.
        if config.adaptive_kl and targets.mean_kl is not None:
            self.kl.update(targets.mean_kl, len(indices))
        tokens = int(lengths.sum())
        seconds = t3 - t0
        figures = {
            "objective/entropy": float((-old_logprobs * mask).sum(1).mean()),
            # TRL's meaning (its PPOTrainer subtracts missing_eos_penalty before it reports), so
            # that objective/rlhf_reward = objective/scores + objective/non_score_reward holds; the
            # reward model's own mean is reported beside it while the penalty is on.
            "objective/scores": float(penalised.mean()),
            **({"objective/scores_before_eos_penalty": float(raw_scores.mean())}
               if config.missing_eos_penalty is not None else {}),
            **targets.figures,
            **stats,
            **({"objective/gold_score": self.gold(batch_prompts, responses)} if self.gold is not None else {}),
            "val/num_eos_tokens": float(ended.sum()),
            "val/response_length": float(lengths.float().mean()),
            "perf/episodes_per_s": len(indices) / seconds,
            "perf/tokens_per_s": tokens / seconds,
            "time/generation_s": t1 - t0,
            "time/scoring_s": t2 - t1,
            "time/update_s": t3 - t2,
            "lr": self.learner.scheduler.get_last_lr()[0],
        }
        for name, what in (("loss/policy_avg", "the policy loss"), ("loss/value_avg", "the value loss")):
            if name in figures:
                check_finite(figures[name], what, at=f"update {update}", step=update, hint=NAN_HINT)
        return figures, responses, batch_prompts, raw_scores.tolist(), targets.per_response

    def _gather(self, old_logprobs, ref_logprobs, values, scores, lengths, ended, responses):
        """The whole batch's per-token and per-response figures from this rank's rows (see the module docstring)."""
        width = self.config.max_new_tokens

        def padded(t):
            return torch.nn.functional.pad(t.float(), (0, width - t.shape[1]))

        lengths = distributed.gather_rows(lengths)
        real = int(lengths.max())  # as wide as one process's batch: its longest response
        per_token = [distributed.gather_rows(padded(t))[:, :real] if t is not None else None
                     for t in (old_logprobs, ref_logprobs, values)]
        return (*per_token, distributed.gather_rows(scores.float()), lengths,
                distributed.gather_rows(ended.long()).bool(), distributed.gather_objects(responses))

    def _batch_indices(self, update: int) -> list[int]:
        # Prompts in a seeded order, epoch after epoch: update u takes prompts (u-1)P .. uP-1, each
        # `group` times in a row (P = batch_size / group: one response each for PPO, a group for
        # RLOO and GRPO).
        n, size = len(self.prompts), self.config.prompts_per_update
        first = (update - 1) * size
        indices = []
        for position in range(first, first + size):
            epoch, offset = divmod(position, n)
            indices.extend([self._epoch_order(epoch)[offset]] * self.group)
        return indices

    def _epoch_order(self, epoch: int) -> list[int]:
        cached = getattr(self, "_order_cache", None)
        if cached is None or cached[0] != epoch:
            order = list(range(len(self.prompts)))
            random.Random(alg.mix_seed(self.config.seed, epoch, 2)).shuffle(order)
            self._order_cache = cached = (epoch, order)
        return cached[1]

    # -- checkpoints and summary -------------------------------------------------------------------

    def _save(self) -> None:
        if not distributed.is_main():
            return  # rank 0 writes for all; the others wait for it in the next update's gather
        state = {
            **self.state,
            "kl_coef": self.kl.value,
            "score_moments": self.score_moments.state(),
            "watchdogs": self.watchdogs.state(),
        }
        learner = self.learner
        folder = ckpt.save(self.run_dir, self.models, optimizer=learner.optimizer, scheduler=learner.scheduler,
                           scaler=learner.scaler, state=state, keep_last=self.config.keep_last)
        self.sink(Checkpoint(self.state["step"], str(folder)))

    def _load_state(self, saved: dict[str, Any]) -> None:
        self.state = {"step": int(saved["step"]), "episodes": int(saved["episodes"])}
        self.kl.value = float(saved["kl_coef"])
        self.score_moments.load(saved["score_moments"])
        self.watchdogs.load(saved["watchdogs"])

    def _summary(self, last: dict[str, float], started: float, *, stopped: bool) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "updates": self.state["step"],
            "episodes": self.state["episodes"],
            "seconds": round(time.perf_counter() - started, 3),
            "stopped": stopped,
        }
        for name in ("objective/scores", "objective/gold_score", "objective/kl", "objective/rlhf_reward", "perf/episodes_per_s"):
            if name in last:
                summary[name.split("/", 1)[1]] = last[name]
        if self.run_dir is not None:
            latest = latest_checkpoint(self.run_dir)
            if latest is not None:
                summary["last_checkpoint"] = str(latest)
        return summary


def _by_length(rollout: Rollout, per_token, n_params: int, together: torch.Tensor | None = None) -> torch.Tensor:
    """[B, R] of `per_token(part)` computed over groups of rows of similar length (less padding);
    rows `together` joins stay in one group (see length_groups)."""
    rows = torch.arange(len(rollout.response_lengths), device=rollout.tokens.device)
    groups = length_groups(rollout.lengths, rows, n_params=n_params, together=together)
    if len(groups) == 1:
        return per_token(rollout)
    out = torch.zeros(rollout.logprobs.shape, device=rollout.tokens.device)
    for group in groups:
        values = per_token(rollout.select(group))
        out[group, : values.shape[1]] = values.float()
    return out


def model_gold(models: RLModels, config: RLConfig):
    """The gold a person picked (gold_model): that reward model's mean score of the answers; None without one."""
    if models.gold is None:
        return None

    def gold(batch: Sequence[Any], responses: Sequence[str]) -> float:
        return float(reward_scores(models.gold, models.gold_tokenizer, batch, responses,
                                   max_length=config.max_prompt_length + config.max_new_tokens).mean())

    return gold


def demo_gold(prompts: Sequence[Any]):
    """The true goal, where the workbench knows it, as (prompts, responses) -> a score; None elsewhere.

    The demo project's prompts come from templates whose rule is known (demo.follows_demo_rule): its
    gold is the share of answers that follow their prompt's rule, which the reward model (the proxy)
    only approximates from the labels. Comparing the two over a run shows over-optimisation (Gao,
    Schulman & Hilton 2022): the proxy rising while the gold falls. Any other project has no gold here.
    """
    from ..demo import follows_demo_rule, prompt_rule

    texts = [_last_user_text(p) for p in prompts]
    if not texts or any(t is None or prompt_rule(t) is None for t in texts):
        return None

    def gold(batch: Sequence[Any], responses: Sequence[str]) -> float:
        return sum(follows_demo_rule(_last_user_text(p), r) for p, r in zip(batch, responses)) / len(responses)

    return gold


def _last_user_text(prompt: Any) -> str | None:
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    return users[-1] if users else None


def _prompt_line(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt) if len(prompt) > 1 else prompt[-1]["content"]
