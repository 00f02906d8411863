"""Candidate responses from a local causal LM: two per prompt, as pairs for people to judge.

A prompt list (core/formats/prompts.py) brings prompts without responses; this writes them. Each
chosen prompt gets two sampled responses, from one model sampled twice (the usual way to collect
preferences: the same policy, two draws) or from two models (`model_b`: response B is its), and the
pair goes into the project with origin `generated:<model>` (`generated:<model> vs <model_b>`), so
the Label tab offers it and the Data tab can filter by it.

Which prompts: those in no pair at all first (they are waiting for responses), then those this
origin has not answered yet, then the rest, each group in a seeded random order; `prompt_origin`
narrows the choice to the prompts of pairs whose origin starts with it. Two identical responses
are not a pair (nothing to judge), nor is an empty one: both are skipped and counted.

Nothing is written until every response is in; then the pairs go in through BulkWriter, in one
transaction, like any import (a pair already in the project is not added twice). Cancel adds
nothing. Importing this module imports no torch: the GUI builds its form from GenerateConfig.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bulk import BulkWriter
from .errors import ConfigError, Stopped, WorkbenchError
from .events import Progress, Sink, StopFlag
from .models import DEMO
from .project import Project
from .records import Conversation, conversation_from_json
from .store.model_pairs import GENERATED
from .training.config import setting, validate_fields

# Rows per generate call: also how often progress is reported and stop() is looked at.
CHUNK = 16


@dataclass
class GenerateConfig:
    """Two candidate responses per prompt from a local causal LM, added to the project as pairs."""

    model: str = setting(
        DEMO,
        "The causal LM that writes the responses: a local model folder, a model in this machine's Hugging Face "
        "cache, a PPO checkpoint's policy folder, or 'demo' for the built-in demo policy.",
    )
    model_b: str | None = setting(
        None,
        "A second model, for response B (e.g. a PPO policy against its starting model). Empty: the first model "
        "samples both responses.",
        optional=True,
    )
    prompt_origin: str | None = setting(
        None,
        "Only the prompts of pairs whose origin starts with this. Empty: every prompt, those without any pair first.",
        optional=True,
    )
    n_prompts: int = setting(32, "How many prompts get a pair (each two responses).", min=1, max=10_000_000)
    max_new_tokens: int = setting(128, "Longest response in tokens; a response ends earlier at the end-of-text token.",
                             min=1, max=32768)
    temperature: float = setting(
        1.0, "Sampling temperature. 1.0 samples the model as it is; lower gives more alike responses.", min=0.01, max=10.0
    )
    top_p: float = setting(0.95, "Nucleus sampling: sample from the smallest set of tokens with this much probability.",
                      min=0.01, max=1.0)
    max_prompt_length: int = setting(
        1024, "Prompts longer than this many tokens keep their end (the question is usually last).", min=4, max=131072
    )
    batch_size: int = setting(CHUNK, "Responses sampled side by side; lower it if the GPU runs out of memory.",
                         min=1, max=4096)
    seed: int = setting(0, "Seeds the choice of prompts and the sampling: the same seed gives the same pairs.",
                   min=0, max=2**32 - 1)
    device: str = setting("auto", "Where to sample. auto: a CUDA GPU, else Apple's MPS, else the CPU.",
                     choices=("auto", "cuda", "mps", "cpu"))
    precision: str = setting("fp32", "bf16 or fp16 halve the memory on a CUDA GPU; elsewhere the model runs in fp32.",
                        choices=("fp32", "bf16", "fp16"))
    trust_remote_code: bool = setting(
        False, "Run Python code shipped with the model folder. Only for models from a source you trust."
    )

    def validate(self) -> GenerateConfig:
        """Raises ConfigError naming the first setting outside its allowed values; returns self."""
        validate_fields(self)
        if not self.model.strip():
            raise ConfigError("model: is empty; give a model folder, a cached model name, a checkpoint or 'demo'")
        if self.model_b is not None and self.model_b.strip() == self.model.strip():
            # The same weights with the same seeds write the same text twice: nothing to judge.
            raise ConfigError("model_b: is the same model as model; leave it empty to sample that model twice")
        return self


def model_label(spec: str, project_path: str | Path | None = None) -> str:
    """A short name for a model spec, for origins and tables: a run's checkpoint reads `<run>/step-N`."""
    text = spec.strip()
    path = Path(text).expanduser()
    if text == DEMO or not path.is_dir():
        return text  # 'demo' or a cached model's org/name
    inside = _inside_runs(path, project_path)
    if inside:
        step = next((p for p in inside if p.startswith("step-")), None)
        return f"{inside[0]}/step-{int(step[5:])}" if step and step[5:].isdigit() else inside[0]
    return path.name if path.name not in ("policy", "value") else f"{path.parent.name}/{path.name}"


def _inside_runs(path: Path, project_path: str | Path | None) -> tuple[str, ...]:
    """The parts of `path` under the project's runs/ folder (a checkpoint of one of its runs), or ()."""
    if project_path is None:
        return ()
    try:
        return path.resolve().relative_to((Path(project_path) / "runs").resolve()).parts
    except ValueError:
        return ()


def generated_origin(config: GenerateConfig, project_path: str | Path | None = None) -> str:
    a = model_label(config.model, project_path)
    return GENERATED + (a if not config.model_b else f"{a} vs {model_label(config.model_b, project_path)}")


def generate_pairs(
    project_path: str | Path,
    config: GenerateConfig,
    *,
    sink: Sink | None = None,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Add up to `config.n_prompts` generated pairs to the project, reporting Progress into `sink`.

    Returns counts: prompts (sampled), pairs_added, pairs_existing (already in the project),
    identical and empty (skipped), origin. Raises WorkbenchError when there are no prompts or a
    model cannot be loaded, and Stopped (nothing added) when `stop()` turns true.
    """
    config.validate()
    report = _reporter(sink)
    stopped = stop or (lambda: False)
    with Project.open(project_path) as project:
        origin = generated_origin(config, project.path)
        prompts = pick_prompts(project, config.prompt_origin, origin, config.n_prompts, config.seed)
        project_dir = project.path

    settings = dict(
        max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
        max_prompt_length=config.max_prompt_length, batch_size=config.batch_size, seed=config.seed,
        device=config.device, precision=config.precision, trust_remote_code=config.trust_remote_code,
    )
    total = 2 * len(prompts)
    report(0, total, "Loading the model…")
    if config.model_b:
        answers_a = sample_from(config.model, prompts, what="the model", settings=settings,
                                on_sampled=lambda done: report(done, total, f"Sampling from the model: {done:,} of {len(prompts):,}"),
                                stop=stopped)
        report(len(prompts), total, "Loading the second model…")
        answers_b = sample_from(config.model_b, prompts, what="the second model", settings=settings,
                                on_sampled=lambda done: report(len(prompts) + done, total,
                                                             f"Sampling from the second model: {done:,} of {len(prompts):,}"),
                                stop=stopped)
    else:
        # Both responses in one pass: each prompt twice, side by side, each row its own draw.
        doubled = [p for p in prompts for _ in (0, 1)]
        answers = sample_from(config.model, doubled, what="the model", settings=settings,
                              on_sampled=lambda done: report(done, total, f"Sampling: {done // 2:,} of {len(prompts):,} prompts"),
                              stop=stopped)
        answers_a, answers_b = answers[0::2], answers[1::2]

    identical = sum(1 for a, b in zip(answers_a, answers_b) if a == b and a)
    empty = sum(1 for a, b in zip(answers_a, answers_b) if not a or not b)
    kept = [(p, a, b) for p, a, b in zip(prompts, answers_a, answers_b) if a and b and a != b]
    if stopped():
        raise Stopped("Generating was cancelled; nothing was added")
    report(total, total, "Adding the pairs…")
    source = "checkpoint" if _inside_runs(Path(config.model.strip()).expanduser(), project_dir) else "model"
    meta_models = {"a": config.model, "b": config.model_b or config.model}
    sampling = {k: settings[k] for k in ("temperature", "top_p", "max_new_tokens", "seed")}
    with Project.open(project_dir) as project:
        store = project.store
        with store.transaction():
            writer = BulkWriter(store, import_id=None, source=source, source_name=origin[len(GENERATED):])
            for prompt, a, b in kept:
                writer.add_pair(prompt, a, b, origin=origin, meta={**meta_models, **sampling})
            writer.flush()
    return {
        "origin": origin,
        "prompts": len(prompts),
        "pairs_added": writer.counts.pairs_added,
        "pairs_existing": writer.counts.pairs_existing,
        "identical": identical,
        "empty": empty,
    }


def summary(counts: dict[str, Any]) -> str:
    """What a generate_pairs call added, in a sentence (for the CLI and the app)."""
    parts = [f"Added {counts['pairs_added']:,} pairs for {counts['prompts']:,} prompts (origin {counts['origin']})"]
    if counts.get("pairs_existing"):
        parts.append(f"{counts['pairs_existing']:,} were in the project already (another seed samples new ones)")
    if counts.get("identical"):
        parts.append(f"{counts['identical']:,} prompts got the same response twice and were skipped")
    if counts.get("empty"):
        parts.append(f"{counts['empty']:,} got an empty response and were skipped")
    return "; ".join(parts) + "."


def pick_prompts(project: Project, origin_prefix: str | None, origin: str, n: int, seed: int) -> list[Conversation]:
    """n prompts, none held out: in no pair first, then not yet answered by `origin`, then the rest; seeded order."""
    ranked = project.store.prompts_for_generation(origin_prefix, origin)
    if not ranked:
        where = f"of pairs whose origin starts with {origin_prefix!r}" if origin_prefix else "in this project"
        if project.store.heldout_prompt_ids():
            raise WorkbenchError(f"There are no prompts {where} but held-out ones, which no run trains on: "
                                 "import more (a prompt list will do)")
        raise WorkbenchError(f"There are no prompts {where}: import some first (a prompt list will do)")
    rng = random.Random(seed)
    groups: list[list[int]] = [[], [], []]
    for prompt_id, rank in ranked:
        groups[rank].append(prompt_id)
    chosen: list[int] = []
    for group in groups:
        rng.shuffle(group)
        chosen += group[: n - len(chosen)]
    messages = project.store.prompt_messages(chosen)
    return [conversation_from_json(messages[i]) for i in chosen]


def sample_from(
    spec: str,
    prompts: Sequence[Conversation],
    *,
    what: str,
    settings: dict[str, Any],
    on_sampled: Callable[[int], None],
    stop: StopFlag,
    cancel_message: str = "Generating was cancelled; nothing was added",
) -> list[str]:
    """One response per prompt from the model `spec`, which is loaded here and freed after.

    `settings`: max_new_tokens, temperature, top_p, max_prompt_length, batch_size, seed, device,
    precision, trust_remote_code. Batch k samples with seed + k x batch_size, so two models given
    the same prompts and settings draw the same random numbers (any difference is the weights').
    """
    import torch

    from .training.device import resolve_device
    from .training.policy import load_policy
    from .training.rollout import sample_responses

    device = resolve_device(settings["device"])
    dtype = torch.float32
    if device.type == "cuda" and settings["precision"] in ("bf16", "fp16"):
        dtype = torch.bfloat16 if settings["precision"] == "bf16" else torch.float16
    try:
        model, tokenizer = load_policy(spec, trust_remote_code=settings["trust_remote_code"], dtype=dtype)
    except WorkbenchError as exc:
        raise WorkbenchError(f"{what[0].upper()}{what[1:]} cannot be loaded: {exc}") from None
    model.to(device)
    model.eval()
    batch = settings["batch_size"]
    responses: list[str] = []
    try:
        for start in range(0, len(prompts), batch):
            if stop():
                raise Stopped(cancel_message)
            responses += sample_responses(
                model, tokenizer, prompts[start : start + batch],
                max_new_tokens=settings["max_new_tokens"], temperature=settings["temperature"], top_p=settings["top_p"],
                seed=settings["seed"] + start, batch_size=batch, max_prompt_length=settings["max_prompt_length"],
            )
            on_sampled(len(responses))
    finally:
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()  # a second model may load next: give this one's memory back first
    return responses


def _reporter(sink: Sink | None) -> Callable[..., None]:
    """progress(done, total, message) as Progress events into `sink`."""
    if sink is None:
        return lambda done, total, message=None: None
    return lambda done, total, message=None: sink(Progress(done, total, message or ""))


def generate_task(project_path: str | Path, settings: dict[str, Any], *, sink: Sink, stop: StopFlag) -> dict[str, Any]:
    """generate_pairs as work for a child process (the Generate dialog runs it so, as
    "rlhf_workbench.core.generate:generate_task"): the settings as plain values."""
    from .training.config import config_from_dict

    config = config_from_dict(GenerateConfig, settings, source="the Generate dialog")
    return generate_pairs(project_path, config, sink=sink, stop=stop)
