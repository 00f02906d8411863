"""Rollouts: prompts in, sampled responses out, with what an online RL method (PPO, RLOO, GRPO)
needs about every response token; and plain sampling for people to compare (generate.py).

    encode_prompts(tokenizer, prompts, max_prompt_length)   token ids of each prompt, ready to answer
    sample(policy, prompt_ids, ...)                         a Rollout: tokens, lengths, log-probs
    response_logits / response_logprobs / token_values      forward passes over prompt + response
    reward_scores(reward_model, tokenizer, prompts, texts)  the reward model's score of each response
    sample_responses(model, tokenizer, prompts, ...)        plain texts (for people to compare)

Sampling is our own loop over the KV cache rather than `generate()`: per token it is one forward
pass of the new token and a multinomial draw, and it keeps the log-probability of each drawn token
under the tempered distribution. In fp32 those are the old log-probs PPO needs, so the policy is not
run a second time over the whole batch (TRL 1.12 keeps `generate`'s scores to the same end).
Responses end at the end-of-text token, which is kept as the last response token (the policy
learns to stop); the rest of the row is padding, and lengths are carried explicitly, since the pad
token may equal the end-of-text one.

Work that repeats is done once. The k responses of a group (RLOO, GRPO) share their prompt: sampling
reads each distinct prompt once and copies its KV cache out to the k rows; the later passes over
prompt + response (reference, update, reward model) do the same when the tokens saved outweigh a
second pass's fixed cost. Rows of similar length go through a pass together (length_groups), so
that short responses and short prompts are not padded to the longest of the batch.
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
    lengths: torch.Tensor,
    rows: torch.Tensor,
    *,
    n_params: int = 0,
    max_groups: int = 4,
    overhead: float = 0.05,
    together: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """`rows` split into up to `max_groups` groups of similar length, when that saves padding.

    A forward pass costs about (rows x longest row) token-steps, padding included; rows sorted by
    length and cut into k groups cost the sum over groups, plus a fixed cost per extra pass: the
    larger of `overhead` x the one-group cost and PASS_COST_PARAM_TOKENS / n_params tokens. The k
    with the lowest total wins; k = 1 means no split. The losses are normalised by the tokens of
    the whole minibatch (see train.py), so the split changes the arithmetic only by rounding.

    `together` ([rollout rows], optional): rows with the same value stay in one group (the
    responses of one prompt, whose prompt a pass then computes once: see response_logits).
    """
    units = _units(lengths, rows, together)
    unit_lengths = [length for _, length in units]
    sizes = [len(unit) for unit, _ in units]
    n = len(units)
    single = sum(sizes) * unit_lengths[0] if n else 0
    best_k, best_cost = 1, float(single)
    extra_pass = max(overhead * single, PASS_COST_PARAM_TOKENS / n_params if n_params else 0.0)
    for k in range(2, min(max_groups, n) + 1):
        bounds = [round(i * n / k) for i in range(k + 1)]
        cost = sum(sum(sizes[bounds[i] : bounds[i + 1]]) * unit_lengths[bounds[i]] for i in range(k))
        cost += extra_pass * (k - 1)
        if cost < best_cost:
            best_k, best_cost = k, cost
    bounds = [round(i * n / best_k) for i in range(best_k + 1)]
    return [torch.cat([unit for unit, _ in units[bounds[i] : bounds[i + 1]]]) for i in range(best_k) if bounds[i + 1] > bounds[i]]


def _units(lengths: torch.Tensor, rows: torch.Tensor, together: torch.Tensor | None) -> list[tuple[torch.Tensor, int]]:
    """The rows as units that stay whole (one row each, or the rows `together` joins), longest first."""
    if not len(rows):
        return []
    if together is None:
        order = rows[torch.argsort(lengths[rows], descending=True, stable=True)]
        return [(order[i : i + 1], int(lengths[row])) for i, row in enumerate(order.tolist())]
    units: dict[int, list[int]] = {}
    for row in rows.tolist():
        units.setdefault(int(together[row]), []).append(row)
    members = [torch.tensor(unit, dtype=rows.dtype, device=rows.device) for unit in units.values()]
    longest = [int(lengths[unit].max()) for unit in members]
    order = sorted(range(len(members)), key=lambda i: -longest[i])  # stable: equal lengths keep their order
    return [(members[i], longest[i]) for i in order]


def prompt_groups(rows: int, group_size: int, rank: int = 0, world: int = 1, device=None) -> torch.Tensor | None:
    """[rows] each row's group (k consecutive rows of the global batch answer one prompt) for
    length_groups' `together`, these being rows rank, rank + world, ... of the batch; None for k = 1."""
    if group_size == 1:
        return None
    return (torch.arange(rows, device=device) * world + rank) // group_size


def shared_prompts(rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first, inverse) when some rows have the same prompt (the k responses of a group): `first`,
    one row of each distinct prompt; `inverse`, for every row, its prompt's place in `first`.
    None when every prompt is different."""
    prompt_length = rollout.prompt_length
    keys = torch.cat([rollout.tokens[:, :prompt_length], rollout.attention_mask[:, :prompt_length]], dim=1)
    distinct, inverse = torch.unique(keys, dim=0, return_inverse=True)
    if len(distinct) == len(keys):
        return None
    rows = torch.arange(len(keys), device=keys.device)
    first = torch.full((len(distinct),), len(keys), dtype=rows.dtype, device=keys.device)
    first = first.scatter_reduce(0, inverse, rows, reduce="amin")
    return first, inverse


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
    device = next(model.parameters()).device
    # Each distinct prompt is read once (a group's k rows share theirs): the cache is then copied
    # out to the rows, which sample apart from there.
    distinct: dict[tuple[int, ...], int] = {}
    inverse = torch.tensor([distinct.setdefault(tuple(ids), len(distinct)) for ids in prompt_ids], device=device)
    prompts, prompt_mask = left_pad([list(ids) for ids in distinct], pad_id, device)
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    cache = _growing_cache(prompts.shape[1] + max_new_tokens)
    keep = _logits_to_keep_kwargs(model, 1)
    with autocast or _NoAutocast():
        out = model(input_ids=prompts, attention_mask=prompt_mask, position_ids=positions,
                    past_key_values=cache, use_cache=True, **keep)
    logits = out.logits[:, -1]
    if len(distinct) < len(prompt_ids):
        cache.batch_select_indices(inverse)
        prompts, prompt_mask, positions, logits = prompts[inverse], prompt_mask[inverse], positions[inverse], logits[inverse]
    batch, prompt_length = prompts.shape
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.full((batch, max_new_tokens), INVALID_LOGPROB, device=device)
    lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=device)
    ended = torch.zeros(batch, dtype=torch.bool, device=device)
    # The attention mask grows by a column a token: written into one buffer, not concatenated.
    full_mask = torch.cat([prompt_mask, torch.zeros((batch, max_new_tokens), dtype=prompt_mask.dtype, device=device)], 1)
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
        full_mask[:, prompt_length + step] = live
        with autocast or _NoAutocast():
            out = model(input_ids=tokens[:, step : step + 1], attention_mask=full_mask[:, : prompt_length + step + 1],
                        position_ids=next_position[:, None], past_key_values=cache, use_cache=True)
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


def _growing_cache(capacity: int):
    """A DynamicCache whose layers write each step's keys and values into a buffer of `capacity`
    positions allocated once. DynamicCache's own layers concatenate instead: every sampled token
    allocates and copies the whole cache again (a third of the sampling time of a 5M-parameter
    policy with 64 rows on a CPU)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layer_class_to_replicate = functools.partial(_growing_layer_class(), capacity)
    return cache


@functools.cache
def _growing_layer_class():
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity
            self.length = 0

        def lazy_initialization(self, key_states, value_states):
            batch, heads, _, _ = key_states.shape
            self.dtype, self.device = key_states.dtype, key_states.device
            self.key_buffer = key_states.new_zeros((batch, heads, self.capacity, key_states.shape[-1]))
            self.value_buffer = value_states.new_zeros((batch, heads, self.capacity, value_states.shape[-1]))
            self.keys, self.values = self.key_buffer[:, :, :0], self.value_buffer[:, :, :0]
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self.capacity:
                raise RuntimeError(f"the sampling cache holds {self.capacity} positions, {end} were written")
            self.key_buffer[:, :, self.length : end] = key_states
            self.value_buffer[:, :, self.length : end] = value_states
            self.length = end
            self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices):
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            self.keys, self.values = self.key_buffer[:, :, : self.length], self.value_buffer[:, :, : self.length]

    return GrowingLayer


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


def response_logits(model, rollout: Rollout, *, n_params: int = 0) -> torch.Tensor:
    """[B, R, V] logits that predicted each response token (with grad if the caller has it on).

    Rows that share their prompt (a group's k responses) have it computed once: one pass over the
    distinct prompts fills a KV cache, which each row then continues with its response (gradients
    flow back through the cache into the shared prompt). Same logits up to rounding; it pays when
    the prompt tokens saved outweigh a second pass's fixed cost (PASS_COST_PARAM_TOKENS / n_params).
    """
    width = rollout.responses.shape[1]
    shared = shared_prompts(rollout)
    if shared is not None and _sharing_pays(rollout, len(shared[0]), n_params):
        return _shared_prompt_logits(model, rollout, *shared)
    out = model(
        input_ids=rollout.tokens, attention_mask=rollout.attention_mask, position_ids=rollout.position_ids,
        use_cache=False, **_logits_to_keep_kwargs(model, width + 1),
    )
    return out.logits[:, -(width + 1) : -1]


def _sharing_pays(rollout: Rollout, distinct: int, n_params: int) -> bool:
    if rollout.prompt_length < 2:
        return False  # the prompt's last token is each row's own (see _shared_prompt_logits)
    saved = (len(rollout.tokens) - distinct) * rollout.prompt_length
    return saved > (PASS_COST_PARAM_TOKENS / n_params if n_params else 0.0)


def _shared_prompt_logits(model, rollout: Rollout, first: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    from transformers import DynamicCache

    # The prompt's last token goes with each row's response, so that one pass gives every logit
    # kept: none to join afterwards (a copy of the [B, R, V] logits and of their gradient).
    shared, width = rollout.prompt_length - 1, rollout.responses.shape[1]
    positions = rollout.position_ids
    cache = DynamicCache()
    model(
        input_ids=rollout.tokens[first, :shared], attention_mask=rollout.attention_mask[first, :shared],
        position_ids=positions[first, :shared], past_key_values=cache, use_cache=True,
        **_logits_to_keep_kwargs(model, 1),
    )
    cache.batch_select_indices(inverse)
    end = shared + width  # the last response token predicts nothing we keep
    out = model(
        input_ids=rollout.tokens[:, shared:end], attention_mask=rollout.attention_mask[:, :end],
        position_ids=positions[:, shared:end], past_key_values=cache, use_cache=True,
    )
    return out.logits


def tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """`logits` / temperature in float32, divided in place: for logits that nothing else reads
    (a forward pass's own output; autograd keeps no copy of it either)."""
    logits = logits.float()
    return logits if temperature == 1.0 else logits.div_(temperature)


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, *, in_place: bool = False) -> torch.Tensor:
    """The log-probability of each of `tokens` under the tempered logits; `in_place` divides the
    logits themselves (see tempered)."""
    scaled = tempered(logits, temperature) if in_place else logits.float() / temperature
    return torch.log_softmax(scaled, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)


def response_logprobs(model, rollout: Rollout, temperature: float, *, n_params: int = 0) -> torch.Tensor:
    return logprobs_of(response_logits(model, rollout, n_params=n_params), rollout.responses, temperature, in_place=True)


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
def reward_scores(
    reward_model,
    tokenizer,
    prompts: Sequence[Any],
    responses: Sequence[str],
    *,
    max_length: int,
    together: torch.Tensor | None = None,
    n_params: int = 0,
) -> torch.Tensor:
    """[B] the reward model's score of each (prompt, response), the text rendered as in its training.

    Rows of similar length are scored together (length_groups); rows `together` joins (a group's k
    responses to one prompt) stay together and their common first tokens (the prompt) are read
    once, as response_logits does for the policy.
    """
    from .text import encode_response

    rows = [encode_response(tokenizer, p, r.strip(), max_length) for p, r in zip(prompts, responses)]
    device = next(reward_model.parameters()).device
    lengths = torch.tensor([len(r) for r in rows])
    scores = torch.empty(len(rows))
    for part in length_groups(lengths, torch.arange(len(rows)), n_params=n_params, together=together):
        keys = together[part].tolist() if together is not None else None
        scores[part] = _score_rows(reward_model, [rows[i] for i in part.tolist()], keys, tokenizer.pad_token_id,
                                   device, n_params).cpu()
    return scores.to(device)


def _score_rows(reward_model, rows: list[list[int]], keys: list[int] | None, pad_id: int, device, n_params: int):
    from .text import pad_rows

    shared = _shared_prefixes(rows, keys) if keys is not None and _has_backbone(reward_model) else None
    if shared is not None and (sum(shared[2]) > (PASS_COST_PARAM_TOKENS / n_params if n_params else 0.0)):
        return _score_shared(reward_model, rows, *shared[:2], pad_id, device)
    batch = pad_rows(rows, pad_id)
    out = reward_model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    return out.logits.squeeze(-1).float()


def _has_backbone(model) -> bool:
    return hasattr(model, "base_model_prefix") and hasattr(model, model.base_model_prefix) and any(
        hasattr(model, name) for name in ("score", "classifier", "v_head"))


def _shared_prefixes(rows: list[list[int]], keys: list[int]):
    """For rows grouped by `keys`: each group's common first tokens (all but at least one token of
    each row), which row reads which, and the tokens that saves; None if nothing is shared."""
    members: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    prefixes, inverse, saved = [], [0] * len(rows), []
    for group in members.values():
        first = rows[group[0]]
        common = min(len(rows[i]) for i in group) - 1
        for i in group[1:]:
            row = rows[i]
            common = next((n for n in range(common) if row[n] != first[n]), common)
        for i in group:
            inverse[i] = len(prefixes)
        prefixes.append(first[: max(common, 0)])
        saved.append((len(group) - 1) * max(common, 0))
    if not any(saved) or any(not p for p in prefixes):
        return None
    return prefixes, inverse, saved


def _score_shared(reward_model, rows, prefixes, inverse, pad_id, device) -> torch.Tensor:
    """The scores of `rows` from one pass over the distinct prefixes (into a KV cache) and one over
    each row's rest: the score head on the hidden state of each row's last token."""
    from transformers import DynamicCache

    backbone = getattr(reward_model, reward_model.base_model_prefix)
    prefix_ids, prefix_mask = left_pad(prefixes, pad_id, device)
    positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    backbone(input_ids=prefix_ids, attention_mask=prefix_mask, position_ids=positions, past_key_values=cache, use_cache=True)
    index = torch.tensor(inverse, device=device)
    cache.batch_select_indices(index)
    rests = [row[len(prefixes[p]) :] for row, p in zip(rows, inverse)]
    width = max(len(r) for r in rests)
    rest_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    rest_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, rest in enumerate(rests):
        rest_ids[i, : len(rest)] = torch.tensor(rest, dtype=torch.long)
        rest_mask[i, : len(rest)] = 1
    rest_ids, rest_mask = rest_ids.to(device), rest_mask.to(device)
    starts = torch.tensor([len(prefixes[p]) for p in inverse], device=device)
    hidden = backbone(
        input_ids=rest_ids, attention_mask=torch.cat([prefix_mask[index], rest_mask], dim=1),
        position_ids=starts[:, None] + torch.arange(width, device=device), past_key_values=cache, use_cache=True,
    ).last_hidden_state
    last = hidden[torch.arange(len(rows), device=device), rest_mask.sum(1) - 1]
    return value_head(reward_model)(last).squeeze(-1).float()


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
    "INVALID_LOGPROB", "Rollout", "decode_responses", "encode_prompts", "left_pad", "logprobs_of", "prompt_groups",
    "prompt_text", "response_logits", "response_logprobs", "reward_scores", "sample", "sample_responses",
    "shared_prompts", "tempered", "token_values", "value_head",
]
