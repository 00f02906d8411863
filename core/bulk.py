"""Writing many rows at once: the content hashes that make imports idempotent, and BulkWriter.

A prompt is identified by its messages, a response by its prompt and text, a pair by its prompt
and the *unordered* set of its two responses (so the same two responses shown the other way round
are the same pair), and a judgment that came with data by its pair, annotator and verdict. The
store keeps these hashes unique; this module computes them and writes rows in batches.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from .errors import WorkbenchError
from .records import SWAPPED_VERDICT, Conversation, conversation_to_json
from .store import Store, now_iso

# SQLite's default limit on bound parameters is 999 on old builds; stay under it.
_IN_CHUNK = 500

_blake2b = hashlib.blake2b
_length = struct.Struct("<Q").pack  # len(data).to_bytes(8, "little"), faster
_PROMPT_TAG = _length(6) + b"prompt"
_RESPONSE_TAG = _length(8) + b"response"
_PAIR_TAG = _length(4) + b"pair"
_JUDGMENT_TAG = _length(8) + b"judgment"
_DIGEST_LENGTH = _length(16)


def content_hash(*parts: str | bytes) -> bytes:
    """16-byte digest of the parts, unambiguous about where one part ends and the next begins.

    Each part is fed to BLAKE2b as its length (8 bytes, little-endian) followed by its bytes
    (text as UTF-8). The helpers below compute exactly this, with the constant parts prepared
    once, because an import hashes five times per record.
    """
    chunks = []
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        chunks.append(_length(len(data)))
        chunks.append(data)
    return _blake2b(b"".join(chunks), digest_size=16).digest()


def prompt_hash(messages_json: str) -> bytes:
    data = messages_json.encode("utf-8")
    return _blake2b(_PROMPT_TAG + _length(len(data)) + data, digest_size=16).digest()


def response_hash(prompt_digest: bytes, text: str) -> bytes:
    data = text.encode("utf-8")
    return _blake2b(
        b"".join((_RESPONSE_TAG, _length(len(prompt_digest)), prompt_digest, _length(len(data)), data)), digest_size=16
    ).digest()


def pair_hash(prompt_digest: bytes, response_digest_1: bytes, response_digest_2: bytes) -> bytes:
    low, high = (response_digest_1, response_digest_2) if response_digest_1 <= response_digest_2 else (response_digest_2, response_digest_1)
    if len(prompt_digest) == len(low) == len(high) == 16:
        data = b"".join((_PAIR_TAG, _DIGEST_LENGTH, prompt_digest, _DIGEST_LENGTH, low, _DIGEST_LENGTH, high))
        return _blake2b(data, digest_size=16).digest()
    return content_hash(b"pair", prompt_digest, low, high)


def judgment_import_key(pair_digest: bytes, annotator: str, verdict: str) -> bytes:
    return _blake2b(_JUDGMENT_TAG + _length(len(pair_digest)) + pair_digest + _judgment_tail(annotator, verdict), digest_size=16).digest()


@functools.lru_cache(maxsize=256)
def _judgment_tail(annotator: str, verdict: str) -> bytes:
    a, v = annotator.encode("utf-8"), verdict.encode("utf-8")
    return _length(len(a)) + a + _length(len(v)) + v


@dataclass
class BulkCounts:
    prompts_added: int = 0
    responses_added: int = 0
    pairs_added: int = 0
    pairs_existing: int = 0
    judgments_added: int = 0
    judgments_existing: int = 0


class BulkWriter:
    """Adds many prompts, responses, pairs and judgments inside the caller's transaction.

    It works in two halves. The first is pure (no database): `prepare_pair` and `prepare_prompt`
    build the canonical prompt JSON and compute every content hash, and return a plain tuple, a
    *prepared item*. The second, `write_prepared`, takes a list of prepared items and does what
    needs the database: it resolves hashes to ids, assigns the new ids and inserts the rows.
    `add_pair` and `add_prompt` do both. A large import prepares its items in a second process
    (core/import_pipeline.py) and hands them to `write_prepared`: one hashing code, one writing
    code, so both ways store identical rows. Items are written in the order given and ids are
    assigned in that order, so the result does not depend on how items are split into batches.

    Rows are buffered and resolved against the database a batch at a time: one `hash IN (...)`
    query per few hundred rows instead of one SELECT per row, and ids assigned here so that the
    inserts are plain executemany calls. A table that was empty when the writer started needs no
    look-ups at all: every row in it was written by this writer and is in its cache (the caller's
    transaction keeps other connections out). When all of them were empty (a first import), the
    writer also sets their unique hash indexes aside and builds them once in `flush()`: sorting
    100,000 keys once is much cheaper than keeping random-order hash indexes current row by row.
    (The other indexes stay: their keys arrive in order, ids and a handful of origins, so keeping
    them current costs little, and in a two-process import that happens while the other process
    is still reading rather than at the end.) This is what keeps a 100,000-record import within a
    small multiple of the time it takes merely to parse the file; bench/import_bench.py measures it.

    Call `flush()` once at the end: it writes what is buffered and restores the indexes. Use inside
    `store.transaction(foreign_keys=False)`: every id the writer references, it assigned itself.
    One writer at a time per transaction: ids are assigned here, from the tables' maxima at start.
    """

    _TABLES = ("prompts", "responses", "pairs", "judgments")

    BATCH = 4096
    # The page cache (KiB) the connection gets for an import: the hash indexes are written in
    # random order, and with SQLite's default 2 MB cache their pages are evicted and re-read over
    # and over. A limit, not an allocation; it stays set on the connection (pages are freed when
    # the connection closes).
    CACHE_KIB = 64 * 1024

    def __init__(self, store: Store, *, import_id: int | None, source: str, source_name: str | None):
        self.conn = store.conn
        if not self.conn.in_transaction:
            raise WorkbenchError("internal: BulkWriter must be used inside store.transaction()")
        self.import_id = import_id
        self.source = source
        self.source_name = source_name
        self.created_at = now_iso()
        self.counts = BulkCounts()
        self._pending: list[tuple] = []  # prepared items not yet written
        self._prompt_ids: dict[bytes, int] = {}
        self._response_ids: dict[bytes, int] = {}
        self._pair_ids: dict[bytes, tuple[int, bytes]] = {}  # hash -> (id, digest of stored response A)
        self._next_id = {
            table: (self.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0] + 1)
            for table in ("prompts", "responses", "pairs")
        }
        # Tables that were empty at the start: the caches above hold every row, no look-ups needed.
        self._complete = {table: next_id == 1 for table, next_id in self._next_id.items()}
        self._fresh = all(self._complete.values())  # no pairs means no judgments either (foreign key)
        self._set_aside_indexes: list[str] = []  # CREATE INDEX statements to run in flush()
        # While the judgments' unique index is set aside, duplicates are caught here instead.
        self._judgment_keys: set[bytes] = set()
        cache = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        cache_kib = -cache if cache < 0 else cache * self.conn.execute("PRAGMA page_size").fetchone()[0] // 1024
        if cache_kib < self.CACHE_KIB:
            self.conn.execute(f"PRAGMA cache_size = -{self.CACHE_KIB}")

    # -- the pure half: canonical JSON and content hashes, no database ----------------------------
    #
    # A prepared pair is the tuple
    #   (prompt digest, prompt JSON, response A digest, response A, response B digest, response B,
    #    pair digest, origin, margin, meta JSON or None, verdict or None, annotator or None,
    #    judgment import key for the verdict as given, or None)
    # and a prepared prompt the tuple (prompt digest, prompt JSON): both start with the prompt.
    # Plain tuples of str, bytes, float and None, so that they cross a process boundary cheaply.
    # Prepared with `hashed=False`, the five digests are None, and `write_prepared` computes them
    # (with `hash_items`, the same code): a two-process import hands the hashing to whichever
    # process has time for it.

    @staticmethod
    def prepare_pair(
        prompt: Conversation,
        response_a: str,
        response_b: str,
        *,
        origin: str,
        margin: float | None = None,
        meta: dict[str, Any] | None = None,
        verdict: str | None = None,
        annotator: str | None = None,
        hashed: bool = True,
    ) -> tuple:
        item = (
            None, conversation_to_json(prompt), None, response_a, None, response_b, None, origin, margin,
            json.dumps(meta, ensure_ascii=False) if meta else None,
            verdict, annotator, None,
        )
        return BulkWriter._hash_pair(item) if hashed else item

    @staticmethod
    def prepare_prompt(prompt: Conversation, *, hashed: bool = True) -> tuple:
        messages = conversation_to_json(prompt)
        return (prompt_hash(messages) if hashed else None, messages)

    @staticmethod
    def hash_items(items: list[tuple]) -> list[tuple]:
        """The items with the digests of those prepared with `hashed=False` filled in."""
        return [
            item if item[0] is not None
            else BulkWriter._hash_pair(item) if len(item) > 2
            else (prompt_hash(item[1]), item[1])
            for item in items
        ]

    @staticmethod
    def _hash_pair(item: tuple) -> tuple:
        """A prepared pair with its five digests computed from its texts."""
        p = prompt_hash(item[1])
        a = response_hash(p, item[3])
        b = response_hash(p, item[5])
        pair = pair_hash(p, a, b)
        verdict = item[10]
        return (
            p, item[1], a, item[3], b, item[5], pair, item[7], item[8], item[9], verdict, item[11],
            judgment_import_key(pair, item[11] or "", verdict) if verdict is not None else None,
        )

    # -- both halves -----------------------------------------------------------------------------

    def add_pair(
        self,
        prompt: Conversation,
        response_a: str,
        response_b: str,
        *,
        origin: str,
        margin: float | None = None,
        meta: dict[str, Any] | None = None,
        verdict: str | None = None,
        annotator: str | None = None,
    ) -> None:
        self._pending.append(
            self.prepare_pair(
                prompt, response_a, response_b,
                origin=origin, margin=margin, meta=meta, verdict=verdict, annotator=annotator,
            )
        )
        if len(self._pending) >= self.BATCH:
            self._write_batch()

    def add_prompt(self, prompt: Conversation) -> None:
        self._pending.append(self.prepare_prompt(prompt))
        if len(self._pending) >= self.BATCH:
            self._write_batch()

    def flush(self) -> None:
        """Write everything added so far and rebuild the indexes set aside (see the class doc)."""
        self._write_batch()
        for create_index in self._set_aside_indexes:
            self.conn.execute(create_index)
        self._set_aside_indexes = []

    def _write_batch(self) -> None:
        pending, self._pending = self._pending, []
        self.write_prepared(pending)

    def _set_indexes_aside(self) -> None:
        tables = ", ".join(f"'{t}'" for t in self._TABLES)
        # Read from the database rather than listed here, so that a later migration's indexes are
        # restored exactly as that migration made them. (sql IS NULL: a primary key's own index.)
        # Only the unique ones: on hashes, written in random order (see the class doc).
        for name, sql in self.conn.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({tables})"
            " AND sql LIKE 'CREATE UNIQUE INDEX%'"
        ).fetchall():
            self.conn.execute(f'DROP INDEX "{name}"')
            self._set_aside_indexes.append(sql)

    # -- the database half -----------------------------------------------------------------------

    # Rows per INSERT statement. One statement inserting many rows costs SQLite and the sqlite3
    # module much less per row than one row per statement (~40% less for an import's rows).
    ROWS_PER_INSERT = 64

    def write_prepared(self, items: list[tuple]) -> None:
        """Write prepared items (see `prepare_pair`), in order. Call `flush()` once at the end."""
        if not items:
            return
        if self._fresh and not self._set_aside_indexes:
            self._set_indexes_aside()
        if any(item[0] is None for item in items):
            items = self.hash_items(items)
        counts = self.counts
        created_at = self.created_at

        # Prompts: every item's own (prompt lists) or its pair's, new ones in order of appearance.
        prompt_ids = self._prompt_ids
        self._resolve("prompts", prompt_ids, items)
        values: list = []
        add = values.extend
        next_id = first_id = self._next_id["prompts"]
        for item in items:
            digest = item[0]
            if digest not in prompt_ids:
                prompt_ids[digest] = next_id
                add((next_id, digest, item[1]))
                next_id += 1
        if values:
            self._next_id["prompts"] = next_id
            self._insert("prompts", ("id", "hash", "messages"), (("created_at", created_at),), values)
            counts.prompts_added += next_id - first_id
        pairs = [item for item in items if len(item) > 2]
        if not pairs:
            return

        # Responses: A and B of each pair, in order.
        response_ids = self._response_ids
        self._resolve("responses", response_ids, pairs, 2, 4)
        values = []
        add = values.extend
        next_id = first_id = self._next_id["responses"]
        for item in pairs:
            digest = item[2]
            if digest not in response_ids:
                response_ids[digest] = next_id
                add((next_id, digest, prompt_ids[item[0]], item[3]))
                next_id += 1
            digest = item[4]
            if digest not in response_ids:
                response_ids[digest] = next_id
                add((next_id, digest, prompt_ids[item[0]], item[5]))
                next_id += 1
        if values:
            self._next_id["responses"] = next_id
            self._insert(
                "responses",
                ("id", "hash", "prompt_id", "text"),
                (("source", self.source), ("source_name", self.source_name), ("created_at", created_at)),
                values,
            )
            counts.responses_added += next_id - first_id

        # Pairs, and the verdicts that came with them.
        self._lookup_pairs(pairs)
        pair_ids = self._pair_ids
        values = []
        add = values.extend
        judgments: list = []
        judge = judgments.extend
        next_id = first_id = self._next_id["pairs"]
        for item in pairs:
            digest = item[6]
            known = pair_ids.get(digest)
            if known is None:
                pair_id = next_id
                next_id += 1
                a_digest = item[2]
                pair_ids[digest] = (pair_id, a_digest)
                add((pair_id, digest, prompt_ids[item[0]], response_ids[a_digest], response_ids[item[4]], item[7], item[8], item[9]))
                if item[10] is not None:
                    judge((pair_id, item[11], item[10], item[12]))
            else:
                pair_id, stored_a = known
                counts.pairs_existing += 1
                verdict = item[10]
                if verdict is not None:
                    key = item[12]
                    if stored_a != item[2]:
                        # The verdict was given relative to this record's order; store it relative to the pair's.
                        verdict = SWAPPED_VERDICT[verdict]
                        key = judgment_import_key(digest, item[11] or "", verdict)
                    judge((pair_id, item[11], verdict, key))
        if values:
            self._next_id["pairs"] = next_id
            self._insert(
                "pairs",
                ("id", "hash", "prompt_id", "response_a_id", "response_b_id", "origin", "margin", "meta"),
                (("import_id", self.import_id), ("created_at", created_at)),
                values,
            )
            counts.pairs_added += next_id - first_id
        if not judgments:
            return
        n = len(judgments) // 4
        constants = (("created_at", created_at), ("import_id", self.import_id))
        columns = ("pair_id", "annotator", "verdict", "import_key")
        if self._set_aside_indexes:
            # While the unique index is set aside, duplicate keys are caught here instead.
            keys = self._judgment_keys
            unique: list = []
            for i in range(3, len(judgments), 4):
                if judgments[i] not in keys:
                    keys.add(judgments[i])
                    unique.extend(judgments[i - 3:i + 1])
            added = len(unique) // 4
            self._insert("judgments", columns, constants, unique)
        else:
            added = self._insert("judgments", columns, constants, judgments, or_ignore=True)
        counts.judgments_added += added
        counts.judgments_existing += n - added

    def _insert(
        self,
        table: str,
        columns: tuple[str, ...],
        constants: tuple[tuple[str, Any], ...],
        values: list,
        *,
        or_ignore: bool = False,
    ) -> int:
        """Insert rows whose values lie one after another in `values` (len(columns) per row), with
        the same `constants` in every row, ROWS_PER_INSERT rows per statement. Returns the number
        of rows inserted (rows that OR IGNORE skipped not counted; triggers' changes neither)."""
        width = len(columns)
        per = self.ROWS_PER_INSERT
        step = width * per
        whole = len(values) // step * step
        fixed = [value for _, value in constants]  # bound once per statement, as ?1, ?2, ...
        added = 0
        if whole:
            added += self.conn.executemany(
                self._insert_sql(table, columns, tuple(c for c, _ in constants), per, or_ignore),
                [fixed + values[i:i + step] for i in range(0, whole, step)],
            ).rowcount
        if whole < len(values):
            added += self.conn.executemany(
                self._insert_sql(table, columns, tuple(c for c, _ in constants), 1, or_ignore),
                [fixed + values[i:i + width] for i in range(whole, len(values), width)],
            ).rowcount
        return added

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _insert_sql(table: str, columns: tuple[str, ...], constants: tuple[str, ...], rows: int, or_ignore: bool) -> str:
        # INSERT INTO t(a, b, c) VALUES (?3, ?4, ?1), (?5, ?6, ?1), ...: numbered parameters, so that
        # each constant is bound once however many rows the statement inserts.
        fixed = [f"?{i + 1}" for i in range(len(constants))]
        width = len(columns)
        groups = []
        for r in range(rows):
            first = len(constants) + 1 + r * width
            groups.append("(" + ", ".join([f"?{first + i}" for i in range(width)] + fixed) + ")")
        verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
        return f"{verb} INTO {table}({', '.join(columns + constants)}) VALUES {', '.join(groups)}"

    def _resolve(self, table: str, cache: dict[bytes, int], items: list[tuple], *positions: int) -> None:
        """Put the ids of rows already in `table` with the items' hashes (at `positions`) into `cache`."""
        if self._complete[table]:
            return
        unknown = list({item[i] for item in items for i in positions or (0,)} - cache.keys())
        for start in range(0, len(unknown), _IN_CHUNK):
            chunk = unknown[start:start + _IN_CHUNK]
            cache.update(
                self.conn.execute(f"SELECT hash, id FROM {table} WHERE hash IN ({', '.join('?' * len(chunk))})", chunk)
            )

    def _lookup_pairs(self, items: list[tuple]) -> None:
        if self._complete["pairs"]:
            return
        unknown = list({item[6] for item in items} - self._pair_ids.keys())
        for start in range(0, len(unknown), _IN_CHUNK):
            chunk = unknown[start:start + _IN_CHUNK]
            for h, pair_id, a_digest in self.conn.execute(
                f"""SELECT p.hash, p.id, r.hash FROM pairs p JOIN responses r ON r.id = p.response_a_id
                    WHERE p.hash IN ({', '.join('?' * len(chunk))})""",
                chunk,
            ):
                self._pair_ids[h] = (pair_id, a_digest)
