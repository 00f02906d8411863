"""DPO training speed: our loop against TRL 1.16.0's DPOTrainer on identical work.

    .venv/bin/python bench/dpo_vs_trl.py [--repeats N] [--pairs N] [--trl-config NAME] [--sweep]
                                         [--side ours|trl] [--profile ours|trl] [--quick] [--gpu]

The sibling of bench/rm_vs_trl.py, built from its parts (imported, not copied): the same byte-level
BPE tokenizer trained on the shared HH-RLHF sample (vocab 4096, `<pad>` apart from `<eos>`, the chat
template that rebuilds HH's own transcript text), the same random-init Llama sizes (hidden 256, 4
layers, 4 heads, MLP 688), here as a causal LM (`LlamaForCausalLM`, untied head, 5.3 M parameters;
built once with seed 0 and saved, both sides load the same safetensors), the same child-process
runner and interleaved runs. The venv pins TRL 1.12 (for the reward-model and PPO benches) and one
process imports one `trl`, so the TRL side runs with .venv/trl-1.16.0 first on PYTHONPATH (`make
test` installs it there) and checks that it got 1.16.0. TRL 1.12's DPOTrainer is the pre-refactor
one (no fused LM head, another precompute path): the issue names 1.16, the version a user installs now.

Work, on both sides: the shared HH sample in order, each record split into (prompt messages, chosen
answer, rejected answer) (records whose chosen and rejected differ before the last answer are
skipped: one prompt cannot carry both); the first 1,024 pairs whose chosen and rejected sequences
(prompt + answer + EOS, rendered with the chat template) fit in 512 tokens train, the next 256
validate. Batch 8 pairs (chosen and rejected in one 16-row forward on both sides), 1 epoch = 128
steps, plain sigmoid DPO with beta 0.1 (ours: sft_weight 0; TRL: loss_type ["sigmoid"]), AdamW lr
5e-5 (fused, betas (0.9, 0.999), eps 1e-8, no weight decay), linear decay to 0 with no warm-up,
gradients clipped to norm 1, fp32, 2 torch threads, no activation checkpointing (TRL's default is
on: off here), dropout off (both sides' default), nothing saved, no evaluation during training.

Tokens: TRL gets conversational rows ({"prompt": messages, "chosen": [assistant message],
"rejected": [...]}) and tokenizes the prompt alone and prompt + answer with the chat template; ours
renders prompt + answer once and finds where the answer starts. Each TRL run compares every pair's
prompt, chosen and rejected ids it made with ours and reports whether all matched (`ids_match`).

What is timed (`train_s`, pairs/s = training pairs / train_s), in a fresh process per run, sides
alternating (ours, trl, ours, trl, ...): the reference's log-probabilities where they are computed
before training (ours always: every training and validation pair, `reference_logprobs`; TRL with
precompute_ref_log_probs: its `_precompute_ref_logps` for the training and the evaluation set, in
its constructor) plus the training loop: ours from the "training on ..." log (pairs tokenized,
reference done, optimizer built) to the last step's progress report; TRL from `on_train_begin` to
`on_train_end`. Tokenizing, loading and the final evaluation are not timed on either side. Each run
also reports the same on the process's CPU clock.

The split of each run (`reference_s`, `forward_s`, `backward_s`, `optimizer_s`, the rest of the loop
`other_s`) comes from the same instruments on both sides: a forward pre-hook on the backbone (the
decoder both sides call) starts a step's forward, `Tensor.backward` (patched) ends it and times the
backward pass, torch's global optimizer-step hooks time the step. So `forward_s` is the backbone, the
LM head, the loss and the figures (and, without precompute, TRL's reference forward), `other_s` the
batch collation, clipping, logging and the loop itself. The same pre-hook counts the tokens fed to the
backbone and how many were padding (attention mask 0), for the training passes and the reference's.

Validation accuracy: one shared scorer for both trained models: the implicit reward's accuracy
(share of the 256 validation pairs with beta x (log pi - log ref) of chosen > that of rejected; a tie
is wrong, as in TRL), with the initial model's log-probs as the reference, full logits, fp32. Each
side's own figure (TRL's `eval_rewards/accuracies`, our `eval/accuracy`) is reported beside it.

TRL's configuration (`--trl-config`, `--sweep` times each, TRL side only): every candidate keeps the
work above and varies what a speed-minded user would try. Measured with `--sweep` on this machine
(bench/README.md has the table). Not candidates: `padding_free=True` is "temporarily unavailable" in
1.16's DPOTrainer (it warns and pads as usual; the `padding-free` candidate shows it), and needs
FlashAttention anyway; `train_sampling_strategy="batch_rebalance"` balances padded tokens across ranks
and accumulation steps, not within one device's batches; Liger kernels and `use_kernels` are GPU
kernels; bf16 on this CPU is other arithmetic than ours. TRL's fused LM head scores only the
completion positions on devices with Triton (CUDA, XPU); on a CPU it projects every position.

Targets: ours >= 2x TRL's fastest setting in pairs/s, validation accuracy no more than 0.02 below
TRL's. The last printed line is one JSON object. `--quick` (what the test runs): a 1-layer hidden-32
model, 32 training and 8 validation pairs of at most 128 tokens, one thread, one run per side, the
two sides at once: the shape, not the speed.
`--gpu`: the same on a CUDA GPU, bf16 autocast on both sides, with a ~100M-parameter Llama
(bench_common.GPU_MODEL).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # rm_vs_trl and bench_common, also when loaded by path
import rm_vs_trl as rm
from bench_common import GPU_MODEL, child_env, device_name, enter_gpu_mode, gpu_mode, profiled, run_child

SOURCE = rm.SOURCE
TRAIN_PAIRS, VAL_PAIRS = 1024, 256
MAX_LENGTH = 512
BATCH = 8
LEARNING_RATE = 5e-5
BETA = 0.1
THREADS = 2
SEED = 0
MODEL = rm.MODEL
TARGET_RATIO, MAX_ACCURACY_GAP = 2.0, 0.02
TRL_NEW = "1.16.0"
TRL_FOLDER = Path(sys.prefix) / f"trl-{TRL_NEW}"
RESULT = "RESULT "  # marks the children's result lines among whatever else they print
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "TQDM_DISABLE": "1"}
PHASES = ("reference_s", "forward_s", "backward_s", "optimizer_s", "other_s")
STAGES = ("reference", "train")

# --quick: the shape of the whole thing in seconds (tests/test_dpo_vs_trl_bench.py).
QUICK_MODEL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
               "intermediate_size": 64}
QUICK_PAIRS, QUICK_THREADS, QUICK_MAX_LENGTH = 32, 1, 128

# What ours does inside its training process (training/device.freed_memory_kept), given to TRL's
# process through glibc's environment (as bench/rl_vs_trl.py's "heap" candidates).
HEAP_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1), "MALLOC_TOP_PAD_": str(64 * 2**20)}

# Keys starting with "_" are the bench's: "_length" adds a "length" column (the longer of a pair's two
# sequences, as ours groups by) that the length-grouped sampler reads, which needs the trainer to keep
# unused columns; "_sorted" hands TRL the pairs sorted by that length, longest first (its precompute
# batches them in dataset order, so sorted they pad little, as ours does; a length-grouped sampler
# draws its own order for training); "_env" goes to the TRL process's environment. The rest go to
# DPOConfig.
_PRECOMPUTE = {"precompute_ref_log_probs": True}
_GROUPED = {**_PRECOMPUTE, "train_sampling_strategy": "group_by_length", "_length": True}
TRL_CONFIGS: dict[str, dict] = {
    # A reference model beside the policy, run in every step; batches drawn at random.
    "defaults": {},
    # The reference's log-probs computed once before training, batch 8 (per_device_*_batch_size).
    "precompute": dict(_PRECOMPUTE),
    # ... in batches of 16 pairs, as ours does (no gradients to hold); TRL's go in dataset order.
    "precompute16": {**_PRECOMPUTE, "precompute_ref_batch_size": 16},
    # Warns that it is unavailable in 1.16 and pads as usual.
    "padding-free": {**_PRECOMPUTE, "padding_free": True},
    # Precompute + transformers' LengthGroupedSampler (mega-batches of 32 batches sorted by length).
    "group-by-length": dict(_GROUPED),
    "group-by-length-precompute16": {**_GROUPED, "precompute_ref_batch_size": 16},
    "group-by-length-foreach": {**_GROUPED, "optim": "adamw_torch"},
    "group-by-length-heap": {**_GROUPED, "_env": HEAP_ENV},
    "group-by-length-sorted": {**_GROUPED, "_sorted": True},
    "group-by-length-sorted-heap": {**_GROUPED, "_sorted": True, "_env": HEAP_ENV},
    "group-by-length-sorted-heap-precompute16": {**_GROUPED, "_sorted": True, "_env": HEAP_ENV,
                                                 "precompute_ref_batch_size": 16},
}
DEFAULT_TRL_CONFIG = "group-by-length-sorted"


# -- preparation (once, in the parent; nothing here is timed) -----------------------------------------


def prepare(work: Path, n_train: int = TRAIN_PAIRS, n_val: int = VAL_PAIRS, model: dict | None = None,
            max_length: int = MAX_LENGTH) -> dict:
    """Tokenizer, initial model, the pairs with our token ids, and the validation pairs' reference
    log-probs for the shared scorer, written under `work` for the children."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as transformers_logging

    from rlhf_workbench.core.offline.data import encode_sequence

    transformers_logging.disable_progress_bar()
    records = [json.loads(line) for line in SOURCE.read_text(encoding="utf-8").splitlines() if line.strip()]
    tokenizer = rm.train_tokenizer([r[k] for r in records for k in ("chosen", "rejected")], work / "tokenizer")

    pairs, skipped = [], {"prompt_differs": 0, "too_long": 0}
    for r in records:
        chosen, rejected = rm.split_transcript(r["chosen"]), rm.split_transcript(r["rejected"])
        if chosen is None or rejected is None or chosen[0] != rejected[0]:
            skipped["prompt_differs"] += 1
            continue
        prompt = chosen[0]
        # Untruncated, then as the trainer will encode them at max_length: a pair fits when they agree.
        whole = [encode_sequence(tokenizer, prompt, answer, 10**9) for answer in (chosen[1], rejected[1])]
        if any(len(ids) > max_length for ids, _ in whole) or whole != [
            encode_sequence(tokenizer, prompt, answer, max_length) for answer in (chosen[1], rejected[1])
        ]:
            skipped["too_long"] += 1
            continue
        pairs.append({"prompt": prompt, "chosen_answer": chosen[1], "rejected_answer": rejected[1],
                      "chosen_ids": whole[0][0], "chosen_start": whole[0][1],
                      "rejected_ids": whole[1][0], "rejected_start": whole[1][1]})
        if len(pairs) == n_train + n_val:
            break
    if len(pairs) < n_train + n_val:
        raise SystemExit(f"only {len(pairs)} HH pairs fit in {max_length} tokens; need {n_train + n_val}")

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=max_length, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        **{**MODEL, **(model or {})},
    )
    policy = LlamaForCausalLM(config)
    policy.save_pretrained(work / "model")
    train, val = pairs[:n_train], pairs[n_train:]
    policy.to("cuda" if gpu_mode() else "cpu")
    reference = {"chosen": response_logps(policy, [(p["chosen_ids"], p["chosen_start"]) for p in val]),
                 "rejected": response_logps(policy, [(p["rejected_ids"], p["rejected_start"]) for p in val])}
    (work / "pairs.json").write_text(
        json.dumps({"train": train, "val": val, "val_reference": reference, "max_length": max_length}), encoding="utf-8"
    )
    lengths = [len(p[k]) for p in train for k in ("chosen_ids", "rejected_ids")]
    response = [len(p[f"{k}_ids"]) - p[f"{k}_start"] for p in train for k in ("chosen", "rejected")]
    return {
        "parameters": sum(p.numel() for p in policy.parameters()),
        "skipped_prompt_differs": skipped["prompt_differs"],
        "skipped_too_long": skipped["too_long"],
        "train_tokens": sum(lengths),
        "train_tokens_median": statistics.median(lengths),
        "train_tokens_max": max(lengths),
        "train_response_share": round(sum(response) / sum(lengths), 4),
        "max_length": max_length,
    }


def response_logps(model, rows: list[tuple[list[int], int]], batch: int = 2 * BATCH) -> list[float]:
    """The shared scorer's log-probabilities: each row's response tokens summed, full logits, fp32."""
    import torch

    was_training = model.training
    model.eval()
    out = [0.0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                width = max(len(rows[i][0]) for i in idx)
                ids = torch.full((len(idx), width), 0, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                target = torch.zeros((len(idx), width), dtype=torch.bool)
                for r, i in enumerate(idx):
                    tokens, first = rows[i]
                    ids[r, : len(tokens)] = torch.tensor(tokens)
                    mask[r, : len(tokens)] = 1
                    target[r, first : len(tokens)] = True
                ids, mask, target = ids.to(device), mask.to(device), target.to(device)
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                logps = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
                sums = (logps * target[:, 1:]).sum(1).tolist()
                for r, i in enumerate(idx):
                    out[i] = sums[r]
    finally:
        model.train(was_training)
    return out


def shared_accuracy(model, data: dict) -> float:
    """The implicit reward's validation accuracy of a trained policy (see the module docstring)."""
    val, ref = data["val"], data["val_reference"]
    chosen = response_logps(model, [(p["chosen_ids"], p["chosen_start"]) for p in val])
    rejected = response_logps(model, [(p["rejected_ids"], p["rejected_start"]) for p in val])
    right = sum(BETA * (c - rc) > BETA * (r - rr) for c, r, rc, rr in zip(chosen, rejected, ref["chosen"], ref["rejected"]))
    return right / len(val)


# -- measuring, in the children -------------------------------------------------------------------------


class Instruments:
    """The same clocks and counters on both sides (see the module docstring)."""

    def __init__(self, model):
        import torch

        self.torch = torch
        self.active = True
        self.in_reference = False
        self.sync = gpu_mode()
        self.tokens = dict.fromkeys(STAGES, 0)
        self.padding = dict.fromkeys(STAGES, 0)
        self.seconds = dict.fromkeys(("reference_s", "forward_s", "backward_s", "optimizer_s"), 0.0)
        self.cpu_reference_s = 0.0
        self.forward_began: float | None = None
        self.watch(model)
        real_backward = torch.Tensor.backward

        def backward(tensor, *args, **kwargs):
            began = self.now()
            if self.active and self.forward_began is not None:
                self.seconds["forward_s"] += began - self.forward_began
                self.forward_began = None
            try:
                return real_backward(tensor, *args, **kwargs)
            finally:
                if self.active:
                    self.seconds["backward_s"] += self.now() - began

        torch.Tensor.backward = backward
        self.step_began = 0.0

        def step_pre(optimizer, args, kwargs):
            self.step_began = self.now()

        def step_post(optimizer, args, kwargs):
            if self.active:
                self.seconds["optimizer_s"] += self.now() - self.step_began

        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        register_optimizer_step_pre_hook(step_pre)
        register_optimizer_step_post_hook(step_post)

    def now(self) -> float:
        if self.sync:
            self.torch.cuda.synchronize()
        return time.perf_counter()

    def watch(self, model, stage: str | None = None) -> None:
        """Counts what `model`'s backbone is fed: as `stage`, or by what is running when None."""
        backbone = model.get_decoder() if hasattr(model, "get_decoder") else model

        def hook(module, args, kwargs):
            if not self.active:
                return
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                return
            where = stage or ("reference" if self.in_reference or not self.torch.is_grad_enabled() else "train")
            mask = kwargs.get("attention_mask")
            if mask is not None and mask.dim() == 4:
                # Ours, a pair packed in one row under a block mask (core/training/prefix.py): its
                # padding is the pad token (this tokenizer's <pad> is no other token).
                real = int((ids != backbone.config.pad_token_id).sum())
            else:
                # A pass that continues from a KV cache (ours, where the attention takes no block mask)
                # has a mask over the cached keys too; its own tokens are the mask's last columns.
                real = int(mask[:, mask.shape[1] - ids.shape[1] :].sum()) if mask is not None else ids.numel()
            self.tokens[where] += ids.numel()
            self.padding[where] += ids.numel() - real
            if where == "train" and self.forward_began is None:
                self.forward_began = self.now()

        backbone.register_forward_pre_hook(hook, with_kwargs=True)

    def reference(self, fn):
        """`fn` wrapped: its time is the reference's, the passes it makes count as the reference's."""

        def timed(*args, **kwargs):
            began, cpu = self.now(), time.process_time()
            self.in_reference = True
            try:
                return fn(*args, **kwargs)
            finally:
                self.in_reference = False
                self.seconds["reference_s"] += self.now() - began
                self.cpu_reference_s += time.process_time() - cpu

        return timed

    def result(self, loop_s: float, loop_cpu_s: float, n_pairs: int) -> dict:
        train_s = self.seconds["reference_s"] + loop_s
        cpu_s = self.cpu_reference_s + loop_cpu_s
        other = loop_s - self.seconds["forward_s"] - self.seconds["backward_s"] - self.seconds["optimizer_s"]
        return {
            "train_s": train_s, "pairs_per_s": n_pairs / train_s, "cpu_s": cpu_s, "pairs_per_cpu_s": n_pairs / cpu_s,
            "loop_s": loop_s, "loop_pairs_per_s": n_pairs / loop_s, **self.seconds, "other_s": other,
            "tokens": dict(self.tokens), "padding": dict(self.padding), "device": device_name(),
        }


def load(work: Path, threads: int):
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    torch.set_num_threads(threads)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(work / "tokenizer")
    model = LlamaForCausalLM.from_pretrained(work / "model", dtype=torch.float32)
    data = json.loads((work / "pairs.json").read_text(encoding="utf-8"))
    return model, tokenizer, data


def run_ours(work: Path, profile: bool, threads: int) -> dict:
    from rlhf_workbench.core.events import Log, Progress
    from rlhf_workbench.core.offline import train as offline
    from rlhf_workbench.core.offline.config import OfflineConfig

    model, tokenizer, data = load(work, threads)
    config = OfflineConfig(
        method="dpo", policy=str(work / "model"), beta=BETA, loss_type="sigmoid", label_smoothing=0.0, sft_weight=0.0,
        max_length=data["max_length"], batch_size=BATCH, gradient_accumulation_steps=1, epochs=1.0,
        learning_rate=LEARNING_RATE, weight_decay=0.0, warmup_ratio=0.0, lr_scheduler="linear", max_grad_norm=1.0,
        precision="bf16" if gpu_mode() else "fp32", gradient_checkpointing=False,
        device="cuda" if gpu_mode() else "cpu", torch_threads=threads, seed=SEED,
        log_every=10, eval_every=10**6, save_every=10**6,
    )
    instruments = Instruments(model)
    offline.reference_logprobs = instruments.reference(offline.reference_logprobs)
    marks: dict[str, tuple[float, float]] = {}

    def sink(event) -> None:
        # fit() logs "training on ..." once the pairs are encoded, the reference computed and the
        # optimizer built, just before the first step; its last Progress comes after the last step and
        # its report, before the final evaluation.
        if isinstance(event, Log) and event.message.startswith("training on") and "start" not in marks:
            marks["start"] = (instruments.now(), time.process_time())
        elif isinstance(event, Progress) and event.total is not None and event.step == event.total:
            marks["stop"] = (instruments.now(), time.process_time())
            instruments.active = False

    def triples(ps):
        return [(p["prompt"], p["chosen_answer"], p["rejected_answer"]) for p in ps]

    with profiled(profile):
        summary = offline.train(model, tokenizer, triples(data["train"]), triples(data["val"]), config, sink=sink,
                                stop=lambda: False)
    loop_s, loop_cpu_s = (marks["stop"][i] - marks["start"][i] for i in (0, 1))
    return {
        **instruments.result(loop_s, loop_cpu_s, len(data["train"])),
        "steps": summary["steps"],
        "val_accuracy": shared_accuracy(model, data),
        "own_val_accuracy": summary.get("eval/accuracy"),
        "ids_match": None,
    }


def run_trl(work: Path, profile: bool, threads: int, config_name: str) -> dict:
    import datasets
    import trl
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    if trl.__version__ != TRL_NEW:
        raise SystemExit(f"the TRL side imported trl {trl.__version__} from {trl.__file__}, not {TRL_NEW}")
    datasets.disable_progress_bars()
    model, tokenizer, data = load(work, threads)
    settings = TRL_CONFIGS[config_name]

    class Clock(TrainerCallback):
        # on_train_begin fires once the dataloader, optimizer and schedule exist, just before the
        # first epoch; on_train_end after the last step and the final log.
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = (instruments.now(), time.process_time())

        def on_train_end(self, args, state, control, **kwargs):
            self.stop = (instruments.now(), time.process_time())
            instruments.active = False

    clock = Clock()
    args = DPOConfig(
        output_dir=str(work / "trl-out"), report_to=[], use_cpu=not gpu_mode(), bf16=gpu_mode(),
        gradient_checkpointing=False, per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH,
        gradient_accumulation_steps=1, num_train_epochs=1, learning_rate=LEARNING_RATE, lr_scheduler_type="linear",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, max_length=data["max_length"], beta=BETA,
        loss_type=["sigmoid"], seed=SEED, save_strategy="no", eval_strategy="no", logging_steps=10,
        disable_tqdm=True, dataloader_num_workers=0,
        remove_unused_columns=not settings.get("_length", False),
        **{k: v for k, v in settings.items() if not k.startswith("_")},
    )

    def rows(ps: list[dict]):
        columns = {
            "prompt": [p["prompt"] for p in ps],
            "chosen": [[{"role": "assistant", "content": p["chosen_answer"]}] for p in ps],
            "rejected": [[{"role": "assistant", "content": p["rejected_answer"]}] for p in ps],
        }
        if settings.get("_length"):
            columns["length"] = [longest(p) for p in ps]
        return datasets.Dataset.from_dict(columns)

    def longest(p: dict) -> int:
        return max(len(p["chosen_ids"]), len(p["rejected_ids"]))

    train_pairs, val_pairs = data["train"], data["val"]
    if settings.get("_sorted"):
        train_pairs, val_pairs = (sorted(ps, key=longest, reverse=True) for ps in (train_pairs, val_pairs))
    instruments = Instruments(model)
    DPOTrainer._precompute_ref_logps = instruments.reference(DPOTrainer._precompute_ref_logps)
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=rows(train_pairs), eval_dataset=rows(val_pairs),
        processing_class=tokenizer, callbacks=[clock],
    )
    if trainer.ref_model is not None:
        instruments.watch(trainer.ref_model, "reference")
    assert len(trainer.train_dataset) == len(data["train"]), "TRL dropped pairs we counted as fitting"
    ids_match = all(
        same_ids(made, p)
        for dataset, ps in ((trainer.train_dataset, train_pairs), (trainer.eval_dataset, val_pairs))
        for made, p in zip(dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]), ps, strict=True)
    )
    with profiled(profile):
        trainer.train()
    loop_s, loop_cpu_s = (clock.stop[i] - clock.start[i] for i in (0, 1))
    result = instruments.result(loop_s, loop_cpu_s, len(data["train"]))
    own = trainer.evaluate()
    return {
        **result,
        "steps": trainer.state.global_step,
        "val_accuracy": shared_accuracy(trainer.model, data),
        "own_val_accuracy": own.get("eval_rewards/accuracies"),
        "ids_match": ids_match,
        "trl_version": trl.__version__,
        "trl_config": config_name,
        "optimizer": type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer).__name__
        + (" fused" if trainer.optimizer.param_groups[0].get("fused") else ""),
        "gradient_checkpointing": bool(getattr(trainer.model, "is_gradient_checkpointing", False)),
        "precomputed": trainer.precompute_ref_logps,
    }


def same_ids(made: dict, pair: dict) -> bool:
    """TRL's prompt, chosen and rejected ids of a pair are ours: the same sequences, the same split."""
    start = len(made["prompt_ids"])
    return (
        made["prompt_ids"] + made["chosen_ids"] == pair["chosen_ids"]
        and made["prompt_ids"] + made["rejected_ids"] == pair["rejected_ids"]
        and start == pair["chosen_start"] == pair["rejected_start"]
    )


def child(side: str, work: Path, profile: bool, threads: int, config_name: str) -> None:
    result = run_ours(work, profile, threads) if side == "ours" else run_trl(work, profile, threads, config_name)
    print(RESULT + json.dumps(result), flush=True)


# -- the parent: prepare once, alternate the sides, report -----------------------------------------------


def run_side(side: str, work: Path, *, profile: bool = False, threads: int = THREADS,
             config_name: str = DEFAULT_TRL_CONFIG) -> dict:
    env = child_env(work, threads, **OFFLINE)
    if side == "trl":
        env.update(TRL_CONFIGS[config_name].get("_env", {}))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TRL_FOLDER), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--work", str(work),
               "--threads", str(threads), "--trl-config", config_name] + (["--profile", side] if profile else [])
    stdout, stderr, load = run_child(side, command, env, profile=profile)
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT)]
    if not lines:
        raise RuntimeError(f"{side} run printed no result:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    load["padding_free_warned"] = "padding_free=True` is temporarily unavailable" in stderr
    return {**json.loads(lines[-1][len(RESULT):]), **load}


def share(r: dict, stage: str = "train") -> float:
    return r["padding"][stage] / r["tokens"][stage] if r["tokens"][stage] else 0.0


def describe(i: int, side: str, r: dict) -> str:
    name = side if side == "ours" else f"trl ({r['trl_config']})"
    return (f"  run {i} {name:<26} {r['pairs_per_s']:6.2f} pairs/s ({r['pairs_per_cpu_s']:.2f} per CPU-s)  "
            f"{r['train_s']:6.1f} s = reference {r['reference_s']:.1f} + loop {r['loop_s']:.1f} (forward "
            f"{r['forward_s']:.1f}, backward {r['backward_s']:.1f}, optimizer {r['optimizer_s']:.1f}, other "
            f"{r['other_s']:.1f})  padding {share(r):.0%}  val accuracy {r['val_accuracy']:.3f} (own "
            f"{fmt(r['own_val_accuracy'])})  load {r['load_before']:.1f} -> {r['load_after']:.1f}")


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, help="runs of each side (default 3; 1 with --quick)")
    parser.add_argument("--pairs", type=int,
                        help=f"training pairs (default {TRAIN_PAIRS}; validation gets a quarter as many)")
    parser.add_argument("--trl-config", default=DEFAULT_TRL_CONFIG, choices=list(TRL_CONFIGS), metavar="NAME",
                        help=f"TRL's speed settings (default {DEFAULT_TRL_CONFIG}, the fastest in the sweep; see the "
                             f"docstring): {', '.join(TRL_CONFIGS)}")
    parser.add_argument("--sweep", nargs="?", const="all", metavar="NAME,...",
                        help="time TRL with every --trl-config candidate (or those named) instead")
    parser.add_argument("--side", choices=("ours", "trl"), help="run only this side (no ratio)")
    parser.add_argument("--profile", choices=("ours", "trl"), help="one profiled run of that side instead")
    parser.add_argument("--quick", action="store_true",
                        help=f"a toy model, {QUICK_PAIRS} pairs of at most {QUICK_MAX_LENGTH} tokens, 1 thread, 1 run "
                             "per side: checks the shape, not the speed")
    parser.add_argument("--gpu", action="store_true",
                        help="on a CUDA GPU at bf16, with a ~100M-parameter model (see bench_common)")
    parser.add_argument("--threads", type=int, help=f"torch threads of each side (default {THREADS})")
    parser.add_argument("--child", choices=("ours", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    threads = args.threads or (QUICK_THREADS if args.quick else THREADS)
    names = list(TRL_CONFIGS) if args.sweep in (None, "all") else [n.strip() for n in args.sweep.split(",") if n.strip()]
    if unknown := [n for n in names if n not in TRL_CONFIGS]:
        parser.error(f"--sweep: {', '.join(unknown)}: not among {', '.join(TRL_CONFIGS)}")
    if args.gpu and not args.child:
        enter_gpu_mode()
    os.environ.update(OFFLINE)
    if args.child:
        child(args.child, args.work, args.profile is not None, threads, args.trl_config)
        return 0
    needs_trl = args.sweep or args.side != "ours" and args.profile != "ours"
    if needs_trl and not (TRL_FOLDER / "trl").is_dir():
        raise SystemExit(f"TRL {TRL_NEW} is not in {TRL_FOLDER}: `make test` installs it there "
                         f"(pip install --no-deps --target {TRL_FOLDER} trl=={TRL_NEW})")
    repeats = args.repeats or (1 if args.quick else 3)
    n_train = args.pairs or (QUICK_PAIRS if args.quick else TRAIN_PAIRS)
    n_val = max(1, VAL_PAIRS * n_train // TRAIN_PAIRS)
    model = QUICK_MODEL if args.quick else GPU_MODEL if args.gpu else None

    with tempfile.TemporaryDirectory(prefix="dpo-vs-trl-") as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        info = prepare(work, n_train, n_val, model, QUICK_MAX_LENGTH if args.quick else MAX_LENGTH)
        info.update(train_pairs=n_train, val_pairs=n_val, threads=threads)
        print(f"  prepared in {time.perf_counter() - began:.1f} s: {info}", flush=True)
        if args.profile:
            print(json.dumps(run_side(args.profile, work, profile=True, threads=threads, config_name=args.trl_config)))
            return 0
        if args.sweep:
            return sweep(work, repeats, threads, info, names)
        sides = (args.side,) if args.side else ("ours", "trl")
        runs: dict[str, list[dict]] = {side: [] for side in sides}

        def one(side: str) -> dict:
            return run_side(side, work, threads=threads, config_name=args.trl_config)

        for i in range(repeats):
            if args.quick:  # both sides at once, one thread each: the shape in half the time
                with ThreadPoolExecutor(len(sides)) as pool:
                    results = dict(zip(sides, pool.map(one, sides)))
            for side in sides:
                result = results[side] if args.quick else one(side)
                runs[side].append(result)
                print(describe(i + 1, side, result), flush=True)
    return report(runs, info, args.trl_config)


def sweep(work: Path, repeats: int, threads: int, info: dict, names: list[str]) -> int:
    figures: dict[str, list[dict]] = {name: [] for name in names}
    failed: dict[str, str] = {}
    for i in range(repeats):
        for name in names:
            try:
                r = run_side("trl", work, threads=threads, config_name=name)
            except RuntimeError as exc:
                failed[name] = str(exc).strip().splitlines()[-1]
                print(f"  run {i + 1} trl ({name}) failed: {failed[name]}", flush=True)
                continue
            figures[name].append(r)
            print(describe(i + 1, "trl", r) + ("  [padding_free fell back]" if r["padding_free_warned"] else ""),
                  flush=True)
    medians = {name: {"pairs_per_s": round(statistics.median(r["pairs_per_s"] for r in rs), 3),
                      "pairs_per_cpu_s": round(statistics.median(r["pairs_per_cpu_s"] for r in rs), 3),
                      "padding_share": round(statistics.median(share(r) for r in rs), 4),
                      "val_accuracy": statistics.median(r["val_accuracy"] for r in rs),
                      **{k: round(statistics.median(r[k] for r in rs), 2) for k in PHASES}}
               for name, rs in figures.items() if rs}
    fastest = max(medians, key=lambda n: medians[n]["pairs_per_s"]) if medians else None
    for name, m in medians.items():
        print(f"  {name:<26} {m['pairs_per_s']:6.2f} pairs/s ({m['pairs_per_cpu_s']:.2f} per CPU-s)  padding "
              f"{m['padding_share']:.0%}  val accuracy {m['val_accuracy']:.3f}  split "
              + " / ".join(f"{m[k]:.1f}" for k in PHASES) + (" s  <- fastest" if name == fastest else " s"))
    print(json.dumps({"sweep": medians, "fastest": fastest, "failed": failed, "repeats": repeats, **info,
                      "trl": TRL_NEW, "device": device_name()}))
    return 0


def report(runs: dict[str, list[dict]], info: dict, trl_config: str) -> int:
    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    def padding(side: str, stage: str = "train") -> float:
        tokens = sum(r["tokens"][stage] for r in runs[side])
        return sum(r["padding"][stage] for r in runs[side]) / tokens if tokens else 0.0

    both = set(runs) == {"ours", "trl"}
    problems = []
    if "trl" in runs and not all(r["ids_match"] for r in runs["trl"]):
        problems.append("TRL's token ids of some pair differ from ours")
    for side, rs in runs.items():
        if any(r["steps"] != rs[0]["steps"] for r in rs) or (both and rs[0]["steps"] != runs["ours"][0]["steps"]):
            problems.append(f"{side}: the runs took different numbers of steps")
    rows, figures = [], {}
    for side, rs in runs.items():
        name = "ours" if side == "ours" else f"TRL {TRL_NEW} DPOTrainer ({trl_config})"
        figures[side] = {
            "pairs_per_s": median(side, "pairs_per_s"), "pairs_per_cpu_s": median(side, "pairs_per_cpu_s"),
            "accuracy": median(side, "val_accuracy"),
            "own_accuracy": None if rs[0]["own_val_accuracy"] is None else median(side, "own_val_accuracy"),
            "padding_share": padding(side), "reference_padding_share": padding(side, "reference"),
            "split": {k: round(median(side, k), 3) for k in PHASES},
        }
        f = figures[side]
        rows += [
            (f"{name}: training pairs/s", f"{f['pairs_per_s']:.2f}", f"median of {len(rs)}, reference included"),
            ("  per CPU-second of its process", f"{f['pairs_per_cpu_s']:.2f}", "the same, on the CPU clock"),
            ("  reference / forward / backward / optimizer / other",
             " / ".join(f"{f['split'][k]:.1f}" for k in PHASES), "s, medians"),
            ("  padding: training / reference passes",
             f"{f['padding_share']:.1%} / {f['reference_padding_share']:.1%}", "of the tokens fed to the backbone"),
            ("  validation accuracy", f"{f['accuracy']:.3f}",
             f"shared scorer, {info['val_pairs']} pairs; its own: {fmt(f['own_accuracy'])}"),
        ]
    ratio = cpu_ratio = None
    ok = False
    if both:
        ratio = figures["ours"]["pairs_per_s"] / figures["trl"]["pairs_per_s"]
        cpu_ratio = figures["ours"]["pairs_per_cpu_s"] / figures["trl"]["pairs_per_cpu_s"]
        ok = (ratio >= TARGET_RATIO and figures["ours"]["accuracy"] >= figures["trl"]["accuracy"] - MAX_ACCURACY_GAP
              and not problems)
        rows += [("ratio ours / TRL", f"{ratio:.2f}", f"must be >= {TARGET_RATIO}"),
                 ("ratio ours / TRL on the CPU clock", f"{cpu_ratio:.2f}", "less swayed by other load"),
                 ("accuracy ours - TRL", f"{figures['ours']['accuracy'] - figures['trl']['accuracy']:+.3f}",
                  f"must be >= -{MAX_ACCURACY_GAP}")]
    for problem in problems:
        rows.append(("problem", "!", problem))
    rows.append(("verdict", "ok" if ok else ("FAIL" if both or problems else "n/a"), ""))
    for name, value, note in rows:
        print(f"  {name:<54}{value:>22}  {note}")

    def get(side: str, key: str):
        return figures[side][key] if side in figures else None

    print(json.dumps({
        "ratio": None if ratio is None else round(ratio, 3),
        "cpu_ratio": None if cpu_ratio is None else round(cpu_ratio, 3),
        "ours_pairs_per_s": get("ours", "pairs_per_s"),
        "trl_pairs_per_s": get("trl", "pairs_per_s"),
        "ours_accuracy": get("ours", "accuracy"),
        "trl_accuracy": get("trl", "accuracy"),
        "ours_own_accuracy": get("ours", "own_accuracy"),
        "trl_own_accuracy": get("trl", "own_accuracy"),
        "ours_padding_share": get("ours", "padding_share"),
        "trl_padding_share": get("trl", "padding_share"),
        "ours_reference_padding_share": get("ours", "reference_padding_share"),
        "trl_reference_padding_share": get("trl", "reference_padding_share"),
        "trl_config": {"name": trl_config, **{k: v for k, v in TRL_CONFIGS[trl_config].items() if k != "_env"},
                       **({"env": TRL_CONFIGS[trl_config]["_env"]} if "_env" in TRL_CONFIGS[trl_config] else {})},
        "split": {side: f["split"] for side, f in figures.items()},
        "ok": ok,
        "problems": problems,
        "runs": {side: [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rs]
                 for side, rs in runs.items()},
        **info,
        "trl": TRL_NEW, "batch": BATCH, "beta": BETA, "learning_rate": LEARNING_RATE,
        "python": platform.python_version(), "device": next(iter(runs.values()))[0]["device"],
    }))
    return 0 if ok or (not both and not problems) else 1


if __name__ == "__main__":
    sys.exit(main())
