"""A checkpoint as a plain `transformers` folder, for use outside the workbench.

A LoRA-trained policy or reward model is saved as an adapter folder (adapter_config.json and the
adapter's weights, naming its base model), which vLLM, Ollama's importers or a plain
`from_pretrained` script cannot use as it is. `export_model` loads the checkpoint (its base too, for
an adapter), merges the adapter into the base weights, casts to the dtype asked for, and writes a
plain folder in safetensors with its tokenizer (and chat template). It then loads what it wrote and
compares its outputs with the unmerged model's on a few texts, so a bad merge is caught here, not in
someone's serving stack. The folder appears whole or not at all (written beside it, then renamed).

Whether a folder is a policy or a reward model is read from it: an adapter's `task_type` (peft's
SEQ_CLS for reward models), else its config's architecture (`...ForSequenceClassification`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .errors import Stopped, WorkbenchError
from .events import Log, Sink, StopFlag
from .models import check_safe_weights, quiet_transformers

DTYPES = ("fp32", "bf16", "fp16")
# Texts the exported model and the unmerged one both answer: short, and unlike each other.
CHECK_TEXTS = ("What is 2 + 3?", "Tell me about the ocean, please.", "Hello")
# How far the exported model's outputs may be from the unmerged model's: merging adds the adapter's
# product into the weights, which rounds differently from computing it beside them (fp32); a
# half-precision export rounds every weight.
TOLERANCE = {"fp32": 1e-4, "bf16": 0.1, "fp16": 0.02}


def kind_of(folder: Path) -> str:
    """'reward' or 'policy': what a model folder holds."""
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        try:
            task = json.loads(adapter.read_text(encoding="utf-8")).get("task_type")
        except (OSError, ValueError) as exc:
            raise WorkbenchError(f"{adapter}: cannot be read ({exc})") from None
        return "reward" if task == "SEQ_CLS" else "policy"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"{folder}: not a model folder ({exc})") from None
    architectures = config.get("architectures") or []
    return "reward" if any("SequenceClassification" in a for a in architectures) else "policy"


def export_model(checkpoint: str | Path, out: str | Path, *, dtype: str = "fp32", trust_remote_code: bool = False,
                 sink: Sink | None = None, stop: StopFlag | None = None) -> dict[str, Any]:
    """Writes `checkpoint` (a model folder, an adapter folder, or a run's checkpoint with its policy
    inside) to the new folder `out` as a plain merged model; returns what it did: kind, merged,
    dtype, parameters, max_difference (of the outputs, against the unmerged model), out."""
    import torch

    from .training.policy import load_policy, resolve_policy

    say = (lambda message: sink(Log(message))) if sink else (lambda message: None)
    if dtype not in DTYPES:
        raise WorkbenchError(f"dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WorkbenchError(f"{out}: already exists and is not an empty folder; choose a new one")
    folder = resolve_policy(str(checkpoint))  # a run's checkpoint folder means its policy/ inside
    kind = kind_of(folder)
    check_safe_weights(folder)
    if kind == "reward":
        from .models import load_reward_model

        model, tokenizer = load_reward_model(str(folder), trust_remote_code=trust_remote_code)
    else:
        model, tokenizer = load_policy(str(folder), trust_remote_code=trust_remote_code)
    model.eval()
    merged = hasattr(model, "merge_and_unload")
    inputs = [tokenizer(text, return_tensors="pt") for text in CHECK_TEXTS]  # one at a time: no padding to differ
    with torch.no_grad():
        expected = _outputs(model, inputs)
    if merged:
        say(f"merging the LoRA adapter of {folder} into its base")
        model = model.merge_and_unload()
    model = model.to({"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype])

    if stop is not None and stop():
        raise Stopped("The export was cancelled; nothing was written")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with quiet_transformers():
            model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        loaded = _load_plain(partial, kind, trust_remote_code)
        with torch.no_grad():
            got = _outputs(loaded, inputs)
        difference = float((got.float() - expected.float()).abs().max())
        scale = max(1.0, float(expected.abs().max()))
        if difference > TOLERANCE[dtype] * scale:
            raise WorkbenchError(
                f"the exported model's outputs differ from the checkpoint's by {difference:.3g} (more than "
                f"{TOLERANCE[dtype] * scale:.3g} allowed in {dtype}); nothing was written"
            )
        if out.exists():
            out.rmdir()  # empty, checked above
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    parameters = sum(p.numel() for p in loaded.parameters())
    say(f"wrote {out}: a {kind} model, {parameters:,} parameters in {dtype}; outputs within {difference:.2g} of the checkpoint's")
    return {"kind": kind, "merged": merged, "dtype": dtype, "parameters": parameters,
            "max_difference": difference, "out": str(out)}


def _outputs(model, inputs):
    """What the model computes that matters, for each text: its reward, or its logits at every position."""
    import torch

    return torch.cat([model(input_ids=i["input_ids"], attention_mask=i["attention_mask"]).logits.reshape(-1)
                      for i in inputs])


def _load_plain(folder: Path, kind: str, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if kind == "reward" else AutoModelForCausalLM
    with quiet_transformers():
        model = auto.from_pretrained(folder, use_safetensors=True, trust_remote_code=trust_remote_code,
                                     dtype="auto")
    return model.eval()
