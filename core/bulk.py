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
from typing import TYPE_CHECKING, Any

from .errors import WorkbenchError
from .records import SWAPPED_VERDICT, Conversation, conversation_to_json

if TYPE_CHECKING:
    from .store import Store

# SQLite's default limit on bound parameters is 999 on old builds; stay under it.
_IN_CHUNK = 500

_blake2b = hashlib.blake2b
_length = struct.Struct("<Q").pack  # len(data).to_bytes(8, "little"), faster
_PROMPT_TAG = _length(6) + b"prompt"
_RESPONSE_TAG = _length(8) + b"response"
_PAIR_TAG = _length(4) + b"pair"
_JUDGMENT_TAG = _length(8) + b"judgment"
_DIGEST_LENGTH = _length(16)
# The columns whose values may come as UTF-8 bytes (prepared items' texts); see `_insert_sql`.
_TEXT_COLUMNS = frozenset({"messages", "text"})
# What precedes a 16-byte digest in the response, pair and judgment hashes.
_RESPONSE_HEAD = _RESPONSE_TAG + _DIGEST_LENGTH
_PAIR_HEAD = _PAIR_TAG + _DIGEST_LENGTH
_JUDGMENT_HEAD = _JUDGMENT_TAG + _DIGEST_LENGTH


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

    Rows are buffered and resolved against the database a batch at a time, and ids assigned here
    so that the inserts are plain executemany calls. Prompts are looked up by hash (one
    `hash IN (...)` query per few hundred rows); responses and pairs by prompt, all of a stored
    prompt's at once, through the unique indexes on (prompt_id, hash) (their hashes include their
    prompt's, so these are as unique as the hashes). A table that was empty when the writer
    started needs no look-ups at all: every row in it was written by this writer and is in its
    cache (the caller's transaction keeps other connections out). When all of them were empty (a
    first import), the writer also sets aside the unique indexes on a hash alone (prompts(hash)
    since schema 4) and builds them once in `flush()`: sorting 100,000 keys once is much cheaper
    than keeping a random-order index current row by row. The other indexes stay: their keys
    arrive in order (ids, parent ids first, a handful of origins), so keeping them current costs
    little, and in a two-process import that happens while the other process is still reading
    rather than at the end, when only this one works. This is what keeps a 100,000-record import
    within a small multiple of the time it takes merely to parse the file; bench/import_bench.py
    measures it.

    Call `flush()` once at the end: it writes what is buffered and restores the indexes. Use inside
    `store.transaction(foreign_keys=False)`: every id the writer references, it assigned itself.
    One writer at a time per transaction: ids are assigned here, from the tables' maxima at start.
    """

    _TABLES = ("prompts", "responses", "pairs", "judgments")

    BATCH = 4096
    # The page cache (KiB) the connection gets for an import: a hash index kept current is
    # written in random order (a later import's, or prompts(hash) outside a first import), and
    # with SQLite's default 2 MB cache its pages are evicted and re-read over and over. A limit,
    # not an allocation; it stays set on the connection (pages are freed when it closes).
    CACHE_KIB = 64 * 1024

    def __init__(self, store: Store, *, import_id: int | None, source: str, source_name: str | None):
        self.conn = store.conn
        if not self.conn.in_transaction:
            raise WorkbenchError("internal: BulkWriter must be used inside store.transaction()")
        self.import_id = import_id
        self.source = source
        self.source_name = source_name
        from .store import now_iso  # here, not at the top: see importing.py

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
        self._looked_for_indexes = False  # whether the indexes to set aside were looked for
        # While a unique index of the judgments is set aside (schemas before version 4), duplicates
        # are caught here instead.
        self._judgments_checked_here = False
        self._judgment_keys: set[bytes] = set()
        # Prompts (ids) that existed before this writer, whose responses and pairs are in the
        # caches: looked up once, by the indexes that lead with prompt_id (see `_resolve_responses`).
        self._first_new_prompt = self._next_id["prompts"]
        self._responses_loaded: set[int] = set()
        self._pairs_loaded: set[int] = set()
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
        return BulkWriter.prepare_json_pair(
            conversation_to_json(prompt), response_a, response_b,
            origin=origin, margin=margin, meta=meta, verdict=verdict, annotator=annotator, hashed=hashed,
        )

    @staticmethod
    def prepare_json_pair(
        prompt_json: str,
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
        """`prepare_pair` for a prompt already in its canonical JSON (records.conversation_to_json).

        The prompt JSON and the two responses may be given as str or as their UTF-8 bytes (a
        format's fast path makes bytes: they are what is hashed, cross a process boundary
        without being encoded and decoded again, and are stored as TEXT as they are).
        """
        item = (
            None, prompt_json, None, response_a, None, response_b, None, origin, margin,
            json.dumps(meta, ensure_ascii=False) if meta else None,
            verdict, annotator, None,
        )
        return BulkWriter.hash_pair(item) if hashed else item

    @staticmethod
    def prepare_prompt(prompt: Conversation, *, hashed: bool = True) -> tuple:
        messages = conversation_to_json(prompt)
        return (prompt_hash(messages) if hashed else None, messages)

    @staticmethod
    def hash_items(items: list[tuple]) -> list[tuple]:
        """The items with the digests of those prepared with `hashed=False` filled in."""
        return [
            item if item[0] is not None
            else BulkWriter.hash_pair(item) if len(item) > 2
            else (prompt_hash(item[1]), item[1])
            for item in items
        ]

    @staticmethod
    def hash_pair(item: tuple) -> tuple:
        """A prepared pair with its five digests computed from its texts.

        The same digests as prompt_hash, response_hash, pair_hash and judgment_import_key
        (tests/test_store_bulk.py checks it), written out in one function: the calls and the
        repeated tag and length encoding cost as much as the hashing itself.
        """
        _, prompt_json, _, text_a, _, text_b, _, origin, margin, meta, verdict, annotator, _ = item
        data = prompt_json if type(prompt_json) is bytes else prompt_json.encode("utf-8")
        p = _blake2b(_PROMPT_TAG + _length(len(data)) + data, digest_size=16).digest()
        head = _RESPONSE_HEAD + p
        data = text_a if type(text_a) is bytes else text_a.encode("utf-8")
        a = _blake2b(head + _length(len(data)) + data, digest_size=16).digest()
        data = text_b if type(text_b) is bytes else text_b.encode("utf-8")
        b = _blake2b(head + _length(len(data)) + data, digest_size=16).digest()
        pair = _blake2b(
            _PAIR_HEAD + p + (_DIGEST_LENGTH + a + _DIGEST_LENGTH + b if a <= b else _DIGEST_LENGTH + b + _DIGEST_LENGTH + a),
            digest_size=16,
        ).digest()
        return (
            p, prompt_json, a, text_a, b, text_b, pair, origin, margin, meta, verdict, annotator,
            _blake2b(_JUDGMENT_HEAD + pair + _judgment_tail(annotator or "", verdict), digest_size=16).digest()
            if verdict is not None else None,
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
        self._looked_for_indexes = self._judgments_checked_here = False

    def _write_batch(self) -> None:
        pending, self._pending = self._pending, []
        self.write_prepared(pending)

    def _set_indexes_aside(self) -> None:
        self._looked_for_indexes = True
        tables = ", ".join(f"'{t}'" for t in self._TABLES)
        # Read from the database rather than listed here, so that a later migration's indexes are
        # restored exactly as that migration made them. (sql IS NULL: a primary key's own index.)
        # Only the unique ones that lead with a hash: their keys come in random order (see the
        # class doc). Since schema 4 that is prompts(hash) alone; the others lead with the id
        # of the row's parent, which grows as rows are added, so keeping them current is cheap.
        for name, table, sql in self.conn.execute(
            f"""SELECT m.name, m.tbl_name, m.sql FROM sqlite_master m
                WHERE m.type = 'index' AND m.sql IS NOT NULL AND m.tbl_name IN ({tables})
                  AND m.sql LIKE 'CREATE UNIQUE INDEX%'
                  AND (SELECT i.name FROM pragma_index_info(m.name) i WHERE i.seqno = 0) IN ('hash', 'import_key')"""
        ).fetchall():
            self.conn.execute(f'DROP INDEX "{name}"')
            self._set_aside_indexes.append(sql)
            if table == "judgments":
                self._judgments_checked_here = True

    # -- the database half -----------------------------------------------------------------------

    # Rows per INSERT statement. One statement inserting many rows costs SQLite and the sqlite3
    # module much less per row than one row per statement (~40% less for an import's rows).
    ROWS_PER_INSERT = 64

    def write_prepared(self, items: list[tuple]) -> None:
        """Write prepared items (see `prepare_pair`), in order. Call `flush()` once at the end."""
        if not items:
            return
        if self._fresh and not self._looked_for_indexes:
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

        # Responses (A and B of each pair, new ones in order), pairs, and the verdicts that came
        # with them: one pass over the pairs, the responses written first.
        response_ids = self._response_ids
        self._resolve_responses(pairs)
        self._lookup_pairs(pairs)
        pair_ids = self._pair_ids
        responses: list = []
        add_response = responses.extend
        values = []
        add = values.extend
        judgments: list = []
        judge = judgments.extend
        next_response = first_response = self._next_id["responses"]
        next_id = first_id = self._next_id["pairs"]
        existing = 0
        for item in pairs:
            prompt_id = prompt_ids[item[0]]
            a_digest = item[2]
            a_id = response_ids.get(a_digest)
            if a_id is None:
                a_id = response_ids[a_digest] = next_response
                add_response((next_response, a_digest, prompt_id, item[3]))
                next_response += 1
            b_digest = item[4]
            b_id = response_ids.get(b_digest)
            if b_id is None:
                b_id = response_ids[b_digest] = next_response
                add_response((next_response, b_digest, prompt_id, item[5]))
                next_response += 1
            digest = item[6]
            known = pair_ids.get(digest)
            if known is None:
                pair_id = next_id
                next_id += 1
                pair_ids[digest] = (pair_id, a_digest)
                add((pair_id, digest, prompt_id, a_id, b_id, item[7], item[8], item[9]))
                if item[10] is not None:
                    judge((pair_id, item[11], item[10], item[12]))
            else:
                pair_id, stored_a = known
                existing += 1
                verdict = item[10]
                if verdict is not None:
                    key = item[12]
                    if stored_a != a_digest:
                        # The verdict was given relative to this record's order; store it relative to the pair's.
                        verdict = SWAPPED_VERDICT[verdict]
                        key = judgment_import_key(digest, item[11] or "", verdict)
                    judge((pair_id, item[11], verdict, key))
        if responses:
            self._next_id["responses"] = next_response
            self._insert(
                "responses",
                ("id", "hash", "prompt_id", "text"),
                (("source", self.source), ("source_name", self.source_name), ("created_at", created_at)),
                responses,
            )
            counts.responses_added += next_response - first_response
        counts.pairs_existing += existing
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
        if self._judgments_checked_here:
            # While the unique index is set aside, duplicate keys are caught here instead.
            keys = self._judgment_keys
            if not existing:
                # Only new pairs in this batch: their keys are new too (a key names its pair).
                keys.update(judgments[3::4])
                unique = judgments
            else:
                unique = []
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
        # Text columns take str or UTF-8 bytes (see `prepare_json_pair`): CAST makes bytes TEXT
        # as they are, without the sqlite3 module decoding and encoding them again.
        cast = [column in _TEXT_COLUMNS for column in columns]
        groups = []
        for r in range(rows):
            first = len(constants) + 1 + r * width
            values = [f"CAST(?{first + i} AS TEXT)" if cast[i] else f"?{first + i}" for i in range(width)]
            groups.append("(" + ", ".join(values + fixed) + ")")
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

    def _older_prompts(self, items: list[tuple], position: int, loaded: set[int]) -> list[int]:
        """Ids of the prompts of `items` that existed before this writer started, whose rows in
        another table are not loaded yet, where the item's digest at `position` is not cached."""
        prompt_ids, first_new = self._prompt_ids, self._first_new_prompt
        cache = self._response_ids if position != 6 else self._pair_ids
        wanted = {
            prompt_ids[item[0]] for item in items
            if item[position] not in cache or (position == 2 and item[4] not in cache)
        }
        return [prompt_id for prompt_id in wanted if prompt_id < first_new and prompt_id not in loaded]

    def _resolve_responses(self, items: list[tuple]) -> None:
        """Put the ids of stored responses to the items' prompts into the cache.

        Looked up by prompt, through the unique index on (prompt_id, hash) (a response's hash
        includes its prompt's): all the responses of a prompt at once, index only. A prompt this
        writer added has none but those in the cache."""
        if self._complete["responses"]:
            return
        older = self._older_prompts(items, 2, self._responses_loaded)
        for start in range(0, len(older), _IN_CHUNK):
            chunk = older[start:start + _IN_CHUNK]
            self._response_ids.update(
                self.conn.execute(
                    f"SELECT hash, id FROM responses WHERE prompt_id IN ({', '.join('?' * len(chunk))})", chunk
                )
            )
        self._responses_loaded.update(older)

    def _lookup_pairs(self, items: list[tuple]) -> None:
        """The same for pairs (their hash includes their prompt's too), with the digest of each
        stored pair's response A."""
        if self._complete["pairs"]:
            return
        older = self._older_prompts(items, 6, self._pairs_loaded)
        for start in range(0, len(older), _IN_CHUNK):
            chunk = older[start:start + _IN_CHUNK]
            for h, pair_id, a_digest in self.conn.execute(
                f"""SELECT p.hash, p.id, r.hash FROM pairs p JOIN responses r ON r.id = p.response_a_id
                    WHERE p.prompt_id IN ({', '.join('?' * len(chunk))})""",
                chunk,
            ):
                self._pair_ids[h] = (pair_id, a_digest)
        self._pairs_loaded.update(older)
