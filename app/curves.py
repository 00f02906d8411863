"""Live training curves: a grid of plots, one per group of metrics (loss, accuracy, ...).

    Smoothing [━━━●──] 0.60
    ┌ Loss           step 120 · … [ ] Log ┐┌ Accuracy … ┐
    │  train/loss ─── eval/loss ───        ││            │
    └──────────────────────────────────────┘└────────────┘

Each series keeps numpy arrays that grow by doubling, and its smoothed values are computed only
for the points that arrive (the running state of the moving average is kept), so appending costs
the new points, not the whole history. Curves are redrawn by a timer at most ~10 times a second,
however often metrics arrive. Smoothing is TensorBoard's: a debiased exponential moving average,
with the raw curve kept faint behind it. Hovering shows the nearest point of every series. A
plot's legend sits in whichever corner its curves leave free (top right unless they run there).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.events import Metric

from .widgets import heading_label, plain_label

Groups = Sequence[tuple[str, Sequence[str]]]

# Reward-model training logs TRL's names under train/ and eval/.
REWARD_GROUPS: Groups = (
    ("Loss", ("train/loss", "eval/loss")),
    ("Accuracy", ("train/accuracy", "eval/accuracy")),
    ("Margin", ("train/margin", "eval/margin")),
    ("Learning rate", ("train/lr", "train/learning_rate")),
    ("Throughput (pairs/s)", ("perf/pairs_per_s",)),
    ("Gradient norm", ("train/grad_norm",)),
)
# PPO logs TRL's names; these are the figures that say whether it works (the Runs tab shows the rest).
# The reward model's score (the proxy) and, where the true goal is known (the demo's rules), the
# gold beside it: the proxy rising while the gold falls is over-optimisation.
REWARD_FIGURES = ("objective/rlhf_reward", "objective/scores", "objective/gold_score")
PPO_GROUPS: Groups = (
    ("Reward", REWARD_FIGURES),
    ("KL", ("objective/kl",)),
    ("Entropy", ("policy/entropy_avg",)),
    ("Clip fraction", ("policy/clipfrac_avg", "val/clipfrac_avg")),
    ("Value loss", ("loss/value_avg",)),
    ("Response length", ("val/response_length",)),
    ("Episodes/s", ("perf/episodes_per_s",)),
)
# Where a plot's legend may sit, as (right, bottom) fractions of the plot: the first is the usual.
_LEGEND_CORNERS = ((1, 0), (1, 1), (0, 0), (0, 1))
_LEGEND_MARGIN = 12  # pixels kept clear around a legend, beyond its box
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
REDRAW_MS = 100


def series_color(index: int) -> str:
    """The colour of a plot's index-th series (Compare: of the index-th run, in every plot)."""
    return _COLORS[index % len(_COLORS)]


# RLOO and GRPO have no value model; what they have is the spread of scores within a group,
# which is all their baselines learn from (none at all when a group scored alike).
GROUP_RL_GROUPS: Groups = (
    ("Reward", REWARD_FIGURES),
    ("KL", ("objective/kl",)),
    ("Entropy", ("policy/entropy_avg",)),
    ("Clip fraction", ("policy/clipfrac_avg",)),
    ("Score spread", ("reward_std_in_group", "reward_std")),
    ("Response length", ("val/response_length",)),
    ("Episodes/s", ("perf/episodes_per_s",)),
)
# DPO logs TRL's names: the implicit reward (beta x the log-probability ratio to the reference) of
# the chosen and rejected responses, how often the chosen one's is higher, and the log-probabilities
# themselves (both falling together is DPO wrecking the policy's writing: sft_weight is the remedy).
DPO_GROUPS: Groups = (
    ("Loss", ("train/loss", "eval/loss")),
    ("Implicit-reward accuracy", ("rewards/accuracies", "eval/accuracy")),
    ("Rewards", ("rewards/chosen", "rewards/rejected", "rewards/margins")),
    ("Log-probs", ("logps/chosen", "logps/rejected")),
    ("Learning rate", ("train/learning_rate",)),
    ("Pairs/s", ("perf/pairs_per_s",)),
)
# SFT: the loss on the response tokens and how many of them the policy predicts.
SFT_GROUPS: Groups = (
    ("Loss", ("train/loss", "eval/loss")),
    ("Token accuracy", ("mean_token_accuracy", "eval/mean_token_accuracy")),
    ("Learning rate", ("train/learning_rate",)),
    ("Sequences/s", ("perf/sequences_per_s",)),
)
# Each training method's groups, by its runs' kind: the Runs tab plots a run by them.
GROUPS_BY_KIND: dict[str, Groups] = {
    "reward": REWARD_GROUPS, "sft": SFT_GROUPS, "dpo": DPO_GROUPS,
    "ppo": PPO_GROUPS, "rloo": GROUP_RL_GROUPS, "grpo": GROUP_RL_GROUPS,
}


def groups_for_kind(kind: str) -> Groups:
    """A method's groups; a method without any gets a plot per figure."""
    return GROUPS_BY_KIND.get(kind, ())


class _Series:
    """One metric's points, its smoothed values, and its two curves (raw faint, smoothed bold)."""

    def __init__(self, name: str, color: str, plot: pg.PlotItem):
        self.name = name
        self.color = color
        self.steps = np.empty(0)
        self.values = np.empty(0)
        self.smoothed = np.empty(0)
        self.n = 0
        self._last, self._count = 0.0, 0  # the smoothed value after n points, and finite points seen
        faint = pg.mkColor(color)
        faint.setAlpha(60)
        self.raw_item = plot.plot(pen=pg.mkPen(faint, width=1))
        # pyqtgraph's legend renders its names as HTML: a name (a run's, in Compare) is shown as written.
        self.smooth_item = plot.plot(pen=pg.mkPen(color, width=2), name=html.escape(name))
        for item in (self.raw_item, self.smooth_item):
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)

    def extend(self, steps: Sequence[float], values: Sequence[float], weight: float) -> None:
        k = len(steps)
        if self.n + k > len(self.steps):
            capacity = max(256, 2 * (self.n + k))
            for attr in ("steps", "values", "smoothed"):
                grown = np.empty(capacity)
                grown[: self.n] = getattr(self, attr)[: self.n]
                setattr(self, attr, grown)
        self.steps[self.n : self.n + k] = steps
        self.values[self.n : self.n + k] = values
        self._smooth(self.n, self.n + k, weight)
        self.n += k

    def resmooth(self, weight: float) -> None:
        self._last, self._count = 0.0, 0
        self._smooth(0, self.n, weight)

    def _smooth(self, start: int, end: int, weight: float) -> None:
        last, count = self._last, self._count
        out = []
        for v in self.values[start:end].tolist():  # plain floats: several times faster than numpy scalars
            if not math.isfinite(v):  # a NaN or inf shows as itself and does not poison the rest
                out.append(v)
                continue
            # TensorBoard's debiased EMA, e_k = w e_(k-1) + (1 - w) v_k shown as e_k / (1 - w^k),
            # in its equivalent update form: exact for a constant series and for the first point,
            # where the quotient form drifts in the last digit (TensorBoard special-cases that).
            count += 1
            last += (v - last) * ((1 - weight) / (1 - weight**count))
            out.append(last)
        self.smoothed[start:end] = out
        self._last, self._count = last, count

    def clear(self) -> None:
        self.n, self._last, self._count = 0, 0.0, 0

    def redraw(self, show_raw: bool) -> None:
        steps = self.steps[: self.n]
        self.smooth_item.setData(steps, self.smoothed[: self.n])
        self.raw_item.setData(steps, self.values[: self.n])
        self.raw_item.setVisible(show_raw)

    def nearest(self, x: float) -> int | None:
        if self.n == 0:
            return None
        return int(np.argmin(np.abs(self.steps[: self.n] - x)))


class PlotCard(QWidget):
    """One plot: title, hover readout, log-scale toggle, legend, and its series."""

    def __init__(self, title: str, names: Sequence[str], on_hover, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.names = list(names)
        self.series: dict[str, _Series] = {}
        self.readout = plain_label()
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.log_check = QCheckBox("Log scale")
        self.log_check.toggled.connect(self.set_log_y)
        self.widget = pg.PlotWidget()
        self.plot: pg.PlotItem = self.widget.getPlotItem()
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        # A dark, nearly opaque box: the legend sits over the curves, and its names must stay legible.
        self.legend = self.plot.addLegend(
            offset=(-6, 6), brush=pg.mkBrush(0, 0, 0, 190), pen=pg.mkPen("#555"), labelTextSize="8pt"
        )
        self.legend_corner = (1, 0)  # top right; place_legend moves it off the curves
        self.plot.getViewBox().sigResized.connect(lambda _view: self.place_legend())
        self.x_name = "step"  # what the x axis measures, as the readout names it
        self.plot.setLabel("bottom", self.x_name)
        self.crosshair = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine))
        self.crosshair.hide()
        self.plot.addItem(self.crosshair, ignoreBounds=True)
        self.markers = pg.ScatterPlotItem(size=8, pen=pg.mkPen("w", width=1))
        self.plot.addItem(self.markers, ignoreBounds=True)
        self._on_hover = on_hover
        self.widget.scene().sigMouseMoved.connect(self._mouse_moved)
        header = QHBoxLayout()
        header.addWidget(heading_label(title))
        header.addWidget(self.readout, 1)
        header.addWidget(self.log_check)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.widget, 1)
        self.setMinimumHeight(200)

    def set_x_axis(self, name: str, title: str | None = None) -> None:
        """What x measures ("step"; Compare offers samples, seconds, KL): the readout's word and the axis title."""
        self.x_name = name
        self.plot.setLabel("bottom", title or name)

    def series_for(self, name: str) -> _Series:
        series = self.series.get(name)
        if series is None:
            if name not in self.names:
                self.names.append(name)
            color = series_color(self.names.index(name))
            series = self.series[name] = _Series(name, color, self.plot)
        return series

    @property
    def has_data(self) -> bool:
        return any(s.n for s in self.series.values())

    def place_legend(self) -> None:
        """Puts the legend in the corner of the plot where it hides the least of the curves: top
        right, unless they run there (an accuracy near 1, a loss that starts high), and it moves
        only when another corner is clearly freer, so that it does not hop about as points arrive."""
        view = self.plot.getViewBox()
        width, height = view.width(), view.height()
        lines = [self._drawn_line(s) for s in self.series.values() if s.n]
        lines = [(x, y) for x, y in lines if x.size]
        if width <= 0 or height <= 0 or not lines:
            return
        xs, ys = np.concatenate([x for x, _ in lines]), np.concatenate([y for _, y in lines])
        # The plot's range as auto-range makes it: the data's, padded as pyqtgraph pads it.
        (x0, x1), (y0, y1) = (xs.min(), xs.max()), (ys.min(), ys.max())
        pad_x, pad_y = (min(max(1 / math.sqrt(side), 0.02), 0.1) for side in (width, height))
        x0, x1 = x0 - pad_x * (x1 - x0), x1 + pad_x * (x1 - x0)
        y0, y1 = y0 - pad_y * (y1 - y0), y1 + pad_y * (y1 - y0)
        fx = min((self.legend.width() + _LEGEND_MARGIN) / width, 1.0) * (x1 - x0)
        fy = min((self.legend.height() + _LEGEND_MARGIN) / height, 1.0) * (y1 - y0)

        def hidden(corner: tuple[int, int]) -> int:
            right, bottom = corner
            in_x = (xs >= x1 - fx) if right else (xs <= x0 + fx)
            in_y = (ys <= y0 + fy) if bottom else (ys >= y1 - fy)
            return int(np.count_nonzero(in_x & in_y))

        counts = {corner: hidden(corner) for corner in _LEGEND_CORNERS}
        best = min(_LEGEND_CORNERS, key=counts.get)  # the first of the freest: top right before the others
        if counts[best] < counts[self.legend_corner] * 0.5 or (counts[best] == 0 < counts[self.legend_corner]):
            self.legend_corner = best
            right, bottom = best
            self.legend.anchor(itemPos=best, parentPos=best, offset=(-6 if right else 6, -6 if bottom else 6))

    def _drawn_line(self, series: _Series) -> tuple[np.ndarray, np.ndarray]:
        """A series' smoothed curve as the plot draws it (log10 on a log scale), sampled at up to
        ~400 evenly spaced steps, so that a line between two distant points counts too."""
        steps, values = series.steps[: series.n], series.smoothed[: series.n]
        if self.log_y:
            values = np.log10(np.where(values > 0, values, np.nan))
        finite = np.isfinite(values) & np.isfinite(steps)
        steps, values = steps[finite], values[finite]
        if steps.size < 2:
            return steps, values
        grid = np.linspace(steps[0], steps[-1], 400)
        return grid, np.interp(grid, steps, values)

    def set_log_y(self, on: bool) -> None:
        self.log_check.setChecked(on)
        self.plot.setLogMode(x=False, y=on)
        self.place_legend()

    @property
    def log_y(self) -> bool:
        return self.log_check.isChecked()

    def _mouse_moved(self, pos: QPointF) -> None:
        if self.plot.sceneBoundingRect().contains(pos):
            self._on_hover(self.plot.getViewBox().mapSceneToView(pos).x())

    def show_hover(self, x: float, smoothing: float) -> None:
        """Mark and describe, for every series, its point nearest to step x."""
        parts, spots, anchor = [], [], None
        for name in self.names:
            series = self.series.get(name)
            i = series.nearest(x) if series is not None else None
            if i is None:
                continue
            step, value, smooth = series.steps[i], series.values[i], series.smoothed[i]
            anchor = step if anchor is None else anchor
            text = f"{name} {value:.4g}"
            if smoothing > 0:
                text += f" (smoothed {smooth:.4g})"
            if step != anchor:
                text += f" at {self.x_name} {_x_text(step)}"
            parts.append(text)
            shown = math.log10(smooth) if self.log_y and smooth > 0 else smooth
            spots.append({"pos": (step, shown), "brush": pg.mkBrush(series.color)})
        if anchor is None:
            self.readout.setText("")
            self.crosshair.hide()
            self.markers.clear()
            return
        self.readout.setText(f"{self.x_name} {_x_text(anchor)} · " + " · ".join(parts))
        self.crosshair.setPos(anchor)
        self.crosshair.show()
        self.markers.setData(spots)


def _x_text(x: float) -> str:
    """An x value for the readout: a whole number with separators (a step), else 4 significant digits (a KL)."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:.4g}"


class CurvesPanel(QWidget):
    """Plots of metric groups. `append` for live runs, `set_series` for finished ones.

    Metrics that belong to no group get a plot of their own, so nothing logged is hidden.
    A plot appears once it has data.
    """

    def __init__(
        self,
        groups: Groups = REWARD_GROUPS,
        *,
        columns: int = 2,
        only_groups: bool = False,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        # only_groups: figures outside the groups are not plotted (a live view stays one screen);
        # otherwise each gets a plot of its own (the Runs tab shows everything a run logged).
        self.only_groups = only_groups
        self.columns = columns
        self.cards: list[PlotCard] = []
        self._card_of: dict[str, PlotCard] = {}
        self._dirty: set[_Series] = set()
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self.flush)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 99)
        self.slider.setValue(60)
        self.slider.setMaximumWidth(240)
        self.slider.setToolTip("Exponential moving average, as in TensorBoard: 0 shows the raw values")
        self.slider_value = plain_label()
        self.slider.valueChanged.connect(self._smoothing_changed)
        self.empty = plain_label("No figures yet: curves appear here while a run logs them.")
        controls = QHBoxLayout()
        controls.addWidget(plain_label("Smoothing"))
        controls.addWidget(self.slider)
        controls.addWidget(self.slider_value)
        controls.addStretch(1)
        # The plots scroll: a run that logged twenty figures (the Runs tab shows them all), or a
        # small screen, must not make the window taller than the screen.
        plots = QWidget()
        self.grid = QGridLayout(plots)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(plots)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.empty)
        layout.addWidget(self.scroll, 1)
        self.slider_value.setText(f"{self.smoothing:.2f}")
        self.set_groups(groups)

    # -- configuration -------------------------------------------------------------------------

    def set_groups(self, groups: Groups) -> None:
        """Replace the plots (and drop all data)."""
        for card in self.cards:
            self.grid.removeWidget(card)
            card.deleteLater()
        self.groups = groups
        self.cards, self._card_of, self._dirty = [], {}, set()
        for title, names in groups:
            self._add_card(title, names)
        self._relayout()

    def _add_card(self, title: str, names: Sequence[str]) -> PlotCard:
        card = PlotCard(title, names, self.show_hover)
        card.hide()
        if self.cards:  # one step axis for all: zooming one plot zooms them all
            card.plot.setXLink(self.cards[0].plot)
        self.cards.append(card)
        for name in names:
            self._card_of.setdefault(name, card)
        return card

    def card(self, title: str) -> PlotCard:
        return next(c for c in self.cards if c.title == title)

    @property
    def smoothing(self) -> float:
        return self.slider.value() / 100

    def set_smoothing(self, weight: float) -> None:
        self.slider.setValue(round(weight * 100))

    # -- data ----------------------------------------------------------------------------------

    def append(self, metrics: list[Metric]) -> None:
        """New figures (a live run). Cheap: the curves are redrawn by a timer."""
        points: dict[str, tuple[list[float], list[float]]] = {}
        for metric in metrics:
            for name, value in metric.values.items():
                steps, values = points.setdefault(name, ([], []))
                steps.append(metric.step)
                values.append(value)
        weight = self.smoothing
        for name, (steps, values) in points.items():
            if not self.shows(name):
                continue
            series = self._series(name)
            series.extend(steps, values, weight)
            self._dirty.add(series)
        if points and not self._redraw.isActive():
            self._redraw.start()

    def set_series(self, name: str, steps: Sequence[float], values: Sequence[float]) -> None:
        """One metric's whole history (a finished run from the database)."""
        series = self._series(name)
        series.clear()
        series.extend(steps, values, self.smoothing)
        self._dirty.add(series)
        if not self._redraw.isActive():
            self._redraw.start()

    def clear(self) -> None:
        for card in self.cards:
            for series in card.series.values():
                series.clear()
                self._dirty.add(series)
            card.show_hover(0, 0)  # empties the readout
        self.flush()

    def flush(self) -> None:
        """Redraw what changed now (the timer does it otherwise)."""
        self._redraw.stop()
        show_raw = self.smoothing > 0
        redrawn = bool(self._dirty)
        for series in self._dirty:
            series.redraw(show_raw)
        self._dirty.clear()
        self._relayout()
        if redrawn:
            for card in self.cards:
                if card.has_data:
                    card.place_legend()

    def shows(self, name: str) -> bool:
        """Whether figures called `name` get plotted here."""
        return not self.only_groups or name in self._card_of

    def series_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) received so far for `name` (empty when none)."""
        card = self._card_of.get(name)
        if card is None:
            return np.empty(0), np.empty(0)
        series = card.series_for(name)
        return series.steps[: series.n], series.values[: series.n]

    def _series(self, name: str) -> _Series:
        card = self._card_of.get(name)
        if card is None:  # not in any group: a plot of its own
            card = self._card_of[name] = self._add_card(name, [name])
        return card.series_for(name)

    def _relayout(self) -> None:
        visible = [c for c in self.cards if c.has_data]
        if [c for c in self.cards if c.isVisibleTo(self)] == visible:
            return
        for card in self.cards:
            self.grid.removeWidget(card)
            card.hide()
        for i, card in enumerate(visible):
            self.grid.addWidget(card, i // self.columns, i % self.columns)  # parents it first
            card.show()
        self.empty.setVisible(not visible)

    # -- interaction ---------------------------------------------------------------------------

    def _smoothing_changed(self) -> None:
        weight = self.smoothing
        self.slider_value.setText(f"{weight:.2f}")
        for card in self.cards:
            for series in card.series.values():
                series.resmooth(weight)
                self._dirty.add(series)
        self.flush()

    def show_hover(self, x: float) -> None:
        """Every plot shows its values at the step under the mouse (their x axes are shared)."""
        for card in self.cards:
            if card.has_data:
                card.show_hover(x, self.smoothing)
