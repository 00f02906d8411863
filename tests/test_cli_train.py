"""`rlhf-workbench train-rm` and `score`, run as a person runs them: a child process, real files."""

import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_workbench.core.models import build_demo_model
from rlhf_workbench.core.project import Project

CLI = Path(sys.executable).with_name("rlhf-workbench")
TINY = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 400}


def cli(*args):
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("tiny") / "model", TINY)


def _labelled(make_project, n=24):
    return make_project("p", [(f"Question {i}?", f"Kind answer {i}.", f"Go away {i}.", "t", "a", "dataset:x")
                              for i in range(n)])


@pytest.mark.parametrize("command", ["train-rm", "score"])
def test_help(command):
    result = cli(command, "--help")
    assert result.returncode == 0 and "usage: rlhf-workbench" in result.stdout


@pytest.mark.slow
def test_train_rm_records_a_run_and_score_reads_its_checkpoint(make_project, tiny_model, tmp_path):
    path = _labelled(make_project)
    config = tmp_path / "rm.toml"
    config.write_text(
        f'base_model = "{tiny_model}"\nmax_steps = 6\nbatch_size = 4\nlog_every = 2\neval_every = 3\n'
        "save_every = 3\ntorch_threads = 1\nlearning_rate = 0.01\n"
    )
    result = cli("train-rm", path, "--config", config, "--set", "warmup_ratio=0.0", "--name", "from the cli")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "step 2/6  loss" in out and "accuracy" in out and "pairs/s" in out
    assert "step 3/6  validation loss" in out
    assert "checkpoint at step 3:" in out and "checkpoint at step 6:" in out
    assert "done: steps 6" in out and "best checkpoint:" in out
    with Project.open(path) as project:
        (row,) = project.store.runs()
        run = project.store.run(row["id"])
        assert run["status"] == "finished" and run["name"] == "from the cli"
        assert run["config"]["warmup_ratio"] == 0.0 and run["config"]["max_steps"] == 6
        assert project.store.metric_series(run["id"], "train/loss")[-1][0] == 6
    best = path / "runs" / run["id"] / "checkpoints" / "best"
    assert best.is_dir()

    texts = ["User: Question 3?\n\nAssistant: Kind answer 3.", "User: Question 3?\n\nAssistant: Go away 3."]
    scored = cli("score", path / "runs" / run["id"], *texts, "--device", "cpu")
    assert scored.returncode == 0, scored.stderr
    values = [float(line) for line in scored.stdout.split()]
    from rlhf_workbench.core.reward.evaluate import score

    assert values == pytest.approx(score(best, texts, device="cpu"), abs=1e-5)
    as_prompt = cli("score", best, "--prompt", "Question 3?", "Kind answer 3.", "Go away 3.", "--device", "cpu")
    assert [float(line) for line in as_prompt.stdout.split()] == pytest.approx(values, abs=1e-5)


@pytest.mark.slow
def test_errors_are_one_line_and_exit_1(make_project, tmp_path):
    unlabelled = make_project("u", [("q", "a", "b", "t", None, None)])
    bad = tmp_path / "bad.toml"
    bad.write_text("epochz = 3\n")
    for args, words in (
        (("train-rm", unlabelled, "--config", bad), f"{bad}: unknown setting 'epochz'"),
        (("train-rm", unlabelled, "--set", "learning_rate=-1"), "learning_rate: must be between"),
        (("train-rm", unlabelled), "no labelled pairs to train on: the project has 1 pairs"),
        (("score", tmp_path / "nothing", "hello"), "no such model folder"),
    ):
        result = cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, result.stderr)


@pytest.mark.slow
def test_ctrl_c_stops_with_a_checkpoint_and_says_how_to_resume(make_project, tiny_model):
    """Ctrl+C in a terminal: a polite stop. (Python 3.11's Thread.join, interrupted once, then
    believes the job's thread ended: the process used to quit without the checkpoint, the run left
    'running'.) SIGTERM takes the same path: tests/test_torchrun_job.py stops ranks with it."""
    import signal

    path = _labelled(make_project)
    process = subprocess.Popen(
        [str(CLI), "train-rm", str(path), "--set", f"base_model={tiny_model}", "--set", "max_steps=100000",
         "--set", "batch_size=4", "--set", "log_every=1", "--set", "eval_every=1000000", "--set", "save_every=1000000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # As from a terminal: a suite started in the background (`make test &`) hands its children
        # SIGINT ignored, and the command then rightly stays deaf to Ctrl+C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for line in process.stdout:
            if line.startswith("step 3/"):
                break
        process.send_signal(signal.SIGINT)
        rest = process.stdout.read()
        assert process.wait(timeout=60) == 0, rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "stopping: writing a checkpoint..." in rest and "resume with: rlhf-workbench train-rm" in rest
    with Project.open(path) as project:
        (run,) = project.store.runs()
        assert run["status"] == "cancelled"
        (checkpoint,) = project.store.checkpoints(run["id"])
        assert checkpoint["step"] >= 3


@pytest.mark.parametrize("bad", ["missing", "a file", "no config.json", "bad config.json"])
def test_a_bad_base_model_is_refused_before_a_run_exists(make_project, tmp_path, capsys, bad):
    """Each try used to leave a failed run behind; a config.json that does not parse was "a bug"."""
    from rlhf_workbench.core.cli import main

    path = _labelled(make_project)
    model = tmp_path / "model"
    if bad == "a file":
        model.write_text("not a folder")
    elif bad == "no config.json":
        model.mkdir()
    elif bad == "bad config.json":
        model.mkdir()
        (model / "config.json").write_text('{"model_type": "llama", ')
        (model / "model.safetensors").write_bytes(b"")
    assert main(["train-rm", str(path), "--set", f"base_model={model}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "base_model" in err[0] and str(model) in err[0] and "bug" not in err[0], err
    if bad == "bad config.json":
        assert f"{model / 'config.json'}: is not valid JSON" in err[0]
    with Project.open(path) as project:
        assert project.store.runs() == []


@pytest.mark.slow
def test_sigterm_right_after_the_run_is_created_stops_it_resumable(make_project, tiny_model):
    """SIGTERM before the handlers were installed killed the command outright, leaving a run
    'created' for ever with no checkpoint. Now it is noted from the start and the run stops politely."""
    import signal
    import time

    path = _labelled(make_project)
    process = subprocess.Popen(
        [str(CLI), "train-rm", str(path), "--set", f"base_model={tiny_model}", "--set", "max_steps=50",
         "--set", "batch_size=4", "--set", "torch_threads=1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list((path / "runs").glob("*/config.toml")):  # start_run has begun: the run exists
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.002)
        process.send_signal(signal.SIGTERM)
        out = process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, out
    assert "stopping: writing a checkpoint..." in out and "resume with: rlhf-workbench train-rm" in out
    with Project.open(path) as project:
        (run,) = project.store.runs()
        assert run["status"] == "cancelled"
        assert project.store.checkpoints(run["id"])
