"""Take a screenshot of the main window: `python -m rlhf_workbench.app.screenshot OUT.png`.

Runs the real app (under Xvfb on a machine with no display, e.g.
`xvfb-run -s "-screen 0 1600x1000x24" python -m rlhf_workbench.app.screenshot shot.png`) on a
fresh demo project, with a temporary HOME so that the person's own settings and projects are
never touched and the demo sits where it would for a new user (~/.local/share/... on Linux); a few pairs get verdicts from "you" so that the overview shows people's labels
next to the dataset's. The window grabs itself once the event loop has painted it.

`--compare preference` or `--compare rl` first trains a few short runs on the demo from a terminal
(`rlhf-workbench train-rm / dpo / rl`: two reward models and a DPO policy on the first one's split,
or a reward model and then PPO, RLOO and GRPO against it), then selects them (all but the RL
runs' reward model) in the Runs tab, presses Compare… and shoots the Compare window instead
(`--axis` picks its x axis).

`--evaluate` trains the `--compare rl` runs, evaluates them on the demo's held-out prompts
(`rlhf-workbench evaluate`), has each meet the reference and PPO meet GRPO (`compare-policies`), lets
a stand-in person judge those pairs by the demo's own rules (demo.rule_verdict), and shoots the
Evaluate tab: the table of figures and the people's ranking.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SIZE = (1280, 800)
RL_METHODS = ("ppo", "rloo", "grpo")
OFFLINE_METHODS = ("dpo", "sft")
# (row, verdict) given by "you" before the shot, so the overview has a person's labels in it.
SAMPLE_VERDICTS = [(1, "b"), (2, "a"), (3, "b"), (4, "tie"), (5, "a"), (6, "both_bad"), (9, "b")]
# --compare: the runs trained first, as (command, name, settings, compared); "{rm}" is the first run's id.
COMPARE_RUNS = {
    "preference": [
        ("train-rm", "Reward model, lr 5e-4", ["max_steps=150", "log_every=5", "eval_every=25"], True),
        ("train-rm", "Reward model, lr 1e-4", ["max_steps=150", "log_every=5", "eval_every=25", "learning_rate=1e-4"], True),
        ("dpo", "DPO on its split", ["max_steps=150", "split_from={rm}"], True),
    ],
    "rl": [
        ("train-rm", "Reward model", ["max_steps=150"], False),  # what they train against
        ("rl", "PPO", ["method=ppo", "total_episodes=2048"], True),
        ("rl", "RLOO", ["method=rloo", "total_episodes=2048"], True),
        ("rl", "GRPO", ["method=grpo", "total_episodes=2048"], True),
    ],
    # bench/overoptimisation_demo.py's two runs: the proxy and the gold against sqrt(KL).
    "overoptimisation": [
        ("train-rm", "Reward model", [], False),
        ("rl", "GRPO, beta 0.05", ["method=grpo", "total_episodes=32768"], True),
        ("rl", "GRPO, beta 0.001", ["method=grpo", "total_episodes=32768", "beta=0.001"], True),
    ],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the PNG to write")
    parser.add_argument(
        "--tab", type=int, default=0,
        help="which tab to show: 0 Data, 1 Label, 2 Reward model, 3 SFT / DPO, 4 RL, 5 Evaluate, 6 Runs",
    )
    parser.add_argument("--row", type=int, default=3, help="which pair to select in the Data tab")
    parser.add_argument("--diff", action="store_true", help="Label tab: highlight where the responses differ")
    parser.add_argument(
        "--mid-training",
        action="store_true",
        help="Reward model tab (--tab 2), SFT / DPO tab (--tab 3) or RL tab (--tab 4, after a reward model): start "
        "training, shoot while it runs",
    )
    parser.add_argument(
        "--method", choices=(*RL_METHODS, *OFFLINE_METHODS), default=None,
        help="the method to run: ppo (the default), rloo or grpo in the RL tab; dpo (the default) or sft in the SFT / DPO tab",
    )
    parser.add_argument(
        "--compare", choices=tuple(COMPARE_RUNS), default=None,
        help="train short runs on the demo first (two reward models and DPO, or PPO, RLOO and GRPO), then shoot the "
        "Compare window of the Runs tab",
    )
    parser.add_argument("--axis", default="step", help="--compare: the x axis (step, samples, wall_time, kl, sqrt_kl)")
    parser.add_argument("--evaluate", action="store_true",
                        help="train PPO, RLOO and GRPO, evaluate and rank them, and shoot the Evaluate tab")
    args = parser.parse_args(argv)

    home = tempfile.mkdtemp(prefix="rlhf-workbench-shot-")
    # Before the app reads any setting or path: everything it writes lands in the temporary HOME.
    os.environ["HOME"] = home
    for variable in ("RLHF_WORKBENCH_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        os.environ.pop(variable, None)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QAbstractItemView, QApplication

    from rlhf_workbench.core.demo import create_demo_project
    from rlhf_workbench.core.project import demo_project_path

    from .main import configure_application, create_main_window, parse_args

    with create_demo_project(demo_project_path()) as project:
        pairs = project.store.pairs_page(0, max(r for r, _ in SAMPLE_VERDICTS) + 1)
        for row, verdict in SAMPLE_VERDICTS:
            project.store.add_judgment(pairs[row]["id"], "you", verdict, shown_left="a", seconds=4.0)
    compared = _train_runs(demo_project_path(), COMPARE_RUNS[args.compare or "rl"]) if args.compare or args.evaluate else []
    if args.evaluate:
        _evaluate_and_judge(demo_project_path(), compared)

    app = QApplication(sys.argv[:1])
    configure_application(app)
    window = create_main_window(parse_args(["--demo", "--annotator", "you"]))
    window.resize(*SIZE)
    window.show_tab(args.tab)
    window.data_view.select_pair_row(args.row)

    if args.diff:
        window.label_view.judge_page.diff_box.setChecked(True)

    def shoot() -> None:
        ok = window.grab().save(str(args.output))
        print(f"{'wrote' if ok else 'could not write'} {args.output}")
        app.exit(0 if ok else 1)

    def shoot_when_trained_a_while() -> None:
        view = window.reward_view
        if not window.jobs.is_running and view.run_id is None and view.model_box.count():
            view.start()
        steps, _ = view.curves.series_data("train/loss")
        evals, _ = view.curves.series_data("eval/accuracy")
        if len(steps) >= 40 and len(evals) >= 2:
            shoot()
        else:
            QTimer.singleShot(250, shoot_when_trained_a_while)

    rl_started: list[bool] = []  # once: an RL run that cannot start would otherwise be retried
    window.rl_view.set_method(args.method if args.method in RL_METHODS else "ppo")
    window.offline_view.set_method(args.method if args.method in OFFLINE_METHODS else "dpo")

    def shoot_when_offline_ran_a_while() -> None:
        view = window.offline_view
        if not window.jobs.is_running and view.run_id is None and view.policy_box.count():
            form = view.form.widgets
            # Long enough on the demo (a few hundred steps, several seconds) to be caught mid-run,
            # with a point per step and a handful of validations.
            form["epochs"].setText("30")
            form["log_every"].setValue(1)
            form["eval_every"].setValue(25)
            view.start()
        steps, _ = view.curves.series_data("train/loss")
        evals, _ = view.curves.series_data("eval/loss")
        ran = view.live_run_id is not None
        if ran and (len(steps) >= 120 and len(evals) >= 4 or not window.jobs.is_running and len(steps)):
            shoot()
        else:
            QTimer.singleShot(250, shoot_when_offline_ran_a_while)

    def shoot_when_rl_ran_a_while() -> None:
        reward, rl = window.reward_view, window.rl_view
        if not window.jobs.is_running:
            if reward.run_id is None and reward.model_box.count():
                reward.form.widgets["max_steps"].setText("150")  # RL needs a reward model: a quick one
                reward.start()
            elif reward.run_id is not None and not rl_started and rl.policy_box.count():
                rl_started.append(True)
                rl.start()
        steps, _ = rl.curves.series_data("objective/rlhf_reward")
        if rl.live_run_id is not None and len(steps) >= 15 and rl.samples.table.rowCount():
            row = _first_row_of_a_spread_group(rl.samples)
            rl.samples.table.selectRow(row)
            rl.samples.table.scrollTo(rl.samples.table.model().index(max(row - 1, 0), 0),
                                      QAbstractItemView.ScrollHint.PositionAtTop)
            shoot()
        else:
            QTimer.singleShot(250, shoot_when_rl_ran_a_while)

    def shoot_compare() -> None:
        runs = window.runs_view
        runs.select_runs(compared)
        compare = runs.compare_selected()
        compare.set_axis(args.axis)
        compare.resize(*SIZE)

        def grab() -> None:
            ok = compare.grab().save(str(args.output))
            print(f"{'wrote' if ok else 'could not write'} {args.output}")
            app.exit(0 if ok else 1)

        QTimer.singleShot(700, grab)

    if args.evaluate:
        window.show_tab(window.tabs.indexOf(window.evaluate_view))
        QTimer.singleShot(700, shoot)
    elif args.compare:
        window.show_tab(window.tabs.indexOf(window.runs_view))
        QTimer.singleShot(500, shoot_compare)
    elif args.mid_training:
        shown = window.tabs.widget(args.tab)
        QTimer.singleShot(500, shoot_when_rl_ran_a_while if shown is window.rl_view
                          else shoot_when_offline_ran_a_while if shown is window.offline_view
                          else shoot_when_trained_a_while)
    else:
        QTimer.singleShot(500, shoot)  # after the first paints and any delayed layout
    try:
        return app.exec()
    finally:
        window.jobs.shutdown(10)
        window.close()
        shutil.rmtree(home, ignore_errors=True)


def _train_runs(project: Path, runs: list[tuple[str, str, list[str], bool]]) -> list[str]:
    """Train each run from a terminal, as a person would (`rlhf-workbench COMMAND PROJECT --name ... --set ...`);
    the ids of those to compare, in order."""
    from rlhf_workbench.core.project import Project

    ids: list[str] = []
    compared: list[str] = []
    for command, name, settings, compare in runs:
        sets = [arg for setting in settings for arg in ("--set", setting.format(rm=ids[0] if ids else ""))]
        code = "import sys; from rlhf_workbench.core.cli import main; sys.exit(main(sys.argv[1:]))"
        subprocess.run([sys.executable, "-c", code, command, str(project), "--name", name, *sets],
                       check=True, stdout=subprocess.DEVNULL)
        with Project.open(project) as opened:
            ids.append(opened.store.runs(newest_first=True)[0]["id"])
        if compare:
            compared.append(ids[-1])
    return compared


def _cli(*args: str) -> None:
    code = "import sys; from rlhf_workbench.core.cli import main; sys.exit(main(sys.argv[1:]))"
    subprocess.run([sys.executable, "-c", code, *args], check=True, stdout=subprocess.DEVNULL)


def _evaluate_and_judge(project: Path, runs: list[str]) -> None:
    """Evaluate the runs, make pairs where policies meet, and judge them by the demo's rules as "you"."""
    import json

    from rlhf_workbench.core.demo import rule_verdict
    from rlhf_workbench.core.project import Project

    for run in runs:
        _cli("compare-policies", str(project), run, "demo", "--prompts", "36")
    _cli("compare-policies", str(project), runs[0], runs[-1], "--prompts", "36", "--seed", "1")
    with Project.open(project) as opened:
        store = opened.store
        rows = store.conn.execute(
            """SELECT p.id, pr.messages, ra.text, rb.text FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
               JOIN responses ra ON ra.id = p.response_a_id JOIN responses rb ON rb.id = p.response_b_id
               WHERE p.origin LIKE 'policies:%'"""
        ).fetchall()
        for pair_id, messages, a, b in rows:
            verdict = rule_verdict(json.loads(messages)[-1]["content"], a, b)
            store.add_judgment(pair_id, "you", verdict, shown_left="a", seconds=3.0)
    _cli("evaluate", str(project), *[arg for run in runs for arg in ("--policy", run)])


def _first_row_of_a_spread_group(samples) -> int:
    """The first sample whose advantage is not zero (a group whose responses scored differently,
    which shows what the baseline did), else the first."""
    table, column = samples.table, samples.COLUMNS.index("Advantage")
    for row in range(table.rowCount()):
        item = table.item(row, column)
        if item is not None and item.text().strip() not in ("", "+0.000", "-0.000", "0.000"):
            return row
    return 0


if __name__ == "__main__":
    sys.exit(main())
