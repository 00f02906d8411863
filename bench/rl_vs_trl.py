"""RLOO and GRPO speed: our loop against TRL 1.16.0's `RLOOTrainer` and `GRPOTrainer` on identical work.

    .venv/bin/python bench/rl_vs_trl.py [--methods grpo,rloo] [--repeats N] [--episodes N] [--side ours|trl]
                                        [--profile ours|trl] [--gpu] [--trl-config NAME|grpo=NAME,rloo=NAME]
                                        [--sweep] [--with-ppo]
                                        [--threads N]

The sibling of bench/ppo_vs_trl.py, and built from its parts (imported, not copied): the same
tokenizer trained on the shared HH-RLHF sample, the same saved random-init Llama policy (hidden 256,
4 layers, 4 heads, MLP 688, vocab 4096; the reference is a second copy of it) and one-label
`LlamaForSequenceClassification` reward model, the same prompts (first human turns, distinct, at
most 128 tokens rendered with the plain chat template), its SamplingWatch, its steady-state figure
and its child-process runner pattern. The venv pins TRL 1.12 (for the PPO and reward-model
benches) and one process imports one `trl`, so the TRL side runs with .venv/trl-1.16.0 first on
PYTHONPATH (`make test` installs it there) and checks that it got 1.16.0.

Work per update, on both sides: 16 prompts (left-padded to the longest), 4 responses each (64
episodes, a group's responses consecutive), 53 sampled tokens per response at temperature 0.7
(top_p 1, no top-k), the reference's log-probs (beta 0.05 keeps it loaded and used), the reward
model's score of the prompt and response re-rendered as text, the method's advantages, then ONE
optimizer step over all 64 episodes (num_iterations 1, one minibatch): AdamW lr 3e-6 with linear
decay to zero over the run, eps 1e-5, no weight decay, gradients clipped to norm 1.0 (TRL's
max_grad_norm default, and ours), fp32, 2 torch threads, CPU. The default run is 256
episodes: 4 updates over 64 prompts, each prompt once; `--episodes N` prepares N / 4 prompts so that
a run still sees each prompt once (the prompt digest below needs that).

- GRPO: advantage = score minus its group's mean (scale_rewards "none"), loss_type "dapo" (the
  token sum over the optimizer step's tokens), the clipped token ratio (epsilon 0.2 both sides) plus
  beta x k3 KL in the loss. TRL 1.16's GRPOConfig defaults `use_bias_correction_kl=True` (the KL
  term times the ratio); ours has no such option, so TRL gets False. With num_iterations 1 and one
  generation per optimizer step TRL skips its old-log-prob forward, as ours reuses the sampling
  log-probs.
- RLOO: TRL 1.16's RLOOConfig defaults matched on our side: k1 KL summed over the response
  subtracted from the score (beta 0.05), leave-one-out baseline, normalize_advantages False, no
  reward clipping, epsilon 0.2 on the sequence ratio, loss the mean over responses. TRL's RLOO
  always runs the policy once more without gradients for the old log-probs; ours takes them from
  sampling (fp32). That forward is part of TRL's scoring time here.

Response length: both sides end a response at EOS (the rest of its row is padding) and keep sampling
until every response of the batch has ended or 53 tokens were drawn; with a random-init policy EOS
comes about once in 4,096 tokens, so every batch runs 53 sampling steps on both sides. Each run
reports the tokens each batch got (must be [53]), the EOS tokens drawn, and a digest of the prompts'
token ids (the same in every run of both sides and both methods).

Reward text: TRL gets conversational prompts ([{"role": "user", ...}]); it renders them with the
tokenizer's chat template for generation (the same ids as ours, which the digest shows) and scores
`apply_chat_template(prompt + [{"role": "assistant", "content": decoded completion}])` with the
reward tokenizer, tokenized without special tokens and right-padded. Ours renders the same chat
template but strips the decoded response first. So TRL's reward tokenizer is the same tokenizer
with the assistant content trimmed in its template; each TRL run re-encodes its last batch both
ways and reports whether every row matched (`reward_ids_match`).

What is timed: each side's figure is steady-state episodes/s, (updates - 1) x 64 over the wall time
from the end of update 1 (warm-up: allocator growth, first kernels, TRL's first batch fetch) to the
end of the last, and the same on the process's CPU clock. The split per update:
- ours: the loop's own timers (time/generation_s: sampling and decoding; time/scoring_s: the
  reference forward and the reward model; time/update_s: advantages and the optimizer step);
- TRL: generation is `_generate` (prompt templating and tokenizing, `model.generate`, decoding);
  scoring runs from there to the end of `_generate_and_score_completions` (old log-probs for RLOO,
  the reference, the reward model, advantages, metrics); update from there to `on_step_end` (the
  loss forwards and backwards, clipping, the optimizer and lr steps).
What falls between updates (our sample reports and watchdogs; TRL's batch fetch and callbacks) is
in episodes/s but in no phase. Padding share: forward pre-hooks on the policy, the reference and
the reward model count the tokens each forward pass was fed and how many were padding (attention
mask 0 in a full pass; a pad token fed after a cached prefix, as a decoding step feeds rows that
ended), by phase (policy passes made inside the sampling call: generation; with gradients: update;
the rest: scoring). Tokens, not FLOPs: the attention over padded keys and the LM head's width are
not in it. A prompt that ours reads once for a group's k responses counts once.

Runs alternate (for each repeat, each method: ours, trl), each in a fresh process. The bench prints
each method's medians, their ratio (target: ours >= 2x TRL's for GRPO and for RLOO), the same on
the CPU clock, the split and the padding share; the last printed line is one JSON object.
`--with-ppo` first runs bench/ppo_vs_trl.py's main (its own table and defaults, same --repeats and
--gpu) and adds its ratio to the JSON. `--gpu`: on a CUDA GPU, bf16 autocast on both sides (fp32
master weights), ~100M-parameter models (bench_common.GPU_MODEL).

TRL's configuration (`--trl-config`, default "micro64"): TRL's own defaults would be another
experiment (bf16, activation checkpointing, 8 episodes per optimizer step, beta 0 for GRPO), so
every candidate keeps the work above (one optimizer step of 64 episodes, generation of all 64 at
once: generation_batch_size = per_device_train_batch_size x gradient_accumulation_steps) and
varies what a speed-minded user would. `--sweep` times them (TRL side only). Measured here on
2026-12-07 with `--sweep --repeats 1` (256 episodes, 2 torch threads, the machine otherwise quiet:
load 1.2-1.8 on 2 cores), TRL's episodes/s, one run each:

    candidate        what it changes                                          GRPO    RLOO
    micro64          per_device_train_batch_size 64, gradient_accumulation 1   8.44    9.08
    micro32          32 x 2 accumulation steps                                 8.68    9.06
    micro16          16 x 4                                                    9.64   10.18
    micro8           8 x 8 (TRL's default per-device batch)                    9.05    9.62
    checkpointing    micro64 + activation checkpointing (TRL's default on)     8.37    9.30
    adamw-foreach    micro64 + optim adamw_torch (default: adamw_torch_fused) 10.09   10.46
    no-forward-cache micro64 + use_cache off outside generation (the models'  10.47    8.99
                     config builds a DynamicCache in every full forward)
    static-cache     micro64 + cache_implementation "static" for generate     10.60    8.00
    workers1         micro64 + dataloader_num_workers 1                        9.95    8.66
    heap, static-cache-heap, adamw-foreach-heap: micro64, static-cache, adamw-foreach with glibc
                     told to keep freed memory (HEAP_ENV, what ours does in its process); added
                     after this sweep, measured in the runs of bench/README.md

Single runs of one setting vary by +-10% (micro64 ran at 8.4-9.7 for GRPO within the hour), more
than most settings differ: no setting wins for both methods, and the table's best of each
(static-cache for GRPO, adamw-foreach for RLOO) was then run 3 times against ours
(`--trl-config`; bench/README.md has the figures). micro64 stays the default: TRL's own cache and
optimizer, one micro-batch for the one optimizer step.

Not in the sweep: transformers' continuous batching (`use_transformers_continuous_batching`) took
97 s against 2 s for the same 4 toy updates on this CPU; vLLM needs a GPU; torch_empty_cache_steps
and ds3_gather_for_generation do nothing on a CPU (empty_cache is CUDA's; no DeepSpeed);
cast_lm_head_to_fp32 is already off, log_completions too, and with logging_steps 10 TRL logs once
per run of 4 updates; dropout is 0 in these models (disable_dropout changes nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ppo_vs_trl and bench_common, also when loaded by path
import ppo_vs_trl as ppo
from bench_common import GPU_MODEL, child_env, device_name, enter_gpu_mode, gpu_mode, profiled, run_child

SOURCE = ppo.SOURCE
METHODS = ("grpo", "rloo")
NUM_GENERATIONS = 4
PROMPTS_PER_UPDATE = 16
BATCH = PROMPTS_PER_UPDATE * NUM_GENERATIONS  # episodes per update
EPISODES = 256  # 4 updates, each of the 64 prompts once
RESPONSE_LENGTH = ppo.RESPONSE_LENGTH
TEMPERATURE = ppo.TEMPERATURE
BETA = 0.05
EPSILON = 0.2
LEARNING_RATE = 3e-6
ADAM_EPS = 1e-5  # our AdamW's eps (core/rl/learner.py); TRL's default is 1e-8
MAX_GRAD_NORM = 1.0
THREADS = ppo.THREADS
SEED = ppo.SEED
TARGET_RATIO = 2.0
PHASES = ppo.PHASES
STAGES = ("generation", "scoring", "update")
TRL_NEW = "1.16.0"
TRL_FOLDER = Path(sys.prefix) / f"trl-{TRL_NEW}"
RESULT = "RESULT "  # marks the children's result lines among whatever else they print
NAMES = {"grpo": "GRPO", "rloo": "RLOO"}
TRL_NAMES = {"grpo": "TRL GRPOTrainer", "rloo": "TRL RLOOTrainer"}

HEAP_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1), "MALLOC_TOP_PAD_": str(64 * 2**20)}

# Settings a speed-minded user would try (see the module docstring). Keys starting with "_" are
# applied by the bench to the built trainer, the rest go to GRPOConfig / RLOOConfig.
TRL_CONFIGS: dict[str, dict] = {
    "micro64": {"per_device_train_batch_size": 64, "gradient_accumulation_steps": 1},
    "micro32": {"per_device_train_batch_size": 32, "gradient_accumulation_steps": 2},
    "micro16": {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 4},
    "micro8": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 8},
    "checkpointing": {"per_device_train_batch_size": 64, "gradient_accumulation_steps": 1,
                      "activation_checkpointing": True},
    "adamw-foreach": {"per_device_train_batch_size": 64, "gradient_accumulation_steps": 1, "optim": "adamw_torch"},
    "no-forward-cache": {"per_device_train_batch_size": 64, "gradient_accumulation_steps": 1,
                         "generation_kwargs": {"use_cache": True}, "_no_forward_cache": True},
    "static-cache": {"per_device_train_batch_size": 64, "gradient_accumulation_steps": 1,
                     "cache_implementation": "static"},
    "workers1": {"per_device_train_batch_size": 64, "gradient_accumulation_steps": 1, "dataloader_num_workers": 1},
    # What ours does inside its training process (training/device.freed_memory_kept), given to
    # TRL's process through glibc's environment variables.
    "heap": {"per_device_train_batch_size": 64, "gradient_accumulation_steps": 1, "_env": HEAP_ENV},
    "static-cache-heap": {"per_device_train_batch_size": 64, "gradient_accumulation_steps": 1,
                          "cache_implementation": "static", "_env": HEAP_ENV},
    "adamw-foreach-heap": {"per_device_train_batch_size": 64, "gradient_accumulation_steps": 1, "optim": "adamw_torch",
                           "_env": HEAP_ENV},
}
DEFAULT_TRL_CONFIG = "micro64"


# -- preparation ----------------------------------------------------------------------------------


def prepare(work: Path, episodes: int = EPISODES, model: dict | None = None) -> dict:
    """ppo_vs_trl's preparation with as many prompts as a run of `episodes` uses, each once."""
    wanted = episodes // NUM_GENERATIONS
    info = ppo.prepare(work, n_prompts=wanted, model=model)
    if info["prompts"] != wanted:
        raise SystemExit(f"the HH sample gave {info['prompts']} usable prompts, {wanted} wanted")
    return info


def reward_template() -> str:
    """The plain chat template with the assistant's content trimmed, as ours strips a response
    before scoring it (TRL renders the decoded completion as it is)."""
    from rlhf_workbench.core.models import DEMO_CHAT_TEMPLATE

    plain = "{{ m['content'] }}"
    if plain not in DEMO_CHAT_TEMPLATE:
        raise RuntimeError("the demo chat template changed: update reward_template()")
    return DEMO_CHAT_TEMPLATE.replace(plain, "{{ m['content'] | trim if m['role'] == 'assistant' else m['content'] }}")


# -- measuring, in the children -------------------------------------------------------------------


class PaddingCount:
    """Tokens fed to each forward pass and how many of them were padding, by phase (see the module
    docstring). A pre-hook on the top module sees each pass once, with the caller's arguments."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id
        self.tokens = dict.fromkeys(STAGES, 0)
        self.padding = dict.fromkeys(STAGES, 0)
        self.handles: list = []
        self.phase: str | None = None  # set while a sampling call runs (see during)

    def watch(self, model, stage: str | None = None) -> PaddingCount:
        import torch

        def hook(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                return
            mask = kwargs.get("attention_mask")
            where = stage or self.phase or ("update" if torch.is_grad_enabled() else "scoring")
            total = ids.numel()
            if mask is None:
                real = total
            elif mask.shape == ids.shape:
                real = int(mask.sum())
            else:  # a decoding step: the mask is the cache's, the rows that ended are fed a pad
                real = int((ids != self.pad_id).sum())
            self.tokens[where] += total
            self.padding[where] += total - real

        self.handles.append(model.register_forward_pre_hook(hook, with_kwargs=True))
        return self

    def during(self, owner, name: str, phase: str) -> PaddingCount:
        """Passes made while `owner.name(...)` runs count as `phase`. A KV cache no longer tells
        generation apart: ours also fills one in scoring and update passes, for a group's shared
        prompt."""
        real = getattr(owner, name)

        def wrapped(*args, **kwargs):
            self.phase = phase
            try:
                return real(*args, **kwargs)
            finally:
                self.phase = None

        setattr(owner, name, wrapped)
        return self

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    def report(self) -> dict:
        return {"tokens": dict(self.tokens), "padding": dict(self.padding)}


def share(counts: dict, stage: str | None = None) -> float:
    """Padding tokens over all tokens fed, in one phase or all."""
    stages = (stage,) if stage else STAGES
    total = sum(counts["tokens"][s] for s in stages)
    return sum(counts["padding"][s] for s in stages) / total if total else 0.0


def load(work: Path, threads: int):
    import torch

    tokenizer, policy, reference, _value, reward, prompts = ppo.load(work)
    torch.set_num_threads(threads)
    return tokenizer, policy, reference, reward, prompts


def summary(updates: list[dict], batch: int, start: float, end: float) -> dict:
    ends = [u["end"] for u in updates]
    return {
        "episodes": len(updates) * batch,
        "updates": len(updates),
        "episodes_per_s": ppo.steady(ends, batch),
        "episodes_per_cpu_s": ppo.steady([u["cpu"] for u in updates], batch),
        "episodes_per_s_all": len(updates) * batch / (end - start),
        "train_s": end - start,
        **ppo.mean_split(updates),
        "first_update_s": ends[0] - start,
    }


def run_ours(method: str, work: Path, episodes: int, profile: bool = False, threads: int = THREADS) -> dict:
    from rlhf_workbench.core.rl import train as ours_train
    from rlhf_workbench.core.rl.config import RLConfig
    from rlhf_workbench.core.rl.models import RLModels
    from rlhf_workbench.core.rl.train import train

    tokenizer, policy, reference, reward, prompts = load(work, threads)
    own = {"loss_type": "dapo", "scale_rewards": "none"} if method == "grpo" else {"normalize_advantages": False}
    # Every setting the work depends on is written out, TRL's value where the spec leaves it open.
    # Our sample reports stay on (a few decoded texts every 5 updates): they cost ours, not TRL.
    config = RLConfig(
        method=method, batch_size=BATCH, num_generations=NUM_GENERATIONS, num_mini_batches=1,
        gradient_accumulation_steps=1, num_iterations=1, max_new_tokens=RESPONSE_LENGTH, temperature=TEMPERATURE,
        top_p=1.0, beta=BETA, epsilon=EPSILON, epsilon_high=None, missing_eos_penalty=None,
        learning_rate=LEARNING_RATE, max_grad_norm=MAX_GRAD_NORM, weight_decay=0.0, total_episodes=episodes,
        max_prompt_length=ppo.MAX_PROMPT_TOKENS, precision="bf16" if gpu_mode() else "fp32",
        gradient_checkpointing=False, device="cuda" if gpu_mode() else "cpu", torch_threads=threads, seed=SEED,
        lora=False, save_every=10**6, **own,
    ).validate()
    updates, sink = ppo.update_recorder()

    models = RLModels(policy=policy, reference=reference, value=None, reward=reward, tokenizer=tokenizer,
                      reward_tokenizer=tokenizer, has_reference=True)
    watch = ppo.SamplingWatch()
    if hasattr(ours_train, "sample"):
        watch.on_function(ours_train, "sample")
    padding = PaddingCount(tokenizer.pad_token_id).watch(policy).watch(reference, "scoring").watch(reward, "scoring")
    padding.during(ours_train, "sample", "generation")
    start = time.perf_counter()
    with profiled(profile):
        train(models, prompts, config, sink=sink, stop=lambda: False)
    end = time.perf_counter()
    padding.close()
    return {
        "method": method,
        **summary(updates, BATCH, start, end),
        "gradient_checkpointing": ppo.checkpointing(policy),
        "eos_sampled": int(sum(u["eos"] for u in updates)),
        "padding": padding.report(),
        **watch.report(),
    }


def run_trl(method: str, work: Path, episodes: int, profile: bool = False, threads: int = THREADS,
            config_name: str = DEFAULT_TRL_CONFIG) -> dict:
    import datasets
    import trl
    from transformers import PreTrainedTokenizerFast, TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from rlhf_workbench.core.training.text import encode_response

    if trl.__version__ != TRL_NEW:
        raise RuntimeError(f"TRL {trl.__version__} from {trl.__file__}, not {TRL_NEW}: put {TRL_FOLDER} first on the path")
    if method == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer

    tokenizer, policy, _reference, reward, prompts = load(work, threads)
    del _reference  # TRL loads its own reference, from the policy's folder
    reward_tokenizer = PreTrainedTokenizerFast.from_pretrained(work / "tokenizer")
    reward_tokenizer.chat_template = reward_template()
    dataset = datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in prompts]})

    chosen = TRL_CONFIGS[config_name]
    settings = {
        "output_dir": str(work / f"trl-{method}"), "report_to": [], "use_cpu": not gpu_mode(), "bf16": gpu_mode(),
        "fp16": False, "activation_checkpointing": False, "num_generations": NUM_GENERATIONS,
        "max_completion_length": RESPONSE_LENGTH, "temperature": TEMPERATURE, "top_p": 1.0, "beta": BETA,
        "num_iterations": 1, "epsilon": EPSILON, "learning_rate": LEARNING_RATE, "lr_scheduler_type": "linear",
        "warmup_steps": 0, "adam_epsilon": ADAM_EPS, "weight_decay": 0.0, "max_grad_norm": MAX_GRAD_NORM,
        "max_steps": episodes // BATCH, "seed": SEED, "save_strategy": "no", "disable_tqdm": True,
        **({"loss_type": "dapo", "scale_rewards": "none", "use_bias_correction_kl": False} if method == "grpo"
           else {"normalize_advantages": False}),
        **{k: v for k, v in chosen.items() if not k.startswith("_")},
    }
    args = Config(**settings)
    if args.generation_batch_size != BATCH or args.per_device_train_batch_size * args.gradient_accumulation_steps != BATCH:
        raise RuntimeError(f"TRL config {config_name} is not one generation and one optimizer step per {BATCH} episodes")

    # TRL keeps no per-phase timers, so its loop is cut at methods it calls on itself (see the module
    # docstring), wrapped on the instance.
    updates: list[dict] = []
    clock: dict[str, float] = {}
    eos = [0]
    scored: list = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock["train_start"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            end = time.perf_counter()
            updates.append({
                "end": end, "cpu": time.process_time(),
                "generation_s": clock["generation_end"] - clock["generation_start"],
                "scoring_s": clock["scoring_end"] - clock["generation_end"],
                "update_s": end - clock["scoring_end"],
            })

        def on_train_end(self, args, state, control, **kwargs):
            clock["train_end"] = time.perf_counter()

    trainer = Trainer(model=policy, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer,
                      reward_processing_classes=reward_tokenizer, callbacks=[Clock()])
    # TRL's PrinterCallback would print every log; they are not ours to show.
    trainer.remove_callback(PrinterCallback)
    if chosen.get("_no_forward_cache"):
        for model in (trainer.model, trainer.ref_model, trainer.reward_funcs[0]):
            model.config.use_cache = False
    real_generate, real_score = trainer._generate, trainer._generate_and_score_completions
    real_rewards = trainer._calculate_rewards

    def generate(prompts):
        start = time.perf_counter()
        out = real_generate(prompts)
        clock.update(generation_start=start, generation_end=time.perf_counter())
        eos[0] += sum(1 for ids in out[1] if ids and ids[-1] in trainer.eos_token_ids)
        return out

    def generate_and_score(inputs):
        out = real_score(inputs)
        clock["scoring_end"] = time.perf_counter()
        return out

    def calculate_rewards(inputs, prompts, completions, completion_ids_list):
        scored[:] = [(prompts, completions)]  # the last batch, re-encoded both ways after the run
        return real_rewards(inputs, prompts, completions, completion_ids_list)

    trainer._generate, trainer._generate_and_score_completions = generate, generate_and_score
    trainer._calculate_rewards = calculate_rewards
    watch = ppo.SamplingWatch().on_generate(policy)
    padding = PaddingCount(tokenizer.pad_token_id).watch(trainer.model).during(trainer, "_generate", "generation")
    padding.watch(trainer.ref_model, "scoring").watch(trainer.reward_funcs[0], "scoring")
    with profiled(profile):
        trainer.train()
    padding.close()

    from trl.data_utils import apply_chat_template

    batch_prompts, completions = scored[0]
    theirs = [reward_tokenizer(apply_chat_template({"messages": p + c}, reward_tokenizer)["text"],
                               add_special_tokens=False)["input_ids"] for p, c in zip(batch_prompts, completions)]
    mine = [encode_response(tokenizer, p, c[0]["content"].strip(), 2048) for p, c in zip(batch_prompts, completions)]
    return {
        "method": method,
        **summary(updates, BATCH, clock["train_start"], clock["train_end"]),
        "gradient_checkpointing": ppo.checkpointing(policy),
        "optimizer": f"{type(trainer.optimizer.optimizer).__name__} {trainer.args.optim}",
        "trl_version": trl.__version__,
        "trl_config": config_name,
        "micro_batch": args.per_device_train_batch_size,
        "eos_sampled": eos[0],
        "reward_ids_match": theirs == mine,
        "padding": padding.report(),
        **watch.report(),
    }


def child(side: str, methods: list[str], work: Path, episodes: int, profile: bool, threads: int,
          config_name: str) -> None:
    for method in methods:
        if side == "ours":
            result = run_ours(method, work, episodes, profile, threads)
        else:
            result = run_trl(method, work, episodes, profile, threads, config_name)
        print(RESULT + json.dumps({**result, "device": device_name()}), flush=True)


# -- the parent -------------------------------------------------------------------------------------


def run_side(side: str, work: Path, episodes: int, methods: list[str], *, profile: bool = False,
             threads: int = THREADS, config_name: str = DEFAULT_TRL_CONFIG) -> list[dict]:
    """One fresh process of `side` running `methods` one after the other; their results."""
    env = child_env(work, threads, **ppo.OFFLINE)
    if side == "trl":
        env.update(TRL_CONFIGS[config_name].get("_env", {}))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TRL_FOLDER), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--work", str(work),
               "--episodes", str(episodes), "--methods", ",".join(methods), "--threads", str(threads),
               "--trl-config", config_name] + (["--profile", side] if profile else [])
    stdout, _, load = run_child(side, command, env, profile=profile)
    return [{**json.loads(line[len(RESULT):]), **load} for line in stdout.splitlines() if line.startswith(RESULT)]


def describe(i: int, side: str, r: dict) -> str:
    return (f"  run {i} {NAMES[r['method']]} {side:<4} {r['episodes_per_s']:5.2f} episodes/s "
            f"({r['episodes_per_cpu_s']:.2f} per CPU-s)  {r['train_s']:6.1f} s  per update: gen "
            f"{r['generation_s']:.2f} s, score {r['scoring_s']:.2f} s, update {r['update_s']:.2f} s  padding "
            f"{share(r['padding']):.0%}  new tokens {r['new_tokens']}  eos {r['eos_sampled']}  "
            f"load {r['load_before']:.1f} -> {r['load_after']:.1f}")


def run_ppo(repeats: int, gpu: bool) -> dict:
    """bench/ppo_vs_trl.py's main, its output shown as it comes; its JSON line's figures."""
    shown = sys.stdout

    class Tee(io.StringIO):
        def write(self, text):
            shown.write(text)
            shown.flush()
            return super().write(text)

    out = Tee()
    with contextlib.redirect_stdout(out):
        code = ppo.main(["--repeats", str(repeats)] + (["--gpu"] if gpu else []))
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    return {"ours_eps": figures["ours_episodes_per_s"], "trl_eps": figures["trl_episodes_per_s"],
            "ratio": figures["ratio"], "cpu_ratio": figures["cpu_ratio"], "ok": figures["ok"], "exit": code}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of grpo and rloo (default both)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side per method (default 3)")
    parser.add_argument("--episodes", type=int, default=EPISODES,
                        help=f"episodes per run, a multiple of {BATCH} (default {EPISODES}); uses episodes / "
                             f"{NUM_GENERATIONS} prompts")
    parser.add_argument("--side", choices=("ours", "trl"), help="run only this side (no ratio)")
    parser.add_argument("--profile", choices=("ours", "trl"), help="one profiled run of that side per method instead")
    parser.add_argument("--gpu", action="store_true",
                        help="on a CUDA GPU at bf16, with ~100M-parameter models (see bench_common)")
    parser.add_argument("--trl-config", default=DEFAULT_TRL_CONFIG, metavar="NAME | grpo=NAME,rloo=NAME",
                        help=f"TRL's batch shape and speed settings, for both methods or each its own (default "
                             f"{DEFAULT_TRL_CONFIG}; see the docstring): {', '.join(TRL_CONFIGS)}")
    parser.add_argument("--sweep", action="store_true", help="time TRL with every --trl-config candidate instead")
    parser.add_argument("--with-ppo", action="store_true", help="run bench/ppo_vs_trl.py first and add its ratio")
    parser.add_argument("--child", choices=("ours", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=THREADS,
                        help=f"torch threads of each side (default {THREADS}, the figure the comparison is specified at)")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in METHODS for m in methods):
        parser.error(f"--methods: choose from {', '.join(METHODS)}")
    if args.episodes % BATCH or args.episodes < 2 * BATCH:
        parser.error(f"--episodes must be a multiple of {BATCH}, at least {2 * BATCH} (the first update is warm-up)")
    try:
        trl_config = trl_configs(args.trl_config, methods)
    except ValueError as exc:
        parser.error(f"--trl-config: {exc}")
    if args.gpu and not args.child:
        enter_gpu_mode()
    os.environ.update(ppo.OFFLINE)
    if args.child:
        child(args.child, methods, args.work, args.episodes, args.profile is not None, args.threads,
              trl_config[methods[0]])
        return 0
    needs_trl = args.sweep or args.side != "ours" and args.profile != "ours"
    if needs_trl and not (TRL_FOLDER / "trl").is_dir():
        raise SystemExit(f"TRL {TRL_NEW} is not in {TRL_FOLDER}: `make test` installs it there "
                         f"(pip install --no-deps --target {TRL_FOLDER} trl=={TRL_NEW})")

    ppo_figures = run_ppo(args.repeats, args.gpu) if args.with_ppo else None
    with tempfile.TemporaryDirectory(prefix="rl-vs-trl-") as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        info = prepare(work, args.episodes, model=GPU_MODEL if args.gpu else None)
        print(f"  prepared in {time.perf_counter() - began:.1f} s: {info}", flush=True)
        if args.profile:
            for method in methods:
                print(json.dumps(run_side(args.profile, work, args.episodes, [method], profile=True,
                                          threads=args.threads, config_name=trl_config[method])[0]))
            return 0
        if args.sweep:
            return sweep(work, args.episodes, methods, args.repeats, args.threads)
        sides = (args.side,) if args.side else ("ours", "trl")
        runs: dict[str, dict[str, list[dict]]] = {m: {side: [] for side in sides} for m in methods}
        for i in range(args.repeats):
            for method in methods:
                for side in sides:
                    result = run_side(side, work, args.episodes, [method], threads=args.threads,
                                      config_name=trl_config[method])[0]
                    runs[method][side].append(result)
                    print(describe(i + 1, side, result), flush=True)
    return report(runs, {**info, "episodes": args.episodes, "threads": args.threads}, trl_config, ppo_figures)


def trl_configs(text: str, methods: list[str]) -> dict[str, str]:
    """"NAME" (every method) or "grpo=NAME,rloo=NAME" as {method: NAME}."""
    if "=" not in text:
        chosen = dict.fromkeys(methods, text.strip())
    else:
        chosen = dict.fromkeys(methods, DEFAULT_TRL_CONFIG)
        for item in filter(None, (part.strip() for part in text.split(","))):
            method, _, name = item.partition("=")
            if method.strip() not in METHODS:
                raise ValueError(f"{method.strip()!r} is not a method ({', '.join(METHODS)})")
            chosen[method.strip()] = name.strip()
    for name in chosen.values():
        if name not in TRL_CONFIGS:
            raise ValueError(f"{name!r} is not one of {', '.join(TRL_CONFIGS)}")
    return chosen


def sweep(work: Path, episodes: int, methods: list[str], repeats: int, threads: int) -> int:
    figures: dict[str, dict[str, list[float]]] = {m: {name: [] for name in TRL_CONFIGS} for m in methods}
    failed: dict[str, str] = {}
    for i in range(repeats):
        for method in methods:
            for name in TRL_CONFIGS:
                try:
                    r = run_side("trl", work, episodes, [method], threads=threads, config_name=name)[0]
                except RuntimeError as exc:
                    failed[f"{method} {name}"] = str(exc).strip().splitlines()[-1]
                    print(f"  run {i + 1} {NAMES[method]} {name:<17} failed: {failed[f'{method} {name}']}", flush=True)
                    continue
                figures[method][name].append(r["episodes_per_s"])
                print(f"  run {i + 1} {NAMES[method]} {name:<17} {r['episodes_per_s']:5.2f} episodes/s "
                      f"({r['episodes_per_cpu_s']:.2f} per CPU-s)  per update: gen {r['generation_s']:.2f} s, score "
                      f"{r['scoring_s']:.2f} s, update {r['update_s']:.2f} s  checkpointing "
                      f"{r['gradient_checkpointing']}  {r['optimizer']}", flush=True)
    medians = {m: {name: round(statistics.median(v), 3) for name, v in by.items() if v} for m, by in figures.items()}
    for method, by in medians.items():
        best = max(by, key=by.get) if by else None
        print(f"  {TRL_NAMES[method]}: fastest {best} ({by.get(best, float('nan')):.2f} episodes/s); "
              + ", ".join(f"{name} {value:.2f}" for name, value in by.items()))
    print(json.dumps({"sweep": medians, "failed": failed, "episodes": episodes, "repeats": repeats,
                      "device": device_name()}))
    return 0


def report(runs: dict[str, dict[str, list[dict]]], info: dict, trl_config: dict[str, str], ppo_figures: dict | None) -> int:
    def rounded(x):
        return None if x is None else round(x, 3)

    rows, problems, out = [], [], {}
    digests = set()
    for method, by_side in runs.items():
        def median(rs: list[dict], key: str) -> float:
            return statistics.median(r[key] for r in rs)

        figures, cpu_figures, padding = {}, {}, {}
        rows.append((NAMES[method], "", ""))
        for side, rs in by_side.items():
            name = "ours" if side == "ours" else f"{TRL_NAMES[method]} ({trl_config[method]})"
            figures[side], cpu_figures[side] = median(rs, "episodes_per_s"), median(rs, "episodes_per_cpu_s")
            counts = {k: {s: sum(r["padding"][k][s] for r in rs) for s in STAGES} for k in ("tokens", "padding")}
            padding[side] = {**{s: round(share(counts, s), 4) for s in STAGES}, "all": round(share(counts), 4)}
            rows.append((f"  {name}: episodes/s", f"{figures[side]:.2f}", f"median of {len(rs)}, update 1 left out"))
            rows.append(("    per CPU-second of its process", f"{cpu_figures[side]:.2f}", "the same, on the CPU clock"))
            rows.append(("    per update: generation / scoring / update",
                         " / ".join(f"{median(rs, k):.2f}" for k in PHASES), "s, medians"))
            rows.append(("    padding: generation / scoring / update",
                         " / ".join(f"{padding[side][s]:.0%}" for s in STAGES),
                         f"of the tokens fed; {padding[side]['all']:.0%} of all"))
            if any(r["new_tokens"] not in ([RESPONSE_LENGTH], []) for r in rs):
                problems.append(f"{method} {side} sampled other than {RESPONSE_LENGTH} tokens per batch")
            if any(r.get("reward_ids_match") is False for r in rs):
                problems.append(f"{method} {side}: TRL's reward-model ids differ from ours for the same text")
            digests.update(r["prompts_digest"] for r in rs if r["prompts_seen"])
        both = len(figures) == 2
        ratio = figures["ours"] / figures["trl"] if both else None
        cpu_ratio = cpu_figures["ours"] / cpu_figures["trl"] if both else None
        if both:
            rows.append(("  ratio ours / TRL", f"{ratio:.2f}", f"must be >= {TARGET_RATIO}"))
            rows.append(("  ratio ours / TRL on the CPU clock", f"{cpu_ratio:.2f}", "less swayed by other load"))
        out[method] = {
            "ours_eps": rounded(figures.get("ours")), "trl_eps": rounded(figures.get("trl")), "ratio": rounded(ratio),
            "ours_cpu_eps": rounded(cpu_figures.get("ours")), "trl_cpu_eps": rounded(cpu_figures.get("trl")),
            "cpu_ratio": rounded(cpu_ratio),
            "split": {side: {k: round(median(rs, k), 4) for k in PHASES} for side, rs in by_side.items()},
            "padding": padding,
            "runs": {side: [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rs]
                     for side, rs in by_side.items()},
        }
    if len(digests) > 1:
        problems.append("the runs did not all generate from the same prompts")
    both = all(v["ratio"] is not None for v in out.values())
    ok = both and all(v["ratio"] >= TARGET_RATIO for v in out.values()) and not problems
    if ppo_figures is not None:
        rows.append(("PPO (bench/ppo_vs_trl.py, above): ratio", f"{ppo_figures['ratio']:.2f}",
                     f"ours {ppo_figures['ours_eps']:.2f} / TRL 1.12 {ppo_figures['trl_eps']:.2f} episodes/s"))
    for problem in problems:
        rows.append(("problem", "!", problem))
    rows.append(("verdict", "ok" if ok else ("FAIL" if both or problems else "n/a"),
                 f"GRPO and RLOO at >= {TARGET_RATIO}x" if both else ""))
    for name, value, note in rows:
        print(f"  {name:<46}{value:>18}  {note}")
    any_run = next(r for by_side in runs.values() for rs in by_side.values() for r in rs)
    print(json.dumps({
        **{f"{m}_ratio": out[m]["ratio"] for m in out},
        **({"ppo_ratio": ppo_figures["ratio"], "ppo": ppo_figures} if ppo_figures is not None else {}),
        "ok": ok,
        "problems": problems,
        **out,
        **info,
        "trl": TRL_NEW, "trl_config": {m: {"name": name, **TRL_CONFIGS[name]} for m, name in trl_config.items()},
        "batch": BATCH, "num_generations": NUM_GENERATIONS, "response_length": RESPONSE_LENGTH,
        "python": platform.python_version(), "device": any_run["device"],
    }))
    return 0 if ok or (not both and not problems) else 1


if __name__ == "__main__":
    sys.exit(main())
