"""BulkWriter's fast paths: stable content hashes, skipped look-ups, and their limits."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_workbench.core.bulk import (
    BulkWriter,
    content_hash,
    judgment_import_key,
    pair_hash,
    prompt_hash,
    response_hash,
)
from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.records import user_prompt


def _reference_hash(*parts: str | bytes) -> bytes:
    """The definition: each part as its 8-byte little-endian length, then its bytes (text as UTF-8)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def test_hashes_are_pinned():
    """Stored hashes identify content across versions: these values must never change."""
    p = prompt_hash('[{"role":"user","content":"What is 2 + 3?"}]')
    a, b = response_hash(p, "2 + 3 = 5."), response_hash(p, "2 + 3 = 6.")
    pair = pair_hash(p, a, b)
    assert p.hex() == "04f71d21403a1abfae2bcc5d50299830"
    assert a.hex() == "e61279779c85d21b6c8169a6325c1348"
    assert b.hex() == "0af4a8159b884524bb54c1c5d9a619d9"
    assert pair.hex() == "df8c326e31f327dc39af84406059fd58"
    assert pair_hash(p, b, a) == pair
    assert judgment_import_key(pair, "dataset:demo", "a").hex() == "4106ad2e3115d7e08c1bb250f9e8e36d"
    assert content_hash("é", b"\x00", "").hex() == "df2e913efe9543938ebcd2a242e20345"


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text(), st.text(), st.text(min_size=1), st.binary(max_size=40))
def test_fast_hashes_match_the_definition(prompt, text_1, text_2, annotator, raw):
    p = prompt_hash(prompt)
    assert p == _reference_hash(b"prompt", prompt)
    r1, r2 = response_hash(p, text_1), response_hash(p, text_2)
    assert r1 == _reference_hash(b"response", p, text_1)
    low, high = sorted((r1, r2))
    assert pair_hash(p, r1, r2) == pair_hash(p, r2, r1) == _reference_hash(b"pair", p, low, high)
    assert pair_hash(raw, r1, raw) == _reference_hash(b"pair", raw, *sorted((r1, raw)))
    assert judgment_import_key(raw, annotator, "tie") == _reference_hash(b"judgment", raw, annotator, "tie")
    assert content_hash(prompt, raw, text_1) == _reference_hash(prompt, raw, text_1)


def test_writer_outside_a_transaction_is_refused(project):
    with pytest.raises(WorkbenchError, match="inside store.transaction"):
        BulkWriter(project.store, import_id=None, source="dataset", source_name="t")


def test_lookups_still_happen_for_tables_that_were_not_empty(project):
    """Prompts written first (a prompt list), pairs later: the prompts are found, not duplicated."""
    store = project.store
    with store.transaction():
        writer = BulkWriter(store, import_id=None, source="dataset", source_name="t")
        for i in range(10):
            writer.add_prompt(user_prompt(f"q{i}"))
        writer.flush()
    with store.transaction():
        writer = BulkWriter(store, import_id=None, source="dataset", source_name="t")
        for i in range(10):
            writer.add_pair(user_prompt(f"q{i}"), f"a{i}", f"b{i}", origin="t", verdict="a", annotator="dataset:t")
        writer.add_pair(user_prompt("q0"), "b0", "a0", origin="t", verdict="b", annotator="dataset:t")
        writer.flush()
    assert writer.counts.prompts_added == 0
    assert writer.counts.pairs_added == 10 and writer.counts.pairs_existing == 1
    # The same verdict said from the other side is one judgment.
    assert writer.counts.judgments_added == 10 and writer.counts.judgments_existing == 1
    assert store.counts() == {"prompts": 10, "responses": 20, "pairs": 10, "judgments": 10, "runs": 0}


def test_duplicates_within_one_fresh_import_are_caught_without_lookups(project):
    store = project.store
    with store.transaction():
        writer = BulkWriter(store, import_id=None, source="dataset", source_name="t")
        n = BulkWriter.BATCH + 10
        for i in range(n):
            # Every pair twice, the second time in another batch and the other way round.
            writer.add_pair(user_prompt(f"q{i % 100}"), f"a{i}", f"b{i}", origin="t")
        for i in range(n):
            writer.add_pair(user_prompt(f"q{i % 100}"), f"b{i}", f"a{i}", origin="t")
        writer.flush()
    assert writer.counts.prompts_added == 100
    assert writer.counts.pairs_added == n and writer.counts.pairs_existing == n
    assert store.counts()["responses"] == 2 * n


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text(), st.text(), st.sampled_from([None, "a", "b", "tie"]), st.sampled_from([None, "", "dataset:x", "ada"]))
def test_hash_pair_gives_the_definitions_digests_from_text_or_its_utf8_bytes(prompt, text_a, text_b, verdict, annotator):
    """BulkWriter.hash_pair computes the five digests in one function; a format's fast path hands
    it UTF-8 bytes rather than str. Both give the digests of the functions above."""
    p = prompt_hash(prompt)
    a, b = response_hash(p, text_a), response_hash(p, text_b)
    pair = pair_hash(p, a, b)
    key = judgment_import_key(pair, annotator or "", verdict) if verdict is not None else None
    for form in (str, lambda text: text.encode("utf-8")):
        item = (None, form(prompt), None, form(text_a), None, form(text_b), None, "t", None, None, verdict, annotator, None)
        hashed = BulkWriter.hash_pair(item)
        assert (hashed[0], hashed[2], hashed[4], hashed[6], hashed[12]) == (p, a, b, pair, key)
        assert hashed[1::2][:3] == (item[1], item[3], item[5]) and hashed[7:12] == item[7:12]


def _index_names(store) -> set[str]:
    return {name for (name,) in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}


def test_a_first_import_sets_aside_only_the_index_on_a_hash_alone(project):
    """Since schema 4 the responses', pairs' and judgments' unique indexes lead with the parent's
    id, so they are appended to while rows are written; only prompts(hash) is rebuilt at the end."""
    store = project.store
    before = _index_names(store)
    assert {"responses_prompt_hash", "pairs_prompt_hash", "judgments_pair_import_key", "prompts_hash"} <= before
    with store.transaction(foreign_keys=False):
        writer = BulkWriter(store, import_id=None, source="dataset", source_name="t")
        writer.add_pair(user_prompt("q"), "x", "y", origin="t", verdict="a", annotator="dataset:t")
        writer._write_batch()
        assert before - _index_names(store) == {"prompts_hash"}
        writer.flush()
    assert _index_names(store) == before


def test_the_prompt_led_indexes_keep_hashes_unique(project):
    store = project.store
    with store.transaction():
        writer = BulkWriter(store, import_id=None, source="dataset", source_name="t")
        writer.add_pair(user_prompt("q"), "x", "y", origin="t", verdict="a", annotator="dataset:t")
        writer.flush()
    conn = store.conn
    for sql in (
        "INSERT INTO responses(hash, prompt_id, text, source, created_at) SELECT hash, prompt_id, 'other', source, created_at FROM responses WHERE id = 1",
        "INSERT INTO pairs(hash, prompt_id, response_a_id, response_b_id, origin, created_at) SELECT hash, prompt_id, response_b_id, response_a_id, origin, created_at FROM pairs WHERE id = 1",
        "INSERT INTO judgments(pair_id, annotator, verdict, created_at, import_key) SELECT pair_id, 'someone', verdict, created_at, import_key FROM judgments WHERE id = 1",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute(sql)
    # A person's verdicts have no import key: any number of them.
    store.add_judgment(1, "ada", "a")
    store.add_judgment(1, "ada", "a")


def test_a_later_import_finds_stored_responses_and_pairs_by_their_prompt(project):
    """Responses and pairs already stored are looked up by prompt (all of a prompt's at once),
    across batches, whatever else the batch holds."""
    store = project.store
    n = BulkWriter.BATCH + 10
    with store.transaction():
        writer = BulkWriter(store, import_id=None, source="dataset", source_name="t")
        for i in range(n):
            writer.add_pair(user_prompt(f"q{i % 300}"), f"a{i}", f"b{i}", origin="t", verdict="a", annotator="dataset:t")
        writer.flush()
    with store.transaction():
        writer = BulkWriter(store, import_id=None, source="dataset", source_name="t")
        for i in range(n):
            if i % 3 == 0:  # the same pair the other way round, the same verdict said from that side
                writer.add_pair(user_prompt(f"q{i % 300}"), f"b{i}", f"a{i}", origin="t", verdict="b", annotator="dataset:t")
            elif i % 3 == 1:  # a stored response with a new one, to a stored prompt
                writer.add_pair(user_prompt(f"q{i % 300}"), f"a{i}", f"new{i}", origin="t", verdict="a", annotator="dataset:t")
            else:  # the same pair and verdict, and a new prompt
                writer.add_pair(user_prompt(f"q{i % 300}"), f"a{i}", f"b{i}", origin="t", verdict="a", annotator="dataset:t")
                writer.add_pair(user_prompt(f"new q{i}"), f"a{i}", f"b{i}", origin="t", verdict="a", annotator="dataset:t")
        writer.flush()
    new_prompts = len(range(2, n, 3))
    ones = len(range(1, n, 3))
    assert writer.counts.prompts_added == new_prompts
    assert writer.counts.responses_added == ones + 2 * new_prompts
    assert writer.counts.pairs_added == ones + new_prompts
    assert writer.counts.pairs_existing == n - ones
    assert writer.counts.judgments_added == ones + new_prompts and writer.counts.judgments_existing == n - ones
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
