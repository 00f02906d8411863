"""Shared test fixtures.

Qt runs offscreen: the platform is chosen when the QApplication is made, which pytest-qt does
lazily, so setting it here (before any test imports Qt) is early enough.
"""

import os
import shutil
import socket

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


@pytest.fixture
def workbench_home(tmp_path, monkeypatch):
    """An empty user data folder: the app's settings, recent projects and the demo go here."""
    home = tmp_path / "home"
    monkeypatch.setenv("RLHF_WORKBENCH_HOME", str(home))
    return home


@pytest.fixture
def demo_window(qtbot, tmp_path, workbench_home):
    """The main window on a fresh demo project, labelling as "ada"; its job is ended afterwards."""
    from PySide6.QtWidgets import QApplication

    from rlhf_workbench.app.main import configure_application, create_main_window, parse_args
    from rlhf_workbench.core.demo import create_demo_project

    create_demo_project(tmp_path / "demo").close()
    configure_application(QApplication.instance())
    window = create_main_window(parse_args([str(tmp_path / "demo"), "--annotator", "ada"]))
    qtbot.addWidget(window)
    yield window
    window.jobs.shutdown(10)


@pytest.fixture(scope="session")
def built_demo_models(tmp_path_factory):
    """The demo reward model and the demo policy (which trains a little: ~10-15 s), built once
    for the whole session in a user data folder of their own, through the app's own
    ensure_demo_model / ensure_demo_policy; tests copy them into their home."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("demo-models-home")
        patch.setenv("RLHF_WORKBENCH_HOME", str(path))
        from rlhf_workbench.core.demo_policy import ensure_demo_policy
        from rlhf_workbench.core.models import ensure_demo_model

        ensure_demo_model()
        ensure_demo_policy()
    return path / "models"


@pytest.fixture
def demo_models(workbench_home, built_demo_models):
    """This test's user data folder with the demo models already built in it, for tests whose
    runs load the demo policy (a child process would otherwise build it again)."""
    shutil.copytree(built_demo_models, workbench_home / "models", dirs_exist_ok=True)
    return workbench_home / "models"


@pytest.fixture(scope="module")
def home(tmp_path_factory, built_demo_models):
    """One user data folder for a whole test module, with the demo models in it, for modules that
    run the demo policy in several tests."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("home")
        shutil.copytree(built_demo_models, path / "models")
        patch.setenv("RLHF_WORKBENCH_HOME", str(path))
        yield path


@pytest.fixture
def no_network(monkeypatch):
    """Any internet connection fails, naming the address (unix sockets, e.g. torch's, still work)."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"this test must not use the network (tried {address!r})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def project(tmp_path):
    """An open, empty project in a temporary folder."""
    from rlhf_workbench.core.project import Project

    with Project.create(tmp_path / "p") as project:
        yield project


@pytest.fixture
def make_project(tmp_path):
    """make_project(name, pairs) -> path of a closed project on disk holding those pairs.

    `pairs` are (prompt text or Conversation, response A, response B, origin, verdict, annotator);
    verdict and annotator may be None.
    """
    from rlhf_workbench.core.bulk import BulkWriter
    from rlhf_workbench.core.project import Project
    from rlhf_workbench.core.records import user_prompt

    def make(name: str, pairs=()):
        with Project.create(tmp_path / name, name=name) as project:
            with project.store.transaction():
                writer = BulkWriter(project.store, import_id=None, source="dataset", source_name="tests")
                for prompt, a, b, origin, verdict, annotator in pairs:
                    prompt = user_prompt(prompt) if isinstance(prompt, str) else prompt
                    writer.add_pair(prompt, a, b, origin=origin, verdict=verdict, annotator=annotator)
                writer.flush()
            return project.path

    return make



@pytest.fixture
def read_only_project(tmp_path, make_project):
    """A closed project with 4 pairs (2 judged by dataset:tests) that cannot be written: a folder
    and file without write permission, or, for root (whom permissions do not stop), a small disk
    mounted read-only. Skipped where neither can be made."""
    import subprocess

    pairs = [(f"prompt {i}", f"yes {i}", f"no {i}", "tests", "a" if i < 2 else None,
              "dataset:tests" if i < 2 else None) for i in range(4)]
    made = make_project("ro", pairs)
    if os.geteuid() != 0:
        modes = [(p, p.stat().st_mode) for p in (made, made / "project.db", made / "runs")]
        for p, mode in modes:
            p.chmod(mode & ~0o222)
        yield made
        for p, mode in reversed(modes):
            p.chmod(mode)
        return
    disk = tmp_path / "ro-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"as root, a read-only project needs a read-only mount, and mounting failed: {mounted.stderr.strip()}")
    try:
        shutil.copytree(made, disk / "ro")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        yield disk / "ro"
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)

# The suite ends by leaving the process without the interpreter's final clean-up. Once, after every
# test had passed, that clean-up crashed (SIGSEGV, exit 139: libraries with native threads and Qt
# objects being torn down in an order they do not expect), which would fail CI for nothing the
# tests check. The exit status is pytest's own; output is flushed first.
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    session.config._workbench_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    status = getattr(config, "_workbench_exitstatus", None)
    if status is None or os.environ.get("WORKBENCH_TEST_CLEAN_EXIT") == "1":
        return
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


# -- a local stand-in for the Hugging Face hub (tests/hub_server.py) -----------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny Llama folder for the hub to serve, built once per module."""
    from hub_server import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("served") / "tiny-llama")


@pytest.fixture
def hub(tmp_path, monkeypatch, tiny_model):
    """The hub serving tiny_model as hub_server.REPO, HF_ENDPOINT pointing at it (hub_server.serving)."""
    from hub_server import serving

    with serving(tiny_model, tmp_path, monkeypatch) as server:
        yield server
