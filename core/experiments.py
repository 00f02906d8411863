"""Comparing runs: two or more runs side by side, whatever method made them.

What a comparison holds, and why each part is what it is:

- **Curves**: every figure a run logged (store.metric_history), drawable on one of four x axes,
  because runs of different methods or settings only line up on the axis that asks the question:
  - `step`: the run's own optimizer steps (RL: updates), as the run logged them;
  - `samples`: examples learned from, step x what one step takes (its method's
    `examples_per_step`: batch_size x gradient_accumulation_steps pairs or sequences for the
    reward model, DPO and SFT; batch_size episodes per update for PPO, RLOO and GRPO), so a run
    with twice the batch is not shown as twice as fast. Nominal: an epoch's last step may hold
    fewer examples than a full one;
  - `wall_time`: seconds since the run's first figure, from the wall-clock time every metric row
    keeps, for "how much compute". A resumed run's pause between stop and resume counts too;
  - `kl`: the run's `objective/kl` (KL from the reference) at the same step: the price paid for a
    reward; `sqrt_kl`, its square root, the distance Gao et al. plot over-optimisation against
    (the proxy score and, on the demo, the gold score `objective/gold_score`, one line per run;
    those and the response length come first on these axes). Only runs that log it (RL) have this axis. KL
    wanders up and down as a run goes, so the points are put in KL order: a line then reads as
    the figure against KL (smoothing gives its trend), not as the run's path scribbled back and forth.
- **Final figures**: each run's summary (what its job returned), the union of their names; a run
  without one has a blank. Paths (checkpoint folders) are not figures and are left out.
- **Config differences**: only the settings whose values differ, since two runs' configs are
  mostly equal and the few that differ are the experiment. A setting one run's method does not
  have (DPO's `beta` for a reward model, RLOO's `num_generations` for PPO) is ABSENT for it.
- **Validation pairs**: reward models, DPO (and SFT on the chosen responses) keep the pair ids
  they validated on (training/pairs.py's SPLIT_FILE); their accuracies and losses compare only if
  those are the same pairs, so the comparison says whether they are.

Pure functions over plain data, plus `compare_runs(project, ids)` that reads them from a project.
No torch, no Qt: the CLI (`rlhf-workbench runs PROJECT --compare A B`) and the app's Compare
window (app/views/compare_runs.py) both read a `Comparison`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError, WorkbenchError
from .methods import method_for_kind
from .project import Project
from .runs.records import run_dir_of
from .training.config import applies, config_from_dict
from .training.pairs import SPLIT_FILE

# The x axes a comparison draws on, and how each is titled.
X_AXES: dict[str, str] = {
    "step": "Step",
    "samples": "Samples seen",
    "wall_time": "Wall time (s)",
    "kl": "KL from reference",
    "sqrt_kl": "√KL from reference",
}
KL_AXES = ("kl", "sqrt_kl")
KL_FIGURE = "objective/kl"
# On a KL axis these come first: the proxy and the gold against the distance from the reference (Gao
# et al.'s over-optimisation plot), and the length of the answers, the commonest way a policy games a
# reward model.
OVEROPTIMISATION_FIGURES = ("objective/scores", "objective/gold_score", "val/response_length")
# Figures read first in the final-figures table: what decides between reward models and DPO
# policies (validation accuracy and loss), then the rest in the order the runs report them.
HEADLINE_FIGURES = ("eval/accuracy", "eval/loss", "eval/mean_token_accuracy", "scores", "gold_score", "rlhf_reward", "kl")


class _Absent:
    """A setting the run's method does not have (not the same as one left empty, which is None)."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
ABSENT_TEXT = "—"

Point = tuple[int, float, float]  # (step, value, wall-clock time)


@dataclass(frozen=True)
class RunFigures:
    """One run as a comparison shows it: who it is and everything it logged."""

    id: str
    name: str
    kind: str
    label: str  # how the legend and the tables name it: its name, with its id if another run shares the name
    figures: Mapping[str, Sequence[Point]]  # figure name -> its points in step order
    examples_per_step: tuple[int, str] | None  # (32, "pairs"); None: no samples axis for it
    summary: Mapping[str, Any]
    config: Mapping[str, Any]  # the settings its kind has (None: left empty); see run_settings

    @property
    def start_time(self) -> float | None:
        """When it logged its first figure: the zero of its wall-time axis."""
        times = [t for points in self.figures.values() for _, _, t in points[:1]]
        return min(times) if times else None

    def has_axis(self, axis: str) -> bool:
        """Whether this run can be drawn on `axis` at all."""
        if axis == "samples":
            return self.examples_per_step is not None
        if axis in KL_AXES:
            return bool(self.figures.get(KL_FIGURE))
        return axis in X_AXES


# -- the x axes ------------------------------------------------------------------------------------


def samples_seen(steps: Sequence[int], examples_per_step: int) -> list[int]:
    """Examples learned from by the end of each step: a step learns from `examples_per_step`."""
    return [step * examples_per_step for step in steps]


def seconds_since(times: Sequence[float], start: float) -> list[float]:
    """Wall-clock times as seconds since `start` (the run's first figure)."""
    return [t - start for t in times]


def kl_by_step(kl_points: Sequence[Point]) -> dict[int, float]:
    """The run's KL from its reference at each step it logged one (the KL axis's lookup)."""
    return {step: value for step, value, _ in kl_points}


def curve(run: RunFigures, figure: str, axis: str) -> tuple[list[float], list[float]]:
    """(x, y) of one run's figure on one axis; empty when the run lacks the figure or the axis.

    On the KL axis a point keeps only if the run logged its KL at the same step (RL logs every
    figure of an update together, so none is lost there), and the points go in KL order (ties in
    step order).
    """
    points = list(run.figures.get(figure, ()))
    if not points or not run.has_axis(axis):
        return [], []
    steps, values, times = ([p[i] for p in points] for i in range(3))
    if axis == "step":
        return [float(s) for s in steps], values
    if axis == "samples":
        return [float(x) for x in samples_seen(steps, run.examples_per_step[0])], values
    if axis == "wall_time":
        return seconds_since(times, run.start_time), values
    if axis in KL_AXES:
        kl = kl_by_step(run.figures[KL_FIGURE])
        kept = sorted((kl[s], s, v) for s, v in zip(steps, values) if s in kl)
        # √KL: Gao et al.'s distance from the reference, on which the gold score's rise and fall is a
        # simple curve. A sampled KL estimate can dip below 0 near the start: it counts as 0 there.
        xs = [math.sqrt(max(x, 0.0)) if axis == "sqrt_kl" else x for x, _, _ in kept]
        return xs, [y for _, _, y in kept]
    raise ValueError(f"unknown x axis {axis!r} (known: {', '.join(X_AXES)})")


def axis_title(axis: str, runs: Sequence[RunFigures]) -> str:
    """The axis's title, naming what a sample is when the runs agree ("Samples seen (pairs)")."""
    title = X_AXES[axis]
    if axis == "samples":
        nouns = {r.examples_per_step[1] for r in runs if r.examples_per_step is not None}
        if len(nouns) == 1:
            return f"{title} ({nouns.pop()})"
    return title


# -- final figures -------------------------------------------------------------------------------


def is_figure(value: Any) -> bool:
    """A summary value worth a row: a number or a yes/no, not a path or other text."""
    return isinstance(value, (bool, int, float))


def final_figures(summaries: Sequence[Mapping[str, Any] | None]) -> list[tuple[str, tuple[Any, ...]]]:
    """Rows (figure, one value per run; None where a run has none) over the union of the runs'
    summaries. The validation figures that decide between models first, then the rest in the
    order the runs report them."""
    names: list[str] = []
    for summary in summaries:
        for name, value in (summary or {}).items():
            if is_figure(value) and name not in names:
                names.append(name)
    names.sort(key=lambda n: HEADLINE_FIGURES.index(n) if n in HEADLINE_FIGURES else len(HEADLINE_FIGURES))
    return [(name, tuple(_figure_of(summary, name) for summary in summaries)) for name in names]


def _figure_of(summary: Mapping[str, Any] | None, name: str) -> Any:
    value = (summary or {}).get(name)
    return value if is_figure(value) else None


# -- config differences ----------------------------------------------------------------------------


def run_settings(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a run of `kind` has, with its values: every field of its method's config that
    applies to its kind (None where the run left it empty: a saved config drops empty ones), then
    anything else it saved (a setting since removed). A run of an unknown kind has what it saved."""
    method = method_for_kind(kind)
    if method is None:
        return dict(config)
    known = fields(method.config)
    own = {f.name: config.get(f.name) for f in known if applies(f, kind)}
    removed = {k: v for k, v in config.items() if k not in {f.name for f in known}}
    return {**own, **removed}


def config_differences(settings: Sequence[Mapping[str, Any]]) -> list[tuple[str, tuple[Any, ...]]]:
    """Rows (setting, one value per run; ABSENT where that run has no such setting) for only the
    settings whose values are not all equal, in the order the runs list them."""
    names: list[str] = []
    for one in settings:
        names.extend(name for name in one if name not in names)
    rows = []
    for name in names:
        values = tuple(one.get(name, ABSENT) for one in settings)
        if any(not _same(values[0], v) for v in values[1:]):
            rows.append((name, values))
    return rows


def _same(a: Any, b: Any) -> bool:
    """Equal as settings: 1 and 1.0 are; True and 1 are not (a switch is not a count)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


# -- validation pairs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationPairs:
    """Which of the compared runs validated on labelled pairs, on which, and whether on the same."""

    val_ids: Mapping[str, frozenset[int]]  # run label -> its validation pair ids; only runs that kept a split

    @property
    def same(self) -> bool | None:
        """True: every run that validated on pairs used the very same ones; None: fewer than two did."""
        if len(self.val_ids) < 2:
            return None
        first, *rest = self.val_ids.values()
        return all(ids == first for ids in rest)

    @property
    def shared(self) -> int:
        """How many validation pairs all of them have in common."""
        sets = list(self.val_ids.values())
        return len(frozenset.intersection(*sets)) if sets else 0

    def describe(self) -> str:
        """One line for a person: whether their validation figures can be compared directly."""
        labels = list(self.val_ids)
        if not labels:
            return "Validation pairs: none of these runs validated on labelled pairs."
        if len(labels) == 1:
            return f"Validation pairs: only {labels[0]} validated on labelled pairs ({_pairs(len(self.val_ids[labels[0]]))})."
        if self.same:
            return f"Validation pairs: the same {_pairs(self.shared)} for {_and(labels)}: their accuracy and loss compare directly."
        each = ", ".join(f"{label} {len(ids):,}" for label, ids in self.val_ids.items())
        return (f"Validation pairs: not the same ({each}; {self.shared:,} in common): their accuracy and loss were "
                "measured on different pairs. Train one with split_from the other to compare them.")


def validation_pairs(splits: Mapping[str, Sequence[int] | None]) -> ValidationPairs:
    """From each run's validation pair ids (None: the run kept no split) to what they share."""
    return ValidationPairs({label: frozenset(ids) for label, ids in splits.items() if ids is not None})


def read_validation_ids(run_dir: Path) -> list[int] | None:
    """The pair ids a run validated on, from the split it keeps in its folder; None if it has none
    (an RL run, SFT from a file, a run that never started) or it cannot be read."""
    try:
        split = json.loads((run_dir / SPLIT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ids = split.get("val_ids") if isinstance(split, dict) else None
    return [int(i) for i in ids] if isinstance(ids, list) else None


# -- a comparison -----------------------------------------------------------------------------------


def run_labels(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each run's name, with its id where two of the runs share a name (the legend must tell them apart)."""
    names = [run["name"] for run in runs]
    return [name if names.count(name) == 1 else f"{name} ({run['id']})" for name, run in zip(names, runs)]


def examples_per_step(kind: str, config: Mapping[str, Any]) -> tuple[int, str] | None:
    """What one step of a run learns from, by its method (TrainingMethod.examples_per_step); None for
    a kind no method knows or a config it can no longer read."""
    method = method_for_kind(kind)
    if method is None or method.examples_per_step is None:
        return None
    try:
        settings = config_from_dict(method.config, dict(config))
    except (ConfigError, TypeError):
        return None
    return method.examples_per_step(settings)


@dataclass(frozen=True)
class Comparison:
    """Two or more runs side by side (the module's docstring says what each part is)."""

    runs: tuple[RunFigures, ...]
    final: list[tuple[str, tuple[Any, ...]]]
    differences: list[tuple[str, tuple[Any, ...]]]
    validation: ValidationPairs

    @property
    def labels(self) -> list[str]:
        return [run.label for run in self.runs]

    def figure_names(self, priority: Sequence[str] = (), axis: str | None = None) -> list[str]:
        """Every figure any run logged (that can be drawn on `axis`, if given; KL is the KL axis, not
        a figure on it): those more of the
        runs share (on that axis) first, as those are the ones to compare; among equals, those in
        `priority` in its order (the app's: its methods' main plots), then by name."""
        runs = [run for run in self.runs if axis is None or run.has_axis(axis)]
        names = {name for run in runs for name, points in run.figures.items() if points}
        if axis in KL_AXES:
            names.discard(KL_FIGURE)  # against itself it is the diagonal
        if axis in KL_AXES:
            priority = [*OVEROPTIMISATION_FIGURES, *priority]  # Gao et al.'s plot first
        rank = {name: i for i, name in enumerate(dict.fromkeys(priority))}
        return sorted(names, key=lambda n: (-sum(bool(r.figures.get(n)) for r in runs), rank.get(n, len(rank)), n))

    def axes(self) -> list[str]:
        """The x axes at least one run can be drawn on (step and wall time always; samples when a
        method says what its step holds; KL when a run logged it)."""
        return [axis for axis in X_AXES if any(run.has_axis(axis) for run in self.runs)]

    def without_axis(self, axis: str) -> list[str]:
        """The runs that cannot be drawn on `axis` (said beside the plots, not silently dropped)."""
        return [run.label for run in self.runs if not run.has_axis(axis)]

    def curves(self, figure: str, axis: str) -> list[tuple[str, list[float], list[float]]]:
        """(run label, x, y) for each run that has the figure on that axis."""
        lines = []
        for run in self.runs:
            xs, ys = curve(run, figure, axis)
            if xs:
                lines.append((run.label, xs, ys))
        return lines


def compare(runs: Sequence[Mapping[str, Any]], histories: Sequence[Mapping[str, Sequence[Point]]],
            splits: Sequence[Sequence[int] | None]) -> Comparison:
    """A comparison from runs' rows (store.run: id, name, kind, config, summary), their figures
    (store.metric_history) and their validation pair ids (read_validation_ids), in one order."""
    labels = run_labels(runs)
    figures = tuple(
        RunFigures(
            id=run["id"], name=run["name"], kind=run["kind"], label=label, figures=history,
            examples_per_step=examples_per_step(run["kind"], run.get("config") or {}),
            summary=run.get("summary") or {}, config=run_settings(run["kind"], run.get("config") or {}),
        )
        for run, label, history in zip(runs, labels, histories)
    )
    return Comparison(
        runs=figures,
        final=final_figures([run.summary for run in figures]),
        differences=config_differences([run.config for run in figures]),
        validation=validation_pairs(dict(zip(labels, splits))),
    )


def compare_runs(project: Project, run_ids: Sequence[str]) -> Comparison:
    """Compare runs of a project, in the order given. Refuses fewer than two distinct runs, and
    names a run the project does not have."""
    ids = list(dict.fromkeys(run_ids))
    if len(ids) < 2:
        raise WorkbenchError("Compare needs two or more different runs", hint="select two or more runs")
    runs = []
    for run_id in ids:
        run = project.store.run(run_id)
        if run is None:
            raise WorkbenchError(f"{project.path}: has no run {run_id!r}",
                                 hint="rlhf-workbench runs PROJECT lists its runs")
        runs.append(run)
    return compare(
        runs,
        [project.store.metric_history(run["id"]) for run in runs],
        [read_validation_ids(run_dir_of(project, run)) for run in runs],
    )


# -- as text -------------------------------------------------------------------------------------


def value_text(value: Any) -> str:
    """A figure for a table cell: numbers to 4 significant digits (counts whole, with thousands
    separators), yes / no, blank for None (a figure the run lacks)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(value_text(v) for v in value)
    return str(value)


def setting_text(value: Any) -> str:
    """A setting for a table cell, exactly as it was set (as `--set` takes it: 16384, 1e-05), so that
    two values that differ never read alike; blank when left empty, a dash when its method has none."""
    if value is ABSENT:
        return ABSENT_TEXT
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(setting_text(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, for a terminal (cells are one line each)."""
    cells = [[_one_line(c) for c in header], *[[_one_line(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def comparison_text(comparison: Comparison) -> str:
    """The comparison for a terminal: who is compared, the final figures, whether the validation
    pairs are the same, the settings that differ (the curves are the app's)."""
    labels = comparison.labels
    lines = ["Runs:"]
    lines += [f"  {run.label}: {run.id} ({run.kind})" if run.label != run.id else f"  {run.id} ({run.kind})"
              for run in comparison.runs]
    lines += ["", "Final figures:"]
    if comparison.final:
        lines.append(text_table(["figure", *labels],
                                [[name, *(value_text(v) for v in values)] for name, values in comparison.final]))
    else:
        lines.append("  none of these runs has final figures yet")
    lines += ["", comparison.validation.describe(), "", "Settings that differ:"]
    if comparison.differences:
        lines.append(text_table(["setting", *labels],
                                [[name, *(setting_text(v) for v in values)] for name, values in comparison.differences]))
        if any(v is ABSENT for _, values in comparison.differences for v in values):
            lines.append(f"({ABSENT_TEXT}: not a setting of that run's method)")
    else:
        lines.append("  none: every setting is the same")
    return "\n".join(lines)


def _pairs(n: int) -> str:
    return f"{n:,} pair" if n == 1 else f"{n:,} pairs"


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
