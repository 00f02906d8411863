"""The demo policy: the tiny causal LM that PPO starts from on the demo project.

It is the demo model's recipe (same tokenizer, so the same vocabulary as the demo reward model;
one layer instead of two, twice as wide) given a short supervised warm-up on the demo project's
own texts: for every demo pair, BOTH responses, the better and the worse, each once, rendered as
the reward model sees them (`training.text.render`) and followed by the end-of-text token, with the
loss on the response's tokens only. Trained on both sides equally, it writes demo-style answers
that end, of which a little under half follow the demo rule of their prompt
(`demo.follows_demo_rule`; ~38% sampled at temperature 1.0, ~47% at 0.7, on the 360 demo
prompts) and the rest do not: PPO has both kinds to learn from under every rule, and its
progress shows as that share rising. The shortfall from half is mostly arithmetic: the warm-up
sees each sum too rarely to get it right as often as the data does.

The warm-up is deliberately short: it stops before the model memorises which two responses went
with each prompt (about 30% of samples are one of them), so sampling keeps real entropy (which
fact, which wrapper, which number; 4-5 nats per response) for PPO to shift.

Built once per recipe in the user data folder (`ensure_demo_policy`), atomically, and
deterministically for the recipe's seed: ~10 s on a busy CPU core (torch gets one thread for it:
a model this small trained six times slower on two busy cores).

torch and transformers are imported inside the functions: listing what exists must stay cheap.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .project import user_data_dir

# Bump `version` when anything here, in the demo model's recipe or in the demo texts changes: a new
# folder is built. The model keys are DEMO_MODEL_SPEC's (models.build_demo_model reads them).
#
# One layer, twice as wide as the demo reward model (0.34M parameters): in a comparison while this
# was written, two-layer versions learned to carry the prompt's topic into the answer only by
# memorising each prompt's two responses, while one layer learned it (~7% of answers about another
# topic) with ~30% of samples being one of the prompt's own two responses, at 4-5 nats of entropy
# per response. Longer warm-ups raise the share following the rules only by memorising more.
DEMO_POLICY_SPEC: dict[str, Any] = {
    "version": 1,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "max_position_embeddings": 512,
    "vocab_size": 1024,
    "seed": 0,
    # the warm-up
    "data_seed": 0,  # which demo pairs (demo.demo_pairs' seed)
    "epochs": 10,
    "batch_size": 32,
    "learning_rate": 5e-3,
    "warmup_steps": 10,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
}


def demo_policy_path() -> Path:
    """Where the demo policy lives (built or not): the user data folder, one folder per recipe."""
    return user_data_dir() / "models" / f"demo-policy-v{DEMO_POLICY_SPEC['version']}"


def ensure_demo_policy() -> Path:
    """The demo policy's folder, building it the first time (~10 s; deterministic; see build_once)."""
    from .models import build_once

    return build_once(demo_policy_path(), build_demo_policy)


def build_demo_policy(folder: Path, spec: dict[str, Any] | None = None) -> Path:
    """Writes the demo policy (the demo model's recipe after its warm-up) and its tokenizer into
    `folder`. The same spec gives the same weights."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from .models import build_demo_model, quiet_transformers

    spec = {**DEMO_POLICY_SPEC, **(spec or {})}
    folder = Path(folder)
    build_demo_model(folder, spec)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with quiet_transformers():
        model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    examples = warmup_examples(tokenizer, seed=spec["data_seed"])
    with _threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        _warm_up(model, examples, tokenizer.pad_token_id, spec)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    with quiet_transformers():
        model.save_pretrained(folder)
    return folder


def load_demo_policy(folder: Path | None = None):
    """(model, tokenizer) of a built demo policy (`ensure_demo_policy()`'s when no folder), in eval mode."""
    import torch
    from transformers import LlamaForCausalLM

    from .models import load_tokenizer, quiet_transformers

    folder = Path(folder) if folder is not None else ensure_demo_policy()
    tokenizer = load_tokenizer(folder)
    with quiet_transformers():
        model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    model.eval()
    return model, tokenizer


def warmup_examples(tokenizer, *, seed: int = 0) -> list[tuple[list[int], int]]:
    """(token ids, where the response starts) for both responses of every demo pair: the text as
    `render` formats it, then the end-of-text token."""
    from .demo import demo_pairs
    from .training.text import render

    examples = []
    for record in demo_pairs(seed):
        for response in (record.response_a, record.response_b):
            text, boundary, templated = render(tokenizer, record.prompt, response)
            enc = tokenizer(text, add_special_tokens=not templated, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            start = next((i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > boundary and e > s), len(ids))
            examples.append((ids + [tokenizer.eos_token_id], start))
    return examples


def _warm_up(model, examples: list[tuple[list[int], int]], pad_id: int, spec: dict[str, Any]) -> None:
    import torch

    batch_size = spec["batch_size"]
    steps_per_epoch = -(-len(examples) // batch_size)
    total = steps_per_epoch * spec["epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec["learning_rate"], weight_decay=spec["weight_decay"])
    warmup = max(1, spec["warmup_steps"])
    # Linear warm-up, then linear decay to zero: the last steps are small, so where the warm-up
    # ends does not hinge on the last batch's luck.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    rng = random.Random(spec["seed"])
    model.train()
    for _epoch in range(spec["epochs"]):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for first in range(0, len(order), batch_size):
            batch = _collate([examples[i] for i in order[first : first + batch_size]], pad_id)
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if spec["max_grad_norm"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec["max_grad_norm"])
            optimizer.step()
            schedule.step()
    model.eval()


def _collate(examples: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (ids, start) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        # The prompt is given, not learned: only the response and its end-of-text token are.
        labels[row, start : len(ids)] = torch.tensor(ids[start:])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    # A model this small spends more time handing work between threads than computing.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- sampling and the check --------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSample:
    """One sampled response: its text (special tokens skipped, outer spaces stripped), how many
    tokens were generated (the end-of-text token included), and whether it ended by itself."""

    text: str
    num_tokens: int
    ended: bool


def sample_demo(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    temperature: float = 1.0,
    max_new_tokens: int = 32,
    seed: int = 0,
    batch_size: int = 256,
) -> list[DemoSample]:
    """A sampled response to each prompt (a user message, rendered with the chat template and its
    generation prompt, left-padded), as DemoSamples. Seeded; the global RNG is left as it was."""
    import torch

    from .models import quiet_transformers

    samples: list[DemoSample] = []
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        torch.manual_seed(seed)
        for first in range(0, len(prompts), batch_size):
            chunk = prompts[first : first + batch_size]
            heads = [
                tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                for p in chunk
            ]
            enc = tokenizer(heads, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
            with quiet_transformers():
                out = model.generate(
                    input_ids=enc["input_ids"].to(device),
                    attention_mask=enc["attention_mask"].to(device),
                    do_sample=True,
                    temperature=temperature,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=eos,
                    pad_token_id=pad,
                )
            for row in out[:, enc["input_ids"].shape[1] :].tolist():
                ended = eos in row
                new = row[: row.index(eos) + 1] if ended else row
                samples.append(DemoSample(tokenizer.decode(new, skip_special_tokens=True).strip(), len(new), ended))
    return samples


def sample_demo_responses(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    temperature: float = 1.0,
    max_new_tokens: int = 32,
    seed: int = 0,
) -> list[str]:
    """The text of a sampled response to each prompt (see `sample_demo`)."""
    samples = sample_demo(model, tokenizer, prompts, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    return [s.text for s in samples]


def share_following(prompts: Sequence[str], responses: Sequence[str]) -> float:
    """The share of responses that follow the demo rule of their prompt (`demo.follows_demo_rule`)."""
    from .demo import follows_demo_rule

    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if not prompts:
        return 0.0
    return sum(follows_demo_rule(p, r) for p, r in zip(prompts, responses)) / len(prompts)
