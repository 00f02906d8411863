"""The Evaluate tab: held-out prompts, an evaluation run in a real child process, its table and the
responses behind it, Compare two policies, and the people's ranking with its plot."""

from __future__ import annotations

import json

import pytest
from test_policy_compare import fake_trained_checkpoint

from rlhf_workbench.core.demo import DEMO_HELDOUT_PROMPTS, DEMO_ORIGIN, rule_verdict
from rlhf_workbench.core.rl.config import RLConfig

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def test_evaluate_compare_and_rank_from_the_tab(demo_window, demo_models, qtbot):
    window = demo_window
    store = window.project.store
    run_id = fake_trained_checkpoint(window.project, RLConfig(method="grpo", prompt_origin=DEMO_ORIGIN,
                                                              max_new_tokens=10, reward_model="demo"),
                                     kind="grpo", noise=0.08)
    window.show_tab(window.tabs.indexOf(window.evaluate_view))  # shown: read again
    view = window.evaluate_view
    assert f"{DEMO_HELDOUT_PROMPTS}" in view.heldout_label.text()
    assert view.checked_policies() == [run_id]
    assert view.results.rowCount() == 0 and "No evaluation yet" in view.about_label.text()

    view.hold_out(4)
    assert f"{DEMO_HELDOUT_PROMPTS + 4}" in view.heldout_label.text()
    view.form.widgets["n_prompts"].setValue(8)
    view.start()
    assert not view.evaluate_button.isEnabled()  # one piece of work at a time
    qtbot.waitUntil(lambda: view.task is None, timeout=240_000)
    assert "saved" in view.status.text(), view.status.text()
    assert view.evaluation_box.count() == 1
    assert [view.results.item(r, 0).text() for r in range(view.results.rowCount())] == [
        "reference (demo)", f"{run_id} (step 3)"]
    assert view.results.item(1, 6).text() == "not judged yet"
    assert view.responses.rowCount() == 8  # the selected policy's responses
    assert "Gold: the demo's rules" in view.about_label.text()

    # Compare two policies: the run against its reference, into the Label tab's policies queue.
    view.policy_a.setCurrentIndex(view.policy_a.findData(run_id))
    assert view.policy_b.currentData() == "demo"
    view.compare_count.setValue(12)
    view.start_comparison()
    qtbot.waitUntil(lambda: view.task is None, timeout=240_000)
    assert "went into the Label tab's policies queue" in view.status.text(), view.status.text()
    rows = store.conn.execute(
        """SELECT p.id, pr.messages, ra.text, rb.text FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
           JOIN responses ra ON ra.id = p.response_a_id JOIN responses rb ON rb.id = p.response_b_id
           WHERE p.origin = ?""", (f"policies:{run_id} vs demo",)).fetchall()
    # The ranking is computed in a worker (its bootstrap refits 200 times): its answer comes a moment later.
    qtbot.waitUntil(lambda: view.ranking_label.text() != "Ranking the policies…", timeout=10_000)
    assert rows and "No verdicts between policies yet" in view.ranking_label.text()
    assert view.ranking_plot.isHidden()
    for pair_id, messages, a, b in rows:
        store.add_judgment(pair_id, "ada", rule_verdict(json.loads(messages)[-1]["content"], a, b), shown_left="a")
    window.show_tab(0)
    window.show_tab(window.tabs.indexOf(window.evaluate_view))
    qtbot.waitUntil(lambda: view.ranking.rowCount() > 0, timeout=10_000)
    assert f"from {len(rows)} verdicts" in view.ranking_label.text()
    names = {view.ranking.item(r, 0).text() for r in range(view.ranking.rowCount())}
    assert names == {run_id, "demo"}
    assert len(view.ranking_plot.getPlotItem().items) == 3  # intervals, points, the anchor's line
    assert not view.ranking_plot.isHidden()
    # The table's win rate follows the verdicts as they stand now (the evaluation keeps its day's).
    verdicts = [store.conn.execute("SELECT verdict FROM judgments WHERE pair_id = ?", (pair_id,)).fetchone()[0]
                for pair_id, *_ in rows]
    rate = (verdicts.count("a") + verdicts.count("tie") / 2) / len(verdicts)
    assert view.results.item(1, 6).text().startswith(f"{rate:.0%} [") and view.results.item(1, 6).text().endswith(
        f"of {len(rows)}")


def test_a_project_without_a_trained_policy_says_how_to_get_one(demo_window):
    window = demo_window
    window.show_tab(window.tabs.indexOf(window.evaluate_view))
    view = window.evaluate_view
    assert view.policy_list.count() == 0
    assert view.status.text().startswith("No trained policy yet: train one in the RL or SFT / DPO tab")
    view.start()  # nothing checked: said, nothing started
    assert view.task is None and "Check at least one policy" in view.status.text()
