"""Deleting a run (core/run_deletion.py, `rlhf-workbench runs`): records and folder go, pairs and
verdicts stay, runs that started from it are named, a running run is refused."""

from __future__ import annotations

import json
import threading
import time

import pytest
from job_fixtures import CountConfig

from rlhf_workbench.core.cli import main
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.run_deletion import delete_run, plan_deletion
from rlhf_workbench.core.runs.records import run_dir_of, start_run
from rlhf_workbench.core.runs.work import Work, execute

PAIRS = [("Tell me about bees.", "They make honey.", "No.", "ppo-vs-ref:", "a", "ann")]


def _counted(project, name="counted", kind="reward", config=None) -> str:
    config = config or CountConfig(steps=4, sleep_s=0, checkpoint_every=2)
    ctx = start_run(project, kind=kind, name=name, config=config)
    execute(Work.job("job_fixtures:count", config, ctx), lambda e: None, lambda: False)
    return ctx.run_id


def _rows(store, table: str, run_id: str) -> int:
    return store.conn.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()[0]


def test_deleting_removes_the_runs_records_and_folder_and_keeps_pairs_and_verdicts(make_project):
    with Project.open(make_project("p", PAIRS)) as project:
        store = project.store
        doomed, kept = _counted(project), _counted(project, "kept")
        (pair_id,) = [row[0] for row in store.conn.execute("SELECT id FROM pairs")]
        store.save_pair_scores(doomed, [(pair_id, 0.4)])
        folder = run_dir_of(project, store.run(doomed))
        assert folder.is_dir() and store.checkpoints(doomed) and store.metric_names(doomed)
        before = store.counts()

        plan = delete_run(project, doomed)

        assert plan.folder == folder and plan.folder_bytes > 0
        assert store.run(doomed) is None and not folder.exists()
        for table in ("metrics", "samples", "checkpoints", "pair_scores"):
            assert _rows(store, table, doomed) == 0, table
        after = store.counts()
        assert after["runs"] == before["runs"] - 1
        assert {k: v for k, v in after.items() if k != "runs"} == {k: v for k, v in before.items() if k != "runs"}
        assert store.run(kept)["status"] == "finished" and run_dir_of(project, store.run(kept)).is_dir()
        assert _rows(store, "metrics", kept) > 0


def test_runs_that_started_from_it_are_named_and_compare_pairs_counted(make_project):
    path = make_project("p", [(p, "x", "y", o, "a", "ann") for p, _, _, o, _, _ in PAIRS])
    with Project.open(path) as project:
        store = project.store
        reward = _counted(project, "rm")
        reward_dir = run_dir_of(project, store.run(reward))
        by_id = start_run(project, kind="ppo", name="by id", config={"reward_model": reward, "policy": "demo"})
        pinned = start_run(project, kind="ppo", name="latest", config={"reward_model": "latest", "policy": "demo"})
        (pinned.run_dir / "models.json").write_text(json.dumps({"reward_model": reward}), encoding="utf-8")
        from_checkpoint = start_run(project, kind="reward", name="on", config={"model": str(reward_dir / "checkpoints")})
        unrelated = start_run(project, kind="ppo", name="other", config={"reward_model": "latest", "policy": "demo"})

        plan = plan_deletion(project, reward)

        assert sorted(plan.dependents) == sorted([
            f"{by_id.run_id} (reward model)", f"{pinned.run_id} (reward model)", f"{from_checkpoint.run_id} (model)",
        ])
        assert unrelated.run_id not in " ".join(plan.dependents)
        text = plan.describe()
        assert by_id.run_id in text and "cannot be resumed" in text and str(reward_dir) in text
        assert store.run(reward) is not None and reward_dir.is_dir()  # planning changes nothing
        # A PPO run's "Compare with reference" pairs are counted, and stay.
        ppo = start_run(project, kind="ppo", name="compared", config={})
        store.conn.execute("UPDATE pairs SET origin = ?", (f"ppo-vs-ref:{ppo.run_id}",))
        assert plan_deletion(project, ppo.run_id).compare_pairs == 1
        delete_run(project, ppo.run_id)
        assert store.counts()["pairs"] == 1 and store.counts()["judgments"] == 1


def test_a_running_run_is_refused_and_an_unknown_one_named(project):
    stop = threading.Event()
    config = CountConfig(steps=10_000, sleep_s=0.01)
    ctx = start_run(project, kind="reward", name="busy", config=config)
    worker = threading.Thread(target=execute, args=(Work.job("job_fixtures:count", config, ctx), lambda e: None, stop.is_set))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while project.store.run(ctx.run_id)["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(WorkbenchError, match=f"Run {ctx.run_id} is running; stop it"):
            delete_run(project, ctx.run_id)
        assert project.store.run(ctx.run_id) is not None and ctx.run_dir.is_dir()
    finally:
        stop.set()
        worker.join(30)
    delete_run(project, ctx.run_id)  # stopped: now it can go
    assert project.store.run(ctx.run_id) is None
    with pytest.raises(WorkbenchError, match="has no run 'nope'"):
        plan_deletion(project, "nope")


def test_a_folder_outside_the_projects_runs_folder_is_left_alone(project, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine", encoding="utf-8")
    project.store.create_run("rm-outside", kind="reward", name="outside", config={}, output_dir=str(outside))
    plan = delete_run(project, "rm-outside")
    assert plan.folder is None and plan.left_folder == outside
    assert project.store.run("rm-outside") is None and (outside / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_the_runs_command_lists_and_deletes_only_with_yes(project, capsys):
    run_id = _counted(project)
    path = str(project.path)
    assert main(["runs", path]) == 0
    assert run_id in capsys.readouterr().out
    assert main(["runs", path, "--delete", run_id]) == 0
    out = capsys.readouterr().out
    assert "Its folder goes" in out and "add --yes" in out
    assert project.store.run(run_id) is not None
    assert main(["runs", path, "--delete", run_id, "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] is True
    assert project.store.run(run_id) is None
    assert main(["runs", path, "--delete", run_id]) == 1
    assert f"has no run '{run_id}'" in capsys.readouterr().err
