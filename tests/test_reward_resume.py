"""A run stopped and resumed ends exactly where an uninterrupted run ends.

The model has attention dropout on purpose, so the test also shows that the RNG is restored: the
data order, the optimizer, the scheduler and every random draw continue as if never stopped.
"""

import pytest
import torch
from safetensors.torch import load_file

from rlhf_workbench.core.events import Checkpoint, Finished
from rlhf_workbench.core.models import build_demo_model
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.reward.train import JOB_PATH
from rlhf_workbench.core.runs.records import resume_run, start_run
from rlhf_workbench.core.runs.work import Work, execute

TINY = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "vocab_size": 400, "attention_dropout": 0.2}


@pytest.fixture(scope="module")
def dropout_model(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("tiny") / "model", TINY)


def _stop_after(n):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) >= n

    return stop


def _weights(run_dir):
    last = run_dir / "checkpoints" / "last"
    name = "adapter_model.safetensors" if (last / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(str(last / name))


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_stopped_and_resumed_run_matches_an_uninterrupted_one(make_project, dropout_model, lora):
    pairs = [(f"Question {i}?", f"Kind answer {i}.", f"Go away {i}.", "t", "ab"[i % 2], "dataset:x") for i in range(30)]
    path = make_project("p", pairs)
    config = RewardConfig(
        base_model=str(dropout_model), epochs=3, batch_size=4, gradient_accumulation_steps=2, learning_rate=1e-2,
        warmup_ratio=0.2, log_every=1, eval_every=2, save_every=3, keep_last=1, torch_threads=1,
        lora=lora, lora_r=4, lora_target_modules="q_proj,v_proj",
    )
    with Project.open(path) as project:
        straight = start_run(project, kind="reward", name="straight", config=config)
        interrupted = start_run(project, kind="reward", name="interrupted", config=config)

    whole = execute(Work.job(JOB_PATH, config, straight), lambda e: None, lambda: False)
    assert isinstance(whole, Finished) and not whole.stopped, whole
    total = whole.summary["steps"]
    assert total == 9  # 24 training pairs, 6 batches, 3 steps an epoch: the stop falls mid-epoch

    first = execute(Work.job(JOB_PATH, config, interrupted), lambda e: None, _stop_after(4))
    assert isinstance(first, Finished) and first.stopped and first.summary["steps"] == 4
    with Project.open(path) as project:
        again = resume_run(project, interrupted.run_id)
    assert again.resume and again.resume_step == 4
    events = []
    second = execute(Work.job(JOB_PATH, config, again), events.append, lambda: False)
    assert isinstance(second, Finished) and not second.stopped and second.summary["steps"] == total
    assert [e.step for e in events if isinstance(e, Checkpoint)] == [6, 9]

    a, b = _weights(straight.run_dir), _weights(interrupted.run_dir)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    with Project.open(path) as project:
        losses_a = project.store.metric_series(straight.run_id, "train/loss")
        losses_b = project.store.metric_series(interrupted.run_id, "train/loss")
    assert [s for s, _ in losses_b] == list(range(1, total + 1))  # every step once, none twice
    assert [v for _, v in losses_b] == pytest.approx([v for _, v in losses_a], abs=1e-6)


def _damage(folder, name):
    path = folder / name
    if name.endswith(".safetensors"):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # a copy or a save cut short
    else:
        path.write_text(path.read_text()[:40])  # JSON cut mid-object
    return path


@pytest.mark.parametrize("damaged", ["model.safetensors", "trainer_state.json", "config.json"])
def test_a_damaged_checkpoint_is_named_and_resume_falls_back_to_the_newest_intact_one(
        make_project, dropout_model, damaged, capsys):
    """A truncated or cut file in the last checkpoint: score and score-pairs name it in one line
    (they printed a traceback), and --resume continues from the checkpoint before it, saying so
    (it named no file and marked the run failed, calling it a bug)."""
    from rlhf_workbench.core.cli import main

    pairs = [(f"Question {i}?", f"Kind answer {i}.", f"Go away {i}.", "t", "ab"[i % 2], "dataset:x") for i in range(12)]
    path = make_project("p", pairs)
    config = RewardConfig(base_model=str(dropout_model), max_steps=6, batch_size=4, log_every=1, save_every=2,
                          keep_last=3, validation_fraction=0.0, torch_threads=1)
    with Project.open(path) as project:
        ctx = start_run(project, kind="reward", name="damaged", config=config)
    assert isinstance(execute(Work.job(JOB_PATH, config, ctx), lambda e: None, lambda: False), Finished)
    last = ctx.run_dir / "checkpoints" / "step-000006"
    assert (ctx.run_dir / "checkpoints" / "best").resolve() == last.resolve()  # no validation: best is last
    broken = _damage(last, damaged)

    if damaged != "trainer_state.json":  # scoring reads the model's files only
        for argv in (["score", str(last), "hello", "--device", "cpu"],
                     ["score-pairs", str(path), "--run", ctx.run_id, "--device", "cpu"]):
            capsys.readouterr()
            assert main(argv) == 1, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and str(broken) in err[0] and "damaged" in err[0], err
            assert "bug" not in err[0] and "Traceback" not in err[0]

    capsys.readouterr()
    assert main(["train-rm", str(path), "--resume", ctx.run_id]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    with Project.open(path) as project:
        run = project.store.run(ctx.run_id)
        assert run["status"] == "finished", run["error"]
        assert [c["step"] for c in project.store.checkpoints(ctx.run_id)] == [2, 4, 6]
    log = (ctx.run_dir / "log.txt").read_text()
    assert str(broken) in log and "resuming from the one at step 4 instead" in log, log
    assert "at step 4 of 6" in log and str(broken) in out
    from rlhf_workbench.core.models import damaged_files

    assert damaged_files(last) == []  # saved again, whole


def test_a_checkpoint_another_run_started_from_survives_its_own_runs_keep_last(make_project, dropout_model):
    """Run B starts from run A's step-2 checkpoint; A is resumed and, with keep_last 1, used to
    prune step 2, and then B could not be resumed: it loads its starting model again."""
    pairs = [(f"Question {i}?", f"Kind answer {i}.", f"Go away {i}.", "t", "ab"[i % 2], "dataset:x") for i in range(12)]
    path = make_project("p", pairs)

    def until_first_checkpoint(config, ctx):
        events = []
        result = execute(Work.job(JOB_PATH, config, ctx), events.append,
                         lambda: any(isinstance(e, Checkpoint) for e in events))
        assert isinstance(result, Finished) and result.stopped, result

    a_config = RewardConfig(base_model=str(dropout_model), max_steps=6, batch_size=4, save_every=2, keep_last=1,
                            validation_fraction=0.0, torch_threads=1)
    with Project.open(path) as project:
        a = start_run(project, kind="reward", name="a", config=a_config)
    until_first_checkpoint(a_config, a)
    start = a.run_dir / "checkpoints" / "step-000002"
    b_config = RewardConfig(base_model=str(start), max_steps=4, batch_size=4, save_every=2, keep_last=1,
                            validation_fraction=0.0, torch_threads=1)
    with Project.open(path) as project:
        b = start_run(project, kind="reward", name="b", config=b_config)
    until_first_checkpoint(b_config, b)

    with Project.open(path) as project:
        a_again = resume_run(project, a.run_id)
    assert isinstance(execute(Work.job(JOB_PATH, a_config, a_again), lambda e: None, lambda: False), Finished)
    assert start.is_dir()  # kept past keep_last, for b
    from rlhf_workbench.core.training.dependents import checkpoint_dependents

    assert checkpoint_dependents(a.run_dir) == {"step-000002": [f"{b.run_id} (base model)"]}
    assert not (a.run_dir / "checkpoints" / "step-000004").exists()  # the rest is pruned as before

    with Project.open(path) as project:
        b_again = resume_run(project, b.run_id)
    result = execute(Work.job(JOB_PATH, b_config, b_again), lambda e: None, lambda: False)
    assert isinstance(result, Finished) and result.summary["steps"] == 4, result
