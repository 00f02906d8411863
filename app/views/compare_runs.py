"""Compare runs: a window that shows two or more runs side by side (the Runs tab's Compare…).

    Compare 3 runs          x axis [Step ▾]   Smoothing [━━●──] 0.60
    ━ run A   ━ run B   ━ run C                  (the legend: one colour per run in every plot)
    (which runs an axis leaves out, when it does)
    ┌ train/loss ─────────┐┌ eval/accuracy ────┐ │ Final figures
    │ one line per run    ││                   │ │ figure │ run A │ run B │ run C
    │                     ││                   │ │ Validation pairs: the same 24 pairs for ...
    └─────────────────────┘└───────────────────┘ │ Settings that differ
    (one plot per figure, scrolling)             │ setting │ run A │ run B │ run C

Everything comes from one `Comparison` (core/experiments.py), read when the window opens: the
window is a snapshot, and Compare… again reads the runs anew. One colour per run in every plot,
named once above them (a legend in each small plot would hide its curves); a figure shared by
more runs comes first, then the figures the runs' methods plot first in their own tabs. Switching the x axis redraws the same points on step,
samples seen, wall time or KL from the reference; a run that cannot be drawn on that axis is named
above the plots, not silently dropped. Names may hold anything: they appear only in plain-text
places (labels, table cells and headers, the legend, which escapes them).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QScrollArea,
    QSlider,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.experiments import (
    ABSENT,
    KL_AXES,
    X_AXES,
    Comparison,
    axis_title,
    compare_runs,
    setting_text,
    value_text,
)
from rlhf_workbench.core.project import Project

from ..curves import GROUPS_BY_KIND, PlotCard, series_color
from ..dialogs import error_box
from ..text import count, kind_name
from ..widgets import heading_label, plain_label

SIZE = (1400, 860)
COLUMNS = 2  # plots side by side
LEGEND_COLUMNS = 4  # run names a row above the plots
_AXIS_WORDS = {"step": "step", "samples": "samples", "wall_time": "seconds", "kl": "KL", "sqrt_kl": "√KL"}
_AXIS_TIPS = {
    "step": "Each run's own optimizer steps (RL: updates)",
    "samples": "Examples learned from: step x the pairs, sequences or episodes one step takes (batch_size x "
    "gradient_accumulation_steps; RL: batch_size episodes an update), so a larger batch is not shown as faster",
    "wall_time": "Seconds since the run's first figure (a resumed run's pause counts too)",
    "kl": "The run's KL from its reference (objective/kl) at the same step: the price of its reward. RL runs only",
    "sqrt_kl": "The square root of the run's KL from its reference: Gao et al.'s over-optimisation plot, where the "
    "proxy score keeps rising and, past a point, the gold score (on the demo: its rules) falls. RL runs only",
}


def _item(text: str, *, number: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)  # plain text
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if number:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def _table(first: str, labels: list[str]) -> QTableWidget:
    table = QTableWidget(0, 1 + len(labels))
    table.setHorizontalHeaderLabels([first, *labels])  # header sections are plain text
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return table


class CompareRunsWindow(QWidget):
    """Two or more runs side by side: curves on a chosen x axis, final figures, settings that differ."""

    def __init__(self, comparison: Comparison, parent: QWidget | None = None):
        super().__init__(parent, Qt.WindowType.Window)  # its own window, not modal: the Runs tab stays usable
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.comparison = comparison
        runs = comparison.runs
        self.setWindowTitle(f"Compare runs: {' · '.join(comparison.labels)}")

        # -- controls --------------------------------------------------------------------------
        self.axis_box = QComboBox()
        for axis in comparison.axes():
            self.axis_box.addItem(X_AXES[axis], axis)
            self.axis_box.setItemData(self.axis_box.count() - 1, _AXIS_TIPS[axis], Qt.ItemDataRole.ToolTipRole)
        self.axis_box.setToolTip("What the plots' x axis measures, the same for every run")
        self.axis_box.currentIndexChanged.connect(lambda _i: self.set_axis(self.axis))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 99)
        self.slider.setValue(60)
        self.slider.setMaximumWidth(200)
        self.slider.setToolTip("Exponential moving average, as in TensorBoard: 0 shows the raw values")
        self.slider_value = plain_label(f"{self.smoothing:.2f}")
        self.slider.valueChanged.connect(self._smoothing_changed)
        top = QHBoxLayout()
        top.addWidget(heading_label(f"Compare {count(len(runs), 'run')}"))
        top.addStretch(1)
        top.addWidget(plain_label("x axis"))
        top.addWidget(self.axis_box)
        top.addSpacing(16)
        top.addWidget(plain_label("Smoothing"))
        top.addWidget(self.slider)
        top.addWidget(self.slider_value)
        self.note = plain_label()  # which runs the chosen axis leaves out
        self.note.setWordWrap(True)
        legend = QGridLayout()
        legend.setHorizontalSpacing(18)
        self.legend_labels = []
        for i, label in enumerate(comparison.labels):
            swatch = plain_label("━━")
            swatch.setStyleSheet(f"color: {series_color(i)}; font-weight: bold;")
            name = plain_label(label)  # plain text: a name may look like HTML
            self.legend_labels.append(name)
            entry = QHBoxLayout()
            entry.setSpacing(4)
            entry.addWidget(swatch)
            entry.addWidget(name)
            legend.addLayout(entry, i // LEGEND_COLUMNS, i % LEGEND_COLUMNS, Qt.AlignmentFlag.AlignLeft)
        legend.setColumnStretch(LEGEND_COLUMNS, 1)

        # -- the plots: one per figure, one line per run -----------------------------------------
        labels = comparison.labels
        self.cards: dict[str, PlotCard] = {}
        plots = QWidget()
        self.grid = QGridLayout(plots)
        self.grid.setContentsMargins(0, 0, 0, 0)
        for figure in comparison.figure_names(_method_order(comparison)):
            card = PlotCard(figure, labels, self.show_hover)  # names in run order: a run's colour is the same everywhere
            card.legend.hide()  # the one legend above the plots names the runs
            card.hide()
            self.cards[figure] = card
        self.empty = plain_label()
        self.empty.setWordWrap(True)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(plots)
        curves = QWidget()
        curves_layout = QVBoxLayout(curves)
        curves_layout.setContentsMargins(0, 0, 0, 0)
        curves_layout.addWidget(self.empty)
        curves_layout.addWidget(self.scroll, 1)

        # -- the tables --------------------------------------------------------------------------
        self.figures_table = _table("Figure", labels)
        self.figures_table.setRowCount(len(comparison.final))
        for row, (name, values) in enumerate(comparison.final):
            self.figures_table.setItem(row, 0, _item(name))
            for col, value in enumerate(values, start=1):
                self.figures_table.setItem(row, col, _item(value_text(value), number=True))
        self.validation_label = plain_label(comparison.validation.describe())
        self.validation_label.setWordWrap(True)
        self.validation_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.settings_table = _table("Setting", labels)
        self.settings_table.setRowCount(len(comparison.differences))
        grey = QBrush(QColor("#888"))
        for row, (name, values) in enumerate(comparison.differences):
            self.settings_table.setItem(row, 0, _item(name))
            for col, (run, value) in enumerate(zip(runs, values), start=1):
                item = _item(setting_text(value))
                if value is ABSENT:
                    item.setForeground(grey)
                    item.setToolTip(f"Not a setting of {kind_name(run.kind)}")
                self.settings_table.setItem(row, col, item)
        for table in (self.figures_table, self.settings_table):
            for col, run in enumerate(runs, start=1):
                # the id and kind, never the name: a tooltip would guess at rich text
                table.horizontalHeaderItem(col).setToolTip(f"{run.id} ({kind_name(run.kind)})")
        self.figures_empty = plain_label("None of these runs has final figures yet (a run has them once it ends).")
        self.figures_empty.setVisible(not comparison.final)
        self.settings_empty = plain_label("Every setting is the same.")
        self.settings_empty.setVisible(not comparison.differences)
        tables = QWidget()
        side = QVBoxLayout(tables)
        side.setContentsMargins(0, 0, 0, 0)
        side.addWidget(heading_label("Final figures"))
        side.addWidget(self.figures_empty)
        side.addWidget(self.figures_table, 2)
        side.addWidget(self.validation_label)
        side.addSpacing(8)
        side.addWidget(heading_label("Settings that differ"))
        side.addWidget(self.settings_empty)
        side.addWidget(self.settings_table, 3)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(curves)
        self.splitter.addWidget(tables)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(legend)
        layout.addWidget(self.note)
        layout.addWidget(self.splitter, 1)
        close = QShortcut(QKeySequence(QKeySequence.StandardKey.Close), self)
        close.activated.connect(self.close)
        self.resize(*SIZE)
        self.splitter.setSizes([SIZE[0] * 3 // 5, SIZE[0] * 2 // 5])  # the plots get the room; the tables scroll
        self.set_axis("step")

    # -- the x axis ----------------------------------------------------------------------------

    @property
    def axis(self) -> str:
        return self.axis_box.currentData()

    @property
    def smoothing(self) -> float:
        return self.slider.value() / 100

    def set_axis(self, axis: str) -> None:
        """Redraw every figure of every run on `axis` (step, samples, wall_time, kl)."""
        index = self.axis_box.findData(axis)
        if index < 0:
            raise ValueError(f"no run here has the {axis!r} axis")
        if index != self.axis_box.currentIndex():
            self.axis_box.setCurrentIndex(index)  # comes back here through the signal
            return
        comparison = self.comparison
        title = axis_title(axis, comparison.runs)
        weight, show_raw = self.smoothing, self.smoothing > 0
        for figure, card in self.cards.items():
            card.set_x_axis(_AXIS_WORDS[axis], title)
            for series in card.series.values():
                series.clear()
            for label, xs, ys in comparison.curves(figure, axis):
                card.series_for(label).extend(xs, ys, weight)
            for series in card.series.values():
                series.redraw(show_raw)
            card.readout.setText("")  # the hover readout was of the other axis
            card.crosshair.hide()
            card.markers.clear()
        self._relayout()
        left_out = comparison.without_axis(axis)
        reason = ("no objective/kl: only RL runs measure their KL from a reference" if axis in KL_AXES
                  else "its method does not say how many examples a step holds")
        self.note.setText(
            f"Not on this axis: {', '.join(left_out)} ({reason})." if left_out else ""
        )
        self.note.setVisible(bool(left_out))

    def _relayout(self) -> None:
        order = self.comparison.figure_names(_method_order(self.comparison), self.axis)  # those most runs share here first
        visible = [self.cards[name] for name in order if self.cards[name].has_data]
        for card in self.cards.values():
            self.grid.removeWidget(card)
            card.hide()
            card.plot.setXLink(None)  # a hidden plot must not hold the others to the last axis's range
        for i, card in enumerate(visible):
            self.grid.addWidget(card, i // COLUMNS, i % COLUMNS)
            card.show()
        self.empty.setText("" if visible else "No figures to draw: these runs logged none yet.")
        self.empty.setVisible(not visible)
        # One x range for all (the extent of every line on show), then linked: zooming one zooms them all.
        xs = [series.steps[: series.n] for card in visible for series in card.series.values() if series.n]
        finite = np.concatenate(xs)[np.isfinite(np.concatenate(xs))] if xs else np.empty(0)
        for card in visible:
            card.plot.enableAutoRange(x=False, y=True)
            if finite.size:
                card.plot.setXRange(float(finite.min()), float(finite.max()), padding=0.02)
        for card in visible[1:]:
            card.plot.setXLink(visible[0].plot)

    def shown_cards(self) -> list[PlotCard]:
        """The plots on show, in order (a figure no run has on this axis is hidden)."""
        cards = [card for card in self.cards.values() if card.isVisibleTo(self)]
        return sorted(cards, key=self.grid.indexOf)

    # -- interaction ---------------------------------------------------------------------------

    def _smoothing_changed(self) -> None:
        weight = self.smoothing
        self.slider_value.setText(f"{weight:.2f}")
        for card in self.cards.values():
            for series in card.series.values():
                series.resmooth(weight)
                series.redraw(weight > 0)

    def show_hover(self, x: float) -> None:
        """Every plot shows each run's value nearest to x (their x axes are shared)."""
        for card in self.shown_cards():
            card.show_hover(x, self.smoothing)


def _method_order(comparison: Comparison) -> list[str]:
    """The figures the runs' methods plot first in their own tabs (curves.GROUPS_BY_KIND), in run order."""
    return [name for run in comparison.runs for _title, names in GROUPS_BY_KIND.get(run.kind, ()) for name in names]


def open_compare(parent: QWidget, project: Project, run_ids: list[str]) -> CompareRunsWindow | None:
    """Read the runs and show them side by side in a window of their own; a run that cannot be
    compared (it went meanwhile) is said in a dialog instead."""
    try:
        comparison = compare_runs(project, run_ids)
    except WorkbenchError as exc:
        error_box(parent, str(exc), "Cannot compare the runs")
        return None
    window = CompareRunsWindow(comparison, parent)
    window.show()
    window.raise_()
    window.activateWindow()
    return window
