"""The offline policy methods (SFT, DPO): their data, their objectives, and the job.

    run(config, ctx, sink, stop)    the job ("rlhf_workbench.core.offline.train:run"): the data from
                                    the project (or SFT's file), the policy, then train()
    train(model, tokenizer, train_data, val_data, config, sink=, stop=, run_dir=, resume=)
                                    usable without a project (benchmarks call it): train_data and
                                    val_data are (prompt, chosen, rejected) pairs for DPO and
                                    (prompt, response) examples for SFT

Both run on the loop every dataset method shares (training/loop.py): length-grouped batches,
accumulation, clipping, AdamW, reports, evaluation, checkpoints, exact resume, torchrun. What is
their own:

- SFT: the mean cross-entropy of the response tokens (the prompt is context, not a target);
  figures `train/loss`, `mean_token_accuracy`, `eval/loss`, `eval/mean_token_accuracy`.
- DPO: 1. before training, the reference's log-probability of every chosen and rejected response,
  computed once by the policy as it starts (with LoRA: the same thing, the adapter still zero) and
  kept in the run's folder, so a resumed run reads them back and no reference model is ever held;
  2. per batch, the pairs' chosen and rejected sequences in one forward pass, the language-model
  head on the response positions only (the prompt's logits are never needed), the loss of
  `loss_type` (losses.py); 3. figures under TRL's names (`rewards/chosen`, `rewards/rejected`,
  `rewards/accuracies`, `rewards/margins`, `logps/chosen`, `logps/rejected`), and on validation
  `eval/accuracy` (the implicit reward's, on the same validation pairs a reward model with the same
  seed is scored on, or a reward run's own with `split_from`), `eval/loss`, `eval/rewards/margins`...
  Dropout is off, as in TRL's DPOTrainer: the policy and its reference then see the same network.

A checkpoint holds the policy as a `transformers` folder (or a LoRA adapter over its base): every
policy picker takes it, and the RL methods can start from it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import JobFailed
from ..events import Log, Sink, StopFlag
from ..models import LoraSettings, ModelError
from ..runs.records import RunContext, run_dir_of
from ..training import distributed
from ..training.config import config_from_dict
from ..training.device import autocast, check_precision, cpu_threads, freed_memory_kept, resolve_device
from ..training.loop import Pass, fit
from ..training.pairs import SPLIT_FILE, load_project_pairs, pairs_by_id, split_by_prompt
from ..training.policy import load_policy, with_new_lora
from ..training.prefix import common_prefix, packs, pair_row_length, shared_batch, shared_hidden, worth_sharing
from .config import CHOSEN, METHOD_TITLES, OfflineConfig
from .data import Encoded, collate, encode_pairs, encode_sequence, read_sft_file
from .losses import chosen_nll, dpo_losses, pair_figures, token_logprobs

JOB_PATH = "rlhf_workbench.core.offline.train:run"
REFERENCE_FILE = "reference_logps.safetensors"
OOM_HINT = (
    "lower batch_size (raise gradient_accumulation_steps to keep the global batch), lower max_length, turn on "
    "gradient_checkpointing, train with LoRA, or use bf16"
)


def as_config(config: OfflineConfig | dict[str, Any]) -> OfflineConfig:
    return config if isinstance(config, OfflineConfig) else config_from_dict(OfflineConfig, dict(config))


# -- the job ---------------------------------------------------------------------------------------


def run(config: OfflineConfig | dict[str, Any], ctx: RunContext, sink: Sink, stop: StopFlag) -> dict[str, Any]:
    config = as_config(config).validate()
    check_precision(config.precision, resolve_device(config.device))  # refuse before loading anything
    train_data, val_data = _project_data(config, ctx, sink)
    try:
        model, tokenizer = load_policy(config.policy, trust_remote_code=config.trust_remote_code, trainable=True)
        if config.lora:
            model = with_new_lora(model, LoraSettings(config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules))
    except ModelError as exc:
        raise JobFailed(f"policy: {exc}" if not str(exc).startswith(("policy:", "lora_")) else str(exc),
                        hint="choose another policy (or fix the config)") from None
    return train(model, tokenizer, train_data, val_data, config, sink=sink, stop=stop, run_dir=ctx.run_dir,
                 resume=ctx.resume, resume_from=getattr(ctx, "resume_checkpoint", None))


def _project_data(config: OfflineConfig, ctx: RunContext, sink: Sink) -> tuple[list[tuple], list[tuple]]:
    """(training, validation) data of a run: DPO's pairs, SFT's (prompt, response) examples."""
    if config.method == "sft" and config.sft_data.strip() != CHOSEN:
        examples = read_sft_file(config.sft_data.strip())
        train_idx, val_idx = split_by_prompt([e[0] for e in examples], config.validation_fraction, config.seed)
        sink(Log(f"{len(train_idx):,} training and {len(val_idx):,} validation examples (split by prompt) from {config.sft_data}"))
        return [examples[i] for i in train_idx], [examples[i] for i in val_idx]
    split_path = ctx.run_dir / SPLIT_FILE
    project = ctx.open_project()
    try:
        if ctx.resume and split_path.is_file():
            # The pairs the run started with, even if labels changed since: resuming continues it.
            split = json.loads(split_path.read_text(encoding="utf-8"))
            train_pairs, _ = pairs_by_id(project.store, split["train_ids"])
            val_pairs, _ = pairs_by_id(project.store, split["val_ids"])
        else:
            if config.split_from:
                split = _reward_run_split(project, config.split_from.strip())
                train_pairs, train_ids = pairs_by_id(project.store, split["train_ids"])
                val_pairs, val_ids = pairs_by_id(project.store, split["val_ids"])
                source = f"reward-model run {config.split_from.strip()}'s split"
            else:
                data = load_project_pairs(project.store, validation_fraction=config.validation_fraction, seed=config.seed)
                train_pairs, val_pairs, train_ids, val_ids = data.train, data.val, data.train_ids, data.val_ids
                source = "split by prompt"
            if not train_pairs:
                raise JobFailed(
                    "no labelled pairs to train on: the project has no pair with a settled 'A better' or 'B better' verdict",
                    hint="label pairs in the Label tab, import labelled data, or give SFT a file (sft_data)",
                )
            split = {"train_ids": train_ids, "val_ids": val_ids, "max_length": config.max_length}
            if distributed.is_main():  # every rank drew the same split; one writes it
                split_path.write_text(json.dumps(split), encoding="utf-8")
            sink(Log(f"{len(train_ids):,} training and {len(val_ids):,} validation pairs ({source})"))
    finally:
        project.close()
    if config.method == "sft":
        return [(p[0], p[1]) for p in train_pairs], [(p[0], p[1]) for p in val_pairs]
    return train_pairs, val_pairs


def _reward_run_split(project, run_id: str) -> dict[str, Any]:
    run = project.store.run(run_id)
    if run is None or run["kind"] != "reward":
        raise JobFailed(f"split_from: {run_id!r} is not a reward-model run of this project",
                        hint="give the id of a reward-model run (Runs tab), or leave split_from empty")
    path = run_dir_of(project, run) / SPLIT_FILE
    if not path.is_file():
        raise JobFailed(f"split_from: reward-model run {run_id} has no {SPLIT_FILE} (it never started training)")
    return json.loads(path.read_text(encoding="utf-8"))


# -- training --------------------------------------------------------------------------------------


def train(
    model,
    tokenizer,
    train_data: Sequence[tuple],
    val_data: Sequence[tuple],
    config: OfflineConfig,
    *,
    sink: Sink,
    stop: StopFlag,
    run_dir: Path | None = None,
    resume: bool = False,
    resume_from: Path | None = None,
) -> dict[str, Any]:
    """Trains the policy `model` by config.method; returns the run's summary."""
    started = time.perf_counter()
    config.validate()
    config.check_world(distributed.world_size())
    if not train_data:
        raise JobFailed("nothing to train on", hint="label pairs as 'A better' or 'B better', or give SFT a file")
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise JobFailed("the tokenizer has neither a pad token nor an end-of-text token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    n_params = sum(p.numel() for p in model.parameters())
    with (
        cpu_threads(config.torch_threads, device, n_params) as threads,
        freed_memory_kept(device),
        distributed.peers_lost_reported(),
    ):
        model.to(device)
        if config.method == "dpo":
            _without_dropout(model)
            objective = DPOObjective(model, tokenizer, train_data, val_data, config, device, run_dir, sink)
        else:
            objective = SFTObjective(tokenizer, train_data, val_data, config, device)
        sink(Log(f"{METHOD_TITLES[config.method]} of {config.policy!r}"))
        return fit(model, objective, config, tokenizer=tokenizer, sink=sink, stop=stop, device=device,
                   threads=threads, started=started, run_dir=run_dir, resume=resume, resume_from=resume_from)


def _without_dropout(model) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


class ResponseLogits(torch.nn.Module):
    """The language-model head over the response positions of a batch alone: [T, V] logits for the
    T response tokens of its rows, their targets [T] and rows [T].

    On HH the prompt is most of a sequence, and the head over a large vocabulary is a large part of
    a forward pass: TRL computes it everywhere and masks. Here the backbone's hidden states are
    gathered at the positions that predict a response token first. A batch of pairs may come as a
    SharedBatch (training/prefix.py): each pair's prompt then goes through the backbone once.
    Models whose logits are more than the head's output (soft-capped, scaled) take the whole
    forward pass, unshared. A module of its own, so that DDP wraps what is called.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.split = _backbone_and_head(model)
        self.n_params = sum(p.numel() for p in model.parameters())

    @property
    def can_share(self) -> bool:
        # Gradient checkpointing turns the KV cache off in training, and the cache is what shares.
        return self.split is not None and not _checkpointing(self.model)

    def shares_for(self, encoded: Sequence[tuple[Encoded, Encoded]]) -> bool:
        """Whether these pairs' prompts are computed once (prefix.worth_sharing, judged on all of them)."""
        return self.can_share and worth_sharing([pair_share(c, r) for c, r in encoded])

    def forward(self, batch: dict[str, Any]):
        if "shared" in batch:
            shared, targets = batch["shared"], batch["rest_targets"]
            backbone, head = self.split
            hiddens, wanted, row_of = [], [], []
            for rows, hidden in shared_hidden(backbone, shared, n_params=self.n_params):
                predicting = targets[rows, 1 : hidden.shape[1]]
                hiddens.append(hidden[:, :-1][predicting])
                wanted.append(shared.rest_ids[rows, 1 : hidden.shape[1]][predicting])
                row_of.append(rows[predicting.nonzero()[:, 0]])
            return head(torch.cat(hiddens)), torch.cat(wanted), torch.cat(row_of)
        input_ids, attention_mask, targets = batch["input_ids"], batch["attention_mask"], batch["targets"]
        predicting = targets[:, 1:]
        wanted = input_ids[:, 1:][predicting]
        rows = predicting.nonzero()[:, 0]
        if self.split is not None:
            backbone, head = self.split
            hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            logits = head(hidden[:, :-1][predicting])
        else:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1][predicting]
        return logits, wanted, rows


def _checkpointing(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return any(getattr(m, "gradient_checkpointing", False) for m in base.modules())


def _backbone_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None) not in (None, 1, 1.0):
        return None
    try:
        backbone, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if backbone is None or backbone is base or not isinstance(head, torch.nn.Linear):
        return None
    return backbone, head


def _token_mean_weight(tokens: int, indices: list[int]) -> float:
    """What a per-token mean over this micro-batch's `tokens` (SFT's loss, DPO's sft_weight term) is
    multiplied by, so that the step is the single-process step: 1 in one process.

    Under torchrun a rank holds its share of the batch, and the loop weighs each rank's loss by its
    share of the batch's examples (loop.share): right for a mean over examples, not over tokens. So a
    rank's token mean is weighted by its share of the batch's tokens over its share of its examples,
    and the weighted means add up to the mean over every token of the batch. A rank that joins with a
    stand-in (a batch smaller than the world: loop.share hands it the batch's first example, weight 0)
    is left out of the counts.
    """
    world = distributed.world_size()
    if world == 1:
        return 1.0
    rank = distributed.rank()
    table = [0.0] * (3 * world)
    table[3 * rank : 3 * rank + 3] = [float(len(indices)), float(tokens), float(indices[0])]
    table = distributed.all_reduce_sum(table)
    firsts = table[2::3]
    real = [r for r in range(world) if r == 0 or firsts[r] != firsts[0]]
    examples = sum(table[3 * r] for r in real)
    all_tokens = sum(table[3 * r + 1] for r in real)
    return (tokens / max(all_tokens, 1.0)) * (examples / len(indices))


def _sums(values: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    return torch.zeros(n_rows, dtype=values.dtype, device=values.device).index_add_(0, rows, values)


class SFTObjective:
    """SFT for the shared loop: the mean cross-entropy of every response token of a batch."""

    noun = "sequences"
    oom_hint = OOM_HINT

    def __init__(self, tokenizer, train_data, val_data, config: OfflineConfig, device):
        self.config, self.device, self.pad_id = config, device, tokenizer.pad_token_id
        self.train_enc = [encode_sequence(tokenizer, p, r, config.max_length) for p, r in train_data]
        self.val_enc = [encode_sequence(tokenizer, p, r, config.max_length) for p, r in val_data]

    def lengths(self) -> list[int]:
        return [len(ids) for ids, _ in self.train_enc]

    def rest_lengths(self) -> None:
        return None

    def wrap(self, model):
        return ResponseLogits(model)

    @property
    def has_validation(self) -> bool:
        return bool(self.val_enc)

    def _pass(self, net, rows: Sequence[Encoded]) -> tuple[torch.Tensor, torch.Tensor, int]:
        batch = collate(rows, self.pad_id)
        with autocast(self.config.precision, self.device):
            logits, wanted, _ = net({k: v.to(self.device, non_blocking=True) for k, v in batch.items()})
        logprobs = token_logprobs(logits, wanted)
        with torch.no_grad():
            correct = (logits.argmax(-1) == wanted).float().sum()
        return -logprobs.mean(), correct / max(1, len(wanted)), int(batch["attention_mask"].sum())

    def forward(self, net, indices: list[int]) -> Pass:
        rows = [self.train_enc[i] for i in indices]
        weight = _token_mean_weight(sum(len(ids) - start for ids, start in rows), indices)
        loss, accuracy, tokens = self._pass(net, rows)
        return Pass(loss * weight, {"mean_token_accuracy": accuracy * weight}, len(indices), tokens)

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        if not self.val_enc:
            return {}
        net = ResponseLogits(model)
        was_training = model.training
        model.eval()
        loss_sum = correct = count = 0.0
        order = sorted(range(len(self.val_enc)), key=lambda i: -len(self.val_enc[i][0]))
        try:
            for start in range(0, len(order), self.config.batch_size):
                rows = [self.val_enc[i] for i in order[start : start + self.config.batch_size]]
                n = sum(len(ids) - s for ids, s in rows)
                loss, accuracy, _ = self._pass(net, rows)
                loss_sum, correct, count = loss_sum + float(loss) * n, correct + float(accuracy) * n, count + n
        finally:
            model.train(was_training)
        return {"eval/loss": loss_sum / count, "eval/mean_token_accuracy": correct / count}

    def rank(self, figures: dict[str, float]) -> tuple[float, ...]:
        return (-figures["eval/loss"],)

    def summary(self) -> dict[str, int]:
        return {"train_sequences": len(self.train_enc), "val_sequences": len(self.val_enc)}


class DPOObjective:
    """DPO for the shared loop: a batch's chosen and rejected sequences in one forward pass, the
    reference's log-probs read from what was computed before training."""

    noun = "pairs"
    oom_hint = OOM_HINT

    def __init__(self, model, tokenizer, train_pairs, val_pairs, config: OfflineConfig, device, run_dir, sink):
        self.config, self.device, self.pad_id = config, device, tokenizer.pad_token_id
        self.train_enc = encode_pairs(tokenizer, train_pairs, config.max_length)
        self.val_enc = encode_pairs(tokenizer, val_pairs, config.max_length)
        self.reference = reference_logprobs(model, self.train_enc, self.val_enc, self.pad_id, config, device, run_dir, sink)

    def wrap(self, model):
        net = ResponseLogits(model)
        self.sharing = net.shares_for(self.train_enc)
        self.packs = self.sharing and packs(net.split[0])
        return net

    def lengths(self) -> list[int]:
        if self.sharing and self.packs:  # one row a pair: its prompt and both responses
            return [pair_row_length(len(c[0]), len(r[0]), pair_share(c, r), True) for c, r in self.train_enc]
        if self.sharing:  # each pair's prompt computed once: batched by prompt, then response
            return [pair_share(c, r) for c, r in self.train_enc]
        return [max(len(c[0]), len(r[0])) for c, r in self.train_enc]

    def rest_lengths(self) -> list[int] | None:
        if not self.sharing or self.packs:
            return None
        return [max(len(c[0]), len(r[0])) - pair_share(c, r) for c, r in self.train_enc]

    @property
    def has_validation(self) -> bool:
        return bool(self.val_enc)

    def _losses(self, net, pairs, reference_chosen, reference_rejected, share: bool):
        n = len(pairs)
        logps, tokens, n_tokens = sequence_logprobs(
            net, [c for c, _ in pairs] + [r for _, r in pairs], self.pad_id, self.config.precision, self.device,
            pairs=True, share=share,
        )
        losses, chosen_rewards, rejected_rewards = dpo_losses(
            logps[:n], logps[n:], reference_chosen.to(self.device), reference_rejected.to(self.device),
            beta=self.config.beta, loss_type=self.config.loss_type, label_smoothing=self.config.label_smoothing,
            chosen_tokens=tokens[:n], rejected_tokens=tokens[n:],
        )
        return losses, chosen_rewards, rejected_rewards, logps[:n], logps[n:], n_tokens

    def forward(self, net, indices: list[int]) -> Pass:
        index = torch.tensor(indices)
        losses, chosen_r, rejected_r, chosen, rejected, n_tokens = self._losses(
            net, [self.train_enc[i] for i in indices], self.reference["train_chosen"][index],
            self.reference["train_rejected"][index], self.sharing,
        )
        loss = losses.mean()
        if self.config.sft_weight:
            chosen_count = sum(len(ids) - start for (ids, start), _ in (self.train_enc[i] for i in indices))
            weight = _token_mean_weight(chosen_count, indices)
            loss = loss + self.config.sft_weight * chosen_nll(chosen, self.chosen_tokens(indices)) * weight
        return Pass(loss, pair_figures(chosen_r, rejected_r, chosen, rejected), len(indices), n_tokens)

    def chosen_tokens(self, indices: list[int]) -> torch.Tensor:
        return torch.tensor([len(self.train_enc[i][0][0]) - self.train_enc[i][0][1] for i in indices],
                            dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        if not self.val_enc:
            return {}
        net = ResponseLogits(model)
        share = net.shares_for(self.val_enc)
        was_training = model.training
        model.eval()
        sums: dict[str, float] = {}
        order = longest_pairs_first(self.val_enc, share and packs(net.split[0]))
        try:
            for start in range(0, len(order), self.config.batch_size):
                idx = order[start : start + self.config.batch_size]
                index = torch.tensor(idx)
                losses, chosen_r, rejected_r, chosen, rejected, _ = self._losses(
                    net, [self.val_enc[i] for i in idx], self.reference["val_chosen"][index],
                    self.reference["val_rejected"][index], share,
                )
                figures = {"loss": losses.mean(), **pair_figures(chosen_r, rejected_r, chosen, rejected)}
                for name, value in figures.items():
                    sums[name] = sums.get(name, 0.0) + float(value) * len(idx)
        finally:
            model.train(was_training)
        means = {name: total / len(self.val_enc) for name, total in sums.items()}
        # The implicit reward's accuracy, named as a reward model's is, so that the two compare.
        means["accuracy"] = means.pop("rewards/accuracies")
        return {f"eval/{name}": value for name, value in means.items()}

    def rank(self, figures: dict[str, float]) -> tuple[float, ...]:
        return (figures["eval/accuracy"], -figures["eval/loss"])

    def summary(self) -> dict[str, int]:
        return {"train_pairs": len(self.train_enc), "val_pairs": len(self.val_enc)}


def sequence_logprobs(net, rows: Sequence[Encoded], pad_id: int, precision: str, device, *, pairs: bool = False,
                      share: bool = False) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(summed log-prob of each row's response [N] in float32, its token count [N], tokens in the batch).

    With `pairs` the rows are a batch of pairs (their first sequences, then their second ones); with
    `share` too, each pair's common prompt is computed once (training/prefix.py) when that pays.
    """
    batch = _shared_pairs(rows, pad_id) if pairs and share else None
    if batch is None:
        batch = collate(rows, pad_id)
    counts = torch.tensor([len(ids) - start for ids, start in rows], dtype=torch.float32, device=device)
    tokens = sum(len(ids) for ids, _ in rows)
    moved = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    with autocast(precision, device):
        logits, wanted, row_of = net(moved)
    logprobs = token_logprobs(logits, wanted)
    return _sums(logprobs, row_of, len(rows)), counts, tokens


def pair_share(chosen: Encoded, rejected: Encoded) -> int:
    """The first tokens a pair's two sequences share, up to the last prompt token (whose logit
    predicts the response's first, so it goes with each response)."""
    return common_prefix(chosen[0], rejected[0], min(chosen[1], rejected[1]) - 1)


def longest_pairs_first(encoded: Sequence[tuple[Encoded, Encoded]], packed: bool) -> list[int]:
    """The pairs' indices by what each costs a pass, longest first: batches of neighbours pad little."""
    cost = [pair_row_length(len(c[0]), len(r[0]), pair_share(c, r) if packed else 0, packed) for c, r in encoded]
    return sorted(range(len(encoded)), key=lambda i: -cost[i])


def _shared_pairs(rows: Sequence[Encoded], pad_id: int) -> dict[str, Any] | None:
    """A batch of pairs with each pair's prompt once, or None when a pair shares nothing."""
    n = len(rows) // 2
    first, second = rows[:n], rows[n:]
    # The prefix stops before the last prompt token: that token's logit predicts the response's first.
    limits = [min(a[1], b[1]) - 1 for a, b in zip(first, second)]
    shared = shared_batch([a[0] for a in first], [b[0] for b in second], limits, pad_id)
    if shared is None:
        return None
    targets = torch.zeros_like(shared.rest_mask, dtype=torch.bool)
    for r, (ids, start) in enumerate(rows):
        offset = int(shared.starts[r])
        targets[r, start - offset : len(ids) - offset] = True
    return {"shared": shared, "rest_targets": targets}


@torch.no_grad()
def reference_logprobs(model, train_enc, val_enc, pad_id: int, config: OfflineConfig, device, run_dir: Path | None,
                       sink: Sink) -> dict[str, torch.Tensor]:
    """The starting policy's summed log-probs of every training and validation response, computed once
    and kept in the run's folder (a resumed run reads them back: the policy has moved by then)."""
    from safetensors.torch import load_file, save_file

    path = run_dir / REFERENCE_FILE if run_dir is not None else None
    sizes = {"train_chosen": len(train_enc), "train_rejected": len(train_enc), "val_chosen": len(val_enc), "val_rejected": len(val_enc)}
    if path is not None and path.is_file():
        kept = load_file(str(path))
        if {k: len(v) for k, v in kept.items()} == sizes:
            sink(Log(f"the reference's log-probabilities of {len(train_enc) + len(val_enc):,} pairs read back from {path.name}"))
            return kept
    started = time.perf_counter()
    net = ResponseLogits(model)
    was_training = model.training
    model.eval()
    result: dict[str, torch.Tensor] = {}
    try:
        for side, encoded in (("train", train_enc), ("val", val_enc)):
            share = net.shares_for(encoded)
            chosen, rejected = torch.zeros(len(encoded)), torch.zeros(len(encoded))
            order = longest_pairs_first(encoded, share and packs(net.split[0]))
            # Twice the training batch: no gradients or optimizer state to hold.
            step = 2 * config.batch_size
            for start in range(0, len(order), step):
                idx = order[start : start + step]
                rows = [encoded[i][0] for i in idx] + [encoded[i][1] for i in idx]
                logps, _, _ = sequence_logprobs(net, rows, pad_id, config.precision, device, pairs=True, share=share)
                logps = logps.cpu()
                chosen[idx], rejected[idx] = logps[: len(idx)], logps[len(idx) :]
            result[f"{side}_chosen"], result[f"{side}_rejected"] = chosen, rejected
    finally:
        model.train(was_training)
    sink(Log(f"the reference's log-probabilities of {len(train_enc) + len(val_enc):,} pairs computed in "
             f"{time.perf_counter() - started:.1f} s (kept with the run)"))
    if path is not None and distributed.is_main():
        tmp = path.with_name(path.name + ".tmp")
        save_file(result, str(tmp))
        tmp.replace(path)
    return result
