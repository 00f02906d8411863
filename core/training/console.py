"""A run's events in a terminal: as lines for a person (RunPrinter), or as JSON lines for the app
that launched the command under torchrun (EventLines, read back by core/runs/torchrun.py)."""

from __future__ import annotations

import sys

from ..events import Checkpoint, Event, Log, Metric, Progress, Sample, event_line


class RunPrinter:
    """A sink that prints a run's events as lines (called from the job's thread); a method says
    how its metrics read (`metric_lines`), what a step is called (`unit`), and whether its
    samples are worth a line (`print_samples`)."""

    unit = "step"
    print_samples = False

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.total: int | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.total = event.total
        elif isinstance(event, Log):
            self._line(event.message if event.level == "info" else f"{event.level}: {event.message}")
        elif isinstance(event, Metric):
            at = f"{self.unit} {event.step}" + (f"/{self.total}" if self.total else "")
            for line in self.metric_lines(event.values):
                self._line(f"{at}  {line}")
        elif isinstance(event, Checkpoint):
            self._line(f"checkpoint at {self.unit} {event.step}: {event.path}" + ("  (best so far)" if event.best else ""))
        elif isinstance(event, Sample) and self.print_samples:
            score = f"  (score {event.score:+.2f})" if event.score is not None else ""
            self._line(f"  sample: {one_line(event.prompt)} -> {one_line(event.response)}{score}")

    def metric_lines(self, values: dict[str, float]) -> list[str]:
        return []

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class EventLines:
    """A sink that prints every event as one line of JSON (events.event_line)."""

    def __call__(self, event: Event) -> None:
        print(event_line(event), flush=True)


def one_line(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
