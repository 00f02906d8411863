"""CurvesPanel: growing series, TensorBoard smoothing, log scale, hover readout."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import QPointF

from rlhf_workbench.app.curves import PPO_GROUPS, CurvesPanel
from rlhf_workbench.core.events import Metric


@pytest.fixture
def panel(qtbot):
    panel = CurvesPanel()
    qtbot.addWidget(panel)
    panel.resize(1000, 700)
    panel.show()
    return panel


def _curve(panel, title, name, raw=False):
    series = panel.card(title).series[name]
    # What the curve was given (getData() is what is drawn: clipped to the view, downsampled).
    x, y = (series.raw_item if raw else series.smooth_item).getOriginalDataset()
    return (np.array([]), np.array([])) if x is None else (x, y)


def test_ten_thousand_points_in_batches_end_up_in_the_curve(qtbot, panel):
    panel.set_smoothing(0)
    assert panel.empty.isVisible() and not any(c.isVisible() for c in panel.cards)
    for start in range(0, 10_000, 250):
        panel.append([Metric(s, {"train/loss": 1.0 / (s + 1), "eval/loss": 2.0}) for s in range(start, start + 250)])
    # Redrawn by the timer, not by each append.
    assert len(_curve(panel, "Loss", "train/loss")[0]) == 0
    qtbot.waitUntil(lambda: len(_curve(panel, "Loss", "train/loss")[0]) == 10_000, timeout=2000)
    x, y = _curve(panel, "Loss", "train/loss")
    np.testing.assert_array_equal(x, np.arange(10_000))
    np.testing.assert_allclose(y, 1.0 / (np.arange(10_000) + 1))
    assert panel.card("Loss").isVisible() and not panel.card("Accuracy").isVisible()
    assert not panel.empty.isVisible()
    assert not panel.card("Loss").series["train/loss"].raw_item.isVisible()  # no smoothing: one curve


def test_smoothing_is_tensorboards_debiased_moving_average(panel):
    values = [1.0, 3.0, float("nan"), 2.0, 10.0]
    panel.set_smoothing(0.5)
    panel.append([Metric(i, {"train/accuracy": v}) for i, v in enumerate(values[:2])])
    panel.append([Metric(i + 2, {"train/accuracy": v}) for i, v in enumerate(values[2:])])
    panel.flush()
    # By hand, w = 0.5: EMA e_k = 0.5 e_(k-1) + 0.5 v_k from e_0 = 0, divided by 1 - 0.5^k;
    # the NaN shows as itself and is skipped.
    #   1:  e = 0.5            → 0.5 / 0.5    = 1
    #   3:  e = 0.25 + 1.5     → 1.75 / 0.75  = 2.3333
    #   2:  e = 0.875 + 1      → 1.875 / 0.875 = 2.142857
    #   10: e = 0.9375 + 5     → 5.9375 / 0.9375 = 6.333333
    expected = [1.0, 7 / 3, math.nan, 1.875 / 0.875, 5.9375 / 0.9375]
    np.testing.assert_allclose(_curve(panel, "Accuracy", "train/accuracy")[1], expected)
    np.testing.assert_array_equal(_curve(panel, "Accuracy", "train/accuracy", raw=True)[1], values)
    assert panel.card("Accuracy").series["train/accuracy"].raw_item.isVisible()

    panel.set_smoothing(0.9)  # recomputed from the raw values, incremental state and all
    panel.append([Metric(5, {"train/accuracy": 4.0})])
    panel.flush()
    finite = [v for v in values + [4.0] if not math.isnan(v)]
    e = 0.0
    for k, v in enumerate(finite, 1):
        e = 0.9 * e + 0.1 * v
    assert _curve(panel, "Accuracy", "train/accuracy")[1][-1] == pytest.approx(e / (1 - 0.9**len(finite)))
    assert panel.slider_value.text() == "0.90"


def test_log_scale_toggle(panel):
    panel.set_smoothing(0)
    panel.set_series("train/lr", [0, 1, 2], [1e-3, 1e-4, 1e-5])
    panel.flush()
    card = panel.card("Learning rate")
    item = card.series["train/lr"].smooth_item
    assert item.opts["logMode"] == [False, False]
    card.log_check.click()
    assert card.log_y and item.opts["logMode"] == [False, True]
    card.plot.getViewBox().autoRange()
    np.testing.assert_allclose(item.getData()[1], [-3.0, -4.0, -5.0])  # drawn as log10
    card.log_check.click()
    assert item.opts["logMode"] == [False, False]


def test_hovering_shows_the_nearest_point_of_every_series(panel):
    panel.set_smoothing(0)
    panel.set_series("train/loss", list(range(1000)), [s / 1000 for s in range(1000)])
    panel.set_series("eval/loss", [0, 250, 500, 750], [0.9, 0.7, 0.5, 0.3])
    panel.set_series("train/accuracy", list(range(1000)), [0.5] * 1000)
    panel.flush()
    card = panel.card("Loss")
    view = card.plot.getViewBox()
    view.setRange(xRange=(0, 1000), yRange=(0, 1), padding=0)
    card.widget.scene().sigMouseMoved.emit(view.mapViewToScene(QPointF(498.2, 0.5)))
    assert card.readout.text() == "step 498 · train/loss 0.498 · eval/loss 0.5 at step 500"
    assert card.crosshair.isVisible() and card.crosshair.value() == 498
    # The other plots follow the same step.
    assert panel.card("Accuracy").readout.text() == "step 498 · train/accuracy 0.5"

    panel.set_smoothing(0.5)
    card.widget.scene().sigMouseMoved.emit(view.mapViewToScene(QPointF(1.0, 0.5)))
    assert card.readout.text().startswith("step 1 · train/loss 0.001 (smoothed 0.0006667)")


def test_legend_names_are_plain_text_and_the_readout_names_the_x_axis(panel):
    panel.set_series("<b>not bold</b>", [0, 1], [1.0, 2.0])
    panel.flush()
    card = panel.card("<b>not bold</b>")
    assert [label.item.toPlainText() for _sample, label in card.legend.items] == ["<b>not bold</b>"]
    card.set_x_axis("KL", "KL from reference")
    assert card.plot.getAxis("bottom").labelText == "KL from reference"
    card.show_hover(0.9, 0)
    assert card.readout.text() == "KL 1 · <b>not bold</b> 2"
    card.series["<b>not bold</b>"].extend([1.25], [3.0], 0)
    card.show_hover(1.3, 0)
    assert card.readout.text() == "KL 1.25 · <b>not bold</b> 3"


def test_unknown_metrics_get_a_plot_and_clear_and_set_groups_reset(panel):
    panel.append([Metric(0, {"custom/thing": 1.0}), Metric(1, {"custom/thing": 2.0})])
    panel.flush()
    assert panel.card("custom/thing").isVisible()
    panel.clear()
    assert not panel.card("custom/thing").isVisible() and panel.empty.isVisible()
    panel.set_groups(PPO_GROUPS)
    assert [c.title for c in panel.cards] == [title for title, _ in PPO_GROUPS]
    panel.append([Metric(0, {"objective/kl": 0.1})])
    panel.flush()
    assert _curve(panel, "KL", "objective/kl")[1].tolist() == [0.1]
