"""The installers (packaging/).

Tests marked `packaging` run the built app folder (dist/rlhf-workbench, from `make package`); they
are left out of `make test` (pyproject's addopts) and run by `make test-packaging`:
    QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -m packaging tests/test_packaging.py
RLHF_WORKBENCH_BUNDLE names another built folder. The unmarked tests (the GPU runtime's rules,
the launcher's order, the build's inputs) are quick and run in every `make test`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rlhf_workbench.core import gpu_runtime

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = Path(os.environ.get("RLHF_WORKBENCH_BUNDLE", ROOT / "dist" / "rlhf-workbench"))
PROGRAM = BUNDLE / ("rlhf-workbench-cli.exe" if sys.platform == "win32" else "rlhf-workbench")


# -- quick: no bundle needed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "variant"),
    [("580.65.06", "cu130"), ("575.51", "cu128"), ("550.54.15", "cu126"), ("525.60.13", "cu126"),
     ("470.256", None), ("unknown", "cu126")],
)
def test_the_cuda_build_follows_the_driver(version, variant):
    assert gpu_runtime.choose_variant(gpu_runtime.Driver(version)) == variant
    assert gpu_runtime.choose_variant(None) is None


def test_from_source_nothing_is_activated(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_HOME", str(tmp_path))
    monkeypatch.delenv(gpu_runtime.PATH_ENV, raising=False)
    before = list(sys.path)
    assert gpu_runtime.activate() is None
    assert sys.path == before


def _fake_runtime(variant: str, torch_base: str | None) -> Path:
    folder = gpu_runtime.runtime_dir(variant)
    folder.mkdir(parents=True)
    gpu_runtime._write_json(folder / gpu_runtime.READY_NAME, {"torch_base": torch_base, "variant": variant})
    return folder


def test_an_installed_runtime_is_used_only_frozen_complete_matching_and_with_a_driver(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_WORKBENCH_HOME", str(tmp_path))
    monkeypatch.delenv(gpu_runtime.PATH_ENV, raising=False)
    monkeypatch.delenv(gpu_runtime.CPU_ONLY_ENV, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(gpu_runtime, "driver_present", lambda: True)
    base = gpu_runtime.base_version(gpu_runtime.bundled_torch_version())
    folder = _fake_runtime("cu126", base)
    _fake_runtime("cu128", "1.0.0")  # for another torch: never listed, never used
    assert gpu_runtime.installed_variants() == ["cu126"]
    assert gpu_runtime.activate() is None  # installed, not chosen
    with pytest.raises(RuntimeError):
        gpu_runtime.set_active("cu128")
    gpu_runtime.set_active("cu126")
    monkeypatch.setenv(gpu_runtime.CPU_ONLY_ENV, "1")
    assert gpu_runtime.activate() is None  # the way back for one start
    monkeypatch.delenv(gpu_runtime.CPU_ONLY_ENV)
    monkeypatch.setattr(gpu_runtime, "driver_present", lambda: False)
    assert gpu_runtime.activate() is None  # the driver went away: CPU
    monkeypatch.setattr(gpu_runtime, "driver_present", lambda: True)
    assert gpu_runtime.activate() == folder
    assert sys.path[0] == str(folder)
    assert gpu_runtime.command_line("use-cpu") == 0
    assert gpu_runtime.active_variant() is None
    assert gpu_runtime.command_line("remove") == 0
    assert not folder.exists()


def test_status_is_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLHF_WORKBENCH_HOME", str(tmp_path))
    assert gpu_runtime.command_line("status") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["bundled_torch"].startswith("2.13.0")
    assert status["installed"] == [] and status["active"] is None


def test_the_launcher_activates_then_supports_freezing_then_starts_the_command():
    text = (ROOT / "packaging" / "launcher.py").read_text()
    order = [text.index(s) for s in ("\ngpu_runtime.activate()", "\nmultiprocessing.freeze_support()", "\nfrom rlhf_workbench.core.cli")]
    assert order == sorted(order)


def test_the_package_extra_is_pinned_and_build_outputs_are_ignored():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(r.startswith("pyinstaller") for r in project["project"]["optional-dependencies"]["package"])
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert any(p.startswith("pyinstaller==") for p in pins) and "torch==2.13.0" in pins
    ignored = subprocess.run(["git", "check-ignore", "build/x", "dist/x"], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == ["build/x", "dist/x"]


def test_pyarrow_is_a_pinned_dependency_the_bundle_keeps():
    """Parquet, Arrow and zstd files are read through pyarrow: the app needs it, not only the tests."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(r.startswith("pyarrow") for r in project["project"]["dependencies"])
    assert any(p.startswith("pyarrow==") for p in (ROOT / "constraints.txt").read_text().splitlines())
    spec = (ROOT / "packaging" / "rlhf-workbench.spec").read_text()
    excludes = spec[spec.index("excludes = ["):]
    excludes = excludes[: excludes.index("]")]
    assert '"pyarrow"' not in excludes and '"pyarrow.parquet"' in spec


# -- the built app -------------------------------------------------------------------------------


def _bundle_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLHF_WORKBENCH_", "QT_", "PYTHON"))}
    env["RLHF_WORKBENCH_HOME"] = str(tmp_path / "home")
    env.pop("DISPLAY", None)
    return env


def _no_network(command: list[str]) -> list[str]:
    """The command in a network namespace of its own (no network at all), where that is allowed."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return [unshare, "-rn", *command]
    return command


@pytest.fixture(scope="module")
def program() -> Path:
    if not PROGRAM.exists():
        pytest.fail(f"{PROGRAM} is missing: build it first with `make package`")
    return PROGRAM


@pytest.mark.packaging
def test_the_built_app_passes_its_selftest_with_no_network_and_no_display(program, tmp_path):
    done = subprocess.run(_no_network([str(program), "--selftest"]), capture_output=True, text=True,
                          env=_bundle_env(tmp_path), timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("selftest ok:") and "(frozen app)" in line and "window drawn" in line, line


@pytest.mark.packaging
def test_the_built_app_fails_its_selftest_loudly(program, tmp_path):
    done = subprocess.run([str(program), "--selftest", "--selftest-timeout", "0.001"], capture_output=True,
                          text=True, env=_bundle_env(tmp_path), timeout=300)
    assert done.returncode != 0
    assert "selftest FAILED at " in done.stderr


@pytest.mark.packaging
def test_the_built_app_runs_the_command_line(program, tmp_path):
    env = _bundle_env(tmp_path)
    assert subprocess.run([str(program), "--version"], capture_output=True, text=True, env=env).stdout.startswith(
        "rlhf-workbench ")
    subprocess.run([str(program), "demo", str(tmp_path / "demo")], check=True, env=env, capture_output=True)
    stats = subprocess.run([str(program), "stats", str(tmp_path / "demo"), "--json"], capture_output=True, text=True,
                           env=env, check=True)
    assert json.loads(stats.stdout)["counts"]["pairs"] > 0


@pytest.mark.packaging
def test_the_built_app_downloads_a_model(program, tmp_path, hub):
    """Download… fetches through huggingface_hub, which imports parts of itself by name at run
    time: the bundle must hold them. A local stand-in for the hub (tests/hub_server.py) serves."""
    from hub_server import REPO

    done = subprocess.run([str(program), "download", REPO, "--yes"], capture_output=True, text=True,
                          env=_bundle_env(tmp_path), stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "apache-2.0" in done.stdout
    assert any(path.endswith("/model.safetensors") for method, path, _ in hub.requests if method == "GET")
    assert list((tmp_path / "hf" / "hub").rglob("model.safetensors"))


@pytest.mark.packaging
def test_the_built_app_imports_parquet_and_zstd(program, tmp_path):
    """Both are read through pyarrow, which PyInstaller finds only through the spec's hidden imports:
    a bundle without them would refuse these files, though the venv reads them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"Question {i}?", "chosen": f"Answer {i}.", "rejected": "No."} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    with pa.CompressedOutputStream(str(tmp_path / "pairs.jsonl.zst"), "zstd") as out:
        out.write("".join(json.dumps({**row, "prompt": row["prompt"] + " (zstd)"}) + "\n" for row in rows).encode())
    env = _bundle_env(tmp_path)
    project = tmp_path / "project"
    subprocess.run([str(program), "init", str(project)], check=True, env=env, capture_output=True)
    for name in ("pairs.parquet", "pairs.jsonl.zst"):
        done = subprocess.run([str(program), "import", str(project), str(tmp_path / name)], capture_output=True,
                              text=True, env=env)
        assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    stats = subprocess.run([str(program), "stats", str(project), "--json"], capture_output=True, text=True, env=env,
                           check=True)
    assert json.loads(stats.stdout)["counts"]["pairs"] == 10


@pytest.mark.packaging
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run (apt-get install xvfb)")
def test_the_built_app_opens_its_window_under_xvfb(program, tmp_path):
    shot = tmp_path / "frozen-window.png"
    done = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", str(program), "--demo", "--screenshot", str(shot)],
        capture_output=True, text=True, env=_bundle_env(tmp_path), timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "window shown" in done.stdout
    from PySide6.QtGui import QImage

    image = QImage(str(shot))
    assert image.width() >= 800 and image.height() >= 500
    colours = {image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, image.height(), 23)}
    assert len(colours) > 20, "the window looks blank"
    if os.environ.get("RLHF_WORKBENCH_SHOT_TO"):
        shutil.copy2(shot, os.environ["RLHF_WORKBENCH_SHOT_TO"])


LOCAL_TORCH = sorted(Path("/opt/wheels").glob("torch-2.13.0*cp311*.whl")) if Path("/opt/wheels").is_dir() else []


@pytest.mark.packaging
@pytest.mark.skipif(not LOCAL_TORCH, reason="needs a local torch wheel to stand in for the CUDA one")
def test_the_built_app_takes_torch_from_an_installed_runtime(program, tmp_path):
    """The GPU runtime's mechanics, with the CPU wheel standing in for the CUDA one (no GPU, no
    download here): the bundled pip installs it, and `import torch` then comes from there."""
    env = _bundle_env(tmp_path)
    target = tmp_path / "runtime"
    subprocess.run([str(program), gpu_runtime.PIP_FLAG, "install", "--isolated", "--no-deps", "--no-index",
                    "--target", str(target), str(LOCAL_TORCH[0])], check=True, env=env, capture_output=True)
    plain = json.loads(subprocess.run([str(program), "--gpu-runtime", "probe"], capture_output=True, text=True,
                                      env=env, check=True).stdout)
    assert str(BUNDLE) in plain["file"]
    env[gpu_runtime.PATH_ENV] = str(target)
    switched = json.loads(subprocess.run([str(program), "--gpu-runtime", "probe"], capture_output=True, text=True,
                                         env=env, check=True).stdout)
    assert switched["file"].startswith(str(target)), switched
    assert switched["version"].startswith("2.13.0")


def test_the_gpu_dialog_shows_the_installs_progress_and_can_switch_back(qtbot, tmp_path, monkeypatch):
    from rlhf_workbench.app.dialogs import GpuRuntimeDialog, about_box

    monkeypatch.setenv("RLHF_WORKBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(gpu_runtime, "detect_driver", lambda: gpu_runtime.Driver("575.51", ("NVIDIA RTX 4090",)))
    script = ("import time; print('progress 0 0 downloading torch', flush=True); time.sleep(0.2); "
              "print('progress 5 10 downloading torch-2.13.0.whl', flush=True); time.sleep(0.2); print('all done')")
    monkeypatch.setattr(GpuRuntimeDialog, "command", lambda self, *args: (sys.executable, ["-c", script]))
    dialog = GpuRuntimeDialog()
    qtbot.addWidget(dialog)
    assert dialog.variant.currentText() == "cu128"
    assert "NVIDIA driver 575.51 found (NVIDIA RTX 4090)" in dialog.status_label.text()
    seen = []
    dialog.progress.valueChanged.connect(seen.append)
    dialog.install()
    qtbot.waitUntil(lambda: dialog.process is None, timeout=10000)
    assert 5 in seen and dialog.progress.format() == "done"
    assert "all done" in dialog.log.toPlainText()

    base = gpu_runtime.base_version(gpu_runtime.bundled_torch_version())
    _fake_runtime("cu128", base)
    dialog.refresh()
    assert dialog.gpu_button.isEnabled() and not dialog.cpu_button.isEnabled()
    dialog.gpu_button.click()
    assert gpu_runtime.active_variant() == "cu128" and dialog.cpu_button.isEnabled()
    dialog.cpu_button.click()
    assert gpu_runtime.active_variant() is None
    box = about_box(None)
    assert "torch" in box.informativeText()
    box.close()


@pytest.mark.packaging
@pytest.mark.skipif(not (LOCAL_TORCH and Path("/opt/pypi/simple").is_dir()), reason="needs a local package index")
def test_the_built_app_installs_a_runtime_end_to_end(program, tmp_path):
    """`--gpu-runtime install` as a person's click runs it, against a local index in place of
    download.pytorch.org (the CPU wheel stands in for the CUDA one): progress lines, the staging
    folder renamed into place, trimmed to torch, checked by importing it, marked ready and chosen."""
    env = _bundle_env(tmp_path)
    env[gpu_runtime.INDEX_ENV] = "file:///opt/pypi/simple"
    env[gpu_runtime.PIP_ARGS_ENV] = "--find-links /opt/wheels"
    done = subprocess.run([str(program), "--gpu-runtime", "install", "--variant", "cu126"], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "progress " in done.stdout and "installed the cu126 GPU runtime" in done.stdout
    status = json.loads(subprocess.run([str(program), "--gpu-runtime", "status"], capture_output=True, text=True,
                                       env=env, check=True).stdout)
    assert status["installed"] == ["cu126"] and status["active"] == "cu126"
    folder = Path(status["folder"]) / "torch-2.13.0-cu126"
    kept = {p.name.split("-")[0].lower() for p in folder.iterdir()}
    assert "torch" in kept and not kept & {"sympy", "jinja2", "networkx", "filelock"}, kept
    assert subprocess.run([str(program), "--gpu-runtime", "remove"], env=env, capture_output=True).returncode == 0
    assert not folder.exists()
