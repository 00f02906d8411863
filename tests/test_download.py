"""Downloading a model from the hub, for real, against a local server that answers as the hub does
(tests/hub_server.py) with HF_ENDPOINT pointing at it: look-up, download into the Hugging Face
cache, a broken connection resumed, Cancel, the disk-space check, and the CLI command."""

import io
import shutil
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
from hub_server import CHUNK, DECOY, REPO, Repo

from rlhf_workbench.core import download as dl
from rlhf_workbench.core.cli import main
from rlhf_workbench.core.errors import Stopped
from rlhf_workbench.core.events import Progress
from rlhf_workbench.core.models import ModelError, discover_models, resolve_model


def weights_size(folder) -> int:
    return (folder / "model.safetensors").stat().st_size


def fetched(hub) -> set[str]:
    return {path.rsplit("/", 1)[1] for method, path, _ in hub.requests if "/resolve/" in path}


def test_look_up_shows_size_and_licence_and_fetches_nothing(hub, tiny_model, tmp_path):
    info = dl.look_up(REPO)

    served = {p.name: p.stat().st_size for p in tiny_model.iterdir()}
    names = {name for name, _ in info.files}
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert DECOY not in names and "README.md" not in names
    assert info.skipped == (DECOY,)
    assert info.total_bytes == sum(served[name] for name in names)
    assert info.licence == "apache-2.0"
    assert info.sha == hub.repos[REPO].sha and info.cached_bytes == 0
    assert info.free_bytes > 0 and info.cache_dir == str(tmp_path / "hf" / "hub")
    text = info.summary()
    assert "apache-2.0" in text and dl.human_size(info.total_bytes) in text and DECOY in text
    assert fetched(hub) == set()
    assert not (tmp_path / "hf" / "hub").exists()

    with pytest.raises(dl.DownloadError, match="no such model"):
        dl.look_up("tiny-org/missing")
    with pytest.raises(dl.DownloadError, match="is not a model name"):
        dl.look_up("just-a-name")


def test_a_model_with_only_pickle_weights_is_refused_at_look_up(hub, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / DECOY).write_bytes(b"\x80\x04")
    hub.add(Repo("tiny-org/pickled", folder))

    with pytest.raises(dl.DownloadError, match="only as pickle files"):
        dl.look_up("tiny-org/pickled")


def test_download_fills_the_cache_so_the_model_resolves_and_loads(hub, tiny_model):
    events = []
    result = dl.download(REPO, sink=events.append)

    path = resolve_model(REPO)
    assert str(path) == result["path"]
    assert (path / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()
    assert not (path / DECOY).exists() and not (path / "README.md").exists()
    assert DECOY not in fetched(hub)
    assert any(e.name == REPO and e.source == "hf-cache" and e.path == path for e in discover_models())
    # Progress in bytes, monotone, ending at the whole.
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps == sorted(steps) and steps[-1] == result["bytes"] == events[-1].total

    from transformers import AutoConfig

    from rlhf_workbench.core.models import check_safe_weights, load_tokenizer

    check_safe_weights(path)
    assert AutoConfig.from_pretrained(path).model_type == "llama"
    tokenizer = load_tokenizer(path)
    assert tokenizer.decode(tokenizer("User: hello")["input_ids"]) == "User: hello"
    assert tokenizer.chat_template

    # Again: everything is cached, nothing is fetched twice.
    before = len(hub.gets("model.safetensors"))
    assert dl.look_up(REPO).cached_bytes == result["bytes"]
    assert dl.download(REPO)["path"] == result["path"]
    assert len(hub.gets("model.safetensors")) == before


def test_a_connection_broken_mid_file_is_resumed_and_the_file_is_whole(hub, tiny_model):
    hub.drop_once("model.safetensors")

    path = dl.download(REPO)["path"]

    # The second request asks only for what the first did not bring: from the last whole read.
    kept = weights_size(tiny_model) // 2 // CHUNK * CHUNK
    assert kept > 0
    assert hub.gets("model.safetensors") == [None, f"bytes={kept}-"]
    assert (tiny_model / "model.safetensors").read_bytes() == (Path(path) / "model.safetensors").read_bytes()


def test_cancel_keeps_nothing_unfinished_and_the_next_download_completes(hub, tiny_model, tmp_path):
    import threading

    hub.stall("model.safetensors")
    # Let the stalled file go on once half of it is out: Cancel is heard with the next chunk.
    threading.Thread(target=lambda: hub.half_sent.wait(10) and hub.release.set(), daemon=True).start()

    with pytest.raises(Stopped, match="cancelled"):
        dl.download(REPO, stop=hub.half_sent.is_set)

    cache = tmp_path / "hf" / "hub"
    assert not list(cache.rglob("*.incomplete"))
    assert not list(cache.rglob("model.safetensors")) and not list(cache.rglob("config.json"))
    with pytest.raises(ModelError, match="rlhf-workbench download"):
        resolve_model(REPO)

    path = dl.download(REPO)["path"]
    assert str(resolve_model(REPO)) == path
    assert (Path(path) / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()


def test_too_little_disk_space_is_refused_before_anything_is_fetched(hub, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 5_000, 5_000))

    with pytest.raises(dl.DownloadError, match="only 5.0 KB is free.*set HF_HOME"):
        dl.download(REPO)
    assert fetched(hub) == set()
    assert not (tmp_path / "hf" / "hub").exists()


def test_the_download_command_prints_size_and_licence_then_downloads(hub, capsys, monkeypatch):
    # As a person runs it: a real process. Input not a terminal and no --yes: it says what it
    # would fetch, and fetches nothing.
    refused = cli("download", REPO)
    assert refused.returncode == 1
    assert "apache-2.0" in refused.stdout and "files" in refused.stdout and "--yes" in refused.stderr
    assert fetched(hub) == set()

    # At a terminal, answering no.
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert main(["download", REPO]) == 1
    assert "nothing was downloaded" in capsys.readouterr().out
    assert fetched(hub) == set()

    done = cli("download", REPO, "--yes")
    assert done.returncode == 0, done.stderr
    assert str(resolve_model(REPO)) in done.stdout and "apache-2.0" in done.stdout
    assert DECOY not in fetched(hub)

    missing = cli("download", "tiny-org/missing", "--yes")
    assert missing.returncode == 1 and "no such model" in missing.stderr


def cli(*args):
    command = Path(sys.executable).with_name("rlhf-workbench")
    return subprocess.run([str(command), *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_ctrl_c_stops_the_download_command_and_keeps_nothing_unfinished(hub, tmp_path):
    import signal

    hub.stall("model.safetensors")
    command = Path(sys.executable).with_name("rlhf-workbench")
    with subprocess.Popen([str(command), "download", REPO, "--yes"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert hub.half_sent.wait(60)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)  # the signal is handled before the rest of the file arrives
        hub.release.set()
        out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    assert "interrupted" in err and "cancelled" in err
    cache = tmp_path / "hf" / "hub"
    assert not list(cache.rglob("*.incomplete")) and not list(cache.rglob("model.safetensors"))
