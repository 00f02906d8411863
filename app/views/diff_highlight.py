"""Where two responses differ: word-level spans, painted as extra selections (never as HTML).

Pairs are often near-duplicates (one sentence changed, a polite closing added); a labeller judges
faster and fairer when those places stand out. The spans come from difflib over words, and are
painted with QPlainTextEdit's extra selections, so the text itself stays plain and untouched.
"""

from __future__ import annotations

import difflib
import re

from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QTextEdit

# difflib is quadratic in the worst case; beyond this many words per side the comparison could
# stall the window, so long responses are simply not highlighted (the view says so).
MAX_WORDS = 6_000

_TOKEN = re.compile(r"\S+")
_HIGHLIGHT = QColor(255, 214, 102, 150)


Span = tuple[int, int]  # character offsets [start, end)


def word_spans(text: str) -> list[Span]:
    return [m.span() for m in _TOKEN.finditer(text)]


def differing_spans(a: str, b: str) -> tuple[list[Span], list[Span]] | None:
    """Character spans of `a` and of `b` that are not part of their common word sequence.

    None when either text is too long to compare without freezing the window.
    """
    words_a, words_b = word_spans(a), word_spans(b)
    if len(words_a) > MAX_WORDS or len(words_b) > MAX_WORDS:
        return None
    tokens_a = [a[s:e] for s, e in words_a]
    tokens_b = [b[s:e] for s, e in words_b]
    # autojunk off: in short texts common words ("the") are exactly what aligns the two sides.
    matcher = difflib.SequenceMatcher(None, tokens_a, tokens_b, autojunk=False)
    spans_a: list[Span] = []
    spans_b: list[Span] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if i2 > i1:
            spans_a.append((words_a[i1][0], words_a[i2 - 1][1]))
        if j2 > j1:
            spans_b.append((words_b[j1][0], words_b[j2 - 1][1]))
    return spans_a, spans_b


def paint_spans(editor: QPlainTextEdit, spans: list[Span]) -> None:
    selections = []
    fmt = QTextCharFormat()
    fmt.setBackground(_HIGHLIGHT)
    for start, end in spans:
        selection = QTextEdit.ExtraSelection()
        cursor = QTextCursor(editor.document())
        cursor.setPosition(start)
        cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        selection.cursor = cursor
        selection.format = fmt
        selections.append(selection)
    editor.setExtraSelections(selections)
