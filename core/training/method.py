"""What the rest of the workbench knows of a training method, in one place and without torch.

Each method package has a `method.py` with one `TrainingMethod`; `core/methods.py` lists them.
From that the CLI makes the method's command (`rlhf-workbench train-rm ...`), the terminal runner
prints its runs (core/runs/terminal.py), torchrun launches it on several GPUs, and the app's
training tab starts, resumes and shows its runs. The job itself (`job`) is named by import path,
so that nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .console import RunPrinter


@dataclass(frozen=True)
class PolicyOutput:
    """How a method's runs leave a policy (a causal LM), for what samples it afterwards: the policy
    pickers, Compare with reference (core/compare.py)."""

    folder: str | None  # the policy's folder inside a checkpoint ("policy" beside PPO's value model); None: the checkpoint is it
    # config -> how the run's policy and its reference are sampled for people to compare them: `reference`
    # (the model the run started from), `prompt_origin` (None: every prompt of the project), max_new_tokens,
    # temperature, top_p, max_prompt_length, device, precision, trust_remote_code
    sampling: Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class TrainingMethod:
    """A training method: its runs' kind, its job, its config, its command, how it reads."""

    kinds: tuple[str, ...]  # its runs' kinds in the database ("reward"; "ppo", "rloo", "grpo"); the first unless kind_of says
    title: str  # how people call it ("Reward model", "PPO")
    job: str  # its job, "package.module:function", called as job(config, ctx, sink, stop)
    config: type  # the job's config dataclass (core/training/config.py's conventions)
    command: str  # its CLI command ("train-rm")
    help: str  # the command's one line in `rlhf-workbench --help`
    description: str  # the command's paragraph
    set_example: str  # an example of --set for the command's help
    describe: Callable[[Any, str], str]  # (config, "training" or "resuming") -> what the run does
    final_path_key: str  # the summary's key for what the run leaves (a checkpoint's folder)
    final_path_label: str  # how the terminal names it
    printer: Callable[[], RunPrinter] = RunPrinter  # the terminal's lines for its events
    unit: str = "step"  # what one step of its Progress is ("update" for PPO)
    batch_line: Callable[[Any, int], str] | None = None  # (config, world) -> how the ranks share a batch
    prepare: Callable[[Any], None] | None = None  # builds what every rank needs before they join (demo models)
    kind_of: Callable[[Any], str] | None = None  # the kind of a run with these settings, when there are several
    aliases: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # more commands, each fixing settings
    policy: PolicyOutput | None = None  # the policy its runs train, if they train one
    # config -> how many examples one step of its runs learns from, and what they are ((32, "pairs")): the
    # "samples seen" axis when runs are compared (core/experiments.py); None: its runs have no such axis
    examples_per_step: Callable[[Any], tuple[int, str]] | None = None
    # config -> the models its runs hold and what passes through them (a training/memory.py MemoryPlan):
    # the memory estimate before Start; None: no estimate
    memory_plan: Callable[[Any], Any] | None = None

    def run_kind(self, config: Any) -> str:
        """The kind a run with these settings is recorded as (its id's prefix too)."""
        return self.kind_of(config) if self.kind_of is not None else self.kinds[0]

    @property
    def distributed(self) -> bool:
        """Whether the method trains under torchrun (its config says how a batch is shared)."""
        return hasattr(self.config, "check_world")
