"""The RL tab: the method picker and each method's form, the pickers, what a run reports (curves, samples, warnings), Compare with
reference in a child process, the Runs tab's human win rate, and a real PPO run started from the
tab on the demo project (after a reward model is trained from the Reward model tab)."""

from __future__ import annotations

import sqlite3

import pytest
from job_fixtures import CountConfig
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from rlhf_workbench.app.main import (
    configure_application,
    create_main_window,
    parse_args,
)
from rlhf_workbench.app.views.rl_panels import MAX_SAMPLE_ROWS
from rlhf_workbench.app.views.runs_view import COLUMNS
from rlhf_workbench.core.compare import compare_origin
from rlhf_workbench.core.demo import DEMO_ORIGIN, create_demo_project
from rlhf_workbench.core.events import Checkpoint, Log, Metric, Progress, Sample
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.runs.work import Work, execute

pytestmark = [pytest.mark.usefixtures("demo_models"), pytest.mark.timeout(900)]

PPO_FIGURES = ("objective/rlhf_reward", "objective/scores", "objective/kl", "policy/entropy_avg",
               "policy/clipfrac_avg", "val/clipfrac_avg", "loss/value_avg", "val/response_length",
               "perf/episodes_per_s")


def ppo_like(config: CountConfig, ctx, sink, stop) -> dict:
    """A job that reports what the PPO job reports (figures by TRL's names, samples with their KL,
    a watchdog warning, a checkpoint holding a policy folder), without training anything: for the
    tab's display of a stored run. Run in-process by `execute` (named "test_app_rl_view:ppo_like")."""
    for step in range(1, config.steps + 1):
        sink(Metric(step, {name: step / (i + 1) for i, name in enumerate(PPO_FIGURES)} | {"lr": 1e-5}))
        sink(Sample(step, f"User: question {step}", f"<b>answer</b> {step}", score=step / 10, extra={"kl": step / 100}))
    sink(Log("update 2: objective/kl 25.0 passed warn_kl 20", "warning"))
    sink(Log("an ordinary line"))
    folder = ctx.run_dir / "checkpoints" / f"step-{config.steps:06d}"
    (folder / "policy").mkdir(parents=True)
    sink(Checkpoint(config.steps, str(folder)))
    return {"updates": config.steps, "stopped": bool(config.note)}


@pytest.fixture
def window(demo_window):
    demo_window.show_tab(4)
    return demo_window


def _stored_run(window, *, stopped: bool = False) -> str:
    config = CountConfig(steps=4, sleep_s=0, note="stopped" if stopped else None)
    ctx = start_run(window.project, kind="ppo", name="stored", config=config)
    execute(Work.job("test_app_rl_view:ppo_like", config, ctx), lambda e: None, lambda: False)
    return ctx.run_id


def _texts(table, row):
    return [table.item(row, c).text() for c in range(table.columnCount())]


def test_pickers_and_form(window, qtbot):
    view = window.rl_view
    assert window.tabs.currentWidget() is view
    assert not {"policy", "reward_model", "prompt_origin"} & set(view.form.widgets)  # picked above the form
    assert {"kl_coef", "cliprange", "lora", "total_episodes", "warn_kl"} <= set(view.form.widgets)
    qtbot.waitUntil(lambda: view.policy_box.count() > 0 and view.prompts_box.count() > 1, timeout=20_000)
    assert view.policy_box.spec() == "demo" and view.reward_box.spec() == "latest"
    assert view.prompts_box.itemData(0) is None and view.prompts_box.itemText(1).startswith(f"{DEMO_ORIGIN}  (")
    assert view.run_box.count() == 0 and not view.compare_button.isEnabled() and not view.resume_button.isEnabled()

    # Refused before anything starts: no reward model yet, then a setting that does not fit.
    errors = []
    view.error.connect(errors.append)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(view, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # Start, as in the reward tab
    qtbot.waitUntil(lambda: bool(errors))  # a button's shortcut clicks it a moment later
    assert "no finished reward model" in errors[-1] and not window.jobs.is_running
    view.form.widgets["num_mini_batches"].setValue(3)
    view.reward_box.setEditText("/some/reward/folder")
    qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
    assert "num_mini_batches" in errors[-1] and not window.jobs.is_running
    assert view.run_box.count() == 0  # no run was recorded
    view.form.widgets["num_mini_batches"].setValue(4)

    # The project's finished reward runs and its PPO runs' policies are offered.
    reward_config = CountConfig(steps=2, sleep_s=0)
    reward = start_run(window.project, kind="reward", name="my reward model", config=reward_config)
    execute(Work.job("job_fixtures:count", reward_config, reward), lambda e: None, lambda: False)
    ppo_run = _stored_run(window)
    view.choices.refresh()
    qtbot.waitUntil(lambda: view.reward_box.findData(reward.run_id) >= 0, timeout=20_000)
    policy_index = next(i for i in range(view.policy_box.count()) if ppo_run in view.policy_box.itemText(i))
    assert view.policy_box.itemData(policy_index).endswith("step-000004/policy")
    assert view.reward_box.spec() == "/some/reward/folder"  # typed by hand: kept through a refresh

    view.policy_box.setCurrentIndex(policy_index)
    view.reward_box.setCurrentIndex(view.reward_box.findData(reward.run_id))
    view.prompts_box.setCurrentIndex(1)
    view.form.widgets["kl_coef"].setText("0.1")
    config = view.config()
    assert isinstance(config, RLConfig)
    assert (config.policy, config.reward_model, config.prompt_origin, config.kl_coef) == (
        view.policy_box.itemData(policy_index), reward.run_id, DEMO_ORIGIN, 0.1
    )


def test_the_method_picker_shows_each_method_its_own_settings(window, qtbot):
    view = window.rl_view
    assert [view.method_box.itemText(i) for i in range(view.method_box.count())] == ["PPO", "RLOO", "GRPO"]
    assert view.chosen_method() == "ppo" and "method" not in view.form.widgets  # picked above the form
    shown = {name for name in view.form.widgets if view.form.is_shown(name)}
    assert {"kl_coef", "cliprange", "vf_coef", "num_ppo_epochs", "learning_rate"} <= shown
    assert not {"num_generations", "beta", "epsilon", "loss_type", "scale_rewards"} & shown
    advantage = view.samples.COLUMNS.index("Advantage")
    assert view.samples.table.isColumnHidden(advantage)  # PPO's advantages are per token

    view.set_method("grpo")
    assert not view.samples.table.isColumnHidden(advantage)
    shown = {name for name in view.form.widgets if view.form.is_shown(name)}
    assert {"num_generations", "beta", "epsilon", "epsilon_high", "loss_type", "scale_rewards", "num_iterations",
            "learning_rate", "batch_size"} <= shown
    assert not {"kl_coef", "cliprange", "vf_coef", "value_model", "num_ppo_epochs", "normalize_advantages"} & shown
    # What a person changed for PPO does not follow into GRPO's run (it would be refused there).
    view.set_method("ppo")
    view.form.widgets["kl_coef"].setText("0.1")
    view.set_method("grpo")
    view.form.widgets["beta"].setText("0.02")
    view.reward_box.setEditText("/some/reward/folder")
    config = view.config()
    assert (config.method, config.beta, config.kl_coef) == ("grpo", 0.02, RLConfig().kl_coef)
    assert {c.title for c in view.curves.cards} >= {"Score spread"}  # GRPO's own curves
    view.set_method("rloo")
    assert view.form.is_shown("normalize_advantages") and not view.form.is_shown("loss_type")
    assert view.config().method == "rloo"
    # A batch that is not whole groups is refused, naming the setting, before a run exists.
    errors = []
    view.error.connect(errors.append)
    view.form.widgets["batch_size"].setValue(30)
    qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
    assert "batch_size" in errors[-1] and "num_generations" in errors[-1] and view.run_box.count() == 0


def test_a_stored_run_shows_its_curves_samples_warnings_and_log(window, qtbot):
    view = window.rl_view
    run_id = _stored_run(window, stopped=True)
    view.refresh_runs()
    assert view.run_id == run_id and view.run_box.currentData() == run_id
    steps, values = view.curves.series_data("objective/rlhf_reward")
    assert list(steps) == [1, 2, 3, 4] and list(values) == [1.0, 2.0, 3.0, 4.0]
    assert {c.title for c in view.curves.cards if c.has_data} == {
        "Reward", "KL", "Entropy", "Clip fraction", "Value loss", "Response length", "Episodes/s"
    }
    assert view.curves.series_data("lr")[0].size == 0  # the live tab shows its groups only

    table = view.samples.table
    assert table.rowCount() == 4
    assert _texts(table, 0) == ["4", "User: question 4", "<b>answer</b> 4", "+0.400", "0.040", ""]  # newest first, plain
    table.selectRow(1)
    assert view.samples.response.text.toPlainText() == "<b>answer</b> 3"
    assert "kl 0.03" in view.samples.response.subtitle.text()

    assert not view.banner.isHidden()
    assert view.banner.message.text() == "update 2: objective/kl 25.0 passed warn_kl 20"
    assert view.banner.counter.text() == "1 warning"
    assert "an ordinary line" in view.log.toPlainText()
    # It stopped with a checkpoint: it can be resumed, and compared.
    assert view.resume_button.isEnabled() and view.compare_button.isEnabled()
    assert not view.stop_button.isEnabled()


@pytest.mark.slow
def test_live_events_reach_curves_samples_banner_and_status(window, qtbot):
    view = window.rl_view
    # A run of this project whose job ran in the window's controller (a tiny fixture job), so that
    # what the controller relays next is this run's.
    config = CountConfig(steps=3, sleep_s=0)
    ctx = start_run(window.project, kind="ppo", name="live", config=config)
    with qtbot.waitSignal(window.jobs.finished, timeout=60_000):
        window.jobs.start("job_fixtures:count", config, ctx)
    view.refresh_runs(select=ctx.run_id)
    assert view.run_id == window.jobs.run_id == ctx.run_id
    assert _texts(view.samples.table, 0)[:3] == ["2", "prompt 2", "response <b>2</b>"]  # from the database
    assert view.banner.isHidden()

    jobs = window.jobs
    jobs.metrics.emit([Metric(s, {"objective/rlhf_reward": s / 10, "objective/kl": 0.5, "perf/episodes_per_s": 2.5})
                       for s in range(3, 9)])
    view.curves.flush()
    steps, values = view.curves.series_data("objective/rlhf_reward")
    assert list(steps) == [3, 4, 5, 6, 7, 8] and values[-1] == pytest.approx(0.8)
    assert view.curves.card("Reward").has_data

    jobs.progress.emit(Progress(8, 20, "update 8 of 20", eta_s=65))
    assert view.status.text() == "Update 8 of 20 · ETA 1:05 · 2.5 episodes/s"

    jobs.sample.emit(Sample(8, "User: hi", "<i>hello</i>", 0.5, {"kl": 0.125}))
    assert _texts(view.samples.table, 0) == ["8", "User: hi", "<i>hello</i>", "+0.500", "0.125", ""]
    view.samples.table.selectRow(0)
    for step in range(9, 12):
        jobs.sample.emit(Sample(step, f"prompt {step}", f"response {step}", None, {}))
    assert view.samples.table.selectionModel().selectedRows()[0].row() == 3  # it moved down with its sample
    for step in range(12, 9 + MAX_SAMPLE_ROWS + 50):
        jobs.sample.emit(Sample(step, f"prompt {step}", f"response {step}", None, {}))
    table = view.samples.table
    assert table.rowCount() == MAX_SAMPLE_ROWS and len(view.samples.samples) == MAX_SAMPLE_ROWS
    assert _texts(table, 0)[:3] == [f"{8 + MAX_SAMPLE_ROWS + 50:,}", f"prompt {8 + MAX_SAMPLE_ROWS + 50}",
                                    f"response {8 + MAX_SAMPLE_ROWS + 50}"]
    assert _texts(table, 0)[3:] == ["", "", ""]  # no score, no KL, no advantage: empty cells
    assert view.samples.response.text.toPlainText() == "<i>hello</i>"  # the one being read stays shown

    jobs.log.emit(Log("update 9: responses are 2.5 times as long as at the start while the reward rises", "warning"))
    assert not view.banner.isHidden() and view.banner.counter.text() == "1 warning"
    jobs.log.emit(Log("just information"))
    jobs.log.emit(Log("update 10: policy/entropy_avg 0.01 is below warn_entropy 0.05", "warning"))
    assert view.banner.message.text() == "update 10: policy/entropy_avg 0.01 is below warn_entropy 0.05"
    assert view.banner.counter.text() == "2 warnings"
    assert "⚠ update 9: responses" in view.log.toPlainText() and "just information" in view.log.toPlainText()
    view.banner.log_button.click()
    assert view.bottom.currentWidget() is view.log
    view.banner.dismiss_button.click()
    assert view.banner.isHidden()
    jobs.log.emit(Log("update 11: half the responses are the same text", "warning"))
    assert not view.banner.isHidden() and view.banner.counter.text() == "3 warnings"

    # Another run shown: the live run's events are not drawn into it.
    other = _stored_run(window)
    view.refresh_runs(select=other)
    jobs.sample.emit(Sample(99, "p", "r", 1.0, {}))
    jobs.log.emit(Log("not for this run", "warning"))
    assert view.samples.table.rowCount() == 4 and view.banner.counter.text() == "1 warning"


@pytest.mark.slow
def test_compare_with_reference_fills_the_label_queue_and_the_runs_tab_shows_the_win_rate(window, qtbot):
    from test_policy_compare import fake_trained_checkpoint

    view = window.rl_view
    run_id = fake_trained_checkpoint(window.project, RLConfig(prompt_origin=DEMO_ORIGIN, max_new_tokens=12))
    view.refresh_runs(select=run_id)
    assert view.compare_button.isEnabled()
    view.compare_count.setValue(6)

    # Cancel (the progress dialog's button) reaches the child, which adds nothing.
    from rlhf_workbench.app import tasks

    qtbot.mouseClick(view.compare_button, Qt.MouseButton.LeftButton)
    tasks.stop_all()
    qtbot.waitUntil(view.compare_button.isEnabled, timeout=300_000)
    assert "cancelled" in view.compare_status.text() and not window.project.store.pair_ids(origin=compare_origin(run_id))

    added = []
    view.pairs_added.connect(added.append)
    qtbot.mouseClick(view.compare_button, Qt.MouseButton.LeftButton)
    assert not view.compare_button.isEnabled()  # one comparison at a time
    # Until the comparison ends, either way: a failed one then says why instead of a timeout.
    qtbot.waitUntil(view.compare_button.isEnabled, timeout=300_000)
    assert added and "went into the Label queue" in view.compare_status.text(), view.compare_status.text()
    assert view.compare_button.isEnabled()
    origin = compare_origin(run_id)
    pair_ids = window.project.store.pair_ids(origin=origin)
    assert len(pair_ids) == added[0] >= 4

    runs = window.runs_view
    window.show_tab(window.tabs.indexOf(runs))  # the Runs tab re-reads when shown
    runs.select_run(run_id)
    row = next(r for r in range(runs.table.rowCount()) if runs.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == run_id)
    cell = runs.table.item(row, COLUMNS.index("Human win rate"))
    assert cell.text() == f"not judged yet ({len(pair_ids)} pairs)"
    assert "People preferred the policy 0 times" in runs.fields["win_rate"].text()

    store = window.project.store
    for pair_id, verdict in zip(pair_ids, ("a", "a", "b", "tie")):
        store.add_judgment(pair_id, "ada", verdict, shown_left="a", seconds=3.0)
    window.show_tab(4)
    assert view.compare_status.text() == "People preferred this policy to its reference in 62% of 4 verdicts."
    window.show_tab(window.tabs.indexOf(runs))
    cell = runs.table.item(row, COLUMNS.index("Human win rate"))
    assert cell.text() == "62% of 4"
    assert "People preferred the policy 2 times and its reference 1 times" in runs.fields["win_rate"].text()


@pytest.mark.slow
def test_train_a_reward_model_then_start_stop_resume_ppo_from_the_tab(window, qtbot, tmp_path):
    # A reward model first, from its tab, briefly (as the reward tab's own test does).
    reward = window.reward_view
    qtbot.waitUntil(lambda: reward.model_box.count() > 0, timeout=10_000)
    reward.form.widgets["max_steps"].setText("40")
    reward.form.widgets["save_every"].setValue(20)
    reward.form.widgets["eval_every"].setValue(20)
    with qtbot.waitSignal(window.jobs.finished, timeout=300_000):
        reward.start()

    window.show_tab(4)
    view = window.rl_view
    qtbot.waitUntil(lambda: view.policy_box.count() > 0 and view.prompts_box.count() > 1, timeout=20_000)
    form = view.form.widgets
    form["batch_size"].setValue(8)
    form["num_mini_batches"].setValue(2)
    form["num_ppo_epochs"].setValue(1)
    # Long enough (100 updates, a few seconds) that Stop always lands mid-run: 16 took one second.
    form["total_episodes"].setValue(8 * 100)
    form["max_new_tokens"].setValue(12)
    form["sample_every"].setValue(1)
    form["save_every"].setValue(50)
    assert not view.stop_button.isEnabled()
    qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
    assert window.jobs.is_running and view.stop_button.isEnabled() and not view.start_button.isEnabled()
    run_id = view.run_id
    assert view.run_box.currentData() == run_id and window.jobs.run_id == run_id
    # Live: curves and samples grow while the job runs in its own process.
    qtbot.waitUntil(lambda: len(view.curves.series_data("objective/rlhf_reward")[0]) >= 1, timeout=300_000)
    qtbot.waitUntil(lambda: view.samples.table.rowCount() > 0, timeout=60_000)
    assert view.curves.series_data("objective/kl")[0].size and view.curves.series_data("perf/episodes_per_s")[0].size
    assert view.status.text().startswith("Update ")
    with qtbot.waitSignal(window.jobs.finished, timeout=180_000) as stopped:
        qtbot.mouseClick(view.stop_button, Qt.MouseButton.LeftButton)
    assert stopped.args[0].stopped
    assert view.resume_button.isEnabled() and "Resume continues" in view.status.text()
    assert view.compare_button.isEnabled()  # its stop checkpoint holds a policy
    with qtbot.waitSignal(window.jobs.finished, timeout=300_000) as finished:
        qtbot.mouseClick(view.resume_button, Qt.MouseButton.LeftButton)
    assert not finished.args[0].stopped
    steps, _ = view.curves.series_data("objective/rlhf_reward")
    assert list(steps) == sorted(set(steps)) and steps[-1] == 100  # resumed curves do not double back
    assert view.compare_button.isEnabled()

    conn = sqlite3.connect(tmp_path / "demo" / "project.db")
    try:
        assert conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone() == ("finished",)
        assert conn.execute("SELECT count(*) FROM samples WHERE run_id = ? AND extra LIKE '%kl%'", (run_id,)).fetchone()[0]
    finally:
        conn.close()


@pytest.mark.slow
def test_grpo_runs_live_from_the_tab_with_each_group_side_by_side(window, qtbot):
    from rlhf_workbench.core.reward.config import RewardConfig
    from rlhf_workbench.core.reward.method import REWARD_MODEL

    reward_config = RewardConfig(max_steps=40, eval_every=40, save_every=40)
    reward = start_run(window.project, kind="reward", name="quick", config=reward_config)
    assert hasattr(execute(Work.job(REWARD_MODEL.job, reward_config, reward), lambda e: None, lambda: False), "summary")
    view = window.rl_view
    view.choices.refresh()
    qtbot.waitUntil(lambda: view.reward_box.findData(reward.run_id) >= 0 and view.policy_box.count() > 0, timeout=20_000)
    view.set_method("grpo")
    form = view.form.widgets
    form["batch_size"].setValue(16)  # 4 prompts x 4 responses
    form["num_mini_batches"].setValue(2)
    form["total_episodes"].setValue(16 * 3)
    form["max_new_tokens"].setValue(12)
    form["sample_every"].setValue(1)
    form["samples_per_report"].setValue(2)
    with qtbot.waitSignal(window.jobs.finished, timeout=300_000) as finished:
        qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
        assert "two models" not in view.status.text() and "three models" in view.status.text()  # beta > 0
    assert finished.args[0].summary["updates"] == 3
    run = window.project.store.run(view.run_id)
    assert run["kind"] == "grpo" and run["name"].startswith("GRPO of") and view.run_box.currentText().startswith("GRPO")
    assert view.curves.card("Score spread").has_data and view.curves.card("KL").has_data

    # The newest update's two prompts, each with its group of four, the rows of a group together.
    table = view.samples.table
    rows = [_texts(table, r) for r in range(8)]
    assert all(row[0] == "3" for row in rows)
    prompts = [row[1] for row in rows]
    assert prompts[:4] == [prompts[0]] * 4 and prompts[4:] == [prompts[4]] * 4
    advantages = [float(row[5]) for row in rows]
    # GRPO's advantage is the score minus its group's mean: each group's add up to nothing.
    assert abs(sum(advantages[:4])) < 2.5e-3 and abs(sum(advantages[4:])) < 2.5e-3  # shown to 3 decimals
    assert all(float(row[5]) == pytest.approx(float(row[3]) - sum(float(r[3]) for r in rows[g:g + 4]) / 4, abs=2e-3)
               for g in (0, 4) for row in rows[g:g + 4])
    shades = {table.item(r, 0).background().color().name() for r in range(8)}
    assert len(shades) == 2  # one group shaded, the other not


def test_a_batch_the_gpus_cannot_share_is_refused_before_a_run_exists(qtbot, tmp_path, monkeypatch):
    from rlhf_workbench.core.runs.torchrun import visible_gpu_count

    # Two visible GPUs (by the variable torch and the box both read) put the GPUs box in both tabs.
    # The count is read once per process: forgotten here, and again after (for the tests that follow).
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    visible_gpu_count.cache_clear()
    create_demo_project(tmp_path / "demo").close()
    configure_application(QApplication.instance())
    window = create_main_window(parse_args([str(tmp_path / "demo"), "--annotator", "ada"]))
    qtbot.addWidget(window)
    try:
        for view, odd in ((window.rl_view, {"batch_size": 63, "num_mini_batches": 1, "gradient_accumulation_steps": 1}),
                          (window.reward_view, {"batch_size": 7})):
            assert view.gpus_box is not None and view.gpus_box.maximum() == 2
            errors = []
            view.error.connect(errors.append)
            if view is window.rl_view:
                qtbot.waitUntil(lambda: view.policy_box.count() > 0, timeout=20_000)
                view.reward_box.setEditText("/some/reward/folder")
            else:
                qtbot.waitUntil(lambda: bool(view.model_spec()), timeout=20_000)
            for name, value in odd.items():
                view.form.widgets[name].setValue(value)
            view.gpus_box.setValue(2)
            qtbot.mouseClick(view.start_button, Qt.MouseButton.LeftButton)
            assert errors and errors[-1].startswith(f"batch_size: {odd['batch_size']} ") and "2 ranks" in errors[-1]
            view.gpus_box.setValue(1)  # one process takes any batch: the refusal was the GPUs'
            assert view.config().batch_size == odd["batch_size"]
        assert not window.jobs.is_running and window.project.store.runs() == []
    finally:
        window.jobs.shutdown(10)
        visible_gpu_count.cache_clear()
