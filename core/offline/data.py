"""What the offline methods read: prompt + response sequences that know where the response starts,
batched with the mask of the tokens the loss is on; and SFT's examples from a file.

Every sequence is rendered and truncated as the reward model's are (training/text.py: the chat
template or the transcript; the start of the prompt and the end of the response kept), and ends
with the end-of-text token as TRL's DPO and SFT trainers append it: a policy that learns a response
learns to stop after it, which is what sampling in the RL methods and Generate relies on.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import JobFailed
from ..training.text import encode_split

# (token ids, index of the response's first token)
Encoded = tuple[list[int], int]


def encode_sequence(tokenizer, prompt: Any, response: str, max_length: int) -> Encoded:
    eos = tokenizer.eos_token_id
    ids, start = encode_split(tokenizer, prompt, response, max_length - (1 if eos is not None else 0))
    if eos is not None and (not ids or ids[-1] != eos):
        ids = ids + [eos]
    return ids, max(1, min(start, len(ids) - 1))  # the first token predicts nothing: never a target


def encode_pairs(tokenizer, pairs: Sequence[tuple], max_length: int) -> list[tuple[Encoded, Encoded]]:
    """(chosen, rejected) for each (prompt, chosen, rejected[, margin]) pair; a margin is not DPO's."""
    return [(encode_sequence(tokenizer, p[0], p[1], max_length), encode_sequence(tokenizer, p[0], p[2], max_length)) for p in pairs]


def collate(rows: Sequence[Encoded], pad_id: int):
    """{'input_ids', 'attention_mask', 'targets'}: the rows right-padded to the longest; targets
    marks the response tokens (the ones the loss is on), as a bool [B, L]."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.zeros((len(rows), width), dtype=torch.bool)
    for r, (ids, start) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[r, : len(ids)] = 1
        targets[r, start : len(ids)] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask, "targets": targets}


def read_sft_file(path: str | Path) -> list[tuple[str, str]]:
    """(prompt, response) rows of a JSONL or CSV file with 'prompt' and 'response' columns
    ('completion' is read as 'response', as in TRL's prompt-completion datasets), or of a .json file
    holding JSON lines or one array of such objects.

    Refuses the whole file, naming the line and the field, at the first row that is not one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise JobFailed(f"sft_data: {path}: no such file", hint="give 'chosen' or a JSONL or CSV file with prompt and response")
    suffix = path.suffix.lower()
    rows: list[tuple[str, str]] = []
    try:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8", Windows editors) is not part of the first column's name.
        with path.open(encoding="utf-8-sig", newline="") as fh:
            if suffix == ".csv":
                reader = csv.reader(fh)
                header = next(reader, None) or []
                while True:
                    line = reader.line_num + 1  # where the next record starts: a quoted field may span lines
                    row = next(reader, None)
                    if row is None:
                        break
                    if len(row) > len(header):
                        raise JobFailed(f"sft_data: {path}, line {line}: {len(row)} values, but the header names "
                                        f"{len(header)} columns (a comma in a value that is not in quotes?)")
                    if row:  # a blank line is no record
                        rows.append(_example(dict(zip(header, row)), path, line))
            elif suffix == ".json" and _starts_with(fh, "["):
                rows = _json_array(fh, path)
            elif suffix in (".jsonl", ".json"):
                for line, text in enumerate(fh, start=1):
                    if not text.strip():
                        continue
                    try:
                        record = json.loads(text)
                    except ValueError as exc:
                        raise JobFailed(f"sft_data: {path}, line {line}: not JSON ({exc})") from None
                    if not isinstance(record, dict):
                        raise JobFailed(f"sft_data: {path}, line {line}: expected an object with prompt and response")
                    rows.append(_example(record, path, line))
            else:
                raise JobFailed(f"sft_data: {path}: not a .jsonl, .json or .csv file")
    except UnicodeDecodeError:
        raise JobFailed(f"sft_data: {path}: is not UTF-8 text") from None
    if not rows:
        raise JobFailed(f"sft_data: {path}: holds no examples")
    return rows


def _starts_with(fh, char: str) -> bool:
    """Whether the file's first character that is not white space is `char` (the file is rewound)."""
    head = fh.read(4096).lstrip()
    fh.seek(0)
    return head.startswith(char)


def _json_array(fh, path: Path) -> list[tuple[str, str]]:
    """A .json file holding one array of objects (what `json.dump` of a list, or pandas' to_json
    with orient='records', writes), each named by its place in the array."""
    try:
        records = json.load(fh)
    except ValueError as exc:
        raise JobFailed(f"sft_data: {path}: not JSON ({exc})") from None
    rows = []
    for index, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise JobFailed(f"sft_data: {path}, record {index} of the array: expected an object with prompt and response")
        rows.append(_example(record, path, index, where="record"))
    return rows


def _example(record: dict, path: Path, line: int, where: str = "line") -> tuple[str, str]:
    response = record.get("response", record.get("completion"))
    prompt = record.get("prompt")
    for name, value in (("prompt", prompt), ("response", response)):
        if not isinstance(value, str) or not value.strip():
            columns = ", ".join(sorted(map(str, record))) or "none"
            raise JobFailed(f"sft_data: {path}, {where} {line}: '{name}' is missing or empty (the row has: {columns})")
    return prompt, response
