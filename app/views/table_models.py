"""Table models that load rows a page at a time, so 100,000 pairs scroll without loading all.

Qt's views ask `canFetchMore`/`fetchMore` when the user scrolls near the end of what is loaded;
each call reads one more page from the store. Rows already loaded stay in memory (a page of
pairs holds short excerpts only, so even a fully scrolled 100,000-pair table stays small).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from ..text import VERDICT_NAMES, one_line, prompt_summary

Row = dict[str, Any]
PageFetcher = Callable[[int, int], list[Row]]  # (after id, limit) -> rows with id > after id, e.g. Store.pairs_page

_Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Column:
    title: str
    text: Callable[[Row], str]
    numeric: bool = False


class PagedTableModel(QAbstractTableModel):
    """A read-only table over a page fetcher. Rows are dicts; each column turns one into text."""

    PAGE_SIZE = 200

    def __init__(self, columns: Sequence[Column], parent=None):
        super().__init__(parent)
        self._columns = list(columns)
        self._rows: list[Row] = []
        self._fetch: PageFetcher | None = None
        self._exhausted = True

    def set_fetcher(self, fetch: PageFetcher | None) -> None:
        """Start over on a new source (or none); the view then asks for the first page."""
        self.beginResetModel()
        self._fetch = fetch
        self._rows = []
        self._exhausted = fetch is None
        self.endResetModel()
        # The first page now rather than when the view next lays out, so that the rows exist as
        # soon as a project is shown (a row can be selected at once, e.g. by a test or a search).
        self.fetchMore()

    def row(self, n: int) -> Row:
        return self._rows[n]

    # -- QAbstractTableModel --------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._columns)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        column = self._columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(self._rows[index.row()])
        if role == Qt.ItemDataRole.TextAlignmentRole and column.numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        # No ToolTipRole on purpose: Qt renders tooltips that look like HTML as HTML.
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self._columns[section].title
        return None

    def canFetchMore(self, parent: _Index = QModelIndex()) -> bool:
        return not parent.isValid() and not self._exhausted

    def fetchMore(self, parent: _Index = QModelIndex()) -> None:
        if parent.isValid() or self._exhausted or self._fetch is None:
            return
        page = self._fetch(self._rows[-1]["id"] if self._rows else 0, self.PAGE_SIZE)
        # A short page means the end; one empty fetch at an exact multiple is the price of not
        # having to count rows up front.
        if len(page) < self.PAGE_SIZE:
            self._exhausted = True
        if page:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(page) - 1)
            self._rows.extend(page)
            self.endInsertRows()


def verdicts_summary(judgments: Sequence[tuple[str, str]]) -> str:
    """`Store.pairs_page`'s (annotator, verdict) pairs made readable: "annotator: B better; ..."."""
    return "; ".join(f"{annotator}: {VERDICT_NAMES.get(verdict, verdict)}" for annotator, verdict in judgments)


PAIR_COLUMNS = (
    Column("ID", lambda r: str(r["id"]), numeric=True),
    Column("Origin", lambda r: r["origin"]),
    Column("Prompt", lambda r: prompt_summary(r["prompt"], 160)),
    Column("Response A", lambda r: one_line(r["response_a"], 160)),
    Column("Response B", lambda r: one_line(r["response_b"], 160)),
    Column("Verdicts", lambda r: verdicts_summary(r["judgments"])),
)

PROMPT_COLUMNS = (
    Column("ID", lambda r: str(r["id"]), numeric=True),
    Column("Prompt", lambda r: prompt_summary(r["prompt"], 300)),
    Column("Pairs", lambda r: str(r["pairs"]), numeric=True),
)


def pairs_model(parent=None) -> PagedTableModel:
    return PagedTableModel(PAIR_COLUMNS, parent)


def prompts_model(parent=None) -> PagedTableModel:
    return PagedTableModel(PROMPT_COLUMNS, parent)
