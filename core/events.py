"""What a running job reports: small typed, picklable events.

A job is a plain function `run(config, project, sink, stop)` (see jobs.py). It calls `sink(event)`
with the events below and polls `stop()` between steps. The same events travel unchanged from a
thread (tests, CLI) or across a process boundary (the GUI's training child), so they hold only
plain data: numbers, strings, dicts of floats.

The job's own process persists metrics, samples and checkpoints (jobs.py does it for every job);
whoever listens to the events only displays them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Union


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Metric:
    """Values measured at one step, named as TRL names them (`train/loss`, `eval/accuracy`, ...)."""

    step: int
    values: dict[str, float]
    time: float = field(default_factory=_now)


@dataclass(frozen=True)
class Sample:
    """One generation (or scored text) worth showing: a prompt, a response, its score, and other
    figures about it by name (PPO adds `kl`, the response's KL from the reference)."""

    step: int
    prompt: str
    response: str
    score: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """Where the job is. `total` is None while unknown; `eta_s` is the job's own estimate."""

    step: int
    total: int | None
    message: str = ""
    eta_s: float | None = None


@dataclass(frozen=True)
class Log:
    """A line for the log pane. `warning` is for things a person should look at (watchdogs)."""

    message: str
    level: Literal["debug", "info", "warning"] = "info"
    time: float = field(default_factory=_now)


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint was renamed into place at `path`."""

    step: int
    path: str
    best: bool = False


@dataclass(frozen=True)
class Finished:
    """The work ended normally (`stopped` is True when it ended because it was asked to). A job's
    `summary` holds its final figures (stored with its run); `value` is what a task returned
    (scores, counts, rows: anything picklable), for whoever started it."""

    summary: dict[str, float | int | str]
    stopped: bool = False
    value: Any = None


@dataclass(frozen=True)
class Failed:
    """The job could not go on. `message` says what happened, `hint` what to try."""

    message: str
    hint: str | None = None
    step: int | None = None


Event = Union[Metric, Sample, Progress, Log, Checkpoint, Finished, Failed]
Sink = Callable[[Event], None]
StopFlag = Callable[[], bool]


# -- as text: one JSON object per line ------------------------------------------------------------
# How rank 0 of a torchrun launch hands its events to the app that started it (core/runs/torchrun.py):
# the launch's only channel back is its output.

EVENT_LINE_PREFIX = "@event "
_EVENT_TYPES = {cls.__name__: cls for cls in (Metric, Sample, Progress, Log, Checkpoint, Finished, Failed)}


def event_line(event: Event) -> str:
    """The event as one line of text (NaN and infinities survive, as JSON's extension spells them)."""
    import dataclasses
    import json

    return EVENT_LINE_PREFIX + json.dumps({"type": type(event).__name__, **dataclasses.asdict(event)})


def parse_event_line(line: str) -> Event | None:
    """The event an `event_line` holds, or None when the line is something else (any other output)."""
    import json

    if not line.startswith(EVENT_LINE_PREFIX):
        return None
    try:
        fields = json.loads(line[len(EVENT_LINE_PREFIX) :])
        return _EVENT_TYPES[fields.pop("type")](**fields)
    except (ValueError, KeyError, TypeError):
        return None
