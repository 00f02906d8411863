"""Rollouts: prompts in, sampled responses out, with what an online RL method (PPO) needs about
every response token; and plain sampling for people to compare (generate.py).

    encode_prompts(tokenizer, prompts, max_prompt_length)   token ids of each prompt, ready to answer
    sample(policy, prompt_ids, ...)                         a Rollout: tokens, lengths, log-probs
    response_logits / response_logprobs / token_values      forward passes over prompt + response
    reward_scores(reward_model, tokenizer, prompts, texts)  the reward model's score of each response
    sample_responses(model, tokenizer, prompts, ...)        plain texts (for people to compare)

Sampling is our own loop over the KV cache rather than `generate()`: per token it is one forward
pass of the new token and a multinomial draw, and it keeps the log-probability of each drawn token
under the tempered distribution. In fp32 those are the old log-probs PPO needs, so the policy is not
run a second time over the whole batch (TRL 1.12 keeps `generate`'s scores to the same end).
Responses end at the end-of-text
token, which is kept as the last response token (the policy learns to stop); the rest of the row
is padding, and lengths are carried explicitly, since the pad token may equal the end-of-text one.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .text import messages_of, transcript

# Positions after a response's end get this log-prob, so that their KL is zero (as TRL does).
INVALID_LOGPROB = 1.0


@dataclass
class Rollout:
    """A batch of sampled responses, left-padded prompts first: `tokens` is [B, P + R]."""

    tokens: torch.Tensor  # prompt (left padded to P) + response (right padded to R)
    attention_mask: torch.Tensor  # 1 on real prompt and response tokens
    prompt_length: int  # P
    response_lengths: torch.Tensor  # [B] real response tokens, the end-of-text token included
    logprobs: torch.Tensor  # [B, R] log-prob of each response token at the sampling temperature
    ended: torch.Tensor  # [B] whether the response ended with the end-of-text token

    @property
    def responses(self) -> torch.Tensor:
        return self.tokens[:, self.prompt_length :]

    @property
    def response_mask(self) -> torch.Tensor:
        steps = torch.arange(self.responses.shape[1], device=self.tokens.device)
        return steps[None, :] < self.response_lengths[:, None]

    @property
    def position_ids(self) -> torch.Tensor:
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)

    def select(self, rows: torch.Tensor) -> Rollout:
        """These rows only, without the columns that are padding in all of them (on either side)."""
        mask = self.attention_mask[rows]
        lead = int((mask[:, : self.prompt_length] == 0).all(0).long().cumprod(0).sum())  # shared left padding
        lengths = self.response_lengths[rows]
        width = int(lengths.max()) if len(lengths) else 0
        end = self.prompt_length + width
        return Rollout(
            self.tokens[rows, lead:end], mask[:, lead:end], self.prompt_length - lead, lengths,
            self.logprobs[rows, :width], self.ended[rows],
        )

    @property
    def lengths(self) -> torch.Tensor:
        """[B] real tokens per row, prompt and response."""
        return self.attention_mask.sum(1)


# A pass through a model has a fixed cost (Python, kernel launches) worth about this many
# parameter-tokens of arithmetic: a few hundred tokens for the 0.3M-parameter demo policy, where a
# split never pays, a few dozen for a 5M one.
PASS_COST_PARAM_TOKENS = 1e8


def length_groups(
    lengths: torch.Tensor, rows: torch.Tensor, *, n_params: int = 0, max_groups: int = 4, overhead: float = 0.05
) -> list[torch.Tensor]:
    """`rows` split into up to `max_groups` groups of similar length, when that saves padding.

    A forward pass costs about (rows x longest row) token-steps, padding included; rows sorted by
    length and cut into k groups cost the sum over groups, plus a fixed cost per extra pass: the
    larger of `overhead` x the one-group cost and PASS_COST_PARAM_TOKENS / n_params tokens. The k
    with the lowest total wins; k = 1 means no split. The losses are normalised by the tokens of
    the whole minibatch (see train.py), so the split changes the arithmetic only by rounding.
    """
    order = rows[torch.argsort(lengths[rows], descending=True, stable=True)]
    sorted_lengths = lengths[order].tolist()
    n = len(sorted_lengths)
    single = n * sorted_lengths[0] if n else 0
    best_k, best_cost = 1, float(single)
    extra_pass = max(overhead * single, PASS_COST_PARAM_TOKENS / n_params if n_params else 0.0)
    for k in range(2, min(max_groups, n) + 1):
        bounds = [round(i * n / k) for i in range(k + 1)]
        cost = sum((bounds[i + 1] - bounds[i]) * sorted_lengths[bounds[i]] for i in range(k)) + extra_pass * (k - 1)
        if cost < best_cost:
            best_k, best_cost = k, cost
    bounds = [round(i * n / best_k) for i in range(best_k + 1)]
    return [order[bounds[i] : bounds[i + 1]] for i in range(best_k) if bounds[i + 1] > bounds[i]]


# -- prompts ---------------------------------------------------------------------------------------


def prompt_text(tokenizer, prompt) -> tuple[str, bool]:
    """The text a response follows (chat template with its generation prompt, or the plain transcript),
    and whether it already holds its special tokens."""
    messages = messages_of(prompt)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
    return transcript(messages) + "\n\nAssistant:", False


def encode_prompts(tokenizer, prompts: Sequence[Any], max_prompt_length: int) -> list[list[int]]:
    """Token ids of each rendered prompt; a long one keeps its end, where the question usually is."""
    encoded = []
    for prompt in prompts:
        text, templated = prompt_text(tokenizer, prompt)
        ids = tokenizer(text, add_special_tokens=not templated)["input_ids"]
        encoded.append(ids[-max_prompt_length:])
    return encoded


def left_pad(rows: Sequence[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


# -- sampling --------------------------------------------------------------------------------------


@torch.no_grad()
def sample(
    model,
    prompt_ids: Sequence[list[int]],
    *,
    pad_id: int,
    eos_id: int | None,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    stop_at_eos: bool = True,
    autocast=None,
    shard: tuple[int, int] = (0, 1),
) -> Rollout:
    """Samples one response per prompt with the KV cache; see the module docstring.

    `shard` (rank, world): these prompts are rows rank, rank + world, ... of a global batch, which
    ranks sample side by side. Every rank draws the global batch's random numbers and uses its
    rows' own, so a prompt gets the same response whichever rank samples it.
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    prompts, prompt_mask = left_pad(prompt_ids, pad_id, device)
    batch, prompt_length = prompts.shape
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    keep = _logits_to_keep_kwargs(model, 1)
    with autocast or _NoAutocast():
        out = model(input_ids=prompts, attention_mask=prompt_mask, position_ids=positions,
                    past_key_values=cache, use_cache=True, **keep)
    logits = out.logits[:, -1]
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.full((batch, max_new_tokens), INVALID_LOGPROB, device=device)
    lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=device)
    ended = torch.zeros(batch, dtype=torch.bool, device=device)
    mask = prompt_mask
    next_position = positions[:, -1] + 1
    for step in range(max_new_tokens):
        scaled = logits.float() / temperature
        step_logprobs = torch.log_softmax(scaled, dim=-1)
        probs = step_logprobs.exp() if top_p >= 1.0 else _top_p_probs(step_logprobs, top_p)
        drawn = _draw(probs, generator, shard)
        live = ~ended
        tokens[:, step] = torch.where(live, drawn, pad_id)
        logprobs[:, step] = torch.where(live, step_logprobs.gather(1, drawn[:, None]).squeeze(1), INVALID_LOGPROB)
        if eos_id is not None:
            stops = live & (drawn == eos_id)
            lengths = torch.where(stops, step + 1, lengths)
            ended |= stops
        if step + 1 == max_new_tokens or (stop_at_eos and bool(ended.all())):
            break
        mask = torch.cat([mask, live[:, None].long()], dim=1)
        with autocast or _NoAutocast():
            out = model(input_ids=tokens[:, step : step + 1], attention_mask=mask, position_ids=next_position[:, None],
                        past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1]
        next_position = next_position + 1
    # Every row is R wide, R the longest response, so the batch keeps no columns of pure padding.
    width = int(lengths.max())
    full = torch.cat([prompts, tokens[:, :width]], dim=1)
    steps = torch.arange(width, device=device)
    response_mask = (steps[None, :] < lengths[:, None]).long()
    return Rollout(
        tokens=full,
        attention_mask=torch.cat([prompt_mask, response_mask], dim=1),
        prompt_length=prompt_length,
        response_lengths=lengths,
        logprobs=logprobs[:, :width],
        ended=ended,
    )


def _draw(probs: torch.Tensor, generator: torch.Generator | None, shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
    # One token per row by inverting the cumulative distribution: one uniform number per row,
    # where torch.multinomial draws an exponential for every token of the vocabulary (on a CPU,
    # that alone was a fifth of the sampling time with a 4,096-token vocabulary).
    cdf = probs.cumsum(-1)
    rank, world = shard
    u = torch.rand((probs.shape[0] * world, 1), generator=generator, device=probs.device)[rank::world] * cdf[:, -1:]
    drawn = torch.searchsorted(cdf, u, right=True).squeeze(1)
    return drawn.clamp(max=probs.shape[-1] - 1)


def _top_p_probs(logprobs: torch.Tensor, top_p: float) -> torch.Tensor:
    # The smallest set of tokens whose probability reaches top_p; the most likely token always stays.
    sorted_logprobs, order = logprobs.sort(dim=-1, descending=True)
    sorted_probs = sorted_logprobs.exp()
    outside = sorted_probs.cumsum(-1) - sorted_probs > top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(sorted_probs).scatter(-1, order, sorted_probs)


class _NoAutocast:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@functools.lru_cache(maxsize=64)
def _accepts_logits_to_keep(model_type: type) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model_type.forward).parameters
    except (TypeError, ValueError):
        return False


def _logits_to_keep_kwargs(model, n: int) -> dict[str, int]:
    # The language-model head over every prompt position is wasted work (and, with a large
    # vocabulary, most of a forward pass); models that can skip it are told to.
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {"logits_to_keep": n} if _accepts_logits_to_keep(type(target)) else {}


# -- forward passes over whole rollouts ------------------------------------------------------------


def response_logits(model, rollout: Rollout) -> torch.Tensor:
    """[B, R, V] logits that predicted each response token (with grad if the caller has it on)."""
    width = rollout.responses.shape[1]
    out = model(
        input_ids=rollout.tokens, attention_mask=rollout.attention_mask, position_ids=rollout.position_ids,
        use_cache=False, **_logits_to_keep_kwargs(model, width + 1),
    )
    return out.logits[:, -(width + 1) : -1]


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)


def response_logprobs(model, rollout: Rollout, temperature: float) -> torch.Tensor:
    return logprobs_of(response_logits(model, rollout), rollout.responses, temperature)


def value_head(model):
    for name in ("score", "classifier", "v_head"):
        head = getattr(model, name, None)
        if head is not None:
            return head
    raise TypeError(f"{type(model).__name__} has no scalar head (score, classifier or v_head)")


def token_values(model, rollout: Rollout) -> torch.Tensor:
    """[B, R] the value model's estimate at the position before each response token."""
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(
        input_ids=rollout.tokens, attention_mask=rollout.attention_mask, position_ids=rollout.position_ids,
        use_cache=False,
    ).last_hidden_state
    width = rollout.responses.shape[1]
    return value_head(model)(hidden[:, -(width + 1) : -1]).squeeze(-1).float()


def decode_responses(tokenizer, rollout: Rollout) -> list[str]:
    rows = rollout.responses.tolist()
    lengths = rollout.response_lengths.tolist()
    return tokenizer.batch_decode([row[:n] for row, n in zip(rows, lengths)], skip_special_tokens=True)


@torch.no_grad()
def reward_scores(reward_model, tokenizer, prompts: Sequence[Any], responses: Sequence[str], *, max_length: int) -> torch.Tensor:
    """[B] the reward model's score of each (prompt, response), the text rendered as in its training."""
    from .text import encode_response, pad_rows

    rows = [encode_response(tokenizer, p, r.strip(), max_length) for p, r in zip(prompts, responses)]
    batch = pad_rows(rows, tokenizer.pad_token_id)
    device = next(reward_model.parameters()).device
    out = reward_model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    return out.logits.squeeze(-1).float()


# -- plain generation (for comparisons and the bench) --------------------------------------------


@torch.no_grad()
def sample_responses(
    model,
    tokenizer,
    prompts: Sequence[Any],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    max_prompt_length: int = 1024,
) -> list[str]:
    """One sampled response per prompt, as text (special tokens dropped, outer space stripped)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    encoded = encode_prompts(tokenizer, prompts, max_prompt_length)
    texts: list[str] = []
    try:
        for start in range(0, len(encoded), batch_size):
            rollout = sample(
                model, encoded[start : start + batch_size], pad_id=tokenizer.pad_token_id, eos_id=tokenizer.eos_token_id,
                max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, generator=generator,
            )
            texts.extend(t.strip() for t in decode_responses(tokenizer, rollout))
    finally:
        model.train(was_training)
    return texts


__all__ = [
    "INVALID_LOGPROB", "Rollout", "decode_responses", "encode_prompts", "left_pad", "logprobs_of",
    "prompt_text", "response_logits", "response_logprobs", "reward_scores", "sample", "sample_responses",
    "token_values", "value_head",
]
