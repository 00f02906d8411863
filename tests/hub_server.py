"""A local stand-in for the Hugging Face hub: serves model folders the way huggingface.co does, for
the endpoints huggingface_hub's `model_info`, `snapshot_download` and `hf_hub_download` call:

    GET  /api/models/{id}[/revision/{rev}]   the repo's info: sha, siblings with sizes, card data
    GET  /api/models/{id}/tree/{rev}         the file listing (one page)
    HEAD /{id}/resolve/{rev}/{file}          X-Repo-Commit, ETag / X-Linked-Etag, Content-Length
    GET  /{id}/resolve/{rev}/{file}          the bytes; `Range: bytes=N-` answered with 206

Weights (*.safetensors, *.bin) are LFS files, as on the hub: their ETag is the sha256 of the
content; other files' is their git blob id. Unknown repos, revisions and files get the hub's 404
with its X-Error-Code. Every request is logged (`requests`), and `drop_once(file)` makes the next
GET of a file break the connection after half its bytes; `stall(file)` holds a GET after half
its bytes until `release` is set (or 10 s pass).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class Repo:
    def __init__(self, repo_id: str, folder: Path, *, licence: str | None = "apache-2.0", sha: str | None = None):
        self.repo_id = repo_id
        self.files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        self.licence = licence
        self.sha = sha or hashlib.sha1(repr(sorted((k, len(v)) for k, v in self.files.items())).encode()).hexdigest()

    @staticmethod
    def is_lfs(name: str) -> bool:
        return name.endswith((".safetensors", ".bin"))

    def etag(self, name: str) -> str:
        data = self.files[name]
        if self.is_lfs(name):
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def info(self) -> dict:
        siblings = []
        for name, data in self.files.items():
            entry = {"rfilename": name, "size": len(data), "blobId": hashlib.sha1(data).hexdigest()}
            if self.is_lfs(name):
                entry["lfs"] = {"size": len(data), "sha256": self.etag(name), "pointerSize": 130}
            siblings.append(entry)
        card = {"license": self.licence} if self.licence else {}
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": self.sha, "private": False, "gated": False,
                "disabled": False, "tags": ["transformers", "safetensors"] + ([f"license:{self.licence}"] if self.licence else []),
                "cardData": card, "siblings": siblings,
                "config": {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}}

    def tree(self) -> list[dict]:
        out = []
        for name, data in self.files.items():
            entry = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            if self.is_lfs(name):
                entry["lfs"] = {"oid": self.etag(name), "size": len(data), "pointerSize": 130}
            out.append(entry)
        return out


class HubServer:
    """`with HubServer() as hub: hub.add(Repo(...)); os.environ["HF_ENDPOINT"] = hub.url`."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.to_drop: set[str] = set()
        self.to_stall: set[str] = set()
        self.half_sent = threading.Event()
        self.release = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo: Repo) -> Repo:
        self.repos[repo.repo_id] = repo
        return repo

    def drop_once(self, name: str) -> None:
        self.to_drop.add(name)

    def stall(self, name: str) -> None:
        self.to_stall.add(name)

    def gets(self, name: str) -> list[str | None]:
        """The Range header of every GET of a file named `name` (None: the whole file)."""
        return [rng for method, path, rng in self.requests if method == "GET" and path.endswith("/" + name)]

    # -- answering ------------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = unquote(urlparse(req.path).path)
        self.requests.append(("HEAD" if head else "GET", path, req.headers.get("Range")))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            return self._api(req, parts[2:])
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(req, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), head=head)
        return self._error(req, 404, "RepoNotFound", "not found")

    def _api(self, req, rest: list[str]) -> None:
        repo = self.repos.get("/".join(rest[:2]))
        if repo is None:
            return self._error(req, 404, "RepoNotFound", "Repository not found")
        tail = rest[2:]
        if tail and tail[0] in ("revision", "tree") and (len(tail) < 2 or tail[1] not in ("main", repo.sha)):
            return self._error(req, 404, "RevisionNotFound", "Invalid rev id")
        body = repo.tree() if tail[:1] == ["tree"] else repo.info()
        self._send(req, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _resolve(self, req, repo_id: str, revision: str, name: str, *, head: bool) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(req, 404, "RepoNotFound", "Repository not found")
        if revision not in ("main", repo.sha):
            return self._error(req, 404, "RevisionNotFound", "Invalid rev id")
        if name not in repo.files:
            return self._error(req, 404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": repo.sha})
        data = repo.files[name]
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{repo.etag(name)}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if repo.is_lfs(name):
            headers["X-Linked-Etag"] = f'"{repo.etag(name)}"'
            headers["X-Linked-Size"] = str(len(data))
        if head:
            return self._send(req, 200, b"", {**headers, "Content-Length": str(len(data))}, body=False)
        start = 0
        rng = req.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes="):-1])
        chunk = data[start:]
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if name in self.to_drop:
            self.to_drop.discard(name)
            return self._send_half(req, status, chunk, headers, then="drop")
        if name in self.to_stall:
            self.to_stall.discard(name)
            return self._send_half(req, status, chunk, headers, then="stall")
        self._send(req, status, chunk, headers)

    def _send_half(self, req, status: int, chunk: bytes, headers: dict, *, then: str) -> None:
        half = len(chunk) // 2
        req.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(chunk))}.items():
            req.send_header(key, value)
        req.end_headers()
        req.wfile.write(chunk[:half])
        req.wfile.flush()
        self.half_sent.set()
        if then == "drop":
            req.close_connection = True  # the rest never comes: the client sees the body cut short
            return
        self.release.wait(10)
        req.wfile.write(chunk[half:])

    def _error(self, req, status: int, code: str, message: str, extra: dict | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(req, status, body, {"Content-Type": "application/json", "X-Error-Code": code,
                                       "X-Error-Message": message, **(extra or {})})

    @staticmethod
    def _send(req, status: int, payload: bytes, headers: dict, *, body: bool = True) -> None:
        req.send_response(status)
        headers = {"Content-Length": str(len(payload)), **headers}
        for key, value in headers.items():
            req.send_header(key, value)
        req.end_headers()
        if body:
            req.wfile.write(payload)


# -- for tests: a tiny model served, the cache in a temporary folder ------------------------------

REPO = "tiny-org/tiny-llama"
DECOY = "pytorch_model.bin"
CHUNK = 64 * 1024


def build_tiny_model(folder: Path) -> Path:
    """The demo model's folder (safetensors, tokenizer, chat template), plus pickle weights and a
    model card that a download must leave on the server."""
    from rlhf_workbench.core.models import build_demo_model

    build_demo_model(folder)
    (folder / DECOY).write_bytes(os.urandom(50_000))
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    return folder


@contextlib.contextmanager
def serving(folder: Path, tmp_path: Path, monkeypatch):
    """A local hub serving `folder` as REPO, HF_ENDPOINT pointing at it (child processes inherit
    it), and the Hugging Face cache and the workbench's data in tmp_path."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("RLHF_WORKBENCH_HOME", str(tmp_path / "home"))
    # Other test modules turn the hub off for the whole process (huggingface_hub reads it once).
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # The download reads 1 MB at a time, more than the tiny model's weights: smaller reads make them
    # span several, as a real model's do (Cancel and resume work at that grain). A child process
    # (the app's) reads at 1 MB.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        server.add(Repo(REPO, folder))
        yield server
