"""The import's fast paths give exactly what the plain ones gave.

Three pieces of the import were made faster (orjson for reading JSON and for the canonical prompt
JSON, a leaner HH transcript split). Each is checked here against the plain implementation it
replaced, kept below as the reference: on every record of the shared data and on generated input.
Also here: what orjson refuses and json accepted (NaN, lone surrogates, integers beyond 64 bits,
a byte order mark inside the file) is handled deliberately, and a lone surrogate never reaches
the store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_workbench.core.errors import FieldError, InputError
from rlhf_workbench.core.formats import MAX_TEXT_CHARS, ReadOptions, get_format
from rlhf_workbench.core.formats.hh_rlhf import split_pair
from rlhf_workbench.core.formats.rows import Row, RowSource
from rlhf_workbench.core.import_rows import prepared_batches, validate_record
from rlhf_workbench.core.importing import import_file
from rlhf_workbench.core.records import ROLES, Message, PairRecord, conversation_from_json, conversation_to_json

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HH_FILE = SHARED / "hh-rlhf-harmless" / "pairs.jsonl"
OASST_FILE = SHARED / "oasst-en100" / "trees.jsonl"


# -- the references: the plain implementations the fast ones replaced ------------------------------


def reference_conversation_json(conversation) -> str:
    return json.dumps([m.to_dict() for m in conversation], ensure_ascii=False, separators=(",", ":"))


_HUMAN, _ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
_TURNS = re.compile(r"\n\n(Human|Assistant): ?")


def reference_split_pair(chosen: str, rejected: str):
    """hh_rlhf.split_pair as it was, minus its error messages (only the fields are compared)."""
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        if not text.startswith(_HUMAN) or _ASSISTANT not in text:
            raise FieldError(name, "")
    cut = chosen.rfind(_ASSISTANT)
    if rejected.rfind(_ASSISTANT) != cut or not chosen.startswith(rejected[:cut]):
        cut = chosen.rfind(_ASSISTANT, 0, len(os.path.commonprefix([chosen, rejected])))
        if cut < 0:
            raise FieldError("rejected", "")
    parts = _TURNS.split(chosen[:cut])
    role = {"Human": "user", "Assistant": "assistant"}
    prompt = tuple(Message(role[tag], content) for tag, content in zip(parts[1::2], parts[2::2]))
    start = cut + len(_ASSISTANT)

    def strip_one(text: str) -> str:
        return text[1:] if text.startswith(" ") else text

    return prompt, strip_one(chosen[start:]), strip_one(rejected[start:])


def _read(path: Path, name: str):
    fmt = get_format(name)
    for item in RowSource(path).rows():
        assert isinstance(item, Row), item
        yield item.data, list(fmt.parse_row(item.data, ReadOptions()))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"the shared data is not at {path}")
    return path


# -- canonical prompt JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "name"), [(HH_FILE, "hh-rlhf"), (OASST_FILE, "oasst")])
def test_prompt_json_is_byte_identical_on_every_prompt_of_the_shared_data(path, name):
    prompts = [record.prompt for _, records in _read(_need(path), name) for record in records]
    assert len(prompts) > 100
    for prompt in prompts:
        text = conversation_to_json(prompt)
        assert text == reference_conversation_json(prompt)
        assert conversation_from_json(text) == prompt


# Characters where JSON writers differ, if anywhere: every control character, quotes and
# backslashes, DEL, the JavaScript line separators, non-ASCII in every UTF-8 length, emoji
# (non-BMP) and noncharacters. Surrogates are excluded: see the next test.
_TRICKY = "".join(map(chr, range(0x20))) + '"\\/\x7f\u0080\u00e9\u2028\u2029\u200b\ufeff\uffff\U0001f600\U0010ffff '
_TEXT = st.text(st.one_of(st.sampled_from(_TRICKY), st.characters(blacklist_categories=("Cs",))))


@settings(max_examples=500)
@given(st.lists(st.tuples(st.sampled_from(ROLES), _TEXT), max_size=6))
@pytest.mark.slow
def test_prompt_json_is_byte_identical_on_any_text(messages):
    prompt = tuple(Message(role, content) for role, content in messages)
    text = conversation_to_json(prompt)
    assert text == reference_conversation_json(prompt)
    assert text.encode("utf-8") == reference_conversation_json(prompt).encode("utf-8")
    assert conversation_from_json(text) == prompt


def test_prompt_json_is_byte_identical_on_every_character():
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    prompt = (Message("user", every), Message("assistant", every[::-1]))
    assert conversation_to_json(prompt) == reference_conversation_json(prompt)


def test_prompt_json_refuses_a_lone_surrogate_which_imports_reject_before():
    # json.dumps would write it (and SQLite would then refuse the string); orjson refuses at once.
    with pytest.raises(TypeError):
        conversation_to_json((Message("user", "a\ud800b"),))
    record = PairRecord((Message("user", "a\ud800b"),), "x", "y")
    with pytest.raises(FieldError) as caught:
        validate_record(record, 1000)
    assert caught.value.field == "prompt" and "lone surrogate (\\ud800)" in caught.value.reason


# -- HH transcripts --------------------------------------------------------------------------------


def test_hh_split_matches_the_reference_on_every_shared_record():
    rows = [row for row, _ in _read(_need(HH_FILE), "hh-rlhf")]
    assert len(rows) == 1812
    for row in rows:
        assert split_pair(row["chosen"], row["rejected"]) == reference_split_pair(row["chosen"], row["rejected"])


# Transcripts built from the pieces that matter: both tags, spaces, newlines, a bare "Human:".
_PIECE = st.sampled_from([_HUMAN, _ASSISTANT, " ", "  ", "\n", "\n\n", "Human:", "Assistant:", "a", "b", "é"])
_TRANSCRIPT = st.lists(_PIECE, max_size=12).map("".join)


@settings(max_examples=1000)
@given(_TRANSCRIPT, _TRANSCRIPT, _TRANSCRIPT, st.booleans())
@pytest.mark.slow
def test_hh_split_matches_the_reference_on_generated_transcripts(prompt, chosen_tail, rejected_tail, shared):
    chosen = _HUMAN + prompt + chosen_tail
    rejected = _HUMAN + prompt + rejected_tail if shared else _HUMAN + rejected_tail
    try:
        expected = reference_split_pair(chosen, rejected)
    except FieldError as exc:
        with pytest.raises(FieldError) as caught:
            split_pair(chosen, rejected)
        assert caught.value.field == exc.field
    else:
        assert split_pair(chosen, rejected) == expected


# -- reading JSON lines and arrays -----------------------------------------------------------------

# Integers beyond 64 bits come back exact at a row's top level, where formats read numbers; nested
# deeper, orjson's rounded float is kept (nothing reads numbers there).
_INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_JSON = st.recursive(
    st.none() | st.booleans() | _INT64 | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_ROW = st.dictionaries(_TEXT, st.integers() | _JSON, max_size=5)


@settings(max_examples=300)
@given(st.lists(_ROW, min_size=1, max_size=5), st.booleans())
@pytest.mark.slow
def test_rows_are_what_json_loads_gives(tmp_path_factory, rows, ascii_only):
    folder = tmp_path_factory.mktemp("rows")
    lines = [json.dumps(row, ensure_ascii=ascii_only) for row in rows]
    (folder / "rows.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "rows.json").write_text("[" + ",".join(lines) + "]", encoding="utf-8")
    for name in ("rows.jsonl", "rows.json"):
        items = list(RowSource(folder / name).rows())
        assert [item.data for item in items] == [json.loads(line) for line in lines]
        # Equal, and of the same types (1 == 1.0 == True in Python).
        assert repr([item.data for item in items]) == repr([json.loads(line) for line in lines])


def _jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _items(path: Path) -> list:
    return list(RowSource(path).rows())


def test_integers_beyond_64_bits_stay_exact(tmp_path):
    # orjson would read them as floats (rounded): such a row is read with json instead.
    big, low = 2**64 + 1, -(2**63) - 1  # the first integers beyond 64 bits either way
    line = json.dumps({"id": big, "n": low, "x": 1.5, "nested": [2**70]}).encode()
    for path in (_jsonl(tmp_path / "a.jsonl", [line]), tmp_path / "a.json"):
        if path.suffix == ".json":
            path.write_bytes(b"[" + line + b"]")
        (item,) = _items(path)
        assert item.data == {"id": big, "n": low, "x": 1.5, "nested": [2**70]}
        assert type(item.data["id"]) is int


def test_a_number_too_large_for_a_double_is_read_as_json_reads_it(tmp_path):
    (item,) = _items(_jsonl(tmp_path / "a.jsonl", [b'{"margin": 1e400}']))
    assert item.data == {"margin": float("inf")}


def test_a_byte_order_mark_on_a_later_line_is_skipped_as_before(tmp_path):
    # Files joined with `cat`: json.loads(bytes) skipped the BOM; orjson refuses it.
    items = _items(_jsonl(tmp_path / "a.jsonl", [b'\xef\xbb\xbf{"a": 1}', b'\xef\xbb\xbf{"b": 2}']))
    assert [item.data for item in items] == [{"a": 1}, {"b": 2}]


@pytest.mark.parametrize(
    ("line", "field", "says"),
    [
        (b'{"a": "x" "b": 1}', None, "is not valid JSON (Expecting ',' delimiter, column 11)"),
        (b'{"a": "h\xe9llo"}', None, "is not valid UTF-8 (byte 0xe9 at column 9); save the file as UTF-8"),
        # Encoded surrogates (CESU-8) are not UTF-8; json.loads(bytes) used to let them through.
        (b'{"a": "\xed\xa0\x80"}', None, "is not valid UTF-8 (byte 0xed at column 8)"),
        (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", None, "nests [ or { too deeply"),
        # Deeper than json reads, not as deep as orjson refuses: refused as json did.
        (b'{"a": ' + b"[" * 1010 + b"]" * 1010 + b"}", None, "nests [ or { too deeply"),
        (b'{"ok": "x", "margin": NaN}', "margin", "holds NaN, which is not a JSON number; write null"),
        (b'{"ok": "x", "m": [1, -Infinity]}', "m", "holds -Infinity, which is not a JSON number"),
        (b'{"ok": "x", "prompt": "a\\ud800b"}', "prompt", "has an invalid \\u escape: a lone surrogate (\\ud800), which is not valid text"),
        (b'{"prompt": [{"content": "\\udc00"}]}', "prompt", "a lone surrogate (\\udc00)"),
        (b'{"\\ud800": "x"}', None, "has a column name with an invalid \\u escape: a lone surrogate (\\ud800)"),
    ],
)
def test_lines_orjson_refuses_are_rejected_with_a_clear_reason(tmp_path, line, field, says):
    good = b'{"a": "\\ud83d\\ude00 a pair of surrogates is one character"}'
    first, second, third = _items(_jsonl(tmp_path / "a.jsonl", [good, line, good]))
    assert isinstance(first, Row) and first.data["a"].startswith("\U0001f600")
    assert not isinstance(second, Row)
    assert (second.line, second.field) == (2, field)
    assert says in second.reason
    assert isinstance(third, Row)


def test_a_truncated_last_line_still_says_so(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": ')
    _, second = _items(path)
    assert second.reason == "is not valid JSON (Expecting value, column 7); the file may be truncated"


def test_a_value_nested_deeper_than_json_reads_is_rejected_not_a_crash(project, tmp_path):
    # orjson reads 1010 levels; an error message quoting the value (repr) would then overflow
    # the stack. The row is read with json instead, which rejects it as before.
    path = tmp_path / "deep.jsonl"
    deep = "[" * 1010 + "]" * 1010
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n' f'{{"prompt": "q", "chosen": "a", "rejected": "b", "margin": {deep}}}\n')
    report = import_file(project, path, skip_bad=True)
    assert report.pairs_added == 1
    [rejected] = report.rejected
    assert rejected.line == 2 and "too deeply" in rejected.reason
    path = tmp_path / "deep.json"
    path.write_text(f'[{{"prompt": "q", "chosen": "a", "rejected": "b", "margin": {deep}}}]')
    with pytest.raises(InputError, match="too deeply"):
        import_file(project, path)


def test_array_items_with_nan_or_a_lone_surrogate_are_rejected_one_by_one(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'[{"a": "ok"}, {"a": NaN}, {"b": "\\ud800"}, 3, {"a": "fine"}]')
    items = _items(path)
    assert [isinstance(item, Row) for item in items] == [True, False, False, False, True]
    assert (items[1].line, items[1].field) == (2, "a") and "NaN" in items[1].reason
    assert (items[2].line, items[2].field) == (3, "b") and "lone surrogate (\\ud800)" in items[2].reason
    assert "expected a JSON object" in items[3].reason


def test_a_broken_json_array_is_refused_whole_as_before(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'[{"a": 1},\n {"a": tru}]')
    with pytest.raises(InputError, match=r"line 2.*is not valid JSON \(Expecting value, column 8\)"):
        _items(path)
    path.write_bytes(b'[{"a": 1},\n {"a": "\xff"}]')
    with pytest.raises(InputError, match="line 2.*not valid UTF-8"):
        _items(path)


# -- a lone surrogate never reaches the store --------------------------------------------------------

_PAIR = {"prompt": "Say hi.", "response_a": "Hi!", "response_b": "Hello."}


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_lone_surrogate_in_a_json_file_names_line_and_field(project, tmp_path, suffix):
    bad = dict(_PAIR, response_b="Hel\ud800lo.")
    rows = [json.dumps(_PAIR), json.dumps(bad)]  # json.dumps writes the lone surrogate as "\ud800"
    assert "\\ud800" in rows[1]
    path = tmp_path / f"pairs{suffix}"
    path.write_text("\n".join(rows) + "\n" if suffix == ".jsonl" else "[" + ",\n".join(rows) + "]", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        import_file(project, path)
    assert (caught.value.line, caught.value.field) == (2, "response_b")
    assert "lone surrogate (\\ud800), which is not valid text" in str(caught.value)
    assert project.store.counts()["pairs"] == 0
    report = import_file(project, path, skip_bad=True)
    assert report.pairs_added == 1 and report.rejected_count == 1


def test_a_lone_surrogate_from_json_inside_a_csv_cell_is_refused_naming_the_field(project, tmp_path):
    # The CSV itself is valid UTF-8; the prompt cell holds a message list as JSON, where "\ud800"
    # decodes to a lone surrogate. Validation catches it before hashing would fail on it.
    path = tmp_path / "pairs.csv"
    path.write_text(
        'prompt,response_a,response_b\n'
        'Say hi.,Hi!,Hello.\n'
        '"[{""role"": ""user"", ""content"": ""a\\ud800b""}]",Hi!,Hello.\n',
        encoding="utf-8",
    )
    with pytest.raises(InputError) as caught:
        import_file(project, path)
    assert (caught.value.line, caught.value.field) == (3, "prompt")
    assert "lone surrogate (\\ud800), which is not valid text" in str(caught.value)
    report = import_file(project, path, skip_bad=True)
    assert report.pairs_added == 1 and report.rejected_count == 1


@pytest.mark.parametrize("field", ["response_a", "response_b", "annotator"])
def test_validation_names_each_text_field_with_a_lone_surrogate(field):
    values = {"response_a": "x", "response_b": "y", "annotator": "alice", field: "bad \udfff"}
    record = PairRecord((Message("user", "q"),), values["response_a"], values["response_b"], verdict="a", annotator=values["annotator"])
    with pytest.raises(FieldError) as caught:
        validate_record(record, 1000)
    assert caught.value.field == field
    assert caught.value.reason.endswith("contains a lone surrogate (\\udfff), which is not valid text")


# -- the HH fast path (Format.pair_row) -------------------------------------------------------------
#
# hh_rlhf.pair_row makes, for the usual row, what parse_row, validate_record and the canonical prompt JSON
# make, as UTF-8 bytes; for any other row it returns None and the general path decides. Checked
# here: on every shared record, through `prepared_batches` (several batches, digests computed
# here or left to the writer, the annotator overridden or not), and on generated transcripts,
# where it must either agree with the general path or step aside.


def _decoded(items: list[tuple]) -> list[tuple]:
    # Prepared items carry texts as str (general path) or UTF-8 bytes (fast path): one form to compare.
    return [tuple(v.decode("utf-8") if type(v) is bytes and i in (1, 3, 5) else v for i, v in enumerate(item)) for item in items]


@pytest.mark.parametrize("hashed", [True, False])
@pytest.mark.parametrize("annotator", [None, "ada"])
def test_hh_fast_path_prepares_exactly_the_general_paths_items_on_every_shared_record(hashed, annotator):
    fmt = get_format("hh-rlhf")
    assert fmt.pair_row is not None
    general = dataclasses.replace(fmt, pair_row=None)
    options = ReadOptions(annotator=annotator)

    def batches(f):
        return list(prepared_batches(f, RowSource(_need(HH_FILE)), options, False, 100, hash_here=lambda: hashed))

    fast_batches, general_batches = batches(fmt), batches(general)
    assert len(fast_batches) == len(general_batches) == 19  # 1,812 rows, 100 a batch
    for fast, slow in zip(fast_batches, general_batches):
        assert _decoded(fast[0]) == slow[0]
        assert fast[1:] == slow[1:]
        if hashed:
            assert all(type(item[0]) is bytes for item in fast[0])
    taken = sum(fmt.pair_row(row, MAX_TEXT_CHARS) is not None for row, _ in _read(HH_FILE, "hh-rlhf"))
    assert 1700 < taken < 1812, "the usual rows take the fast path; rows whose responses write role tags do not"


def _general_pair(row: dict, max_chars: int):
    """(prompt JSON, chosen, rejected) as the general path makes them, or the FieldError it raises."""
    try:
        (record,) = get_format("hh-rlhf").parse_row(row, ReadOptions(max_chars=max_chars))
        validate_record(record, max_chars)
    except FieldError as exc:
        return exc
    return conversation_to_json(record.prompt), record.response_a, record.response_b


_HH_PIECE = st.sampled_from([_HUMAN, _ASSISTANT, " ", "  ", "\n", "\n\n", "Human:", "Assistant:", "a", "b", "é", "\U0001f600", "\ud800"])
_HH_TEXT = st.lists(_HH_PIECE, max_size=10).map("".join)


@settings(max_examples=2000)
@given(_HH_TEXT, _HH_TEXT, _HH_TEXT, st.booleans(), st.sampled_from([MAX_TEXT_CHARS, 40, 12]))
@pytest.mark.slow
def test_hh_fast_path_agrees_with_the_general_path_or_steps_aside(prompt, chosen_tail, rejected_tail, shared, max_chars):
    chosen = _HUMAN + prompt + _ASSISTANT + chosen_tail
    rejected = (_HUMAN + prompt + _ASSISTANT if shared else _HUMAN) + rejected_tail
    row = {"chosen": chosen, "rejected": rejected}
    fast = get_format("hh-rlhf").pair_row(row, max_chars)
    general = _general_pair(row, max_chars)
    if fast is not None:
        assert not isinstance(general, FieldError), (row, general)
        assert tuple(part.decode("utf-8") for part in fast) == general


@pytest.mark.parametrize(
    "row",
    [
        {"chosen": "\n\nHuman: q\n\nAssistant: same", "rejected": "\n\nHuman: q\n\nAssistant:same"},
        {"chosen": "\n\nHuman: q\n\nAssistant: a"},
        {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": None},
        {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": 3},
        {"chosen": "Human: q\n\nAssistant: a", "rejected": "Human: q\n\nAssistant: b"},
        {"chosen": "\n\nHuman: q", "rejected": "\n\nHuman: q"},
        {"chosen": "\n\nHuman: q\n\nAssistant: a\ud800", "rejected": "\n\nHuman: q\n\nAssistant: b"},
        {"chosen": "\n\nHuman: q\ud800\n\nAssistant: a", "rejected": "\n\nHuman: q\ud800\n\nAssistant: b"},
        {"chosen": "\n\nHuman: q\n\nAssistant: a\n\nHuman: more\n\nAssistant: x", "rejected": "\n\nHuman: q\n\nAssistant: b"},
    ],
    ids=["identical", "missing", "null", "number", "no-leading-tag", "no-answer", "surrogate-response", "surrogate-prompt", "role-tags-in-response"],
)
def test_hh_fast_path_leaves_every_unusual_row_to_the_general_path(row):
    assert get_format("hh-rlhf").pair_row(row, MAX_TEXT_CHARS) is None
