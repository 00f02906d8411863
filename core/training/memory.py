"""Will it fit? The memory a training run needs, estimated before Start, without torch.

Each method says which models its runs hold and what passes through them (`MemoryPlan`, made by
the method's `memory_plan` on TrainingMethod); this module reads each model's config.json (a LoRA
adapter folder: its base's), and does the arithmetic:

- **weights**: every parameter in float32. Every method loads its models in float32 and trains
  under autocast (training/device.py): bf16 and fp16 are the arithmetic, the master weights stay
  float32, so precision does not shrink weights, gradients or optimizer state here.
- **gradients**: float32, one per trainable parameter (all of them, or LoRA's adapters and head).
- **optimizer state**: AdamW's two float32 moments per trainable parameter.
- **activations**: what a forward pass saves for backward, per token, from the architecture (a
  Llama-style decoder: RMSNorm in float32, q, k, v and the attention output, the MLP's gate, up
  and product, each trained Linear's input), plus the float32 logits of the tokens the loss reads
  and their gradient; under bf16/fp16 autocast the saved tensors are half as wide and the trained
  Linears' weights are cached in half precision for the pass. Gradient checkpointing keeps each
  layer's input and recomputes one layer at a time. tests/test_memory_estimate.py checks these
  against what torch saves for tiny Llamas of several shapes (within 20%), bench/memory_check.py
  against torch.cuda.max_memory_allocated on a GPU.
- **inference**: frozen models (RL's reference and reward model, DPO's reference pass) and the
  rollout's generation with its KV cache run without gradients, one after another, never at the
  same time as a backward pass: the total is what stays (weights, optimizer state) plus the larger
  of the training step and the largest inference pass, plus the runtime's own (CUDA context, torch).

`memory_check(method, config, project_path)` is what a form and the CLI call: the line
("needs about 14.2 GB of 24 GB on NVIDIA RTX 4090"), whether it fits, and the settings changes
that would make it fit, each with its estimate. Never imports torch: the window calls it as
settings change.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import gpu_runtime
from ..errors import ConfigError, WorkbenchError
from ..models import DEMO, DEMO_MODEL_SPEC, ModelError, resolve_model

GB = 2**30
FLOAT32 = 4
# Share of the device's memory a run may plan to use: the rest is for the allocator's
# fragmentation, and on a CPU for the system and the programs beside the run.
USABLE = 0.9
# What the process holds besides tensors: torch and transformers loaded (CPU), the CUDA context
# and cuBLAS's workspace (GPU).
RUNTIME_BYTES = {"cuda": int(0.6 * GB), "cpu": int(0.5 * GB), "mps": int(0.5 * GB)}

# peft's default targets ("auto") by model type, as abstract roles of a decoder layer's Linears.
_AUTO_TARGETS = {"gpt2": ("qkv",), "gpt_neox": ("qkv",), "bloom": ("qkv",), "falcon": ("qkv",)}
_DEFAULT_AUTO = ("q", "v")
_ALL_LINEAR = ("q", "k", "v", "o", "gate", "up", "down")
_NAMES = {
    "q_proj": ("q",), "k_proj": ("k",), "v_proj": ("v",), "o_proj": ("o",), "gate_proj": ("gate",),
    "up_proj": ("up",), "down_proj": ("down",), "c_attn": ("qkv",), "query_key_value": ("qkv",), "qkv_proj": ("qkv",),
    "c_fc": ("up",), "fc1": ("up",), "fc2": ("down",), "dense_h_to_4h": ("up",), "dense_4h_to_h": ("down",),
    "c_proj": ("o", "down"), "dense": ("o",), "out_proj": ("o",), "gate_up_proj": ("gate", "up"),
}
# Architectures whose MLP is a product of two projections (SwiGLU, GeGLU); anything with an
# `intermediate_size` not named here as plain counts as gated (most decoders since Llama).
_PLAIN_MLP = {"gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "gpt_bigcode", "starcoder2"}
# config.json leaves out what equals its class's default: these architectures' default is untied
# embeddings (PretrainedConfig's is tied).
_UNTIED = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi3", "gpt_neox", "olmo",
           "olmo2", "granite", "smollm3", "deepseek_v3"}
_QKV_BIAS = {"qwen2", "qwen2_moe"}  # q, k and v have biases, o none (Qwen2's attention)


# -- what a model is -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """A decoder's dimensions, from its config.json."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    gated: bool
    positions: int = 0  # learned position embeddings (GPT-2), 0 for rotary
    biases: frozenset[str] = frozenset()  # the layer roles whose Linears have a bias
    norm_bias: bool = False  # LayerNorm (a bias beside the scale) rather than RMSNorm

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> "ModelShape":
        text = data.get("text_config")
        if isinstance(text, Mapping) and "hidden_size" not in data:
            data = {**text, "model_type": data.get("model_type", "")}
        get = lambda *keys, default=None: next((data[k] for k in keys if data.get(k) is not None), default)  # noqa: E731
        model_type = str(get("model_type", default=""))
        hidden = int(get("hidden_size", "n_embd", "d_model", default=0))
        layers = int(get("num_hidden_layers", "n_layer", "num_layers", default=0))
        heads = int(get("num_attention_heads", "n_head", default=1))
        vocab = int(get("vocab_size", default=0))
        if not (hidden and layers and vocab):
            raise ModelError(f"a {model_type or 'model'} config without hidden size, layers or vocabulary")
        plain = model_type in _PLAIN_MLP
        intermediate = int(get("intermediate_size", "n_inner", "ffn_dim", default=0) or 4 * hidden)
        return cls(
            model_type=model_type, hidden=hidden, layers=layers, heads=heads,
            kv_heads=int(get("num_key_value_heads", "n_head_kv", default=heads)),
            head_dim=int(get("head_dim", default=hidden // heads)), intermediate=intermediate, vocab=vocab,
            tied=bool(get("tie_word_embeddings", default=model_type not in _UNTIED)), gated=not plain,
            positions=int(get("n_positions", default=0)) if model_type == "gpt2" else 0,
            biases=frozenset(_ALL_LINEAR if plain else (
                (("q", "k", "v", "o") if get("attention_bias", default=False) else ("q", "k", "v") if model_type in _QKV_BIAS
                 else ()) + (("gate", "up", "down") if get("mlp_bias", default=False) else ()))),
            norm_bias=plain,
        )

    def linears(self) -> dict[str, tuple[int, int]]:
        """Each Linear of one layer by role: (inputs, outputs)."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        found = {"q": (h, q), "k": (h, kv), "v": (h, kv), "o": (q, h), "up": (h, self.intermediate),
                 "down": (self.intermediate, h)}
        if self.gated:
            found["gate"] = (h, self.intermediate)
        return found

    def params(self, head: str = "lm") -> int:
        """Parameters: `head` "lm" (a causal LM) or "scalar" (a sequence-classification head)."""
        h = self.hidden
        norm = h * (2 if self.norm_bias else 1)
        per_layer = sum(i * o + (o if role in self.biases else 0) for role, (i, o) in self.linears().items())
        per_layer += 2 * norm
        total = self.vocab * h + self.positions * h + self.layers * per_layer + norm
        if head == "lm":
            total += 0 if self.tied else self.vocab * h
        else:
            total += h  # score: hidden -> 1, no bias
        return total

    def linear_params(self, head: str = "lm") -> int:
        """Parameters of the Linears autocast runs in half precision: the layers' and the head."""
        return self.layers * sum(i * o for i, o in self.linears().values()) + (self.vocab if head == "lm" else 1) * self.hidden

    def lora_params(self, rank: int, targets: Sequence[str]) -> int:
        return self.layers * sum(rank * (i + o) for role, (i, o) in self.linears().items() if role in targets)


def lora_roles(target_modules: str, model_type: str) -> tuple[str, ...]:
    """The layer roles LoRA adapts for a `lora_target_modules` setting."""
    text = target_modules.strip()
    if text == "auto":
        roles = _AUTO_TARGETS.get(model_type, _DEFAULT_AUTO)
    elif text == "all-linear":
        roles = _ALL_LINEAR
    else:
        roles = tuple(role for name in text.split(",") for role in _NAMES.get(name.strip(), ()))
    return tuple(sorted({r for role in roles for r in (("q", "k", "v") if role == "qkv" else (role,))}))


# -- finding a model's config without loading it -----------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot be read ({exc})") from None
    return data if isinstance(data, dict) else {}


def _demo_config(spec: Mapping[str, Any]) -> dict:
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    return {"model_type": "llama", "tie_word_embeddings": False, **{k: spec[k] for k in keys}}


def _model_folder(folder: Path) -> Path | None:
    """A folder's model: itself, its `policy/` (an RL checkpoint), or a run folder's checkpoints."""
    if (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
        return folder
    if (folder / "policy").is_dir():
        return _model_folder(folder / "policy")
    checkpoints = folder / "checkpoints"
    for candidate in (checkpoints / "best", checkpoints / "last", *sorted(checkpoints.glob("step-*"), reverse=True)):
        if candidate.is_dir():
            found = _model_folder(candidate)
            if found is not None:
                return found
    return None


def model_config(spec: str, project=None, *, demo: Mapping[str, Any] = DEMO_MODEL_SPEC, depth: int = 0) -> dict:
    """The config.json of the model a setting names ('demo', a folder, a checkpoint or run folder,
    org/name in the Hugging Face cache, a run id or 'latest' of the project); a LoRA adapter's base's.
    Raises ModelError. Builds nothing: the demo's dimensions come from its spec."""
    text = str(spec).strip()
    if depth > 4:
        raise ModelError(f"{text}: adapters over adapters too deep")
    if text == DEMO:
        return _demo_config(demo)
    if text == "latest" and project is None:
        raise ModelError("'latest' means the project's newest reward model: give the project")
    if project is not None:
        run = _project_run(project, text)
        if run is not None:
            from ..runs.records import run_dir_of

            folder = _model_folder(run_dir_of(project, run))
            if folder is None:  # no checkpoint yet: the model it starts from has the same shape
                base = (run.get("config") or {}).get("base_model") or (run.get("config") or {}).get("policy")
                if not base:
                    raise ModelError(f"run {run['id']} has no checkpoint yet")
                return model_config(base, project, demo=demo, depth=depth + 1)
            return _folder_config(folder, project, demo, depth)
    path = Path(text).expanduser()
    folder = _model_folder(path) if path.is_dir() else None
    return _folder_config(folder or resolve_model(text), project, demo, depth)


def _folder_config(folder: Path, project, demo, depth: int) -> dict:
    if (folder / "config.json").is_file():
        return _read_json(folder / "config.json")
    adapter = _read_json(folder / "adapter_config.json")
    base = adapter.get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{folder / 'adapter_config.json'}: does not name its base model")
    return model_config(base, project, demo=demo, depth=depth + 1)


def _project_run(project, text: str):
    if text == "latest":
        for run in project.store.runs(newest_first=True, decode=True):
            if run["kind"] == "reward" and run["status"] == "finished":
                return run
        raise ModelError("reward_model: 'latest' found no finished reward-model run in this project")
    if "/" in text or os.sep in text:
        return None
    return project.store.run(text)


# -- what a method holds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pass:
    """Sequences through a model at once: how many, how long, and how many of their tokens the loss
    (or sampling) reads logits for; `generate`: sampled token by token with a KV cache."""

    sequences: int
    length: int
    logit_tokens: int = 0  # per sequence; 0 for a scalar head
    generate: bool = False


@dataclass(frozen=True)
class ModelUse:
    """One model a run holds."""

    role: str  # "policy", "reference", "value", "reward", "model"
    spec: str  # as the settings name it
    head: str = "lm"  # "lm" or "scalar"
    train: Pass | None = None  # trained: its forward + backward micro-batch
    infer: tuple[Pass, ...] = ()  # passes without gradients (scoring, sampling, reference log-probs)
    demo: Mapping[str, Any] = field(default_factory=lambda: DEMO_MODEL_SPEC)  # what 'demo' means for it
    same_as: str | None = None  # the role whose weights it shares (the reference of a LoRA policy)
    lora: bool = False  # trained as LoRA adapters (and its scalar head), the plan's rank and targets
    setting: str = ""  # the setting that names it, for errors ("reward_model"); default: its role


@dataclass(frozen=True)
class MemoryPlan:
    """What a run with these settings holds: its models and how they are trained."""

    models: tuple[ModelUse, ...]
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    lora_r: int = 16
    lora_target_modules: str = "auto"
    device: str = "auto"


# -- the arithmetic --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelMemory:
    """One model's share, in bytes."""

    role: str
    name: str
    params: int
    trainable_params: int
    weights: int
    gradients: int
    optimizer: int
    activations: int  # what its training pass saves for backward
    training: int  # the most its forward + backward holds at once, gradients included
    inference: int  # its largest pass without gradients

    @property
    def steady(self) -> int:
        return self.weights + self.optimizer


@dataclass(frozen=True)
class DeviceMemory:
    kind: str  # "cuda", "mps", "cpu"
    name: str  # "NVIDIA GeForce RTX 4090", "this CPU"
    total: int  # bytes; 0 when unknown

    def where(self) -> str:
        size = f"{_gb(self.total)} GB"
        if self.kind == "cpu":
            return f"{size} of RAM on this CPU"
        if self.kind == "mps":
            return f"{size} of unified memory on {self.name}"
        return f"{size} on {self.name}"


@dataclass(frozen=True)
class Estimate:
    parts: tuple[ModelMemory, ...]
    runtime: int  # torch, the CUDA context
    device: DeviceMemory

    @property
    def training_step(self) -> int:
        return sum(p.training for p in self.parts)

    @property
    def largest_inference(self) -> int:
        return max((p.inference for p in self.parts), default=0)

    @property
    def total(self) -> int:
        return sum(p.steady for p in self.parts) + max(self.training_step, self.largest_inference) + self.runtime

    @property
    def fits(self) -> bool:
        """Whether it fits; True when the device's memory is unknown (nothing to refuse on)."""
        return self.device.total <= 0 or self.total <= USABLE * self.device.total


@dataclass(frozen=True)
class TrainingPass:
    """A forward + backward of a trained model, in bytes: what the forward saves for backward,
    and the most held at once while backward frees it layer by layer and builds the gradients."""

    saved: int
    peak: int  # gradients included


def training_pass(shape: ModelShape, run: Pass, *, precision: str = "fp32", checkpointing: bool = False,
                  trained: Sequence[str] | None = None, head: str = "lm", trainable: int | None = None) -> TrainingPass:
    """One forward + backward of `run` through a model of `shape`.

    `trained`: the layer roles whose Linears learn (None: all of them, a full fine-tune); a frozen
    Linear needs no saved input. `trainable`: the parameters that get gradients (default: all).
    Saved per token of a Llama-style layer (tests/test_memory_estimate.py checks it against torch):
    two norms in float32 (input, its inverse RMS, the normalised input), the attention's q, k, v and
    output and its log-sum-exp, the MLP's gate, activation and up outputs, each learning Linear's
    input; then the final norm, the LM head's input and the float32 logits the loss reads. The peak
    is followed through backward: first the logits' gradient and the head's, then each layer, last
    first, frees what it saved (recomputes it first, with checkpointing) and adds its gradients,
    holding for a moment the gradients of its own intermediates; the embeddings' gradient comes last.
    """
    a = FLOAT32 if precision == "fp32" else 2
    h, i = shape.hidden, shape.intermediate
    full = trained is None
    roles = set(_ALL_LINEAR if full else trained)
    tokens = run.sequences * run.length
    norm = FLOAT32 * (2 * h + 1)
    attention = a * (4 * shape.heads * shape.head_dim) + FLOAT32 * shape.heads
    mlp = a * ((3 if shape.gated else 1) * i)
    inputs = a * (h * bool(roles & {"q", "k", "v"}) + shape.heads * shape.head_dim * ("o" in roles)
                  + h * bool(roles & {"gate", "up"}) + i * ("down" in roles))
    layer = tokens * (2 * norm + attention + mlp + inputs)
    kept = tokens * FLOAT32 * h if checkpointing else layer  # per layer, until its backward
    mask = run.sequences * run.length * run.length * a  # the padding mask, once per pass
    logits = run.sequences * run.logit_tokens if head == "lm" else 0
    logits_saved = logits * shape.vocab * FLOAT32 + logits * a * h * full
    final = tokens * norm + mask
    half_weights = a * shape.linear_params(head) if precision != "fp32" and full else 0
    # the gradients, where backward makes them
    params = shape.params(head)
    share = 1.0 if trainable is None else trainable / max(1, params)
    head_grads = FLOAT32 * ((shape.vocab * h * (not shape.tied) if head == "lm" else h) + h) if full else 0
    embed_grads = FLOAT32 * (shape.vocab + shape.positions) * h if full else 0
    layer_grads = (FLOAT32 * int(share * params) - head_grads - embed_grads) / shape.layers
    saved = shape.layers * kept + final + logits_saved + half_weights
    held = saved + logits * shape.vocab * (FLOAT32 + (a if precision != "fp32" else 0)) + head_grads
    peak = held
    held -= logits_saved + logits * shape.vocab * FLOAT32 + tokens * norm  # the head's part is done
    held += tokens * FLOAT32 * h  # the hidden states' gradient, passed down the layers
    # inside a layer's backward: the gradients of its MLP's intermediates and of q, k and v
    passing = tokens * a * (2 * i + 3 * h)
    for _ in range(shape.layers):
        if checkpointing:
            peak = max(peak, held + layer + max(passing, layer_grads))
            held -= kept
        else:
            peak = max(peak, held + passing + layer_grads)
            held -= layer
        held += layer_grads
        peak = max(peak, held)
    peak = max(peak, held + embed_grads)
    return TrainingPass(int(saved), int(peak))


def inference_bytes(shape: ModelShape, run: Pass, *, precision: str = "fp32", head: str = "lm") -> int:
    """A pass without gradients: a few hidden states and one layer's intermediates at a time, the
    logits read (float32), and a sampling loop's KV cache."""
    a = FLOAT32 if precision == "fp32" else 2
    tokens = run.sequences * run.length
    h, i = shape.hidden, shape.intermediate
    layer = tokens * (FLOAT32 * 3 * h + a * (4 * shape.heads * shape.head_dim + (3 if shape.gated else 1) * i))
    mask = run.sequences * run.length * run.length * a
    logits = run.sequences * run.logit_tokens * shape.vocab * (FLOAT32 * 2 + a) if head == "lm" else 0
    cache = 2 * shape.layers * tokens * shape.kv_heads * shape.head_dim * a if run.generate else 0
    return layer + mask + logits + cache


def estimate(plan: MemoryPlan, project=None, *, device: DeviceMemory | None = None) -> Estimate:
    """The memory a run with this plan needs; raises ModelError when a model cannot be read."""
    parts = []
    for use in plan.models:
        try:
            shape = ModelShape.from_config(model_config(use.spec, project, demo=use.demo))
        except ModelError as exc:
            name = use.setting or use.role
            raise ModelError(f"{name}: {exc}" if not str(exc).startswith(f"{name}:") else str(exc)) from None
        params = shape.params(use.head)
        shared = use.same_as is not None
        if use.train is None:
            trainable, trained = 0, ()
        elif use.lora:
            trained = lora_roles(plan.lora_target_modules, shape.model_type)
            trainable = shape.lora_params(plan.lora_r, trained) + (shape.hidden if use.head == "scalar" else 0)
        else:
            trainable, trained = params, None
        weights = 0 if shared else FLOAT32 * (params + (trainable if use.lora else 0))
        step = TrainingPass(0, 0)
        if use.train is not None:
            step = training_pass(shape, use.train, precision=plan.precision, head=use.head, trainable=trainable,
                                 checkpointing=plan.gradient_checkpointing, trained=trained)
        inference = max((inference_bytes(shape, p, precision=plan.precision, head=use.head) for p in use.infer),
                        default=0)
        parts.append(ModelMemory(
            role=use.role, name=use.spec, params=0 if shared else params, trainable_params=trainable, weights=weights,
            gradients=FLOAT32 * trainable, optimizer=2 * FLOAT32 * trainable, activations=step.saved,
            training=step.peak, inference=inference,
        ))
    found = device or device_memory(plan.device)
    return Estimate(tuple(parts), RUNTIME_BYTES.get(found.kind, 0), found)


# -- the device ------------------------------------------------------------------------------------------


def ram_bytes() -> int:
    """This machine's RAM (also what Apple's MPS shares with the CPU)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    if sys.platform == "win32":
        import ctypes

        class _Status(ctypes.Structure):
            _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong), ("total", ctypes.c_ulonglong),
                        ("avail", ctypes.c_ulonglong), ("rest", ctypes.c_ulonglong * 5)]

        status = _Status()
        status.length = ctypes.sizeof(_Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return int(status.total)
    return 0


@lru_cache(maxsize=1)
def _gpus() -> tuple[tuple[str, int], ...]:
    return tuple(gpu_runtime.gpu_memory())


def _torch_has_cuda() -> bool:
    """Whether this program's torch can use a GPU, judged without importing it: a '+cpu' build
    cannot, unless the app's GPU runtime is active (gpu_runtime.py)."""
    version = gpu_runtime.bundled_torch_version() or ""
    if os.environ.get(gpu_runtime.CPU_ONLY_ENV, "") not in ("", "0"):
        return False
    if getattr(sys, "frozen", False):
        return bool(gpu_runtime.active_variant())
    return not version.endswith("+cpu") and sys.platform != "darwin"


def device_memory(setting: str = "auto") -> DeviceMemory:
    """The memory of the device a `device` setting trains on (the first GPU for cuda)."""
    gpus = _gpus() if setting in ("auto", "cuda") else ()
    if setting == "cuda" or (setting == "auto" and gpus and _torch_has_cuda()):
        if gpus:
            name, total = gpus[0]
            return DeviceMemory("cuda", name, total)
        return DeviceMemory("cuda", "the GPU", 0)
    if setting == "mps" or (setting == "auto" and sys.platform == "darwin" and os.uname().machine == "arm64"):
        return DeviceMemory("mps", "Apple MPS", ram_bytes())
    return DeviceMemory("cpu", "this CPU", ram_bytes())


# -- the line and the suggestions ------------------------------------------------------------------------


def _gb(n: int) -> str:
    value = n / GB
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def estimate_line(found: Estimate) -> str:
    """One line: "needs about 14.2 GB of 24 GB on NVIDIA RTX 4090"."""
    if found.device.total <= 0:
        return f"needs about {_gb(found.total)} GB (the memory of {found.device.name} is unknown)"
    return f"needs about {_gb(found.total)} GB of {found.device.where()}"


@dataclass(frozen=True)
class Suggestion:
    """A settings change that lowers the estimate: {field: value}, and the estimate after it."""

    changes: dict[str, Any]
    estimate: Estimate

    @property
    def label(self) -> str:
        words = []
        for key, value in self.changes.items():
            if isinstance(value, bool):
                words.append(f"{key.replace('_', ' ')} {'on' if value else 'off'}")
            else:
                words.append(f"{key} {value}")
        return f"{', '.join(words)}: {_gb(self.estimate.total)} GB"


@dataclass(frozen=True)
class MemoryCheck:
    """What a form shows under Start: `line`, `fits` (red when False), `suggestions` (one-click
    changes, those that fit first), and the `estimate` itself; `line` says why when there is none."""

    line: str
    fits: bool
    suggestions: tuple[Suggestion, ...] = ()
    estimate: Estimate | None = None


def _candidates(config: Any, device: DeviceMemory) -> list[dict[str, Any]]:
    """Single changes that lower memory, in the order a person would try them."""
    out: list[dict[str, Any]] = []
    names = {f.name for f in dataclasses.fields(config)}
    if "gradient_checkpointing" in names and not config.gradient_checkpointing:
        out.append({"gradient_checkpointing": True})
    if getattr(config, "precision", None) == "fp32":
        out.append({"precision": "bf16"})
    if "lora" in names and not config.lora:
        out.append({"lora": True})
    batch, accum = getattr(config, "batch_size", 1), getattr(config, "gradient_accumulation_steps", 1)
    if "num_mini_batches" in names:  # RL: a smaller micro-batch through the backward, the same update
        for factor in (2, 4, 8, 16):
            out.append({"gradient_accumulation_steps": accum * factor})
    else:  # the same global batch in smaller forward passes
        for factor in (2, 4, 8, 16):
            if batch % factor == 0 and batch // factor >= 1:
                out.append({"batch_size": batch // factor, "gradient_accumulation_steps": accum * factor})
    return out


def _changed(config: Any, changes: Mapping[str, Any]) -> Any | None:
    new = dataclasses.replace(config, **changes)
    try:
        validate = getattr(new, "validate", None)
        if validate is not None:
            validate()
    except ConfigError:
        return None
    return new


def suggestions(method, config: Any, project=None, *, found: Estimate, limit: int = 4) -> tuple[Suggestion, ...]:
    """Changes that would make a run that does not fit fit, each with its estimate: every single
    change that does (of the smaller batches, the least drastic); else the fewest changes together
    that do; else, when nothing fits, the changes that help most."""
    device = found.device
    cache: dict[tuple, Suggestion | None] = {}

    def attempt(change: dict[str, Any]) -> Suggestion | None:
        key = tuple(sorted(change.items()))
        if key not in cache:
            new = _changed(config, change)
            after = estimate(method.memory_plan(new), project, device=device) if new is not None else None
            cache[key] = Suggestion(dict(change), after) if after is not None and after.total < found.total * 0.97 else None
        return cache[key]

    candidates = _candidates(config, device)
    settings = [c for c in candidates if "gradient_accumulation_steps" not in c]
    batches = [c for c in candidates if "gradient_accumulation_steps" in c]
    singles = [t for t in (attempt(c) for c in settings) if t is not None]
    smaller = [t for t in (attempt(c) for c in batches) if t is not None]
    fitting = [t for t in singles if t.estimate.fits] + [t for t in smaller if t.estimate.fits][:1]
    if fitting:
        return tuple(fitting[:limit])
    useful = [t.changes for t in singles]
    for size in range(2, len(useful) + 1):
        for combo in itertools.combinations(useful, size):
            tip = attempt({k: v for c in combo for k, v in c.items()})
            if tip is not None and tip.estimate.fits:
                return (tip,)
    for size in range(0, len(useful) + 1):
        for combo in itertools.combinations(useful, size):
            for batch in batches:
                tip = attempt({**{k: v for c in combo for k, v in c.items()}, **batch})
                if tip is not None and tip.estimate.fits:
                    return (tip,)
    # Nothing fits: what helps most, with the smallest of the batch changes that reach the same.
    best_batch = min(smaller, key=lambda t: (round(t.estimate.total / GB, 1), len(str(t.changes))), default=None)
    helping = singles + ([best_batch] if best_batch else [])
    return tuple(sorted(helping, key=lambda t: t.estimate.total)[:limit])


def memory_check(method, config: Any, project_path: str | Path | None = None, *,
                 device: DeviceMemory | None = None, project=None) -> MemoryCheck:
    """What the training tab shows under Start and the CLI prints at start, for a method
    (core/training/method.py's TrainingMethod) and its settings: the line, whether it fits, and
    one-click suggestions. Cheap (reads a few config.json files and the project's runs; the first
    call on a machine with an NVIDIA driver asks nvidia-smi once). Never raises for a model that
    cannot be read: the line says so and `fits` is True (nothing to refuse on). `project`: an open
    Project in place of its path."""
    plan_of = getattr(method, "memory_plan", None)
    if plan_of is None:
        return MemoryCheck(f"no memory estimate for {method.title}", True)
    opened = None
    try:
        if project is None and project_path is not None and Path(project_path, "project.db").is_file():
            from ..project import Project

            project = opened = Project.open(project_path)
        found = estimate(plan_of(config), project, device=device)
        tips = () if found.fits else suggestions(method, config, project, found=found)
    except (WorkbenchError, OSError, ValueError) as exc:
        return MemoryCheck(f"no memory estimate: {exc}", True)
    finally:
        if opened is not None:
            opened.close()
    line = estimate_line(found)
    if not found.fits:
        line += " — does not fit"
    return MemoryCheck(line, found.fits, tips, found)
