"""Verdicts: recording and undoing them, and the queues that pick the next pair to judge."""

from __future__ import annotations

from ..errors import WorkbenchError
from ..records import VERDICTS
from .connection import Connection, now_iso


class LabelQueries(Connection):
    # -- counts ----------------------------------------------------------------------------------

    def judgments_by_annotator_and_verdict(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for annotator, verdict, n in self.conn.execute(
            """SELECT annotator, verdict, count(*) FROM judgments WHERE undone = 0
               GROUP BY annotator, verdict ORDER BY annotator, verdict"""
        ):
            result.setdefault(annotator, {})[verdict] = n
        return result

    def unlabelled_pair_count(self) -> int:
        """Pairs that no person has judged yet (labels that came with data do not count)."""
        return self.conn.execute("SELECT count(*) FROM pairs WHERE human_verdicts = 0").fetchone()[0]

    # -- labelling -----------------------------------------------------------------------------

    def next_unlabelled_pair_id(self, after_id: int = 0) -> int | None:
        """The next pair (in id order) that no person has judged yet, or None."""
        row = self.conn.execute(
            "SELECT id FROM pairs WHERE human_verdicts = 0 AND id > ? ORDER BY id LIMIT 1", (after_id,)
        ).fetchone()
        return row[0] if row else None

    def add_judgment(
        self,
        pair_id: int,
        annotator: str,
        verdict: str,
        *,
        shown_left: str | None = None,
        rationale: str | None = None,
        seconds: float | None = None,
    ) -> int:
        """Record a verdict and commit it before returning (it is acknowledged once this returns)."""
        if verdict not in VERDICTS:
            raise WorkbenchError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        with self.transaction():
            cur = self.conn.execute(
                """INSERT INTO judgments(pair_id, annotator, verdict, shown_left, rationale, seconds, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (pair_id, annotator, verdict, shown_left, rationale, seconds, now_iso()),
            )
        return cur.lastrowid

    def undo_judgment(self, judgment_id: int) -> None:
        """Marks a verdict undone. Nothing is deleted, so history and agreement stay computable."""
        with self.transaction():
            self.conn.execute(
                "UPDATE judgments SET undone = 1, undone_at = ? WHERE id = ? AND undone = 0",
                (now_iso(), judgment_id),
            )

    # -- reading pairs -------------------------------------------------------------------------

    def active_judgments(self, pair_id: int) -> list[tuple[str, str]]:
        return list(
            self.conn.execute(
                "SELECT annotator, verdict FROM judgments WHERE pair_id = ? AND undone = 0 ORDER BY id",
                (pair_id,),
            )
        )
