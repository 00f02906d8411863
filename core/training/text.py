"""How a prompt and a response become the tokens a model reads: every method renders them the same.

A prompt and response are rendered with the tokenizer's chat template when it has one (the
prompt's messages, then the response as the assistant's turn), else as a plain transcript:
"User: <prompt>\n\nAssistant: <response>" (a system message becomes "System: ...").

When prompt + response exceed `max_length` tokens, the START of the prompt and the END of the
response are kept (the end of a response is where it goes right or wrong, and a reward is read
at the last token). Exactly: the response keeps all its tokens if the prompt leaves room
(response budget = max_length - prompt length); otherwise the prompt is first cut down to no less
than half the window, keeping its first tokens; a response that still does not fit loses its
first tokens. So with both long, each gets half: the prompt's first max_length//2 tokens and the
response's last max_length - max_length//2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Union

from ..records import Conversation, Message

# A prompt as a string (one user turn), a Conversation, or chat messages ({role, content}).
Prompt = Union[str, Conversation, Sequence[Mapping[str, str]]]


def _role(m) -> str:
    return m.role if isinstance(m, Message) else m["role"]


def _content(m) -> str:
    return m.content if isinstance(m, Message) else m["content"]


def messages_of(prompt: Prompt) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": _role(m), "content": _content(m)} for m in prompt]


def transcript(messages: Sequence[Mapping[str, str]]) -> str:
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def render(tokenizer, prompt: Prompt, response: str) -> tuple[str, int, bool]:
    """(full text, where the response starts in it, whether the text has its special tokens)."""
    messages = messages_of(prompt)
    if getattr(tokenizer, "chat_template", None):
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": response}], tokenize=False
        )
        # Templates render the prompt the same way with or without the answer; where one does not
        # (some drop earlier reasoning), the shared beginning is the prompt.
        boundary = len(head) if full.startswith(head) else len(_common_prefix(head, full))
        return full, boundary, True
    head = transcript(messages) + "\n\nAssistant:"
    return f"{head} {response}", len(head), False


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


def encode_response(tokenizer, prompt: Prompt, response: str, max_length: int) -> list[int]:
    return encode_split(tokenizer, prompt, response, max_length)[0]


def encode_split(tokenizer, prompt: Prompt, response: str, max_length: int) -> tuple[list[int], int]:
    """(token ids, where the response starts in them): what a method that learns from the response
    alone (SFT, DPO) needs to know besides the tokens."""
    text, boundary, templated = render(tokenizer, prompt, response)
    # Tokenized whole (merges across the boundary stay as the model will see them when scoring a
    # full text); the offsets say which tokens belong to the response.
    enc = tokenizer(text, add_special_tokens=not templated, return_offsets_mapping=True)
    ids = enc["input_ids"]
    start = next((i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > boundary and e > s), len(ids))
    if len(ids) <= max_length:
        return ids, start
    kept = truncate(ids[:start], ids[start:], max_length)
    return kept, _prompt_budget(start, len(ids) - start, max_length)


def truncate(prompt_ids: list[int], response_ids: list[int], max_length: int) -> list[int]:
    """Keeps the start of the prompt and the end of the response (rule in the module docstring)."""
    if len(prompt_ids) + len(response_ids) <= max_length:
        return prompt_ids + response_ids
    prompt_budget = _prompt_budget(len(prompt_ids), len(response_ids), max_length)
    response_budget = max_length - prompt_budget
    return prompt_ids[:prompt_budget] + response_ids[len(response_ids) - response_budget :]


def _prompt_budget(prompt_length: int, response_length: int, max_length: int) -> int:
    """How many of the prompt's tokens a text too long for max_length keeps."""
    response_budget = min(response_length, max(max_length - prompt_length, max_length - max_length // 2))
    return max_length - response_budget


def pad_rows(rows: Sequence[list[int]], pad_id: int):
    """{'input_ids', 'attention_mask'}: the rows right-padded to the longest."""
    import torch

    width = max(1, max(len(r) for r in rows))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, ids in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[r, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
