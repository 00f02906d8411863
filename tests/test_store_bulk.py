"""BulkWriter's fast paths: stable content hashes, skipped look-ups, and their limits."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.records import user_prompt
from rlhf_workbench.core.bulk import (
    BulkWriter,
    content_hash,
    judgment_import_key,
    pair_hash,
    prompt_hash,
    response_hash,
)


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
