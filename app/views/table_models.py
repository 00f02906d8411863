"""Table models that read rows a page at a time, so 100,000 pairs scroll without loading all.

Two shapes:
- `PagedTableModel` (prompts): Qt's views ask `canFetchMore`/`fetchMore` when the user scrolls
  near the end of what is loaded; each call reads the next page by id (keyset paging). Rows
  already loaded stay in memory (short excerpts only, so a fully scrolled table stays small).
- `IdTableModel` (pairs): knows every matching id up front (a compact array that a background
  task reads: ~25 ms at 100,000 pairs, a text search longer), so the scrollbar is to scale and
  dragging it to the middle reads just the rows shown there, by id, never by OFFSET. Blocks
  read are cached, the least recently used dropped, so memory stays bounded too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from ..text import VERDICT_NAMES, one_line, prompt_summary

Row = dict[str, Any]
PageFetcher = Callable[[int, int], list[Row]]  # (after id, limit) -> rows with id > after id, e.g. Store.pairs_page
RowsFetcher = Callable[[Sequence[int]], list[Row]]  # ids -> their rows, e.g. Store.pair_rows

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


class IdTableModel(QAbstractTableModel):
    """A read-only table over a known sequence of ids; rows are read a block at a time when a
    view first asks for them (only the rows on screen are ever asked for)."""

    BLOCK_SIZE = 200
    MAX_BLOCKS = 64  # ~13,000 rows of excerpts kept; more are read again when scrolled back to

    def __init__(self, columns: Sequence[Column], parent=None):
        super().__init__(parent)
        self._columns = list(columns)
        self._ids: Sequence[int] = ()
        self._fetch: RowsFetcher | None = None
        self._blocks: OrderedDict[int, dict[int, Row]] = OrderedDict()

    def set_ids(self, ids: Sequence[int], fetch: RowsFetcher | None) -> None:
        """Start over on these ids (in display order), read through `fetch`."""
        self.beginResetModel()
        self._ids = ids if fetch is not None else ()
        self._fetch = fetch
        self._blocks.clear()
        self.endResetModel()

    def clear(self) -> None:
        self.set_ids((), None)

    def forget_rows(self) -> None:
        """Read the rows again when next shown (after a change such as a new verdict)."""
        self._blocks.clear()
        if self._ids:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._ids) - 1, len(self._columns) - 1))

    def ids(self) -> Sequence[int]:
        return self._ids

    def row(self, n: int) -> Row | None:
        """Row `n`, or None where its pair has gone since the ids were read."""
        if not 0 <= n < len(self._ids) or self._fetch is None:
            return None
        number = n // self.BLOCK_SIZE
        block = self._blocks.get(number)
        if block is None:
            start = number * self.BLOCK_SIZE
            block = {r["id"]: r for r in self._fetch(self._ids[start : start + self.BLOCK_SIZE])}
            self._blocks[number] = block
            while len(self._blocks) > self.MAX_BLOCKS:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(number)
        return block.get(self._ids[n])

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._ids)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._columns)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        column = self._columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            row = self.row(index.row())
            return "" if row is None else column.text(row)
        if role == Qt.ItemDataRole.TextAlignmentRole and column.numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        # No ToolTipRole on purpose: Qt renders tooltips that look like HTML as HTML.
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self._columns[section].title
        return None


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


def pairs_model(parent=None) -> IdTableModel:
    return IdTableModel(PAIR_COLUMNS, parent)


def prompts_model(parent=None) -> PagedTableModel:
    return PagedTableModel(PROMPT_COLUMNS, parent)
