"""Reward-model training speed: our trainer against TRL's RewardTrainer on identical work.

    .venv/bin/python bench/rm_vs_trl.py [--repeats N] [--profile ours|trl] [--gpu]

Both sides train the same random-init Llama (hidden 256, 4 layers, 4 heads, MLP 688, vocab 4096;
the same saved initial weights) with the same byte-level BPE tokenizer (trained here on the shared
HH-RLHF sample) on the same 1,024 HH pairs (the first whose chosen and rejected transcripts, EOS
included, fit in 512 tokens), token for token: batch 8 pairs, 1 epoch, AdamW lr 1e-4 with linear
decay and no warm-up, gradients clipped to norm 1, fp32, 2 torch threads, no activation
checkpointing. Each side then scores the next 256 fitting pairs with one shared evaluator.

Sides alternate (ours, trl, ours, trl, ...), each run in a fresh process. The figures are the
median training pairs/s of each side, their ratio (target: ours >= 1.5x TRL's) and the validation
accuracies (target: ours no more than 0.05 below TRL's). The last printed line is one JSON object.
See bench/README.md for what is timed on each side and the latest figures.

`--gpu`: the same on a CUDA GPU, bf16 autocast on both sides, with a ~100M-parameter Llama (hidden
768, 14 layers, 12 heads, MLP 2048); it also reports each side's model FLOP utilisation (MFU).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common, also when loaded by path
from bench_common import (
    GPU_MODEL,
    bf16_peak_flops,
    child_env,
    device_name,
    enter_gpu_mode,
    gpu_mode,
    profiled,
    run_child,
    training_flops,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCE = SHARED_DATA / "hh-rlhf-harmless" / "pairs.jsonl"

TRAIN_PAIRS, VAL_PAIRS = 1024, 256
MAX_LENGTH = 512
BATCH = 8
LEARNING_RATE = 1e-4
THREADS = 2
SEED = 0
VOCAB = 4096
# Llama's SwiGLU MLP at 8/3 x hidden (rounded up to a multiple of 16) has the weights of a 4x GELU one.
MODEL = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
         "intermediate_size": 688}
TARGET_RATIO, MAX_ACCURACY_GAP = 1.5, 0.05
# TRL as it comes, and with batches grouped by length: the ratio counts against the faster of the two.
SIDES = ("ours", "trl", "trl-grouped")
EOS, PAD = "<eos>", "<pad>"
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"

# Renders a conversation back into HH's own transcript text, EOS after a final answer. Our trainer
# renders a pair through the tokenizer's chat template when it has one, so with this template it
# sees exactly the string TRL sees (the HH transcript plus the EOS TRL appends to plain text).
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{{ ('\n\nHuman:' if m['role'] == 'user' else '\n\nAssistant:') + m['content'] }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\n\nAssistant:' }}"
    "{% elif messages and messages[-1]['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
)


# -- preparation (once, in the parent; nothing here is timed) ---------------------------------


def split_transcript(text: str) -> tuple[list[dict[str, str]], str] | None:
    """HH transcript -> (prompt messages, final answer), each content with its leading space kept
    so that CHAT_TEMPLATE rebuilds the exact text; None unless it starts with a turn marker."""
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        return None
    head, answer = text[:cut], text[cut + len(ASSISTANT) :]
    messages: list[dict[str, str]] = []
    pos = 0
    while pos < len(head):
        role = "user" if head.startswith(HUMAN, pos) else "assistant" if head.startswith(ASSISTANT, pos) else None
        if role is None:
            return None
        start = pos + len(HUMAN if role == "user" else ASSISTANT)
        ends = [i for i in (head.find(HUMAN, start), head.find(ASSISTANT, start)) if i >= 0]
        pos = min(ends) if ends else len(head)
        messages.append({"role": role, "content": head[start:pos]})
    return messages, answer


def train_tokenizer(texts: list[str], folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=VOCAB, special_tokens=[PAD, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    # A pad distinct from EOS: the classification head reads the reward at the last non-pad token,
    # which would otherwise be the token before the EOS both sides end each text with.
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD, padding_side="right")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return tokenizer


def prepare(work: Path, n_train: int = TRAIN_PAIRS, n_val: int = VAL_PAIRS, model: dict | None = None) -> dict:
    """Tokenizer, initial model and the chosen pairs, written under `work` for the children."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Writing model shards" would clutter the table
    records = [json.loads(line) for line in SOURCE.read_text(encoding="utf-8").splitlines() if line.strip()]
    tokenizer = train_tokenizer([r[k] for r in records for k in ("chosen", "rejected")], work / "tokenizer")

    pairs, skipped = [], {"prompt_differs": 0, "too_long": 0}
    for r in records:
        chosen, rejected = split_transcript(r["chosen"]), split_transcript(r["rejected"])
        # A handful of HH records differ before the last answer (a response wrote extra turns):
        # one prompt cannot carry both, so neither side gets them.
        if chosen is None or rejected is None or chosen[0] != rejected[0]:
            skipped["prompt_differs"] += 1
            continue
        # TRL's rule: plain text gets EOS appended, then pairs over max_length are dropped.
        ids = [tokenizer(r[k] + EOS)["input_ids"] for k in ("chosen", "rejected")]
        if max(map(len, ids)) > MAX_LENGTH:
            skipped["too_long"] += 1
            continue
        pairs.append({"chosen": r["chosen"], "rejected": r["rejected"], "prompt": chosen[0],
                      "chosen_answer": chosen[1], "rejected_answer": rejected[1], "lengths": list(map(len, ids))})
        if len(pairs) == n_train + n_val:
            break
    if len(pairs) < n_train + n_val:
        raise SystemExit(f"only {len(pairs)} HH pairs fit in {MAX_LENGTH} tokens; need {n_train + n_val}")
    check_same_tokens(tokenizer, pairs)

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=MAX_LENGTH, num_labels=1, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        **{**MODEL, **(model or {})},
    )
    model = LlamaForSequenceClassification(config)
    model.save_pretrained(work / "model")
    (work / "pairs.json").write_text(json.dumps({"train": pairs[:n_train], "val": pairs[n_train:]}), encoding="utf-8")
    train_lengths = [n for p in pairs[:n_train] for n in p["lengths"]]
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "skipped_prompt_differs": skipped["prompt_differs"],
        "skipped_too_long": skipped["too_long"],
        "train_tokens": sum(train_lengths),
        "train_tokens_max": max(train_lengths),
        "train_tokens_median": statistics.median(train_lengths),
    }


def check_same_tokens(tokenizer, pairs: list[dict]) -> None:
    """Our data path must turn each pair into the very ids TRL's does, or the race is unfair."""
    from rlhf_workbench.core.training.pairs import encode_pair

    for p in pairs:
        ours = encode_pair(tokenizer, (p["prompt"], p["chosen_answer"], p["rejected_answer"]), MAX_LENGTH)
        trl = [tokenizer(p[k] + EOS)["input_ids"] for k in ("chosen", "rejected")]
        if [ours[0], ours[1]] != trl:
            raise SystemExit(f"our tokens differ from TRL's for the pair starting {p['chosen'][:60]!r}")


# -- one side, in a child process -------------------------------------------------------------


def load(work: Path):
    import torch
    from transformers import LlamaForSequenceClassification, PreTrainedTokenizerFast

    torch.set_num_threads(THREADS)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(work / "tokenizer")
    model = LlamaForSequenceClassification.from_pretrained(work / "model", dtype=torch.float32)
    pairs = json.loads((work / "pairs.json").read_text(encoding="utf-8"))
    return model, tokenizer, pairs["train"], pairs["val"]


class TokenCounter:
    """Counts the tokens the model is fed in training (padding included) and the real ones."""

    def __init__(self, model):
        self.padded = self.real = self.forwards = self.row_squares = 0
        self.pad_id = model.config.pad_token_id
        model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        if module.training:
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask")
            self.forwards += 1
            self.padded += ids.numel()
            if mask is not None and mask.dim() == 4:
                # Ours, a pair packed in one row under a block mask (core/training/prefix.py): its
                # padding is the pad token (this tokenizer's <pad> is no other token).
                self.row_squares += ids.shape[0] * ids.shape[1] ** 2
                self.real += int((ids != self.pad_id).sum())
                return
            cached = mask.shape[1] - ids.shape[1] if mask is not None else 0  # keys from a KV cache (a shared prompt)
            self.row_squares += ids.shape[0] * ids.shape[1] * (ids.shape[1] + cached)
            self.real += int(mask[:, cached:].sum()) if mask is not None else ids.numel()


def val_accuracy(model, tokenizer, val: list[dict]) -> float:
    """The same scorer for both trained models: share of pairs with r_chosen > r_rejected (a tie
    is wrong, as in TRL), one batch of 8 pairs at a time."""
    import torch

    model.eval()
    right = 0
    with torch.no_grad():
        for start in range(0, len(val), BATCH):
            chunk = val[start : start + BATCH]
            texts = [p["chosen"] + EOS for p in chunk] + [p["rejected"] + EOS for p in chunk]
            batch = tokenizer(texts, padding=True, return_tensors="pt").to(model.device)
            rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
            chosen, rejected = rewards.chunk(2)
            right += int((chosen > rejected).sum())
    return right / len(val)


def run_trl(work: Path, profile: bool, grouped: bool = False) -> dict:
    import datasets
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    model, tokenizer, train_pairs, val_pairs = load(work)

    class Clock(TrainerCallback):
        # on_train_begin fires once the dataloader, optimizer and schedule exist, just before the
        # first epoch; on_train_end after the last step and the final log.
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.stop = time.perf_counter()

    clock = Clock()
    args = RewardConfig(
        output_dir=str(work / "trl-out"), report_to=[], use_cpu=not gpu_mode(), bf16=gpu_mode(),
        activation_checkpointing=False,
        per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH, num_train_epochs=1,
        learning_rate=LEARNING_RATE, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=1.0, max_length=MAX_LENGTH, seed=SEED, save_strategy="no", eval_strategy="no",
        disable_tqdm=True, dataloader_num_workers=0,
        # The one setting a knowledgeable user flips: batches of similar length (with a length column).
        # (TRL drops columns its collator does not read unless told to keep them.)
        **({"train_sampling_strategy": "group_by_length", "length_column_name": "length", "remove_unused_columns": False}
           if grouped else {}),
    )

    def rows(ps):
        columns = {k: [p[k] for p in ps] for k in ("chosen", "rejected")}
        if grouped:
            columns["length"] = [max(len(tokenizer(p["chosen"] + EOS)["input_ids"]), len(tokenizer(p["rejected"] + EOS)["input_ids"]))
                                 for p in ps]
        return datasets.Dataset.from_dict(columns)

    trainer = RewardTrainer(
        model=model, args=args, train_dataset=rows(train_pairs), eval_dataset=rows(val_pairs),
        processing_class=tokenizer, callbacks=[clock],
    )
    assert len(trainer.train_dataset) == len(train_pairs), "TRL dropped pairs we counted as fitting"
    counter = TokenCounter(trainer.model)
    with profiled(profile):
        trainer.train()
    seconds = clock.stop - clock.start
    own = trainer.evaluate()
    return {
        "train_s": seconds,
        "pairs_per_s": len(train_pairs) / seconds,
        "steps": trainer.state.global_step,
        "val_accuracy": val_accuracy(trainer.model, tokenizer, val_pairs),
        "own_val_accuracy": own["eval_accuracy"],
        "padded_tokens": counter.padded,
        "real_tokens": counter.real,
        **utilisation(trainer.model, counter, seconds),
    }


def run_ours(work: Path, profile: bool) -> dict:
    from rlhf_workbench.core.events import Log, Progress
    from rlhf_workbench.core.reward.config import RewardConfig
    from rlhf_workbench.core.reward.train import train

    model, tokenizer, train_pairs, val_pairs = load(work)
    # TRL's RewardConfig defaults where ours differ (warm-up 0 not 5%); evaluation and checkpoints
    # only at the end, as on the TRL side where evaluation runs after training, untimed.
    config = RewardConfig(
        max_length=MAX_LENGTH, batch_size=BATCH, epochs=1.0, learning_rate=LEARNING_RATE, warmup_ratio=0.0,
        lr_scheduler="linear", weight_decay=0.0, max_grad_norm=1.0, precision="bf16" if gpu_mode() else "fp32",
        gradient_checkpointing=False, device="cuda" if gpu_mode() else "cpu", torch_threads=THREADS, seed=SEED, log_every=10, eval_every=10**6, save_every=10**6,
    )
    marks: dict[str, float] = {}

    def sink(event) -> None:
        # train() emits its "training on ..." Log once the pairs are tokenized and the optimizer and
        # schedule exist, just before the first step (where TRL's on_train_begin fires); its last
        # Progress comes after the last step and its report, before the final evaluation.
        now = time.perf_counter()
        if isinstance(event, Log) and "start" not in marks:
            marks["start"] = now
        elif isinstance(event, Progress) and event.total is not None and event.step == event.total:
            marks["stop"] = now

    def pairs(ps):
        return [(p["prompt"], p["chosen_answer"], p["rejected_answer"]) for p in ps]

    # At the backbone: a pair's prompt, computed once, is one pass and its two responses another.
    counter = TokenCounter(getattr(model, model.base_model_prefix))
    with profiled(profile):
        summary = train(model, tokenizer, pairs(train_pairs), pairs(val_pairs), config, sink=sink, stop=lambda: False)
    seconds = marks["stop"] - marks["start"]
    return {
        "train_s": seconds,
        "pairs_per_s": len(train_pairs) / seconds,
        "steps": summary["steps"],
        "val_accuracy": val_accuracy(model, tokenizer, val_pairs),
        "own_val_accuracy": summary.get("eval/accuracy"),
        "padded_tokens": counter.padded,
        "real_tokens": counter.real,
        **utilisation(model, counter, seconds),
    }


def utilisation(model, counter: TokenCounter, seconds: float) -> dict:
    """Model FLOP/s of the timed training and, on a GPU in the table, the share of its bf16 peak."""
    flops = training_flops(model, counter.padded, counter.row_squares) / seconds
    peak = bf16_peak_flops(device_name()) if gpu_mode() else None
    return {"device": device_name(), "model_tflops_per_s": flops / 1e12, "mfu": flops / peak if peak else None}


def child(side: str, work: Path, profile: bool) -> None:
    result = run_ours(work, profile) if side == "ours" else run_trl(work, profile, grouped=side == "trl-grouped")
    print(json.dumps(result))


# -- the parent: prepare once, alternate the sides, report ------------------------------------


def run_side(side: str, work: Path, profile: bool = False) -> dict:
    env = child_env(work, THREADS, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    command = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--work", str(work)]
    stdout, _, load = run_child(side, command + (["--profile", side] if profile else []), env, profile=profile)
    return {**json.loads(stdout.strip().splitlines()[-1]), **load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--pairs", type=int, default=TRAIN_PAIRS,
                        help=f"training pairs (default {TRAIN_PAIRS}; fewer for a quick look, validation gets a quarter as many)")
    parser.add_argument("--profile", choices=SIDES, help="one profiled run of that side instead")
    parser.add_argument("--gpu", action="store_true",
                        help="on a CUDA GPU at bf16, with a ~100M-parameter model; reports MFU (see bench_common)")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gpu and not args.child:
        enter_gpu_mode()
    if args.child:
        child(args.child, args.work, profile=args.profile is not None)
        return 0

    with tempfile.TemporaryDirectory(prefix="rm-vs-trl-") as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        info = prepare(work, args.pairs, VAL_PAIRS * args.pairs // TRAIN_PAIRS, GPU_MODEL if args.gpu else None)
        print(f"  prepared in {time.perf_counter() - began:.1f} s: {info}", flush=True)
        if args.profile:
            print(json.dumps(run_side(args.profile, work, profile=True)))
            return 0
        runs: dict[str, list[dict]] = {side: [] for side in SIDES}
        for i in range(args.repeats):
            for side in SIDES:
                result = run_side(side, work)
                runs[side].append(result)
                print(f"  run {i + 1} {side:<4} {result['pairs_per_s']:7.2f} pairs/s  {result['train_s']:7.1f} s  "
                      f"val accuracy {result['val_accuracy']:.3f}  padding {1 - result['real_tokens'] / result['padded_tokens']:.0%}  "
                      f"{result['model_tflops_per_s']:.2f} TFLOP/s{mfu_text(result['mfu'])}  "
                      f"load {result['load_before']:.1f} -> {result['load_after']:.1f}", flush=True)
    return report(runs, {**info, "train_pairs": args.pairs, "val_pairs": VAL_PAIRS * args.pairs // TRAIN_PAIRS})


def mfu_text(mfu: float | None) -> str:
    return "" if mfu is None else f" (MFU {mfu:.1%})"


def report(runs: dict[str, list[dict]], info: dict) -> int:
    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    def mfu(side: str) -> float | None:
        return median(side, "mfu") if runs[side][0]["mfu"] is not None else None

    def padding(side: str) -> float:
        return 1 - median(side, "real_tokens") / median(side, "padded_tokens")

    fastest = max((side for side in SIDES if side != "ours" and runs[side]), key=lambda side: median(side, "pairs_per_s"))
    ours, trl = median("ours", "pairs_per_s"), median(fastest, "pairs_per_s")
    ours_acc, trl_acc = median("ours", "val_accuracy"), median(fastest, "val_accuracy")
    ratio = ours / trl
    ok = ratio >= TARGET_RATIO and ours_acc >= trl_acc - MAX_ACCURACY_GAP
    rows = [("ours: training pairs/s", f"{ours:.2f}", f"median of {len(runs['ours'])}")]
    rows += [(f"TRL RewardTrainer ({side}): pairs/s", f"{median(side, 'pairs_per_s'):.2f}", f"median of {len(runs[side])}")
             for side in SIDES if side != "ours"]
    rows += [
        ("ratio ours / fastest TRL", f"{ratio:.2f}", f"against {fastest}; must be >= {TARGET_RATIO}"),
        ("validation accuracy, ours", f"{ours_acc:.3f}", f"shared evaluator, {info['val_pairs']} pairs"),
        (f"validation accuracy, {fastest}", f"{trl_acc:.3f}", f"ours must be >= TRL - {MAX_ACCURACY_GAP}"),
    ]
    rows += [(f"padding share, {side}", f"{padding(side):.1%}", "of tokens fed") for side in SIDES]
    rows += [(f"model TFLOP/s, {side}", f"{median(side, 'model_tflops_per_s'):.2f}", runs[side][0]["device"] + mfu_text(mfu(side)))
             for side in SIDES]
    rows.append(("verdict", "ok" if ok else "FAIL", ""))
    for name, value, note in rows:
        print(f"  {name:<38}{value:>10}  {note}")
    print(json.dumps({
        "ours_pairs_per_s": round(ours, 3),
        "trl_pairs_per_s": round(trl, 3),
        "ratio": round(ratio, 3),
        "ours_val_accuracy": ours_acc,
        "trl_val_accuracy": trl_acc,
        "ours_mfu": mfu("ours"),
        "trl_mfu": mfu(fastest),
        "trl_fastest": fastest,
        "trl_pairs_per_s_by_setting": {side: round(median(side, "pairs_per_s"), 3) for side in SIDES if side != "ours"},
        "padding_share": {side: round(padding(side), 4) for side in SIDES},
        # The share of the pairs' real tokens that ours never computed: each prompt computed once, not twice.
        "prefix_sharing_saved": round(1 - median("ours", "real_tokens") / median("trl", "real_tokens"), 4),
        "device": runs["ours"][0]["device"],
        "ok": ok,
        "runs": {side: [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rs]
                 for side, rs in runs.items()},
        **info,
        "max_length": MAX_LENGTH, "batch": BATCH,
        "threads": THREADS, "python": platform.python_version(),
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
