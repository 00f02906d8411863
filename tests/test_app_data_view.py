"""The Data tab: counts, lazy tables, and the detail pane showing dataset text as plain text."""

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPlainTextEdit

from rlhf_workbench.app.views.data_view import DataView
from rlhf_workbench.app.views.table_models import PagedTableModel
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
    yield view
    view.set_project(None)
    project.close()


def cell(model, row, column):
    return model.data(model.index(row, column), Qt.ItemDataRole.DisplayRole)


def test_counts_pairs_by_origin_and_verdicts_by_annotator(data_view):
    overview = data_view.overview
    shown = {key: label.text() for key, label in overview.values.items()}
    assert shown == {"prompts": "4", "responses": "8", "pairs": "4", "judgments": "3", "unlabelled": "2"}
    origins = {overview.origins.item(r, 0).text(): overview.origins.item(r, 1).text() for r in range(overview.origins.rowCount())}
    assert origins == {"arena": "2", "trl": "2"}
    table = overview.verdicts
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers == ["Annotator", "A better", "B better", "Tie", "Both bad", "Skip", "Total"]
    rows = {table.item(r, 0).text(): [table.item(r, c).text() for c in range(1, 7)] for r in range(table.rowCount())}
    assert rows == {"alice": ["0", "1", "1", "0", "0", "2"], "dataset:arena": ["1", "0", "0", "0", "0", "1"]}
    assert data_view.tables.tabText(0) == "Pairs (4)" and data_view.tables.tabText(1) == "Prompts (4)"


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


def test_models_fetch_pages_lazily(make_project):
    n = PagedTableModel.PAGE_SIZE * 2 + 37
    pairs = [(f"prompt {i}", f"a {i}", f"b {i}", "bulk", None, None) for i in range(n)]
    with Project.open(make_project("bulk", pairs)) as project:
        calls = []

        def fetch(after_id, limit):
            calls.append((after_id, limit))
            return project.store.pairs_page(after_id, limit)

        from rlhf_workbench.app.views.table_models import pairs_model

        model = pairs_model()
        model.set_fetcher(fetch)
        page = PagedTableModel.PAGE_SIZE
        assert model.rowCount() == page and model.canFetchMore()
        model.fetchMore()
        assert model.rowCount() == 2 * page and model.canFetchMore()
        model.fetchMore()
        assert model.rowCount() == n and not model.canFetchMore()
        assert calls == [(0, page), (page, page), (2 * page, page)]
        assert cell(model, n - 1, 0) == str(n) and cell(model, n - 1, 2) == f"prompt {n - 1}"


def test_scrolling_the_table_loads_more_rows(qtbot, make_project):
    n = PagedTableModel.PAGE_SIZE * 3
    pairs = [(f"prompt {i}", f"a {i}", f"b {i}", "bulk", None, None) for i in range(n)]
    project = Project.open(make_project("scroll", pairs))
    view = DataView()
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    qtbot.waitExposed(view)
    view.set_project(project)
    try:
        table, model = view.pairs_table, view.pairs_model
        assert model.rowCount() == PagedTableModel.PAGE_SIZE
        for expected in (2 * PagedTableModel.PAGE_SIZE, n):
            table.scrollToBottom()
            qtbot.waitUntil(lambda: model.rowCount() == expected)
    finally:
        view.set_project(None)
        project.close()
