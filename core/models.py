"""Finding and loading local models safely; building the tiny demo model.

Nothing here downloads (core/download.py does, into the Hugging Face cache). A model is one of:
- a folder holding a `transformers` model (config.json + safetensors weights), or a LoRA adapter
  folder (adapter_config.json) over such a model;
- a model already in this machine's Hugging Face cache, named `org/name`;
- a reward-model checkpoint of a project (`runs/<run>/checkpoints/best` or `last`), or the run
  folder itself;
- `demo`: the tiny demo model, built on first use from the demo project's texts (no download).

Safety: weights load from safetensors only. A folder with only pickle files (pytorch_model.bin,
*.pt, *.ckpt) is refused, because unpickling runs whatever code the file names; the error says
how to convert it. Code shipped with a model folder runs only when trust_remote_code is asked for.

torch and transformers are imported inside the functions that need them: the app imports this
module to list models and must open without loading torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import WorkbenchError
from .project import user_data_dir


class ModelError(WorkbenchError):
    """A model that cannot be found or loaded, or that is refused; names the folder and why."""


DEMO = "demo"
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
PICKLE_PATTERNS = ("pytorch_model*.bin", "adapter_model.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.bin")
HEAD_NAMES = ("score", "classifier")  # what transformers calls a sequence-classification head

# The demo model: a 2-layer Llama-style transformer (0.2M parameters), small enough to learn the
# demo project's 216 judged pairs from scratch in ~20 s on two busy CPU cores. No dropout, so
# training is a function of the seed alone. Bump `version` when anything here or in the
# tokenizer recipe changes: a new folder is built.
DEMO_MODEL_SPEC: dict[str, Any] = {
    "version": 1,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 512,
    "vocab_size": 1024,
    "seed": 0,
}
DEMO_CHAT_TEMPLATE = (
    # The same plain transcript the reward data falls back to ("User: ...\n\nAssistant: ..."), so
    # a text typed into a Score box in that form is tokenized exactly as in training.
    # (Newlines are written as Jinja string escapes: transformers renders with trim_blocks, which
    # would eat a literal newline after a block tag.)
    "{% for m in messages %}{% if not loop.first %}{{ '\\n\\n' }}{% endif %}"
    "{{ m['role'] | capitalize }}: {{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n\\nAssistant:' }}{% endif %}"
)


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: str = "auto"  # comma-separated names, "all-linear", or "auto" (peft's default)


@dataclass(frozen=True)
class ModelEntry:
    """A model found on this machine: what to show and what to pass to `load_reward_model`."""

    name: str
    path: Path
    source: str  # "demo", "hf-cache", "checkpoint" or "folder"
    architecture: str | None = None
    is_adapter: bool = False


# -- the demo model ------------------------------------------------------------------------------


def demo_model_path() -> Path:
    """Where the demo model lives (built or not): the user data folder, one folder per recipe."""
    return user_data_dir() / "models" / f"demo-llama-v{DEMO_MODEL_SPEC['version']}"


def ensure_demo_model() -> Path:
    """The demo model's folder, building it the first time (a few seconds; deterministic)."""
    return build_once(demo_model_path(), build_demo_model)


def build_once(dest: Path, build: Callable[[Path], Any]) -> Path:
    """`dest`, made by `build(folder)` the first time: into a temporary folder renamed into place,
    so an interrupted build leaves nothing that looks complete; when two processes build at once,
    the first rename wins and the other discards its copy (builds are deterministic)."""
    if (dest / "config.json").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        build(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def build_demo_model(folder: Path, spec: dict[str, Any] | None = None) -> Path:
    """Writes a fresh demo causal LM (random weights, seeded) and its tokenizer into `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from .demo import demo_texts

    spec = {**DEMO_MODEL_SPEC, **(spec or {})}
    tokenizer = build_demo_tokenizer(demo_texts(), spec["vocab_size"])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_attention_heads"],
        max_position_embeddings=spec["max_position_embeddings"],
        tie_word_embeddings=True,
        attention_dropout=spec.get("attention_dropout", 0.0),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # The global RNG is borrowed for the initial weights and given back, so building the demo
    # model in the middle of something seeded does not change what follows.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_demo_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts` (any text still encodes, byte by byte)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|pad|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_with_transcript_words(texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=specials[0], eos_token=specials[0], pad_token=specials[1]
    )
    tokenizer.chat_template = DEMO_CHAT_TEMPLATE
    return tokenizer


def _with_transcript_words(texts: list[str]):
    # Each text as it appears in training, after a role name and a space, so that the role names
    # and every word's leading-space form become single tokens.
    for text in texts:
        yield f"User: {text}\n\nAssistant: {text}"


# -- discovery -------------------------------------------------------------------------------------


def hf_cache_dir() -> Path:
    """This machine's Hugging Face hub cache, as huggingface_hub finds it (read only, no network)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _cached_snapshot(repo_dir: Path) -> Path | None:
    """The snapshot `refs/main` points at, else the newest one holding a config.json."""
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text().strip()
        if (candidate / "config.json").is_file():
            return candidate
    found = [s for s in snapshots.glob("*") if (s / "config.json").is_file()] if snapshots.is_dir() else []
    return max(found, key=lambda s: s.stat().st_mtime) if found else None


def _architecture(folder: Path) -> str | None:
    for name in ("config.json", "adapter_config.json"):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        archs = data.get("architectures") or []
        return archs[0] if archs else data.get("model_type") or data.get("peft_type")
    return None


def discover_models(project_path: str | Path | None = None, *, include_demo: bool = True) -> list[ModelEntry]:
    """Models this machine has: the demo, the Hugging Face cache, and the project's checkpoints."""
    entries: list[ModelEntry] = []
    if include_demo:
        entries.append(ModelEntry(DEMO, demo_model_path(), "demo", "LlamaForCausalLM"))
    cache = hf_cache_dir()
    if cache.is_dir():
        for repo_dir in sorted(cache.glob("models--*")):
            snapshot = _cached_snapshot(repo_dir)
            if snapshot is not None:
                name = repo_dir.name[len("models--") :].replace("--", "/")
                entries.append(ModelEntry(name, snapshot, "hf-cache", _architecture(snapshot)))
    if project_path is not None:
        runs = Path(project_path) / "runs"
        for ckpt_dir in sorted(runs.glob("*/checkpoints")):
            for which in ("best", "last"):
                folder = ckpt_dir / which
                if folder.is_dir():
                    entries.append(
                        ModelEntry(
                            f"{ckpt_dir.parent.name}/{which}",
                            folder,
                            "checkpoint",
                            _architecture(folder),
                            (folder / "adapter_config.json").is_file(),
                        )
                    )
    return entries


def resolve_model(spec: str | Path) -> Path:
    """A model folder from what a person typed: 'demo', a folder, a run folder, or org/name."""
    text = str(spec).strip()
    if text == DEMO:
        return ensure_demo_model()
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            return path
        for candidate in (path / "checkpoints" / "best", path / "checkpoints" / "last"):
            if candidate.is_dir():
                return candidate
        raise ModelError(f"{path}: is not a model folder (no config.json or adapter_config.json)")
    if path.exists():
        raise ModelError(f"{path}: is a file; give the folder that holds config.json")
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        repo_dir = hf_cache_dir() / f"models--{text.replace('/', '--')}"
        snapshot = _cached_snapshot(repo_dir) if repo_dir.is_dir() else None
        if snapshot is not None:
            return snapshot
        raise ModelError(
            f"{text}: is neither a folder nor a model in the Hugging Face cache ({hf_cache_dir()}); "
            "download it first: Download… beside the model picker, or `rlhf-workbench download " + text + "`"
        )
    raise ModelError(f"{text}: no such model folder")


# -- safe loading --------------------------------------------------------------------------------------


# Files a kill, a full disk or a copy cut short can leave damaged, and whose damage would otherwise
# surface deep inside transformers or safetensors as a traceback (or as "a bug").
_JSON_FILES = ("config.json", "trainer_state.json", "adapter_config.json", "model.safetensors.index.json")


def damaged_files(folder: Path) -> list[tuple[Path, str]]:
    """(file, what is wrong) for each damaged file of a model or checkpoint folder, and of its
    model subfolders (a PPO checkpoint's policy/ and value/): a safetensors file whose header does
    not parse or whose data ends before the header says it does, a JSON file that does not parse.
    Reads headers only, not weights: cheap enough to check every checkpoint before using it."""
    folder = Path(folder).resolve()  # `best` and `last` are links: name the file itself
    found: list[tuple[Path, str]] = []
    for where in (folder, *sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))):
        for path in sorted(where.glob("*.safetensors")):
            problem = _safetensors_problem(path)
            if problem:
                found.append((path, problem))
        for name in _JSON_FILES:
            path = where / name
            if path.is_file():
                try:
                    json.loads(path.read_text(encoding="utf-8"))
                except UnicodeDecodeError:
                    found.append((path, "is not text (not JSON)"))
                except ValueError as exc:
                    found.append((path, f"is not valid JSON ({exc})"))
                except OSError as exc:
                    found.append((path, f"cannot be read ({exc.strerror or exc})"))
    return found


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's framing, or None: 8 bytes of header length, the JSON
    header, then the data, which must reach the largest end offset the header names."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"is truncated ({size} bytes: not even a header)"
            n = int.from_bytes(head, "little")
            if n > size - 8:
                return f"is truncated or not a safetensors file ({size:,} bytes, its header says it alone takes {n:,})"
            header = json.loads(f.read(n))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except ValueError:
        return "has a damaged header (not a safetensors file, or overwritten)"
    ends = [entry["data_offsets"][1] for key, entry in header.items()
            if key != "__metadata__" and isinstance(entry, dict) and len(entry.get("data_offsets") or ()) == 2]
    expected = 8 + n + max(ends, default=0)
    if size < expected:
        return f"is truncated ({size:,} of {expected:,} bytes)"
    return None


def check_model_files(folder: Path) -> None:
    """Raises ModelError naming the first damaged file of the folder (see damaged_files)."""
    damaged = damaged_files(folder)
    if damaged:
        path, problem = damaged[0]
        more = f" (and {len(damaged) - 1} more damaged file{'s' if len(damaged) > 2 else ''})" if len(damaged) > 1 else ""
        raise ModelError(
            f"{path}: {problem}{more}. The file was damaged (a copy or a save cut short, a full disk); "
            "use another checkpoint, or copy the model again"
        )


def check_safe_weights(folder: Path) -> None:
    """Raises ModelError unless the folder's weights are safetensors (pickles are refused)."""
    if any((folder / name).is_file() for name in SAFE_WEIGHTS) or any(folder.glob("*.safetensors")):
        return
    pickles = sorted({p.name for pattern in PICKLE_PATTERNS for p in folder.glob(pattern)})
    if pickles:
        raise ModelError(
            f"{folder}: has weights only as pickle files ({', '.join(pickles)}), which are refused: loading a "
            "pickle can run any code hidden in it. Convert it once where you trust the file: load it with "
            "transformers and save it with model.save_pretrained(folder, safe_serialization=True)"
        )
    raise ModelError(f"{folder}: holds no model weights (no *.safetensors file)")


def load_tokenizer(folder: Path, *, trust_remote_code: bool = False):
    """The folder's tokenizer, with a pad token (the end-of-text token when it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: the tokenizer cannot be loaded ({_first_line(exc)})") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"{folder}: the tokenizer has neither a pad token nor an end-of-text token to pad with")
        # Padding with EOS is safe for a reward model: the score is read at the last token that is
        # not padding, and attention masks hide the rest.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_reward_model(
    path: str | Path,
    *,
    trust_remote_code: bool = False,
    lora: LoraSettings | None = None,
    dtype: Any = None,
    trainable: bool = True,
):
    """(model, tokenizer): a sequence-classification model with one output, the reward.

    `path` is anything `resolve_model` takes. A causal LM gets a new scalar head (`score`), which
    training then learns and checkpoints save. A LoRA adapter folder loads its base model (named
    in adapter_config.json) and the adapter with its head. `lora` wraps a plain model in new
    adapters for training. `dtype` defaults to float32, the master weights of mixed precision.
    """
    import torch

    folder = resolve_model(path)
    if (folder / "adapter_config.json").is_file():
        return _load_adapter(folder, trust_remote_code=trust_remote_code, dtype=dtype, trainable=trainable)
    check_safe_weights(folder)
    config = _load_config(folder, trust_remote_code)  # first: it is what refuses remote code
    check_model_files(folder)
    tokenizer = load_tokenizer(folder, trust_remote_code=trust_remote_code)
    model = _load_scalar_head_model(folder, config, trust_remote_code, dtype or torch.float32)
    _set_pad(model, tokenizer)
    if lora is not None:
        model = wrap_lora(model, lora)
    return model, tokenizer


def _load_config(folder: Path, trust_remote_code: bool):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except OSError as exc:  # transformers' word for a config.json that does not parse
        check_model_files(folder)  # a damaged file says what is wrong with it, in our words
        raise ModelError(f"{folder / 'config.json'}: cannot be read ({_first_line(exc)})") from None
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ModelError(
                f"{folder}: needs Python code shipped with the model to load; turn on trust_remote_code only "
                "if you trust its source"
            ) from None
        raise ModelError(f"{folder}: config.json cannot be read ({_first_line(exc)})") from None


def _load_scalar_head_model(folder: Path, config, trust_remote_code: bool, dtype: Any):
    from transformers import AutoModelForSequenceClassification

    archs = [a for a in (getattr(config, "architectures", None) or []) if a.endswith("ForSequenceClassification")]
    if archs and getattr(config, "num_labels", 1) != 1:
        raise ModelError(
            f"{folder}: is a classifier with {config.num_labels} labels; a reward model has one output"
        )
    config.num_labels = 1
    try:
        # The "newly initialised: score.weight" warning is expected for a causal LM: that is the
        # head training learns.
        with quiet_transformers():
            return AutoModelForSequenceClassification.from_pretrained(
                folder, config=config, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
            )
    except ValueError as exc:
        raise ModelError(
            f"{folder}: {type(config).__name__} has no sequence-classification form in transformers "
            f"({_first_line(exc)})"
        ) from None
    except OSError as exc:
        raise ModelError(f"{folder}: the weights cannot be loaded ({_first_line(exc)})") from None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or warnings from transformers inside: jobs report through events."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _set_pad(model, tokenizer) -> None:
    model.config.pad_token_id = tokenizer.pad_token_id
    text_config = model.config.get_text_config()
    if text_config is not model.config:
        text_config.pad_token_id = tokenizer.pad_token_id


def wrap_lora(model, lora: LoraSettings):
    """New LoRA adapters on `model`; the reward head is trained in full and saved with them."""
    from peft import LoraConfig, TaskType, get_peft_model

    target = lora.target_modules.strip()
    targets: Any = None if target == "auto" else target if target == "all-linear" else [
        t.strip() for t in target.split(",") if t.strip()
    ]
    heads = [name for name in HEAD_NAMES if hasattr(model, name)]
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        modules_to_save=heads,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ModelError(f"lora_target_modules: {_first_line(exc)}") from None


def _load_adapter(folder: Path, *, trust_remote_code: bool, dtype: Any, trainable: bool):
    from peft import PeftModel

    check_safe_weights(folder)
    check_model_files(folder)
    try:
        adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder / 'adapter_config.json'}: cannot be read ({exc})") from None
    base_name = adapter.get("base_model_name_or_path")
    if not base_name:
        raise ModelError(f"{folder / 'adapter_config.json'}: does not name its base model")
    base, base_tokenizer = load_reward_model(base_name, trust_remote_code=trust_remote_code, dtype=dtype)
    tokenizer = (
        load_tokenizer(folder, trust_remote_code=trust_remote_code)
        if (folder / "tokenizer_config.json").is_file()
        else base_tokenizer
    )
    _set_pad(base, tokenizer)
    with quiet_transformers():
        model = PeftModel.from_pretrained(base, folder, is_trainable=trainable)
    return model, tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
