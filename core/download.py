"""Getting a model from the Hugging Face hub without a terminal: look it up, then download it.

    info = look_up("Qwen/Qwen2.5-0.5B-Instruct")          # files, size, licence; nothing fetched
    path = download(info.repo_id, info.sha, sink=..., stop=...)["path"]   # a snapshot folder

What is fetched: the safetensors weights and the files that go with them (config, tokenizer,
generation settings, chat template), from the repository's top folder only. Pickle weights
(*.bin, *.pt, *.pth, *.ckpt, *.pkl) are never fetched: the workbench refuses to load them anyway,
and they would double the download. A model with only pickle weights is refused at look-up.

Where it goes: the standard Hugging Face cache (`hf_cache_dir()`, through huggingface_hub's
`snapshot_download`), so `transformers`, `huggingface-cli` and every other tool see the same
files, and `resolve_model("org/name")` / `discover_models` find it at once.

Cancel and broken connections, as huggingface_hub (2.x) does them: a file is downloaded into a
temporary `*.incomplete` file and renamed into place when whole. A connection that breaks
mid-file is resumed from where it broke (an HTTP Range request, a few tries). Cancelling, or
giving up after those tries, deletes the unfinished file; files already complete stay in the
cache and are not fetched again next time. The weights are fetched before config.json, so a
cancelled download never leaves a snapshot that looks like a model (config.json) without weights.

huggingface_hub is imported inside the functions: the app imports this module to name its
functions for a child process, and must not load the hub client (or torch) itself.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .errors import Stopped, WorkbenchError
from .events import Progress, Sink, StopFlag
from .models import PICKLE_PATTERNS, hf_cache_dir
from .terminal import for_terminal

# The files a model needs besides its weights, at the repository's top level.
COMPANION_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer*",  # tokenizer.json, tokenizer_config.json, tokenizer.model (sentencepiece)
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "*.tiktoken",
    "chat_template.json",
    "chat_template.jinja",
    "adapter_config.json",
)
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
# Room kept free on the disk beyond the files themselves: a full disk breaks more than the download.
DISK_MARGIN_BYTES = 200 * 1000**2


class DownloadError(WorkbenchError):
    """A model that cannot be looked up or downloaded: names the model and why."""


@dataclass(frozen=True)
class HubModel:
    """What a look-up found: the files that would be fetched (name, bytes) and what to show first."""

    repo_id: str
    revision: str  # what was asked for ("main" unless told)
    sha: str  # the commit it resolved to: the download fetches exactly this
    files: tuple[tuple[str, int], ...]
    licence: str | None
    licence_link: str | None = None
    gated: bool = False
    skipped: tuple[str, ...] = ()  # top-level weights not fetched (pickles, duplicates)
    cached_bytes: int = 0  # of `files`, already in the cache at this commit
    cache_dir: str = ""
    free_bytes: int = 0  # free on the cache's disk at look-up
    architectures: tuple[str, ...] = field(default=())

    @property
    def total_bytes(self) -> int:
        return sum(size for _name, size in self.files)

    @property
    def needed_bytes(self) -> int:
        return self.total_bytes - self.cached_bytes

    def summary(self) -> str:
        """What a person reads before saying yes: size, licence, where it goes and the room there."""
        lines = [
            f"{self.repo_id} ({self.revision}, commit {self.sha[:10]})",
            f"  {len(self.files)} files, {human_size(self.total_bytes)}"
            + (f" ({human_size(self.cached_bytes)} already downloaded)" if self.cached_bytes else ""),
            f"  licence: {self.licence or 'not stated; read the model card before using it'}"
            + (f" ({self.licence_link})" if self.licence_link else ""),
            f"  into {self.cache_dir} ({human_size(self.free_bytes)} free)",
        ]
        if self.gated:
            lines.append("  gated: the hub asks you to accept its terms and to log in (a token) before downloading")
        if self.skipped:
            lines.append(f"  not fetched: {', '.join(self.skipped)} (only safetensors weights are used)")
        return "\n".join(lines)


def human_size(n: int) -> str:
    if n < 1000:
        return f"{n:,} bytes"
    value, unit = next((n / 1000**k, u) for k, u in ((4, "TB"), (3, "GB"), (2, "MB"), (1, "KB")) if n >= 1000**k)
    return f"{value:.1f} {unit}"


# -- look-up -------------------------------------------------------------------------------------


def look_up(repo_id: str, revision: str | None = None) -> HubModel:
    """The model's files, size and licence, from the hub's API; nothing is downloaded."""
    repo_id = _check_repo_id(repo_id)
    _refuse_offline(repo_id)
    from huggingface_hub import HfApi

    api = HfApi(endpoint=_endpoint())
    with _HubErrors(repo_id, revision):
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    siblings = {s.rfilename: int(s.size or 0) for s in (info.siblings or [])}
    weights, skipped = _choose_weights(siblings)
    if not weights:
        pickles = [name for name in skipped if _is_pickle(name)]
        if pickles:
            raise DownloadError(
                f"{repo_id}: has weights only as pickle files ({', '.join(pickles)}), which the workbench refuses to "
                "load (unpickling can run any code hidden in the file); look for a safetensors version of the model",
            )
        raise DownloadError(f"{repo_id}: has no model weights (no *.safetensors file at its top level)")
    companions = [name for name in siblings if "/" not in name and _matches(name, COMPANION_PATTERNS)]
    if "config.json" not in companions and "adapter_config.json" not in companions:
        raise DownloadError(f"{repo_id}: has no config.json, so it is not a transformers model")
    files = tuple((name, siblings[name]) for name in sorted(set(weights) | set(companions)))
    card = info.card_data
    licence = getattr(card, "license", None) if card is not None else None
    if licence == "other" and card is not None and getattr(card, "license_name", None):
        licence = f"other: {card.license_name}"
    if licence is None:
        licence = next((t.split(":", 1)[1] for t in (info.tags or []) if t.startswith("license:")), None)
    link = getattr(card, "license_link", None) if card is not None else None
    cache = hf_cache_dir()
    snapshot = _snapshot_dir(repo_id, info.sha or "")
    cached = sum(size for name, size in files if (snapshot / name).is_file())
    return HubModel(
        repo_id=repo_id,
        revision=revision or "main",
        sha=info.sha or "",
        files=files,
        licence=licence,
        licence_link=link,
        gated=bool(info.gated),
        skipped=tuple(skipped),
        cached_bytes=cached,
        cache_dir=str(cache),
        free_bytes=free_bytes(cache),
        architectures=tuple((info.config or {}).get("architectures") or ()),
    )


def look_up_task(repo_id: str, revision: str | None = None, *, sink: Sink, stop: StopFlag) -> HubModel:
    """`look_up` as work for a runner (the app runs it in a child process)."""
    return look_up(repo_id, revision)


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk that holds `folder` (or would, once made)."""
    probe = Path(folder)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _choose_weights(siblings: dict[str, int]) -> tuple[list[str], list[str]]:
    """(weights to fetch, top-level weights not fetched). One set of safetensors weights: the
    standard `model*.safetensors` (with its index) where the repository has it, since some also
    ship the same weights again in another layout (consolidated.safetensors)."""
    top = [name for name in siblings if "/" not in name]
    safe = [name for name in top if _matches(name, WEIGHT_PATTERNS)]
    standard = [name for name in safe if name.startswith(("model", "adapter_model"))]
    chosen = standard or safe
    skipped = [name for name in top if (_is_pickle(name) or name in safe) and name not in chosen]
    return chosen, skipped


def _is_pickle(name: str) -> bool:
    return _matches(name, PICKLE_PATTERNS)


def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


# -- download ------------------------------------------------------------------------------------


def download(
    repo_id: str,
    revision: str | None = None,
    *,
    sink: Sink | None = None,
    stop: StopFlag | None = None,
    info: HubModel | None = None,
) -> dict[str, Any]:
    """Downloads the model's safetensors weights and companion files into the Hugging Face cache;
    returns {"path": snapshot folder, "repo_id", "sha", "bytes", "files"}. Reports Progress (bytes)
    into `sink`; raises Stopped when `stop()` turns true (the unfinished file is deleted, finished
    ones stay), DownloadError when the disk has too little room or the hub refuses."""
    sink = sink or (lambda _event: None)
    stop = stop or (lambda: False)
    info = info or look_up(repo_id, revision)
    free = free_bytes(hf_cache_dir())  # now, not at look-up: the dialog may have waited a while
    if info.needed_bytes + DISK_MARGIN_BYTES > free:
        raise DownloadError(
            f"{info.repo_id}: needs {human_size(info.needed_bytes)} but only {human_size(free)} is free in "
            f"{hf_cache_dir()} (the Hugging Face cache), and {human_size(DISK_MARGIN_BYTES)} is kept spare; free some "
            "space there, or set HF_HOME to a folder on a bigger disk and start again",
        )
    from huggingface_hub import snapshot_download

    names = [name for name, _size in info.files]
    weights = [name for name in names if _matches(name, WEIGHT_PATTERNS)]
    rest = [name for name in names if name not in weights]
    progress = _ByteProgress(info, sink, stop)
    common = dict(repo_id=info.repo_id, cache_dir=str(hf_cache_dir()), endpoint=_endpoint(),
                  tqdm_class=progress.bar_class())
    from huggingface_hub import constants

    # The client reads 10 MB at a time and hears Cancel, reports progress and keeps what a broken
    # connection brought at that grain: seconds on a slow line, past the app's grace before it
    # kills the child (which would strand the unfinished file). 1 MB is fine-grained and cheap.
    chunk = constants.DOWNLOAD_CHUNK_SIZE
    constants.DOWNLOAD_CHUNK_SIZE = min(chunk, 1024 * 1024)
    try:
        with _HubErrors(info.repo_id, info.revision):
            # The weights first, at the looked-up commit; then the rest by the revision's name,
            # which also records the name (refs/main) for `resolve_model`.
            snapshot_download(revision=info.sha, allow_patterns=weights, **common)
            progress.next_call()
            path = Path(snapshot_download(revision=info.revision, allow_patterns=rest, **common))
    finally:
        constants.DOWNLOAD_CHUNK_SIZE = chunk
    if path.name != info.sha:
        raise DownloadError(
            f"{info.repo_id}: changed on the hub during the download ({info.revision} is now commit {path.name[:10]}, "
            f"was {info.sha[:10]})",
            hint="Download it again",
        )
    progress.done()
    return {"path": str(path), "repo_id": info.repo_id, "sha": info.sha, "bytes": info.total_bytes,
            "files": len(names)}


class _ByteProgress:
    """Bytes received, from the progress bars snapshot_download drives (its `tqdm_class`), as
    Progress events at most ~10 a second; every bar update polls `stop`, so Cancel is heard with
    each chunk received (Stopped raised there ends the download, and the hub deletes the
    unfinished file)."""

    def __init__(self, info: HubModel, sink: Sink, stop: StopFlag):
        self.info, self.sink, self.stop = info, sink, stop
        self.lock = threading.Lock()
        self.base = info.cached_bytes  # the hub skips these without a word
        self.seen = 0
        self.last_emit = 0.0
        self.emit(force=True)

    def bar_class(self):
        from tqdm import tqdm

        owner = self

        class Bar(tqdm):
            # A real tqdm (snapshot_download reads its totals and rates), writing nowhere.
            def __init__(self, *args, **kwargs):
                kwargs["file"] = _Nowhere()
                kwargs.pop("name", None)
                super().__init__(*args, **kwargs)

            def update(self, n=1):
                if owner.stop():
                    raise Stopped(f"the download of {owner.info.repo_id} was cancelled; the unfinished file was "
                                  "deleted, the finished ones stay in the cache")
                result = super().update(n)
                if self.unit == "B":
                    owner.count(self)
                return result

        return Bar

    def count(self, bar) -> None:
        # snapshot_download keeps two byte bars (received, and written); both count the same bytes
        # over plain HTTP, so the larger is how far it has got.
        with self.lock:
            self.seen = max(self.seen, int(bar.n))
        self.emit()

    def next_call(self) -> None:
        # Each snapshot_download call starts its bars at zero.
        with self.lock:
            self.base, self.seen = self.base + self.seen, 0

    def emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_emit < 0.1:
            return
        self.last_emit = now
        done = min(self.info.total_bytes, self.base + self.seen)
        self.sink(Progress(done, self.info.total_bytes or None,
                           f"Downloading {self.info.repo_id}: {human_size(done)} of {human_size(self.info.total_bytes)}"))

    def done(self) -> None:
        self.seen = self.info.total_bytes
        self.emit(force=True)


class _Nowhere:
    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


# -- the command -----------------------------------------------------------------------------------


def download_command(repo_id: str, revision: str | None, *, yes: bool, progress: Sink,
                     stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    """`rlhf-workbench download ID`: the size and licence first, a question unless `yes`, then the
    download with progress; prints the folder. Exit status as the other commands'."""
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    info = look_up(repo_id, revision)
    print(for_terminal(info.summary(), keep_newlines=True), file=out, flush=True)  # the hub's text, made safe
    if not yes:
        if not stdin.isatty():
            raise DownloadError(f"{info.repo_id}: not downloaded: add --yes to download without being asked")
        print(f"Download {human_size(info.needed_bytes)}? [y/N] ", end="", file=out, flush=True)
        answer = stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("nothing was downloaded", file=out)
            return 1
    # Ctrl+C asks the download to stop (heard with the next chunk received), as Cancel does: a
    # KeyboardInterrupt would leave the hub client's threads fetching until their files are whole.
    # A second Ctrl+C interrupts at once.
    interrupted = threading.Event()

    def on_interrupt(_signum, _frame) -> None:
        interrupted.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_interrupt) if in_main else None
    try:
        result = download(info.repo_id, info.revision, sink=progress, stop=interrupted.is_set, info=info)
    except Stopped as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    print(f"downloaded {info.repo_id} into {result['path']}", file=out)
    print(f"use it as `{info.repo_id}` wherever a model is asked for", file=out)
    return 0


# -- the hub -------------------------------------------------------------------------------------------


def _endpoint() -> str | None:
    # Read at each call: huggingface_hub reads HF_ENDPOINT once, when it is first imported.
    endpoint = os.environ.get("HF_ENDPOINT")
    return endpoint.rstrip("/") if endpoint else None


def _check_repo_id(repo_id: str) -> str:
    text = str(repo_id).strip()
    if text.startswith(("https://huggingface.co/", "http://huggingface.co/")):
        text = "/".join(text.split("huggingface.co/", 1)[1].split("/")[:2])  # a page's address: org/name
    parts = text.split("/")
    if len(parts) != 2 or not all(parts) or any(c.isspace() for c in text) or text.startswith((".", "~")):
        raise DownloadError(f"{repo_id!r}: is not a model name on the hub; it is written org/name, "
                            "e.g. Qwen/Qwen2.5-0.5B-Instruct")
    return text


def _refuse_offline(repo_id: str) -> None:
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise DownloadError(f"{repo_id}: cannot be downloaded: HF_HUB_OFFLINE is set, which turns downloads off",
                            hint="Unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to download")


class _HubErrors:
    """The hub client's errors as DownloadErrors a person can act on."""

    def __init__(self, repo_id: str, revision: str | None):
        self.repo_id, self.revision = repo_id, revision

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or isinstance(exc, WorkbenchError) or not isinstance(exc, Exception):
            return False
        from huggingface_hub import errors

        where = _endpoint() or "huggingface.co"
        name = self.repo_id
        if isinstance(exc, errors.GatedRepoError):
            raise DownloadError(f"{name}: is gated: accept its terms on its page at huggingface.co, then log in "
                                "(`hf auth login`, or set HF_TOKEN) and try again") from None
        if isinstance(exc, errors.RevisionNotFoundError):
            raise DownloadError(f"{name}: has no revision {self.revision!r}") from None
        if isinstance(exc, errors.RepositoryNotFoundError):
            raise DownloadError(f"{name}: no such model on {where} (or it is private: log in with a token "
                                "that may read it)") from None
        if isinstance(exc, errors.OfflineModeIsEnabled):
            raise DownloadError(f"{name}: cannot be downloaded: HF_HUB_OFFLINE is set") from None
        if isinstance(exc, errors.HFValidationError):
            raise DownloadError(f"{name!r}: is not a valid model name on the hub ({_first_line(exc)})") from None
        if isinstance(exc, errors.HfHubHTTPError):
            raise DownloadError(f"{name}: the hub answered {_first_line(exc)}") from None
        if isinstance(exc, (OSError, ConnectionError)) or type(exc).__module__.startswith(("httpx", "httpcore")):
            raise DownloadError(f"{name}: cannot reach {where} ({_first_line(exc)})",
                                hint="Check the connection and try again: finished files are kept") from None
        return False


def _snapshot_dir(repo_id: str, sha: str) -> Path:
    return hf_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "snapshots" / sha


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

