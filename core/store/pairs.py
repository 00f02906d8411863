"""Reading pairs and prompts: single pairs, table pages, counts, and the export stream."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..records import ExportPair, conversation_from_json
from .connection import Connection


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

    def pair_ids(self, *, origin: str | None = None) -> list[int]:
        if origin is None:
            return [r[0] for r in self.conn.execute("SELECT id FROM pairs ORDER BY id")]
        return [r[0] for r in self.conn.execute("SELECT id FROM pairs WHERE origin = ? ORDER BY id", (origin,))]

    def pairs_page(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """The next `limit` pairs with id > after_id, for a table view: short texts and the
        active verdicts as (annotator, verdict) pairs.

        Pages by id rather than OFFSET: SQLite walks an offset row by row, which made the last
        page of 100,000 pairs ~50x slower than the first.
        """
        rows = self.conn.execute(
            """SELECT p.id, p.origin, pr.messages, substr(ra.text, 1, 300), substr(rb.text, 1, 300)
               FROM pairs p
               JOIN prompts pr ON pr.id = p.prompt_id
               JOIN responses ra ON ra.id = p.response_a_id
               JOIN responses rb ON rb.id = p.response_b_id
               WHERE p.id > ? ORDER BY p.id LIMIT ?""",
            (after_id, limit),
        ).fetchall()
        judgments: dict[int, list[tuple[str, str]]] = {}
        if rows:
            for pair_id, annotator, verdict in self.conn.execute(
                """SELECT pair_id, annotator, verdict FROM judgments
                   WHERE pair_id BETWEEN ? AND ? AND undone = 0 ORDER BY id""",
                (rows[0][0], rows[-1][0]),
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
