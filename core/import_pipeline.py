"""Large imports in two processes: a reading process prepares the rows, the importing one writes.

An import does two kinds of work: reading, parsing, validating and hashing the rows (nothing of
which needs the database), and writing them (resolving content hashes to ids and the SQL, inside
the import's one transaction). A large file spends about as long on each, and a machine has a
spare core during an import, so for large files (importing.PIPELINE_MIN_BYTES) the first kind
runs in a child process:

    reading process                                  importing process
    RowSource -> parse_row -> validate_record ->           BulkWriter.write_prepared (ids, inserts)
    BulkWriter.prepare_pair (JSON, hashes)  --pipe-> in store.transaction(); flush; commit
    (or, for a format's usual rows, its fast
    path Format.pair_row -> BulkWriter.hash_pair)

Both sides run the same code as a single-process import (`import_rows.prepared_batches` there,
`BulkWriter.write_prepared` here), so the rows, digests, reports and errors are the same. The
child sends plain tuples, a batch of a few thousand rows per message (marshal: the fastest
serialiser for tuples of str, bytes, float and None; the fast path's texts travel as their UTF-8
bytes, which marshal copies rather than encodes and decodes); a sender thread with a small queue
lets it read ahead while a message is on its way, and the parent reads each message into one
reused buffer (PipelineReader._recv_bytes). Without `skip_bad`, its first bad row ends it with an
"input_error" message carrying the reason, file, line and field, which the parent raises as the
same InputError.

Two things keep both cores busy. A fresh interpreter takes 0.15-0.4 s to start (less when the
modules it needs do not pull in the store: see importing.py), so the parent reads and writes the
first rows itself meanwhile; when the child says it is ready, the parent tells it to start one
batch beyond the rows it has read, reads that batch itself while the child skips to its start
(without parsing what it skips), and the child goes on from there. And the content hashes
(a quarter of the reading work) go to whichever process has time: before each batch the child
looks at how many of its messages the parent has not yet taken, hashes the batch itself if the
parent is behind, and otherwise leaves the digests to `write_prepared` (BulkWriter.hash_items,
the same functions), so that neither process waits long for the other.

The child is started with the "spawn" method, which works the same on every platform, in a
frozen app (which must call multiprocessing.freeze_support() at start) and beside a GUI's
threads. Like every spawned process it imports the program's main module again, so an import
chooses it by itself only where that is harmless (`spawn_is_safe`). It only reads the file;
everything it learns goes through the pipe. The parent never waits on it blindly: it polls, and
between polls checks `stop` and whether the child is still alive, so a child that dies (killed,
out of memory) gives a WorkbenchError within a fraction of a second and the import's transaction
is rolled back. Cancelling and any error terminate the child.
"""

from __future__ import annotations

import logging
import marshal
import multiprocessing
import multiprocessing.connection as mp_connection
import os
import queue
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import errors
from .errors import InputError, Stopped, WorkbenchError
from .import_rows import Batch

_log = logging.getLogger(__name__)

# How often (seconds) a waiting parent checks `stop` and the child's liveness.
_POLL_S = 0.05
# Batches the child may prepare ahead of what the pipe has taken: keeps it busy while the parent
# writes, and bounds its memory (a batch is a few MB).
_AHEAD = 4
# The parent is "behind" when more than this many of the child's messages are not yet taken.
_HASH_HERE_BACKLOG = 2
# How long close() lets a child finish on its own before terminating it.
_JOIN_S = 5.0
READER_NAME = "rlhf-workbench-import-reader"
# multiprocessing's message framing (see PipelineReader._recv_bytes).
_SIZE = struct.Struct("!i")
_LONG_SIZE = struct.Struct("!Q")


@dataclass(frozen=True)
class ReadTask:
    """What the reading process needs: picklable, and nothing that only the parent can open."""

    path: str
    container: str
    format: str
    mapping: dict[str, str]
    annotator: str | None
    max_chars: int
    skip_bad: bool
    batch_rows: int
    verdict_values: dict[str, str] = field(default_factory=dict)


def spawn_is_safe() -> bool:
    """Whether this program can start a "spawn" process without side effects.

    A spawned process imports the program's main module again (as `__mp_main__`), so that a
    script whose top-level code is not under `if __name__ == "__main__":` would run again in it:
    its import, or worse. Imports choose a second process by themselves only where that cannot
    happen; forcing one (pipeline=True) skips this check.
    """
    if getattr(sys, "frozen", False):
        return True  # a frozen app calls multiprocessing.freeze_support() before anything else
    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None and (spec_name == "__main__" or spec_name.endswith(".__main__")):
        return True  # `python -m package`: not imported again
    path = getattr(main, "__file__", None)
    if path is None:
        return True  # interactive, `python -c`, a notebook: nothing to import again
    try:
        source = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    # The guard, or something like it (console scripts and this project's own scripts have it).
    return "__name__" in source and "__main__" in source


class PipelineReader:
    """The parent's end: starts the reading process and yields the batches it prepares."""

    def __init__(self, task: ReadTask):
        self.task = task
        self._done = False  # the child said it has sent everything
        self._heard = False  # the child has sent something
        self.stats: dict[str, float] = {}  # how the child's work went, once it is done
        self._buffer = bytearray(0)  # see _recv_bytes
        self._started = time.perf_counter()
        self._ready_s: float | None = None  # from start() to its "ready", as this process saw it
        ctx = multiprocessing.get_context("spawn")
        # Both ways: the child says when it is ready, the parent says where it should start.
        self._conn, child_end = ctx.Pipe(duplex=True)
        self._process = ctx.Process(target=_child_main, args=(child_end, task), name=READER_NAME, daemon=True)
        try:
            self._process.start()
        except BaseException:
            self._conn.close()
            raise
        finally:
            # Only the child may hold its end: when it dies, reading here sees the end of file.
            child_end.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def batches(self, here: Iterator[Batch] | None, stop: Callable[[], bool] | None = None) -> Iterator[Batch]:
        """All the file's batches, as `import_rows.prepared_batches` yields them; raises what it raises.

        `here`, when given, is the same generator run in this process: its batches are used while
        the child starts (a fresh interpreter takes a few tenths of a second). Once the child is
        ready, it is told to start one batch further on than the rows used here, and this process
        reads that one batch more meanwhile (rather than wait while the child gets to its first
        row and prepares its first batch); the child then takes over. Without `here`, the child
        reads from the first row.
        """
        if here is None:
            self._start(0, stop)
        else:
            consumed = 0  # rows (good or rejected) read here
            try:
                for batch in here:
                    yield batch
                    consumed += batch[2] + len(batch[1])
                    if self._conn.poll(0):
                        break  # the child is ready (or has failed: the next receive says which)
                else:
                    return  # the whole file was read here before the child was ready
                # Every batch but a file's last holds exactly batch_rows rows, good or rejected.
                self._start(consumed + self.task.batch_rows, stop)
                for batch in here:
                    yield batch
                    break
            finally:
                here.close()
        while True:
            message = self._receive(stop)
            if message[0] == "batch":
                yield message[1:]
            elif message[0] == "done":
                self._done = True
                _, start_s, read_s, skip, batches, hashed = message
                _log.debug(
                    "%s: the reading process was ready %.2f s after its start (%.2f s of it its own set-up), "
                    "took over after %d rows, read the rest in %.2f s and hashed %d of its %d batches",
                    self.task.path, self._ready_s, start_s, skip, read_s, hashed, batches,
                )
                self.stats = {
                    "ready_s": round(self._ready_s, 4), "start_s": start_s, "read_s": read_s, "skipped_rows": skip,
                    "batches": batches, "hashed_batches": hashed,
                }
                return
            else:
                raise WorkbenchError(f"internal: the import's reading process sent {message[0]!r}")

    def _start(self, skip: int, stop: Callable[[], bool] | None) -> None:
        """Wait for the child's "ready", then tell it to start after `skip` rows."""
        kind, *_ = self._receive(stop)
        self._ready_s = time.perf_counter() - self._started
        if kind != "ready":
            raise WorkbenchError(f"internal: the import's reading process sent {kind!r} before it was ready")
        try:
            self._conn.send_bytes(marshal.dumps(("start", skip)))
        except OSError:
            raise self._died() from None

    def _receive(self, stop: Callable[[], bool] | None) -> tuple:
        """The child's next message; raises the error it reports, Stopped, or if it has died."""
        conn, process = self._conn, self._process
        while not conn.poll(_POLL_S):
            if stop is not None and stop():
                raise Stopped(f"{self.task.path}: import cancelled; nothing was imported")
            if not process.is_alive() and not conn.poll(0):
                raise self._died()
        try:
            message = marshal.loads(self._recv_bytes())
        except (EOFError, OSError, ValueError):
            # End of file (perhaps in the middle of a message): the child has gone.
            raise self._died() from None
        self._heard = True
        kind = message[0]
        if kind == "input_error":
            _, reason, path, line, field = message
            raise InputError(reason, path=path, line=line, field=field)
        if kind == "error":
            _, name, text = message
            cls = getattr(errors, name, None)
            try:
                error = cls(text) if isinstance(cls, type) and issubclass(cls, WorkbenchError) else None
            except TypeError:  # an error class that takes more than a message
                error = None
            raise error or WorkbenchError(text)
        if kind == "crash":  # a bug, not bad input
            raise RuntimeError(f"{self.task.path}: the import's reading process failed:\n{message[1]}")
        return message

    def _recv_bytes(self) -> bytes | memoryview:
        """The next message's bytes, as `Connection.recv_bytes` reads them, but cheaper for the
        big ones (a batch is a few MB): read into one buffer reused from message to message.

        (`recv_bytes` asks the OS for the whole remaining size at each read, so it allocates a
        few MB for every 64-256 KB that arrive, and then copies the parts into a BytesIO and out
        again: a tenth of this process's time in a large import.) The framing is
        multiprocessing's: a 4-byte big-endian size, or -1 and an 8-byte size. Only for a
        connection over a file descriptor (POSIX); elsewhere, recv_bytes.
        """
        conn = self._conn
        if type(conn) is not mp_connection.Connection:
            return conn.recv_bytes()
        fd = conn.fileno()
        (size,) = _SIZE.unpack(self._read_exactly(fd, 4))
        if size == -1:
            (size,) = _LONG_SIZE.unpack(self._read_exactly(fd, 8))
        return self._read_exactly(fd, size)

    def _read_exactly(self, fd: int, size: int) -> memoryview:
        if len(self._buffer) < size:
            self._buffer = bytearray(max(size, 2 * len(self._buffer)))
        view = memoryview(self._buffer)[:size]
        done = 0
        while done < size:
            n = os.readv(fd, [view[done:]])
            if n == 0:
                if done == 0:
                    raise EOFError
                raise OSError("got end of file during message")
            done += n
        return view

    def _died(self) -> WorkbenchError:
        self._process.join(1.0)
        code = self._process.exitcode
        if code is None:
            how = "stopped answering"
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            how = f"was killed ({name})"
        else:
            how = f"exited with status {code}"
        hint = ""
        if not self._heard and code is not None and code > 0:
            # Usually its start failed: like any use of multiprocessing, the program's main module
            # is imported again in the new process, so a script must guard its top-level code.
            hint = (
                " (see its error output; a script that imports files must keep its top-level code under"
                " `if __name__ == '__main__':`)"
            )
        return WorkbenchError(
            f"{self.task.path}: the process reading the file {how} before it finished; nothing was imported{hint}"
        )

    def close(self) -> None:
        """Stop the child if it is still running (after an error, a stop, or when it was not
        needed) and release it."""
        process = self._process
        if self._done:
            process.join(_JOIN_S)  # it has sent everything and exits by itself
        if process.is_alive():
            process.terminate()
            process.join(_JOIN_S)
        if process.is_alive():
            process.kill()
            process.join()
        self._conn.close()
        process.close()


def _child_main(conn, task: ReadTask) -> None:
    """The reading process: say when ready, then prepare batches from where the parent says and
    send them; report the first problem and stop."""
    # Ctrl+C reaches the whole process group: the parent decides, and terminates this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sender = _Sender(conn)
    started = time.perf_counter()
    try:
        try:
            from .formats import ReadOptions, get_format
            from .formats.rows import RowSource
            from .import_rows import prepared_batches

            fmt = get_format(task.format)
            source = RowSource(task.path, task.container)
            options = ReadOptions(
                mapping=dict(task.mapping), annotator=task.annotator, max_chars=task.max_chars,
                verdict_values=dict(task.verdict_values),
            )
            conn.send_bytes(marshal.dumps(("ready",)))
            ready = time.perf_counter()
            try:
                _, skip = marshal.loads(conn.recv_bytes())  # ("start", rows the parent has read itself)
            except (EOFError, OSError):
                return  # the parent read the whole file itself, or has gone
            sender.start()
            hashed = batches = 0

            def hash_here() -> bool:
                # Besides the batch just handed over, two or more still unsent: the parent is the
                # slower one, so this process computes the hashes of the next batch; otherwise the
                # parent does. (Measured: hashing always here is 10% slower overall; thresholds
                # from 1 to "never here" are within the noise of each other on 2 cores.)
                nonlocal hashed, batches
                batches += 1
                if sender.backlog() > _HASH_HERE_BACKLOG:
                    hashed += 1
                    return True
                return False

            for batch in prepared_batches(
                fmt, source, options, task.skip_bad, task.batch_rows, skip=skip, hash_here=hash_here
            ):
                if not sender.put(marshal.dumps(("batch", *batch))):
                    return  # the parent has gone
            now = time.perf_counter()
            message: tuple = ("done", round(ready - started, 4), round(now - ready, 4), skip, batches, hashed)
        except InputError as exc:
            message = ("input_error", exc.reason, str(exc.path) if exc.path is not None else None, exc.line, exc.field)
        except WorkbenchError as exc:
            message = ("error", type(exc).__name__, str(exc))
        except BaseException:  # noqa: BLE001 -- a bug: reported to the parent with its traceback
            message = ("crash", traceback.format_exc())
        if sender.running:
            sender.put(marshal.dumps(message))
        else:
            try:
                conn.send_bytes(marshal.dumps(message))
            except OSError:
                pass  # the parent has gone
    finally:
        sender.stop()
        conn.close()


class _Sender:
    """Sends the child's messages from a thread, so that it prepares the next batch meanwhile."""

    def __init__(self, conn):
        self._conn = conn
        self._outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=_AHEAD)
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)
        self._gone = threading.Event()  # the parent has gone (or closed its end)
        self._queued = 0  # written by the reading thread only
        self._sent = 0  # written by the sending thread only

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def backlog(self) -> int:
        """Messages handed over and not yet taken by the parent (whole, or for the most part)."""
        return self._queued - self._sent

    def put(self, data: bytes) -> bool:
        """Queue a message; False if the parent has gone."""
        if self._gone.is_set():
            return False
        self._queued += 1
        self._outbox.put(data)
        return True

    def stop(self) -> None:
        if self._thread.is_alive():
            self._outbox.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            data = self._outbox.get()
            if data is None:
                return
            if self._gone.is_set():
                continue  # keep emptying the queue, so that put() never blocks for ever
            try:
                self._conn.send_bytes(data)
            except OSError:
                self._gone.set()
            self._sent += 1
