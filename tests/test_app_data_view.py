"""The Data tab: counts, lazy tables, and the detail pane showing dataset text as plain text."""

import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QPlainTextEdit

from rlhf_workbench.app import tasks
from rlhf_workbench.app.views.data_view import DataView
from rlhf_workbench.app.views.table_models import IdTableModel, PagedTableModel
from rlhf_workbench.core.project import Project
from rlhf_workbench.core.records import Message

pytestmark = pytest.mark.usefixtures("workbench_home")

HTML_A = '<b>bold?</b> <img src=x onerror=alert(1)> <a href="http://example.com">link</a>'
HTML_B = "<h1>Title</h1>\n<script>alert('x')</script> &amp; &lt;"
CONVERSATION = (
    Message("system", "Be brief."),
    Message("user", "Hi <i>there</i>"),
    Message("assistant", "Hello."),
    Message("user", "What is <b>2+2</b>?"),
)
PAIRS = [
    ("What is 2 + 2?", "4", "5", "arena", "a", "dataset:arena"),
    ("Say hello.", HTML_A, HTML_B, "arena", None, None),
    (CONVERSATION, "4", "Four, I think.", "trl", "b", "alice"),
    ("Name a colour.", "Blue.", "Seven.", "trl", "tie", "alice"),
]


@pytest.fixture
def data_view(qtbot, make_project):
    """A Data view on an open project of PAIRS; the project is closed afterwards."""
    project = Project.open(make_project("data", PAIRS))
    view = DataView()
    qtbot.addWidget(view)
    view.resize(1200, 800)
    view.show()
    view.set_project(project)
    wait_loaded(qtbot, view)
    yield view
    view.set_project(None)
    assert tasks.wait_for_all()
    project.close()


def wait_loaded(qtbot, view):
    """Counts and pair ids are read in background tasks; wait until both have arrived."""
    qtbot.waitUntil(lambda: not view.is_loading(), timeout=10_000)


def cell(model, row, column):
    return model.data(model.index(row, column), Qt.ItemDataRole.DisplayRole)


def test_counts_pairs_by_origin_and_verdicts_by_annotator(data_view, qtbot):
    overview = data_view.overview
    shown = {key: label.text() for key, label in overview.values.items()}
    assert shown == {"prompts": "4", "responses": "8", "pairs": "4", "judgments": "3", "unlabelled": "2", "heldout": "0"}
    origins = {overview.origins.item(r, 0).text(): overview.origins.item(r, 1).text() for r in range(overview.origins.rowCount())}
    assert origins == {"arena": "2", "trl": "2"}
    table = overview.verdicts
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers == ["Annotator", "A better", "B better", "Tie", "Both bad", "Skip", "Total"]
    rows = {table.item(r, 0).text(): [table.item(r, c).text() for c in range(1, 7)] for r in range(table.rowCount())}
    assert rows == {"alice": ["0", "1", "1", "0", "0", "2"], "dataset:arena": ["1", "0", "0", "0", "0", "1"]}
    assert data_view.tables.tabText(0) == "Pairs (4)" and data_view.tables.tabText(1) == "Prompts (4)"

    # A held-out prompt's pair is not left for people to judge: its verdict would train nothing.
    assert data_view.project.store.hold_out_prompts(1) == 1  # an unjudged one first
    data_view.refresh()
    wait_loaded(qtbot, data_view)
    assert overview.values["unlabelled"].text() == "1" and overview.values["heldout"].text() == "1"


def test_pairs_table_lists_pairs_with_verdicts(data_view):
    model = data_view.pairs_model
    assert model.rowCount() == 4
    assert [cell(model, r, 1) for r in range(4)] == ["arena", "arena", "trl", "trl"]
    assert cell(model, 0, 5) == "dataset:arena: A better"
    assert cell(model, 1, 5) == ""
    assert cell(model, 2, 2) == "[4 turns] What is <b>2+2</b>?"  # the last user turn
    assert cell(model, 1, 3) == " ".join(HTML_A.split())  # table cells are plain text as they are
    assert model.data(model.index(1, 3), Qt.ItemDataRole.ToolTipRole) is None


def test_detail_pane_shows_html_literally(data_view, qtbot):
    data_view.select_pair_row(1)
    detail = data_view.detail
    for pane in (detail.conversation, detail.response_a, detail.response_b):
        assert isinstance(pane.text, QPlainTextEdit) and pane.text.isReadOnly()
    # setHtml or a rich-text label would have dropped the tags; the characters must all be there.
    assert detail.response_a.text.toPlainText() == HTML_A
    assert detail.response_b.text.toPlainText() == HTML_B
    assert "<i>" not in detail.conversation.text.toPlainText()  # pair 1's prompt has no tags
    for label in (detail.header, detail.response_a.subtitle, detail.conversation.title):
        assert label.textFormat() == Qt.TextFormat.PlainText
    # Nothing was turned into an image or a link in the rendered document.
    document = detail.response_a.text.document()
    block, fragments = document.begin(), []
    while block.isValid():
        iterator = block.begin()
        while not iterator.atEnd():
            fragments.append(iterator.fragment().charFormat())
            iterator += 1
        block = block.next()
    assert fragments and not any(f.isImageFormat() or f.isAnchor() or f.fontWeight() > 400 for f in fragments)


def test_detail_pane_shows_a_multi_turn_conversation(data_view):
    data_view.select_pair_row(2)
    text = data_view.detail.conversation.text.toPlainText()
    for message in CONVERSATION:
        assert message.content in text
    assert text.index("Be brief.") < text.index("Hi <i>there</i>") < text.index("What is <b>2+2</b>?")
    assert "alice: B better" in data_view.detail.header.text()


def test_prompts_table_and_prompt_detail(data_view):
    model = data_view.prompts_model
    assert model.rowCount() == 4
    assert [cell(model, r, 2) for r in range(4)] == ["1", "1", "1", "1"]
    data_view.tables.setCurrentWidget(data_view.prompts_table)
    data_view.prompts_table.selectRow(2)
    assert "Hi <i>there</i>" in data_view.detail.conversation.text.toPlainText()
    assert data_view.detail.response_a.text.toPlainText() == ""


def test_no_project_clears_everything(data_view):
    data_view.select_pair_row(0)
    project = data_view.project
    data_view.set_project(None)
    assert data_view.pairs_model.rowCount() == 0 and data_view.prompts_model.rowCount() == 0
    assert data_view.overview.values["pairs"].text() == "–"
    assert data_view.detail.response_a.text.toPlainText() == ""
    data_view.set_project(project)  # the fixture closes it


def test_paged_model_fetches_pages_lazily(make_project):
    n = PagedTableModel.PAGE_SIZE * 2 + 37
    pairs = [(f"prompt {i}", f"a {i}", f"b {i}", "bulk", None, None) for i in range(n)]
    with Project.open(make_project("bulk", pairs)) as project:
        calls = []

        def fetch(after_id, limit):
            calls.append((after_id, limit))
            return project.store.prompts_page(after_id, limit)

        from rlhf_workbench.app.views.table_models import prompts_model

        model = prompts_model()
        model.set_fetcher(fetch)
        page = PagedTableModel.PAGE_SIZE
        assert model.rowCount() == page and model.canFetchMore()
        model.fetchMore()
        assert model.rowCount() == 2 * page and model.canFetchMore()
        model.fetchMore()
        assert model.rowCount() == n and not model.canFetchMore()
        assert calls == [(0, page), (page, page), (2 * page, page)]
        assert cell(model, n - 1, 0) == str(n) and cell(model, n - 1, 1) == f"prompt {n - 1}"


def test_id_model_knows_the_total_and_reads_only_the_rows_shown(make_project):
    block = IdTableModel.BLOCK_SIZE
    n = block * 3 + 11
    pairs = [(f"prompt {i}", f"a {i}", f"b {i}", "bulk", None, None) for i in range(n)]
    with Project.open(make_project("ids", pairs)) as project:
        reads = []

        def fetch(ids):
            reads.append((ids[0], len(ids)))
            return project.store.pair_rows(ids)

        from rlhf_workbench.app.views.table_models import pairs_model

        model = pairs_model()
        ids = project.store.matching_pair_ids()
        model.set_ids(ids, fetch)
        assert model.rowCount() == n and reads == []  # the scrollbar is to scale before any read
        assert cell(model, n - 1, 2) == f"prompt {n - 1}"  # the last block, straight away
        assert reads == [(ids[3 * block], 11)]
        assert cell(model, block + 5, 3) == f"a {block + 5}" and cell(model, block + 6, 4) == f"b {block + 6}"
        assert reads == [(ids[3 * block], 11), (ids[block], block)]  # one read per block
        model.clear()
        assert model.rowCount() == 0


def test_scrolling_the_table_reads_rows_on_the_way(qtbot, make_project):
    n = IdTableModel.BLOCK_SIZE * 3
    pairs = [(f"prompt {i}", f"a {i}", f"b {i}", "bulk", None, None) for i in range(n)]
    project = Project.open(make_project("scroll", pairs))
    view = DataView()
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    qtbot.waitExposed(view)
    view.set_project(project)
    try:
        wait_loaded(qtbot, view)
        table, model = view.pairs_table, view.pairs_model
        assert model.rowCount() == n
        table.scrollToBottom()
        qtbot.wait(50)
        bottom = table.rowAt(table.viewport().height() - 2)
        assert bottom == n - 1 and cell(model, bottom, 2) == f"prompt {n - 1}"
    finally:
        view.set_project(None)
        assert tasks.wait_for_all()
        project.close()


def shown_ids(view):
    return [int(cell(view.pairs_model, r, 0)) for r in range(view.pairs_model.rowCount())]


def search(qtbot, view, text):
    view.filters.search.setText(text)
    qtbot.keyClick(view.filters.search, Qt.Key.Key_Return)  # Enter searches without waiting for a pause
    wait_loaded(qtbot, view)


def test_filters_offer_the_projects_origins_and_annotators(data_view):
    filters = data_view.filters
    assert [filters.origin.itemText(i) for i in range(filters.origin.count())] == ["All origins", "arena", "trl"]
    assert [filters.annotator.itemData(i) for i in range(filters.annotator.count())] == [None, "alice", "dataset:arena"]
    assert [filters.verdict.itemText(i) for i in range(filters.verdict.count())] == [
        "Any verdict", "A better", "B better", "Tie", "Both bad", "Skip"
    ]
    assert filters.status.text() == "4 pairs"


def test_filters_and_search_give_the_expected_rows(data_view, qtbot):
    filters = data_view.filters

    def choose(combo, value):
        combo.setCurrentIndex(combo.findData(value))
        wait_loaded(qtbot, data_view)

    choose(filters.origin, "trl")
    assert shown_ids(data_view) == [3, 4] and filters.status.text() == "2 of 4 pairs"
    choose(filters.verdict, "tie")
    assert shown_ids(data_view) == [4]
    choose(filters.origin, None)
    choose(filters.verdict, None)
    choose(filters.annotator, "dataset:arena")
    assert shown_ids(data_view) == [1]
    choose(filters.annotator, None)
    filters.unlabelled.setChecked(True)
    wait_loaded(qtbot, data_view)
    assert shown_ids(data_view) == [1, 2]  # pair 1's verdict came with the data, not from a person
    filters.unlabelled.setChecked(False)
    wait_loaded(qtbot, data_view)

    search(qtbot, data_view, "<b>2+2</b>")  # in the fourth turn of pair 3's conversation
    assert shown_ids(data_view) == [3]
    search(qtbot, data_view, "ONERROR")  # in a response, any ASCII case
    assert shown_ids(data_view) == [2]
    search(qtbot, data_view, "nothing like this")
    assert shown_ids(data_view) == [] and filters.status.text() == "0 of 4 pairs"
    assert data_view.detail.response_a.text.toPlainText() == ""
    search(qtbot, data_view, "")
    assert shown_ids(data_view) == [1, 2, 3, 4] and filters.status.text() == "4 pairs"


def test_typing_searches_once_after_a_pause(data_view, qtbot):
    started = []
    data_view.filters.changed.connect(lambda: started.append(data_view.filters.search.text()))
    for prefix in ("B", "Bl", "Blu", "Blue"):
        data_view.filters.search.setText(prefix)
    qtbot.waitUntil(lambda: started == ["Blue"], timeout=2000)
    wait_loaded(qtbot, data_view)
    assert shown_ids(data_view) == [4]


def test_keyboard_ctrl_f_escape_and_down(data_view, qtbot):
    window = data_view.window()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    data_view.pairs_table.setFocus()
    qtbot.keyClick(data_view.pairs_table, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    search_field = data_view.filters.search
    assert QApplication.focusWidget() is search_field
    qtbot.keyClicks(search_field, "zzz")
    qtbot.keyClick(search_field, Qt.Key.Key_Escape)
    assert search_field.text() == ""
    qtbot.keyClick(search_field, Qt.Key.Key_Down)
    assert QApplication.focusWidget() is data_view.pairs_table and data_view.pairs_table.currentIndex().row() == 0
    assert data_view.detail.header.text().startswith("Pair 1 ")


def test_a_long_response_with_markup_is_plain_text_and_quick(qtbot, make_project):
    long_text = ("<b>not bold</b> & <script>x</script> " * 6000)[:200_000]
    assert len(long_text) == 200_000
    project = Project.open(make_project("long", [("Long?", long_text, "short", "arena", None, None)]))
    view = DataView()
    qtbot.addWidget(view)
    view.resize(1200, 800)
    view.show()
    view.set_project(project)
    try:
        wait_loaded(qtbot, view)
        assert cell(view.pairs_model, 0, 3).startswith("<b>not bold</b> &")  # the cell: an excerpt
        started = time.perf_counter()
        view.select_pair_row(0)
        QApplication.processEvents()  # the first layout and paint of the long text
        elapsed = time.perf_counter() - started
        shown = view.detail.response_a
        assert shown.text.toPlainText() == long_text
        assert shown.subtitle.text() == "200,000 characters"
        assert elapsed < 1.0, f"showing 200,000 characters took {elapsed:.2f} s"
    finally:
        view.set_project(None)
        assert tasks.wait_for_all()
        project.close()


def test_a_row_selected_before_the_rows_arrive_is_selected_when_they_do(qtbot, make_project):
    project = Project.open(make_project("pending", PAIRS))
    view = DataView()
    qtbot.addWidget(view)
    view.show()
    view.set_project(project)
    try:
        view.select_pair_row(2)  # as the window does straight after opening a project
        wait_loaded(qtbot, view)
        assert view.pairs_table.currentIndex().row() == 2
        assert "alice: B better" in view.detail.header.text()
    finally:
        view.set_project(None)
        assert tasks.wait_for_all()
        project.close()
