"""Reading pairs and prompts: single pairs, table pages, counts, filters, and the export stream."""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import Stopped
from ..records import ExportPair, conversation_from_json
from .connection import Connection

# How many SQLite virtual-machine steps pass between two looks at a stop flag: about a
# millisecond of work, so a stopped scan of 100,000 pairs stops at once without slowing it.
_STOP_CHECK_STEPS = 20_000


@dataclass(frozen=True)
class PairFilter:
    """Which pairs to list. Every field left empty matches every pair; set fields all apply.

    `annotator` and `verdict` look at active (not undone) judgments; with both set, that annotator
    must have given that verdict. `text` is a plain substring (no wildcards) of the prompt's
    messages or either response, case-insensitive for ASCII letters (SQLite's LIKE).
    """

    origin: str | None = None
    annotator: str | None = None
    verdict: str | None = None
    unlabelled: bool = False  # only pairs no person has judged (labels that came with data do not count)
    text: str = ""

    def is_empty(self) -> bool:
        return not (self.origin or self.annotator or self.verdict or self.unlabelled or self.text.strip())


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filter_sql(f: PairFilter | None) -> tuple[str, list[Any]]:
    """The WHERE conditions (joined with AND, or "1") for a filter, over `pairs p` joined with
    `prompts pr`, `responses ra`, `responses rb` as in the table queries."""
    if f is None:
        return "1", []
    where: list[str] = []
    params: list[Any] = []
    if f.origin is not None:
        where.append("p.origin = ?")
        params.append(f.origin)
    if f.unlabelled:
        where.append("p.human_verdicts = 0")  # the partial index pairs_unlabelled
    if f.annotator is not None or f.verdict is not None:
        # IN (subquery) rather than EXISTS per pair: SQLite builds the id set once from the
        # judgments_annotator index (4 ms at 100,000 pairs against 50 ms for EXISTS).
        sub = ["undone = 0"]
        for column, value in (("annotator", f.annotator), ("verdict", f.verdict)):
            if value is not None:
                sub.append(f"{column} = ?")
                params.append(value)
        where.append(f"p.id IN (SELECT pair_id FROM judgments WHERE {' AND '.join(sub)})")
    text = f.text.strip()
    if text:
        like = f"%{_like_escape(text)}%"
        # Prompts are stored as JSON: the raw LIKE (on the text as JSON escapes it) is a cheap
        # pre-check, and json_each then makes sure that the match lies inside a message's
        # content, not in a key such as "role" or across two messages.
        json_like = f"%{_like_escape(orjson.dumps(text).decode('utf-8')[1:-1])}%"
        where.append(
            "(ra.text LIKE ? ESCAPE '\\' OR rb.text LIKE ? ESCAPE '\\'"
            " OR (pr.messages LIKE ? ESCAPE '\\' AND EXISTS (SELECT 1 FROM json_each(pr.messages) m"
            " WHERE json_extract(m.value, '$.content') LIKE ? ESCAPE '\\')))"
        )
        params += [like, like, json_like, like]
    return " AND ".join(where) or "1", params


_PAIR_JOINS = """
    FROM pairs p
    JOIN prompts pr ON pr.id = p.prompt_id
    JOIN responses ra ON ra.id = p.response_a_id
    JOIN responses rb ON rb.id = p.response_b_id
"""


class PairQueries(Connection):
    # -- counts ----------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        row = self.conn.execute(
            """SELECT (SELECT count(*) FROM prompts), (SELECT count(*) FROM responses),
                      (SELECT count(*) FROM pairs), (SELECT count(*) FROM judgments WHERE undone = 0),
                      (SELECT count(*) FROM runs)"""
        ).fetchone()
        return dict(zip(("prompts", "responses", "pairs", "judgments", "runs"), row))

    def pairs_by_origin(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT origin, count(*) FROM pairs GROUP BY origin ORDER BY origin"))

    _PAIR_SELECT = """
        SELECT p.id, pr.messages, ra.text, rb.text, p.origin, p.margin
        FROM pairs p
        JOIN prompts pr ON pr.id = p.prompt_id
        JOIN responses ra ON ra.id = p.response_a_id
        JOIN responses rb ON rb.id = p.response_b_id
    """

    def pair(self, pair_id: int) -> ExportPair | None:
        row = self.conn.execute(self._PAIR_SELECT + " WHERE p.id = ?", (pair_id,)).fetchone()
        if row is None:
            return None
        pair = _export_pair(row)
        pair.judgments = self.active_judgments(pair_id)
        return pair

    def prompts_without_pairs(self) -> int:
        """How many prompts have no pair yet (a prompt list's, waiting for responses)."""
        return self.conn.execute(
            "SELECT count(*) FROM prompts pr WHERE NOT EXISTS (SELECT 1 FROM pairs p WHERE p.prompt_id = pr.id)"
        ).fetchone()[0]

    def pair_ids(self, *, origin: str | None = None) -> list[int]:
        if origin is None:
            return [r[0] for r in self.conn.execute("SELECT id FROM pairs ORDER BY id")]
        return [r[0] for r in self.conn.execute("SELECT id FROM pairs WHERE origin = ? ORDER BY id", (origin,))]

    def pairs_page(self, after_id: int, limit: int, filter: PairFilter | None = None) -> list[dict[str, Any]]:
        """The next `limit` pairs with id > after_id (that match `filter`, if given), for a table
        view: short texts and the active verdicts as (annotator, verdict) pairs.

        Pages by id rather than OFFSET: SQLite walks an offset row by row, which made the last
        page of 100,000 pairs ~50x slower than the first.
        """
        where, params = _filter_sql(filter)
        rows = self.conn.execute(
            f"""SELECT p.id, p.origin, pr.messages, substr(ra.text, 1, 300), substr(rb.text, 1, 300)
               {_PAIR_JOINS} WHERE p.id > ? AND {where} ORDER BY p.id LIMIT ?""",
            (after_id, *params, limit),
        ).fetchall()
        return self._table_rows(rows)

    def matching_pair_ids(self, filter: PairFilter | None = None, *, stop: Callable[[], bool] | None = None) -> array:
        """The ids of every pair that matches `filter`, in id order, as a compact array.

        For a table that shows the total and scrolls to any row: a row's id is then a look-up,
        and `pair_rows` reads any stretch of rows by id, never by OFFSET. Measured at 100,000
        pairs: ~25 ms for all ids or a filter, ~80-140 ms for a text search (a full scan of the
        text), up to ~0.5 s for a text that also occurs in every prompt's JSON keys ("user").
        Raises Stopped when `stop()` turns true while the scan runs.
        """
        where, params = _filter_sql(filter)
        # The text joins only when searching: without them the scan reads the pairs table alone.
        joins = _PAIR_JOINS if filter is not None and filter.text.strip() else "FROM pairs p"
        ids = array("q")
        with self.stoppable(stop, "the search"):
            cursor = self.conn.execute(f"SELECT p.id {joins} WHERE {where} ORDER BY p.id", params)
            while chunk := cursor.fetchmany(4096):
                ids.extend(row[0] for row in chunk)
        return ids

    def pair_rows(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """Table rows (as `pairs_page` gives them) for these pair ids, in the order given; ids
        of pairs that no longer exist are left out. Meant for a few hundred ids at a time."""
        ids = list(ids)
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        rows = self.conn.execute(
            f"""SELECT p.id, p.origin, pr.messages, substr(ra.text, 1, 300), substr(rb.text, 1, 300)
               {_PAIR_JOINS} WHERE p.id IN ({marks})""",
            ids,
        ).fetchall()
        by_id = {row[0]: row for row in rows}
        return self._table_rows([by_id[i] for i in ids if i in by_id])

    def _table_rows(self, rows: list[tuple]) -> list[dict[str, Any]]:
        judgments: dict[int, list[tuple[str, str]]] = {}
        if rows:
            ids = [row[0] for row in rows]
            for pair_id, annotator, verdict in self.conn.execute(
                f"""SELECT pair_id, annotator, verdict FROM judgments
                   WHERE pair_id IN ({", ".join("?" * len(ids))}) AND undone = 0 ORDER BY id""",
                ids,
            ):
                judgments.setdefault(pair_id, []).append((annotator, verdict))
        return [
            {
                "id": pid,
                "origin": origin,
                "prompt": conversation_from_json(messages),
                "response_a": a,
                "response_b": b,
                "judgments": judgments.get(pid, []),
            }
            for pid, origin, messages, a, b in rows
        ]

    @contextmanager
    def stoppable(self, stop: Callable[[], bool] | None, what: str = "the query") -> Iterator[None]:
        """Statements run inside end soon after `stop()` turns true, raising Stopped.

        SQLite looks at the callback every few thousand steps of its virtual machine, so even a
        single long statement (a full-text scan, the export stream) stops promptly. A transaction
        open on this connection is left to its owner to roll back.
        """
        if stop is None:
            yield
            return
        self.conn.set_progress_handler(lambda: bool(stop()), _STOP_CHECK_STEPS)
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "interrupt" in str(exc) and stop():
                raise Stopped(f"{what} was cancelled") from None
            raise
        finally:
            self.conn.set_progress_handler(None, 0)

    def prompts_page(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """The next `limit` prompts with id > after_id, with how many pairs each has."""
        rows = self.conn.execute(
            """SELECT pr.id, pr.messages, (SELECT count(*) FROM pairs p WHERE p.prompt_id = pr.id)
               FROM prompts pr WHERE pr.id > ? ORDER BY pr.id LIMIT ?""",
            (after_id, limit),
        ).fetchall()
        return [{"id": i, "prompt": conversation_from_json(m), "pairs": n} for i, m, n in rows]

    def iter_export_pairs(self, *, annotators: Sequence[str] | None = None) -> Iterator[ExportPair]:
        """Every pair with its active judgments (optionally only those of some annotators).

        The verdict each exporter writes is settled by `settle_verdict`, not here, so that every
        format applies the same rule.
        """
        judgments: dict[int, list[tuple[str, str]]] = {}
        sql = "SELECT pair_id, annotator, verdict FROM judgments WHERE undone = 0"
        params: list[Any] = []
        if annotators is not None:
            sql += f" AND annotator IN ({', '.join('?' * len(annotators))})"
            params = list(annotators)
        for pair_id, annotator, verdict in self.conn.execute(sql + " ORDER BY id", params):
            judgments.setdefault(pair_id, []).append((annotator, verdict))
        for row in self.conn.execute(self._PAIR_SELECT + " ORDER BY p.id"):
            pair = _export_pair(row)
            pair.judgments = judgments.get(pair.pair_id, [])
            pair.verdict, pair.annotator = settle_verdict(pair.judgments)
            yield pair


def settle_verdict(judgments: Sequence[tuple[str, str]]) -> tuple[str | None, str | None]:
    """The verdict a pair carries into exports and training, and who gave it.

    Skips say nothing about the pair and are ignored. One judgment: its verdict and annotator.
    Several: the strict majority verdict, attributed to "consensus"; no strict majority means
    people disagree and the pair has no settled verdict (None).
    """
    votes = [(a, v) for a, v in judgments if v != "skip"]
    if not votes:
        return None, None
    if len(votes) == 1:
        return votes[0][1], votes[0][0]
    tally: dict[str, int] = {}
    for _, v in votes:
        tally[v] = tally.get(v, 0) + 1
    verdict, n = max(tally.items(), key=lambda kv: kv[1])
    if n * 2 <= len(votes):
        return None, None
    annotators = {a for a, v in votes if v == verdict}
    return verdict, annotators.pop() if len(annotators) == 1 else "consensus"


def _export_pair(row: tuple) -> ExportPair:
    pair_id, messages, a, b, origin, margin = row
    return ExportPair(
        pair_id=pair_id,
        prompt=conversation_from_json(messages),
        response_a=a,
        response_b=b,
        origin=origin,
        margin=margin,
    )
