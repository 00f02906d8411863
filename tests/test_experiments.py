"""Comparing runs (core/experiments.py): the x axes against worked values, the final figures, the
settings that differ, whether validation pairs are the same, and `rlhf-workbench runs --compare`.
Runs are real rows and folders of a real project (start_run), with figures written as a job's
recorder writes them; nothing trains."""

from __future__ import annotations

import json

import pytest

from rlhf_workbench.core.cli import main
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.experiments import (
    ABSENT,
    ABSENT_TEXT,
    compare_runs,
    config_differences,
    final_figures,
    run_labels,
    run_settings,
    setting_text,
    validation_pairs,
    value_text,
)
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.runs.records import start_run
from rlhf_workbench.core.training.pairs import SPLIT_FILE

T0 = 1_700_000_000.0


def _run(project, kind, name, config, *, figures=(), summary=None, val_ids=None):
    """A run as a finished job leaves it: figures (step, name, value, seconds after T0), its summary
    and, for a preference method, the split it kept."""
    ctx = start_run(project, kind=kind, name=name, config=config)
    project.store.save_run_records(ctx.run_id, metrics=[(s, n, v, T0 + t) for s, n, v, t in figures])
    if summary is not None:
        project.store.set_run_status(ctx.run_id, "finished", summary=summary)
    if val_ids is not None:
        (ctx.run_dir / SPLIT_FILE).write_text(json.dumps({"train_ids": [100, 101], "val_ids": val_ids}), encoding="utf-8")
    return ctx.run_id


@pytest.fixture
def runs(project):
    """A reward model, a DPO policy on its validation pairs, and a PPO run."""
    return {
        "rm": _run(
            project, "reward", "rm big batch", RewardConfig(batch_size=8, gradient_accumulation_steps=2, max_steps=3),
            # wall clock: the first figure at T0 + 10 s is the zero
            figures=[(1, "train/loss", 0.9, 10.0), (2, "train/loss", 0.7, 12.0), (3, "train/loss", 0.6, 15.5),
                     (3, "eval/accuracy", 0.75, 16.0)],
            summary={"steps": 3, "eval/loss": 0.5, "eval/accuracy": 0.75, "best_checkpoint": "/somewhere/best",
                     "stopped": False},
            val_ids=[1, 2, 3],
        ),
        "dpo": _run(
            project, "dpo", "dpo", OfflineConfig(method="dpo", batch_size=4),
            figures=[(1, "train/loss", 0.69, 100.0), (2, "train/loss", 0.6, 101.0), (2, "eval/accuracy", 0.8, 101.0)],
            summary={"steps": 2, "eval/accuracy": 0.8, "eval/rewards/margins": 0.25},
            val_ids=[3, 1, 2],
        ),
        "ppo": _run(
            project, "ppo", "ppo", RLConfig(method="ppo", batch_size=16),
            figures=[(1, "objective/kl", 0.1, 0.0), (1, "objective/scores", 1.0, 0.0),
                     (2, "objective/kl", 0.3, 4.0), (2, "objective/scores", 1.5, 4.0),
                     (3, "objective/scores", 2.0, 8.0),  # its KL at update 3 was not logged
                     (4, "objective/kl", 0.2, 12.0), (4, "objective/scores", 1.2, 12.0)],
            summary={"updates": 3, "scores": 2.0, "kl": 0.3},
        ),
    }


def _curve(comparison, label, figure, axis):
    return next((xs, ys) for name, xs, ys in comparison.curves(figure, axis) if name == label)


def test_curves_on_each_x_axis_against_worked_values(project, runs):
    c = compare_runs(project, [runs["rm"], runs["dpo"], runs["ppo"]])
    assert c.labels == ["rm big batch", "dpo", "ppo"]
    # step: as logged
    assert _curve(c, "rm big batch", "train/loss", "step") == ([1.0, 2.0, 3.0], [0.9, 0.7, 0.6])
    # samples: step x batch_size x gradient_accumulation_steps pairs (8 x 2); DPO 4 x 1; PPO 16 episodes an update
    assert _curve(c, "rm big batch", "train/loss", "samples") == ([16.0, 32.0, 48.0], [0.9, 0.7, 0.6])
    assert _curve(c, "dpo", "train/loss", "samples")[0] == [4.0, 8.0]
    assert _curve(c, "ppo", "objective/scores", "samples")[0] == [16.0, 32.0, 48.0, 64.0]
    assert [run.examples_per_step for run in c.runs] == [(16, "pairs"), (4, "pairs"), (16, "episodes")]
    # wall time: seconds since the run's first figure (of any name)
    assert _curve(c, "rm big batch", "train/loss", "wall_time")[0] == [0.0, 2.0, 5.5]
    assert _curve(c, "rm big batch", "eval/accuracy", "wall_time") == ([6.0], [0.75])
    assert _curve(c, "ppo", "objective/scores", "wall_time")[0] == [0.0, 4.0, 8.0, 12.0]
    # KL: the run's objective/kl at the same step, in KL order; update 3 has none, so its point is left out
    assert _curve(c, "ppo", "objective/scores", "kl") == ([0.1, 0.2, 0.3], [1.0, 1.2, 1.5])
    assert [label for label, _, _ in c.curves("train/loss", "kl")] == []  # no KL: not drawn on that axis
    # √KL (Gao et al.'s axis): the same points, at the square root of their KL
    xs, ys = _curve(c, "ppo", "objective/scores", "sqrt_kl")
    assert xs == pytest.approx([0.1**0.5, 0.2**0.5, 0.3**0.5]) and ys == [1.0, 1.2, 1.5]
    assert c.axes() == ["step", "samples", "wall_time", "kl", "sqrt_kl"]
    assert c.without_axis("kl") == ["rm big batch", "dpo"] and c.without_axis("samples") == []
    # the figures more runs share first
    names = c.figure_names()
    assert names == ["eval/accuracy", "train/loss", "objective/kl", "objective/scores"]
    assert c.figure_names(axis="kl") == ["objective/scores"]  # what can be drawn there; KL is the axis itself
    # among figures as widely shared, a given order first (the app's plots by method), then by name
    assert c.figure_names(["objective/scores", "train/loss", "not logged"]) == [
        "train/loss", "eval/accuracy", "objective/scores", "objective/kl"
    ]


def test_on_a_kl_axis_proxy_gold_and_length_come_first(project):
    figures = [(step, name, 0.1 * step, float(step)) for step in (1, 2)
               for name in ("objective/kl", "policy/entropy_avg", "val/response_length", "objective/gold_score",
                            "objective/scores", "aaa/first by name")]
    ids = [_run(project, "grpo", f"grpo {i}", RLConfig(method="grpo"), figures=figures) for i in range(2)]
    c = compare_runs(project, ids)
    assert c.figure_names(["policy/entropy_avg"], axis="sqrt_kl") == [
        "objective/scores", "objective/gold_score", "val/response_length", "policy/entropy_avg", "aaa/first by name"]
    # On other axes the app's own order stands.
    assert c.figure_names(["policy/entropy_avg"], axis="step")[:2] == ["policy/entropy_avg", "aaa/first by name"]


def test_final_figures_are_the_union_of_summaries_with_blanks(project, runs):
    c = compare_runs(project, [runs["rm"], runs["dpo"]])
    assert c.final == [
        ("eval/accuracy", (0.75, 0.8)),  # what decides between them first
        ("eval/loss", (0.5, None)),
        ("steps", (3, 2)),
        ("stopped", (False, None)),
        ("eval/rewards/margins", (None, 0.25)),
    ]  # best_checkpoint is a path, not a figure
    assert final_figures([None, {"a": 1}]) == [("a", (None, 1))]


def test_config_differences_only_what_differs_and_absent_settings(project, runs):
    c = compare_runs(project, [runs["rm"], runs["dpo"]])
    rows = dict(c.differences)
    assert rows["batch_size"] == (8, 4)
    assert rows["gradient_accumulation_steps"] == (2, 1)
    assert rows["max_steps"] == (3, None)  # None: left empty (run for epochs)
    assert rows["beta"] == (ABSENT, 0.1)  # a DPO setting: the reward model has none
    assert rows["base_model"][1] is ABSENT and rows["policy"][0] is ABSENT
    assert "seed" not in rows and "validation_fraction" not in rows  # equal in both
    assert "sft_data" not in rows  # SFT's alone: absent for both, so no difference

    # PPO against GRPO: the settings each algorithm alone has are absent for the other
    grpo = _run(project, "grpo", "grpo", RLConfig(method="grpo", batch_size=16, num_generations=4))
    rows = dict(compare_runs(project, [runs["ppo"], grpo]).differences)
    assert rows["method"] == ("ppo", "grpo")
    assert rows["num_generations"] == (ABSENT, 4) and rows["kl_coef"] == (0.3, ABSENT)
    assert "batch_size" not in rows


def test_config_differences_pure():
    rows = config_differences([{"a": 1, "b": True, "c": None}, {"a": 1.0, "b": 1, "c": None, "d": "x"}])
    assert rows == [("b", (True, 1)), ("d", (ABSENT, "x"))]  # 1 == 1.0; a switch is not a count
    assert config_differences([{"a": 1}, {"a": 1}]) == []
    # a run keeps a setting it saved that its method has since dropped; an unknown kind has what it saved
    settings = run_settings("dpo", {"beta": 0.2, "sft_data": "chosen", "retired_setting": 3})
    assert settings["beta"] == 0.2 and settings["retired_setting"] == 3 and settings["max_steps"] is None
    assert "sft_data" not in settings and run_settings("mystery", {"x": 1}) == {"x": 1}


def test_same_validation_pairs(project, runs):
    c = compare_runs(project, [runs["rm"], runs["dpo"], runs["ppo"]])
    assert c.validation.same is True and c.validation.shared == 3
    assert c.validation.describe() == (
        "Validation pairs: the same 3 pairs for rm big batch and dpo: their accuracy and loss compare directly."
    )
    other = _run(project, "reward", "rm other split", RewardConfig(), val_ids=[1, 2, 4, 5])
    c = compare_runs(project, [runs["rm"], other])
    assert c.validation.same is False and c.validation.shared == 2
    assert c.validation.describe().startswith(
        "Validation pairs: not the same (rm big batch 3, rm other split 4; 2 in common)"
    )
    c = compare_runs(project, [runs["rm"], runs["ppo"]])
    assert c.validation.same is None and "only rm big batch" in c.validation.describe()
    assert validation_pairs({"a": None, "b": None}).describe() == (
        "Validation pairs: none of these runs validated on labelled pairs."
    )


def test_labels_tell_runs_with_one_name_apart():
    runs = [{"id": "rm-1", "name": "same"}, {"id": "rm-2", "name": "same"}, {"id": "dpo-1", "name": "<b>x</b>"}]
    assert run_labels(runs) == ["same (rm-1)", "same (rm-2)", "<b>x</b>"]


def test_figures_read_short_and_settings_exact():
    assert [value_text(v) for v in (None, True, 12345, 0.123456, 1e-7, float("nan"))] == [
        "", "yes", "12,345", "0.1235", "1e-07", "nan"
    ]
    # two learning rates that differ must not read alike
    assert [setting_text(v) for v in (None, ABSENT, False, 16384, 0.000100001, 0.0001, 60.0, "a b")] == [
        "", ABSENT_TEXT, "false", "16384", "0.000100001", "0.0001", "60.0", "a b"
    ]


def test_compare_refuses_one_run_and_unknown_ones(project, runs):
    with pytest.raises(WorkbenchError, match="two or more"):
        compare_runs(project, [runs["rm"], runs["rm"]])
    with pytest.raises(WorkbenchError, match="has no run 'nope'"):
        compare_runs(project, [runs["rm"], "nope"])


def test_the_runs_command_compares(project, runs, capsys):
    path = str(project.path)
    assert main(["runs", path, "--compare", runs["rm"], runs["dpo"]]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[lines.index("Final figures:") + 1].split() == ["figure", "rm", "big", "batch", "dpo"]
    assert "eval/accuracy         0.75          0.8" in out
    assert "Validation pairs: the same 3 pairs for rm big batch and dpo" in out
    beta = next(line for line in lines if line.startswith("beta "))
    assert beta.split() == ["beta", ABSENT_TEXT, "0.1"]
    assert f"({ABSENT_TEXT}: not a setting of that run's method)" in out

    assert main(["runs", path, "--compare", runs["rm"], runs["ppo"], "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["final_figures"]["steps"] == {runs["rm"]: 3, runs["ppo"]: None}
    assert data["same_validation_pairs"] is None and data["validation_pairs"] == {runs["rm"]: 3}
    assert data["settings_that_differ"]["kl_coef"] == {runs["ppo"]: 0.3}

    assert main(["runs", path, "--compare", runs["rm"]]) == 1
    assert "two or more" in capsys.readouterr().err
