"""Filtered and searched reading of pairs: the SQL behind the Data tab's filters and search."""

import threading

import pytest

from rlhf_workbench.core.errors import Stopped
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.records import Message
from rlhf_workbench.core.store.pairs import PairFilter

CONVERSATION = (
    Message("system", "You are terse."),
    Message("user", 'Quote "this" for me'),
    Message("assistant", "Done."),
    Message("user", "Now 50% of it, with_underscores\nand a new line"),
)
PAIRS = [
    # prompt, response A, response B, origin, verdict, annotator
    ("Tell me about Zebras.", "Stripes.", "Horses.", "arena", "a", "dataset:arena"),  # 1
    ("Say hello.", "Hello!", "Go away.", "arena", None, None),  # 2
    (CONVERSATION, "OK", "No", "trl", "b", "alice"),  # 3
    ("Name a colour.", "Blue.", "A zebra crossing.", "trl", "tie", "alice"),  # 4
    ("Count to three.", "1 2 3", "one two", "oasst", "b", "bob"),  # 5
]


@pytest.fixture
def store(make_project):
    with Project.open(make_project("filters", PAIRS)) as project:
        # Pair 5: bob said b, then changed his mind to a; pair 2: carol said b and undid it.
        judgment = project.store.add_judgment(2, "carol", "b")
        project.store.undo_judgment(judgment)
        project.store.add_judgment(5, "bob", "a")
        yield project.store


def ids(store, **kwargs):
    found = list(store.matching_pair_ids(PairFilter(**kwargs)))
    # The table's keyset pages give the same pairs, a page at a time.
    paged, after = [], 0
    while page := store.pairs_page(after, 2, PairFilter(**kwargs)):
        paged += [row["id"] for row in page]
        after = page[-1]["id"]
    assert paged == found
    return found


def test_no_filter_is_every_pair_in_order(store):
    assert PairFilter().is_empty() and PairFilter(text="  ").is_empty()
    assert ids(store) == [1, 2, 3, 4, 5]
    assert store.pairs_page(0, 10) == store.pairs_page(0, 10, PairFilter())


def test_origin(store):
    assert ids(store, origin="trl") == [3, 4]
    assert ids(store, origin="nowhere") == []


def test_annotator_and_verdict_look_at_active_judgments(store):
    assert ids(store, annotator="alice") == [3, 4]
    assert ids(store, annotator="carol") == []  # undone
    assert ids(store, verdict="b") == [3, 5]
    assert ids(store, verdict="a") == [1, 5]
    assert ids(store, annotator="bob", verdict="a") == [5]
    assert ids(store, annotator="alice", verdict="a") == []  # together: that annotator gave that verdict


def test_unlabelled_means_no_person_has_judged_it(store):
    # Pair 1's verdict came with the data (dataset:arena); pair 2's only one was undone.
    assert ids(store, unlabelled=True) == [1, 2]
    assert ids(store, unlabelled=True, origin="arena", text="hello") == [2]


def test_search_in_prompt_and_responses_ignoring_ascii_case(store):
    assert ids(store, text="zebra") == [1, 4]  # prompt of 1, response B of 4
    assert ids(store, text="HELLO") == [2]
    assert ids(store, text="  stripes ") == [1]


def test_search_is_a_plain_substring_not_a_pattern(store):
    assert ids(store, text="50%") == [3]
    assert ids(store, text="%") == [3]
    assert ids(store, text="with_underscores") == [3]
    assert ids(store, text="h_rses") == []


def test_search_in_a_conversation_matches_message_text_not_its_json(store):
    assert ids(store, text='"this"') == [3]  # stored as \\"this\\" in the JSON
    assert ids(store, text="it, with_underscores\nand a new") == [3]
    assert ids(store, text="terse") == [3]  # the system message counts
    assert ids(store, text="content") == [] and ids(store, text="role") == []
    assert ids(store, text="user") == []  # a role name, not text anyone wrote
    assert ids(store, text='terse."}') == []  # across the JSON's syntax


def test_pair_rows_in_the_order_asked_and_without_missing_ids(store):
    rows = store.pair_rows([4, 2, 999, 3])
    assert [r["id"] for r in rows] == [4, 2, 3]
    assert rows[0]["judgments"] == [("alice", "tie")] and rows[1]["judgments"] == []
    assert rows[2]["prompt"] == CONVERSATION
    assert store.pair_rows([]) == []
    assert rows[0] == store.pairs_page(3, 1)[0]  # the same shape as a page's rows


def test_a_search_can_be_cancelled_while_it_scans(store):
    calls = []

    def cancel():
        calls.append(1)
        return True

    store.conn.execute("CREATE TEMP TABLE big AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) SELECT i FROM n")
    with pytest.raises(Stopped, match="the search was cancelled"), store.stoppable(cancel, "the search"):
        store.conn.execute("SELECT count(*) FROM big a WHERE a.i % 7 = 3").fetchone()
    assert calls
    # The connection works as before, without the handler.
    assert store.conn.execute("SELECT count(*) FROM big").fetchone() == (100000,)
    assert list(store.matching_pair_ids(PairFilter(text="zebra"), stop=lambda: False)) == [1, 4]


def test_matching_ids_is_cancelled_by_its_callback(store):
    flag = threading.Event()
    flag.set()
    # A scan as small as this one may finish before SQLite looks at the callback; where it does
    # look, the result is Stopped, never a partial list.
    try:
        result = store.matching_pair_ids(PairFilter(text="zebra"), stop=flag.is_set)
    except Stopped:
        return
    assert list(result) == [1, 4]


def test_an_error_that_is_not_a_cancel_passes_through(store):
    import sqlite3

    with pytest.raises(sqlite3.OperationalError, match="no such table"), store.stoppable(lambda: False):
        store.conn.execute("SELECT * FROM nowhere")


def test_a_cancelled_export_leaves_no_file_behind(make_project, tmp_path):
    from rlhf_workbench.core.exporting import export_file

    pairs = [(f"prompt {i}", f"a {i}", f"b {i}", "bulk", "a", "alice") for i in range(3000)]
    out = tmp_path / "out" / "pairs.jsonl"
    out.parent.mkdir()
    with Project.open(make_project("export", pairs)) as project:
        with pytest.raises(Stopped, match="the export was cancelled"), project.store.stoppable(lambda: True, "the export"):
            export_file(project, out, format="trl")
        assert list(out.parent.iterdir()) == []  # neither the file nor its temporary
        assert export_file(project, out, format="trl").written == 3000  # the connection still works
