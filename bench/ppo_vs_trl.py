"""PPO speed: our PPO loop against TRL 1.12.0's `trl.experimental.ppo.PPOTrainer` on identical work.

    .venv/bin/python bench/ppo_vs_trl.py [--repeats N] [--episodes N] [--side ours|trl] [--profile ours|trl] [--gpu]

Both sides start from the same saved initial weights: a random-init Llama policy (hidden 256, 4 layers,
4 heads, MLP 688, vocab 4096; the reference is a second copy of it) and a value and a reward model of
the same shape with a one-label classification head (the value model starts as a copy of the reward
model, as in TRL's PPO example). One byte-level BPE tokenizer, trained here on the shared HH-RLHF
sample, serves all four; `<pad>` is separate from `<eos>`. The prompts are the first human turns of
the first 128 records of that sample (distinct, at most 128 tokens rendered), as single user
messages rendered with the workbench's plain chat template ("User: ...\\n\\nAssistant:").

Work per update, on both sides: 16 prompts (left-padded to the longest), 53 sampled response tokens
each at temperature 0.7 (no top-k, no top-p), k1 KL penalty against the reference with coefficient
0.05, reward-model score on the last response token, GAE (gamma 1, lambda 0.95) over value-model
estimates, advantages whitened, 4 PPO epochs of 1 minibatch of 16 (clip 0.2, value clip 0.2,
vf_coef 0.1) with AdamW lr 3e-6 and no gradient clipping, fp32, 2 torch threads, CPU.

Response length: exactly 53 tokens on both sides. TRL's default `stop_token=None` makes EOS an
ordinary token: PPOTrainer sets the policy's `generation_config.eos_token_id` to None, so `generate`
always adds `response_length` tokens, and nothing is truncated. Ours ends a response at EOS (the
rest of its row becomes padding) but keeps sampling until every response of the batch has ended;
with a random-init policy EOS comes up about once in 4,096 tokens (~2 per run of 128 episodes),
so ours also runs 53 sampling steps for every batch. The bench checks both: TRL's
`policy.generate` and our `rollout.sample` (as core/rl/train.py calls it) are watched, and each
run reports the tokens every batch got (must be [53]) and a digest of the prompts' token ids (must
be the same in every run of both sides).

Prompt formatting: TRL gets pre-tokenized `input_ids` of the prompt rendered by the tokenizer's chat
template (`apply_chat_template(..., add_generation_prompt=True, tokenize=False)`, then the
tokenizer, which adds no special tokens); ours gets the user message as a string and renders it
with the same template. The prompt digests show the two give the same ids.

Sides alternate (ours, trl, ours, trl, ...), each run in a fresh process. The figure per run is
steady-state episodes/s: the first update is left out as warm-up (one-time costs: allocator
growth, kernel selection, TRL's first gc.collect over a fresh heap; it takes 0.2-0.7 s longer than
the others for ours here, 1.2-1.4 s for TRL's), so it is (updates - 1) x 16 episodes over the wall time from the end of update 1
to the end of the last one. The bench prints the median of each side, their ratio (target: ours
>= 2x TRL's), the same on each process's CPU clock (less swayed by other load on the machine) and
each side's time split per update (generation / scoring / update, medians). The last printed line
is one JSON object. See bench/README.md for what is timed on each side and the latest figures.

`--gpu`: the same on a CUDA GPU, bf16 autocast on both sides (fp32 master weights), with ~100M-parameter
policy, reference, value and reward models (hidden 768, 14 layers, 12 heads, MLP 2048).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common, also when loaded by path
from bench_common import GPU_MODEL, child_env, device_name, enter_gpu_mode, gpu_mode, profiled, run_child

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCE = SHARED_DATA / "hh-rlhf-harmless" / "pairs.jsonl"

PROMPTS = 128
MAX_PROMPT_TOKENS = 128
EPISODES = 128  # 8 updates of 16, one pass over the prompts
BATCH = 16
RESPONSE_LENGTH = 53
PPO_EPOCHS = 4
MINI_BATCHES = 1
TEMPERATURE = 0.7
KL_COEF = 0.05
THREADS = 2
SEED = 0
VOCAB = 4096
MODEL = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
         "intermediate_size": 688}
TARGET_RATIO = 2.0
EOS, PAD = "<eos>", "<pad>"
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
PHASES = ("generation_s", "scoring_s", "update_s")


# -- preparation (once, in the parent; nothing here is timed) ---------------------------------


def first_human_turn(transcript: str) -> str | None:
    if not transcript.startswith(HUMAN):
        return None
    end = transcript.find(ASSISTANT)
    text = transcript[len(HUMAN) : end if end >= 0 else None].strip()
    return text or None


def train_tokenizer(texts: list[str], folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from rlhf_workbench.core.models import DEMO_CHAT_TEMPLATE

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
    # Left padding: both sides generate from a batch of prompts, and TRL pads its queries with the
    # tokenizer's own side. A pad separate from EOS: TRL reads a pad inside a response as its end.
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD, padding_side="left")
    tokenizer.chat_template = DEMO_CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return tokenizer


def render(tokenizer, prompt: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def prepare(work: Path, n_prompts: int = PROMPTS, model: dict | None = None) -> dict:
    """Tokenizer, the three initial models and the prompts, written under `work` for the children."""
    import torch
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
    )
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    records = [json.loads(line) for line in SOURCE.read_text(encoding="utf-8").splitlines() if line.strip()]
    tokenizer = train_tokenizer([r[k] for r in records for k in ("chosen", "rejected")], work / "tokenizer")

    prompts, lengths = [], []
    for r in records:
        prompt = first_human_turn(r["chosen"])
        if prompt is None or prompt in prompts:
            continue
        # Neither side then truncates a prompt (ours keeps the last max_prompt_length tokens, TRL none).
        n = len(tokenizer(render(tokenizer, prompt))["input_ids"])
        if n > MAX_PROMPT_TOKENS:
            continue
        prompts.append(prompt)
        lengths.append(n)
        if len(prompts) == n_prompts:
            break

    shape = {**MODEL, **(model or {})}
    config = dict(vocab_size=len(tokenizer), max_position_embeddings=512, tie_word_embeddings=False,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **shape)
    torch.manual_seed(SEED)
    policy = LlamaForCausalLM(LlamaConfig(**config))
    policy.save_pretrained(work / "policy")
    torch.manual_seed(SEED + 1)
    reward = LlamaForSequenceClassification(LlamaConfig(num_labels=1, **config))
    reward.save_pretrained(work / "reward")
    shutil.copytree(work / "reward", work / "value")
    (work / "prompts.json").write_text(json.dumps(prompts), encoding="utf-8")
    return {
        "prompts": len(prompts),
        "prompt_tokens_median": statistics.median(lengths),
        "prompt_tokens_max": max(lengths),
        "policy_parameters": sum(p.numel() for p in policy.parameters()),
        "value_parameters": sum(p.numel() for p in reward.parameters()),
    }


# -- one side, in a child process -------------------------------------------------------------


def load(work: Path):
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    torch.set_num_threads(THREADS)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(work / "tokenizer")
    policy = AutoModelForCausalLM.from_pretrained(work / "policy", dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(work / "policy", dtype=torch.float32)
    value = AutoModelForSequenceClassification.from_pretrained(work / "value", num_labels=1, dtype=torch.float32)
    reward = AutoModelForSequenceClassification.from_pretrained(work / "reward", num_labels=1, dtype=torch.float32)
    prompts = json.loads((work / "prompts.json").read_text(encoding="utf-8"))
    return tokenizer, policy, reference, value, reward, prompts


class SamplingWatch:
    """What each side really samples: the tokens each batch got (must be 53 for every one) and the
    prompts, as unpadded token ids (the same multiset on both sides over a whole run)."""

    def __init__(self):
        self.new_tokens: list[int] = []
        self.prompts: list[tuple[int, ...]] = []

    def record(self, prompts: list[list[int]], new_tokens: int) -> None:
        self.new_tokens.append(int(new_tokens))
        self.prompts.extend(tuple(p) for p in prompts)

    def on_generate(self, model) -> SamplingWatch:
        """Wraps `model.generate` (TRL samples through it)."""
        real = model.generate

        def generate(*args, **kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask")
            out = real(*args, **kwargs)
            sequences = out if hasattr(out, "shape") else out.sequences
            rows = ids.tolist() if mask is None else [
                [t for t, m in zip(r, ms) if m] for r, ms in zip(ids.tolist(), mask.tolist())
            ]
            self.record(rows, sequences.shape[1] - ids.shape[1])
            return out

        model.generate = generate
        return self

    def on_function(self, module, name: str) -> SamplingWatch:
        """Wraps our sampling function, `module.name(model, prompt_ids, ...)` -> Rollout."""
        real = getattr(module, name)

        def sample(model, prompt_ids, *args, **kwargs):
            rollout = real(model, prompt_ids, *args, **kwargs)
            self.record(list(prompt_ids), rollout.responses.shape[1])
            return rollout

        setattr(module, name, sample)
        return self

    def report(self) -> dict:
        digest = hashlib.sha256(json.dumps(sorted(self.prompts)).encode()).hexdigest()[:16]
        return {"sampling_calls": len(self.new_tokens), "new_tokens": sorted(set(self.new_tokens)),
                "prompts_seen": len(self.prompts), "prompts_digest": digest}


def checkpointing(model) -> bool:
    flag = getattr(model, "is_activation_checkpointing", None)  # transformers 5's name
    return bool(model.is_gradient_checkpointing if flag is None else flag)


def steady(ends: list[float], batch: int) -> float:
    """Episodes/s from the end of the first update to the end of the last (the first is warm-up),
    on the wall clock or on the process's CPU clock."""
    return (len(ends) - 1) * batch / (ends[-1] - ends[0])


def mean_split(updates: list[dict]) -> dict:
    """Mean seconds per update of each phase, warm-up update left out."""
    rest = updates[1:] or updates
    return {k: statistics.fmean(u[k] for u in rest) for k in PHASES}


def run_trl(work: Path, episodes: int, profile: bool = False) -> dict:
    import datasets
    from transformers import TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as trl_ppo

    tokenizer, policy, reference, value, reward, prompts = load(work)
    ids = [tokenizer(render(tokenizer, p))["input_ids"] for p in prompts]

    # TRL keeps no timers of its own (only `eps`, over the whole run), so its loop is cut where ours
    # is (see run_ours), at module-level functions it calls by name. Generation: `batch_generation`
    # (sampling with the KV cache, keeping every step's logits). Scoring: from there to the end of
    # the last `get_reward` (log-probs from those logits, the reference forward, the value and
    # reward forwards). Update: from there to `on_step_end` (KL, rewards, GAE, whitening, 4 PPO
    # epochs, metrics, lr step). The rest (gc.collect, the next batch) falls between updates.
    updates: list[dict] = []
    clock: dict[str, float] = {}
    eos: list[float] = []
    real_generation, real_get_reward = trl_ppo.batch_generation, trl_ppo.get_reward

    def batch_generation(*args, **kwargs):
        start = time.perf_counter()
        out = real_generation(*args, **kwargs)
        clock.update(generation_start=start, generation_end=time.perf_counter())
        return out

    def get_reward(*args, **kwargs):
        out = real_get_reward(*args, **kwargs)
        clock["scoring_end"] = time.perf_counter()
        return out

    class Clock(TrainerCallback):
        # on_train_begin fires once the trainer is built (optimizer, schedule, dataloader), just
        # before the first update; on_step_end after each update's PPO epochs, log and lr step.
        def on_train_begin(self, args, state, control, **kwargs):
            clock["train_start"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            end = time.perf_counter()
            updates.append({
                "end": end,
                "cpu": time.process_time(),
                "generation_s": clock["generation_end"] - clock["generation_start"],
                "scoring_s": clock["scoring_end"] - clock["generation_end"],
                "update_s": end - clock["scoring_end"],
            })

        def on_train_end(self, args, state, control, **kwargs):
            clock["train_end"] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            eos.append((logs or {}).get("val/num_eos_tokens", 0))

    trl_ppo.batch_generation, trl_ppo.get_reward = batch_generation, get_reward
    # Everything the spec names is set; the rest is TRL's default (lr 3e-6 with linear decay over the
    # updates, AdamW, cliprange 0.2, cliprange_value 0.2, vf_coef 0.1, gamma 1, lam 0.95, no reward
    # whitening, stop_token None, missing_eos_penalty None). Activation checkpointing (TRL's default
    # on) is turned off explicitly, though PPOTrainer never applies it: it does not run
    # Trainer.__init__, where that happens. No eval_dataset: TRL's sample generations
    # (num_sample_generations) then do nothing, and no checkpoints are written.
    args = PPOConfig(
        output_dir=str(work / "trl-out"), report_to=[], use_cpu=not gpu_mode(), bf16=gpu_mode(), fp16=False,
        activation_checkpointing=False, per_device_train_batch_size=BATCH, gradient_accumulation_steps=1,
        num_mini_batches=MINI_BATCHES, num_ppo_epochs=PPO_EPOCHS, total_episodes=episodes,
        response_length=RESPONSE_LENGTH, temperature=TEMPERATURE, kl_estimator="k1", kl_coef=KL_COEF,
        seed=SEED, save_strategy="no", disable_tqdm=True,
    )
    try:
        trainer = PPOTrainer(
            args=args, processing_class=tokenizer, model=policy, ref_model=reference, reward_model=reward,
            value_model=value, train_dataset=datasets.Dataset.from_dict({"input_ids": ids}), callbacks=[Clock()],
        )
        # TRL's PrinterCallback would print every update's metrics; they are not ours to show.
        trainer.remove_callback(trl_ppo.PrinterCallback)
        watch = SamplingWatch().on_generate(policy)
        with profiled(profile):
            trainer.train()
    finally:
        trl_ppo.batch_generation, trl_ppo.get_reward = real_generation, real_get_reward
    ends = [u["end"] for u in updates]
    return {
        "episodes": trainer.state.episode,
        "updates": len(updates),
        "episodes_per_s": steady(ends, BATCH),
        "episodes_per_cpu_s": steady([u["cpu"] for u in updates], BATCH),
        "episodes_per_s_all": trainer.state.episode / (clock["train_end"] - clock["train_start"]),
        "train_s": clock["train_end"] - clock["train_start"],
        **mean_split(updates),
        "first_update_s": ends[0] - clock["train_start"],
        "gradient_checkpointing": checkpointing(policy),
        "optimizer": f"{type(trainer.optimizer.optimizer).__name__} {trainer.args.optim}",
        "eos_sampled": sum(eos),
        **watch.report(),
    }


def update_recorder() -> tuple[list[dict], Callable[[Any], None]]:
    """(updates, sink): the sink appends the end time, the CPU clock and our loop's own split of
    each update to updates. Our loop sends one Metric per update when it is done: the same cut as
    TRL's on_step_end."""
    from rlhf_workbench.core.events import Metric

    updates: list[dict] = []

    def sink(event) -> None:
        if isinstance(event, Metric) and "time/update_s" in event.values:
            v = event.values
            updates.append({"end": time.perf_counter(), "cpu": time.process_time(),
                            "generation_s": v["time/generation_s"], "scoring_s": v["time/scoring_s"],
                            "update_s": v["time/update_s"], "eos": v.get("val/num_eos_tokens", 0)})

    return updates, sink


def run_ours(work: Path, episodes: int, profile: bool = False) -> dict:
    from rlhf_workbench.core.rl import train as ours_train
    from rlhf_workbench.core.rl.config import RLConfig
    from rlhf_workbench.core.rl.train import RLModels, train

    tokenizer, policy, reference, value, reward, prompts = load(work)
    # TRL's values for everything, including what the spec leaves at TRL's default: lr 3e-6, no
    # gradient clipping (TRL's PPO loop never clips, whatever max_grad_norm says), no weight decay,
    # no reward whitening or score normalization, a fixed KL coefficient, no EOS penalty. Our
    # sample reports stay on (a few decoded texts per report): they cost ours, not TRL.
    config = RLConfig(
        batch_size=BATCH, num_mini_batches=MINI_BATCHES, num_ppo_epochs=PPO_EPOCHS, gradient_accumulation_steps=1,
        max_new_tokens=RESPONSE_LENGTH, temperature=TEMPERATURE, top_p=1.0, kl_estimator="k1", kl_coef=KL_COEF,
        adaptive_kl=False, whiten_rewards=False, normalize_scores=False, missing_eos_penalty=None,
        learning_rate=3e-6, cliprange=0.2, cliprange_value=0.2, vf_coef=0.1, gamma=1.0, lam=0.95,
        max_grad_norm=0.0, weight_decay=0.0, total_episodes=episodes, max_prompt_length=MAX_PROMPT_TOKENS,
        precision="bf16" if gpu_mode() else "fp32", gradient_checkpointing=False,
        device="cuda" if gpu_mode() else "cpu", torch_threads=THREADS, seed=SEED,
        lora=False, save_every=10**6,
    ).validate()
    # Its own split: generation = sampling + decoding the responses to text; scoring = the
    # reference, value and reward forwards (the reward model reads the re-rendered text);
    # update = KL, rewards, GAE, whitening and the PPO epochs.
    updates, sink = update_recorder()

    models = RLModels(policy=policy, reference=reference, value=value, reward=reward, tokenizer=tokenizer,
                       reward_tokenizer=tokenizer)
    watch = SamplingWatch()
    if hasattr(ours_train, "sample"):
        watch.on_function(ours_train, "sample")
    start = time.perf_counter()
    with profiled(profile):
        summary = train(models, prompts, config, sink=sink, stop=lambda: False)
    end = time.perf_counter()
    ends = [u["end"] for u in updates]
    return {
        "episodes": len(updates) * BATCH,
        "updates": len(updates),
        "episodes_per_s": steady(ends, BATCH),
        "episodes_per_cpu_s": steady([u["cpu"] for u in updates], BATCH),
        # The whole train() call: unlike TRL's figure this includes building the optimizer and
        # tokenizing the prompts, which TRL does in its constructor.
        "episodes_per_s_all": len(updates) * BATCH / (end - start),
        "own_episodes_per_s": summary.get("episodes_per_s"),
        "train_s": end - start,
        **mean_split(updates),
        "first_update_s": ends[0] - start,
        "gradient_checkpointing": checkpointing(policy),
        "eos_sampled": sum(u["eos"] for u in updates),
        **watch.report(),
    }


def child(side: str, work: Path, episodes: int, profile: bool) -> None:
    result = (run_ours if side == "ours" else run_trl)(work, episodes, profile)
    print(json.dumps({**result, "device": device_name()}))


# -- the parent: prepare once, alternate the sides, report ------------------------------------


def run_side(side: str, work: Path, episodes: int, profile: bool = False) -> dict:
    env = child_env(work, THREADS, **OFFLINE)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--work", str(work),
               "--episodes", str(episodes)] + (["--profile", side] if profile else [])
    stdout, _, load = run_child(side, command, env, profile=profile)
    return {**json.loads(stdout.strip().splitlines()[-1]), **load}


def describe(i: int, side: str, r: dict) -> str:
    return (f"  run {i} {side:<4} {r['episodes_per_s']:5.2f} episodes/s ({r['episodes_per_cpu_s']:.2f} per CPU-s)  "
            f"{r['train_s']:6.1f} s  per update: gen {r['generation_s']:.2f} s, score {r['scoring_s']:.2f} s, "
            f"update {r['update_s']:.2f} s  new tokens {r['new_tokens']}  load {r['load_before']:.1f} -> {r['load_after']:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--episodes", type=int, default=EPISODES,
                        help=f"episodes per run, a multiple of {BATCH} (default {EPISODES})")
    parser.add_argument("--side", choices=("ours", "trl"), help="run only this side (no ratio)")
    parser.add_argument("--profile", choices=("ours", "trl"), help="one profiled run of that side instead")
    parser.add_argument("--gpu", action="store_true",
                        help="on a CUDA GPU at bf16, with ~100M-parameter models (see bench_common)")
    parser.add_argument("--child", choices=("ours", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gpu and not args.child:
        enter_gpu_mode()
    if args.episodes % BATCH or args.episodes < 2 * BATCH:
        parser.error(f"--episodes must be a multiple of {BATCH}, at least {2 * BATCH} (the first update is warm-up)")
    os.environ.update(OFFLINE)
    if args.child:
        child(args.child, args.work, args.episodes, profile=args.profile is not None)
        return 0

    with tempfile.TemporaryDirectory(prefix="ppo-vs-trl-") as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        info = prepare(work, model=GPU_MODEL if args.gpu else None)
        print(f"  prepared in {time.perf_counter() - began:.1f} s: {info}", flush=True)
        if args.profile:
            print(json.dumps(run_side(args.profile, work, args.episodes, profile=True)))
            return 0
        sides = (args.side,) if args.side else ("ours", "trl")
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for i in range(args.repeats):
            for side in sides:
                result = run_side(side, work, args.episodes)
                runs[side].append(result)
                print(describe(i + 1, side, result), flush=True)
    return report(runs, {**info, "episodes": args.episodes})


def report(runs: dict[str, list[dict]], info: dict) -> int:
    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    names = {"ours": "ours", "trl": "TRL PPOTrainer"}
    rows, figures, cpu_figures = [], {}, {}
    for side, rs in runs.items():
        figures[side], cpu_figures[side] = median(side, "episodes_per_s"), median(side, "episodes_per_cpu_s")
        rows.append((f"{names[side]}: episodes/s", f"{figures[side]:.2f}", f"median of {len(rs)}, update 1 left out"))
        rows.append(("  per CPU-second of its process", f"{cpu_figures[side]:.2f}", "the same, on the CPU clock"))
        rows.append(("  per update: generation / scoring / update",
                     " / ".join(f"{median(side, k):.2f}" for k in PHASES), "s, medians"))
    problems = []
    for side, rs in runs.items():
        if any(r["new_tokens"] not in ([RESPONSE_LENGTH], []) for r in rs):
            problems.append(f"{side} sampled other than {RESPONSE_LENGTH} tokens per batch")
    digests = {r["prompts_digest"] for rs in runs.values() for r in rs if r["prompts_seen"]}
    if len(digests) > 1:
        problems.append("the runs did not all generate from the same prompts")
    both = len(figures) == 2
    ratio = figures["ours"] / figures["trl"] if both else None
    cpu_ratio = cpu_figures["ours"] / cpu_figures["trl"] if both else None
    ok = both and ratio >= TARGET_RATIO and not problems
    if both:
        rows.append(("ratio ours / TRL", f"{ratio:.2f}", f"must be >= {TARGET_RATIO}"))
        rows.append(("ratio ours / TRL on the CPU clock", f"{cpu_ratio:.2f}", "less swayed by other load"))
    for problem in problems:
        rows.append(("problem", "!", problem))
    rows.append(("verdict", "ok" if ok else ("FAIL" if both or problems else "n/a"), ""))
    for name, value, note in rows:
        print(f"  {name:<44}{value:>18}  {note}")

    def rounded(x):
        return None if x is None else round(x, 3)

    print(json.dumps({
        "ours_episodes_per_s": rounded(figures.get("ours")),
        "trl_episodes_per_s": rounded(figures.get("trl")),
        "ratio": rounded(ratio),
        "ours_episodes_per_cpu_s": rounded(cpu_figures.get("ours")),
        "trl_episodes_per_cpu_s": rounded(cpu_figures.get("trl")),
        "cpu_ratio": rounded(cpu_ratio),
        "ok": ok,
        "problems": problems,
        "split": {side: {k: round(median(side, k), 4) for k in PHASES} for side in runs},
        "runs": {side: [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rs]
                 for side, rs in runs.items()},
        **info,
        "batch": BATCH, "response_length": RESPONSE_LENGTH, "ppo_epochs": PPO_EPOCHS,
        "threads": THREADS, "python": platform.python_version(),
        "device": next(iter(runs.values()))[0]["device"],
    }))
    return 0 if ok or (not both and not problems) else 1


if __name__ == "__main__":
    sys.exit(main())
