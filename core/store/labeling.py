"""Verdicts: recording and undoing them, and the queues that pick the next pair to judge.

What the queues mean, and how a labelling session walks them, is decided in core/labeling.py;
here are only the statements. Vocabulary used below:

- a *person* is an annotator whose name does not start with `dataset:` (the same test as the
  triggers that keep `pairs.human_verdicts`, so both agree on who is a person);
- a *verdict* is an active (not undone) judgment other than a skip: a skip says nothing about
  the pair, so it never makes a pair labelled, but it does move a pair out of the way.

Queue look-ups are keyset scans in pair-id order (`id > after_id ... LIMIT`), never OFFSET, so a
session's cursor costs the same on the first and the last page. The queues with an order of their
own (least sure: |p - 0.5| ascending; the queues of model_pairs.py: newest origin first) page the
same way on their sort key, which each look-up returns as the position to continue after.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import WorkbenchError
from ..records import DATASET_ANNOTATOR_PREFIX, VERDICTS
from .connection import VERDICT_WAIT_S, Connection, now_iso

# LIKE as in the schema's triggers (case-insensitive), so "is a person" means the same everywhere.
_PERSON = f"NOT LIKE '{DATASET_ANNOTATOR_PREFIX}%'"
_DATASET = f"LIKE '{DATASET_ANNOTATOR_PREFIX}%'"
# A pair whose prompt is held out trains no run (evaluations.py): a verdict on it would be labour
# that goes nowhere, so the queues for training data pass it by. The policies-compared queue
# (model_pairs.py) is the place for pairs on held-out prompts: people's win rates come from it.
_TRAINS = "NOT IN (SELECT prompt_id FROM heldout_prompts)"


def _on_trained_prompt(pair: str) -> str:
    """`pair`'s prompt is not held out (for a pair id met without its row: scores, judgments)."""
    return f"(SELECT prompt_id FROM pairs WHERE id = {pair}) {_TRAINS}"


def _mine(pair: str, mode: str) -> str:
    """A condition on my own (`:me`) judgments of `pair`.

    mode "none": no judgment of mine at all (a queue's first pass); "skipped": only skips (its
    second pass, which offers skipped pairs again); "no_verdict": either (what is left to label).
    `IN (subquery)`: SQLite builds the set of my pairs once per statement, which measured twice
    as fast as probing the judgments of every pair (EXISTS) at 100,000 pairs.
    """
    mine = "SELECT pair_id FROM judgments WHERE annotator = :me AND undone = 0"
    if mode == "none":
        return f"{pair} NOT IN ({mine})"
    no_verdict = f"{pair} NOT IN ({mine} AND verdict != 'skip')"
    if mode == "no_verdict":
        return no_verdict
    assert mode == "skipped", mode
    return f"{no_verdict} AND {pair} IN ({mine} AND verdict = 'skip')"


def _pass(skipped_by_me: bool | None) -> str:
    return "none" if skipped_by_me is False else "skipped" if skipped_by_me else "no_verdict"


def _prefix_range(prefix: str) -> dict[str, str]:
    """Bounds for `origin >= :low AND origin < :high`: every origin starting with `prefix` sorts in
    between, so the look-up is a range on the origin index (LIKE would ignore case, and read % and
    _ in a run id as wildcards)."""
    return {"low": prefix, "high": prefix[:-1] + chr(ord(prefix[-1]) + 1)}


def _person_verdict(pair: str) -> str:
    return f"""EXISTS (SELECT 1 FROM judgments v WHERE v.pair_id = {pair} AND v.undone = 0
                   AND v.verdict != 'skip' AND v.annotator {_PERSON})"""


def _verdict_by_others(pair: str) -> str:
    return f"""EXISTS (SELECT 1 FROM judgments o WHERE o.pair_id = {pair} AND o.undone = 0
                   AND o.verdict != 'skip' AND o.annotator != :me AND o.annotator {_PERSON})"""


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
        """Pairs that no person has judged yet (labels that came with data do not count), those
        on held-out prompts aside."""
        # All unlabelled ones (the partial index alone) less the held-out prompts' (their few index look-ups).
        return self.conn.execute(
            """SELECT (SELECT count(*) FROM pairs WHERE human_verdicts = 0)
                    - (SELECT count(*) FROM pairs WHERE human_verdicts = 0
                       AND prompt_id IN (SELECT prompt_id FROM heldout_prompts))"""
        ).fetchone()[0]

    # -- labelling -----------------------------------------------------------------------------

    def next_unlabelled_pair_id(self, after_id: int = 0) -> int | None:
        """The next pair (in id order) that no person has judged yet and whose prompt is not held out, or None."""
        row = self.conn.execute(
            f"SELECT id FROM pairs WHERE human_verdicts = 0 AND id > ? AND prompt_id {_TRAINS} ORDER BY id LIMIT 1",
            (after_id,),
        ).fetchone()
        return row[0] if row else None

    def next_skipped_only_pair_id(self, after_id: int = 0) -> int | None:
        """The next pair that people have only skipped (no verdict from anyone, a skip by someone).

        Such pairs are out of the unlabelled index (a skip counts in human_verdicts) yet still
        unlabelled; the unlabelled queue offers them once its first pass is done.
        """
        row = self.conn.execute(
            f"""SELECT p.id FROM pairs p
                WHERE p.id > :after AND p.human_verdicts > 0 AND p.prompt_id {_TRAINS}
                  AND NOT EXISTS (SELECT 1 FROM judgments v WHERE v.pair_id = p.id AND v.undone = 0
                                  AND v.verdict != 'skip' AND v.annotator {_PERSON})
                ORDER BY p.id LIMIT 1""",
            {"after": after_id},
        ).fetchone()
        return row[0] if row else None

    def skipped_only_pair_count(self) -> int:
        # Driven by the skips (few) rather than by every touched pair: ~40% faster at 100,000.
        return self.conn.execute(
            f"""SELECT count(DISTINCT s.pair_id) FROM judgments s
                WHERE s.undone = 0 AND s.verdict = 'skip' AND s.annotator {_PERSON}
                  AND {_on_trained_prompt("s.pair_id")}
                  AND NOT EXISTS (SELECT 1 FROM judgments v WHERE v.pair_id = s.pair_id AND v.undone = 0
                                  AND v.verdict != 'skip' AND v.annotator {_PERSON})"""
        ).fetchone()[0]

    def next_pair_judged_by_others(self, annotator: str, after_id: int = 0, *, skipped_by_me: bool = False) -> int | None:
        """The next pair with another person's verdict and no judgment by `annotator` (or, with
        `skipped_by_me`, only skips by `annotator`)."""
        # Driven by pairs.human_verdicts > 0: pairs nobody has touched cost one column read each;
        # only touched ones are checked against my set of pairs and probed for others' verdicts.
        row = self.conn.execute(
            f"""SELECT p.id FROM pairs p
                WHERE p.id > :after AND p.human_verdicts > 0
                  AND {_verdict_by_others("p.id")} AND {_mine("p.id", _pass(skipped_by_me))}
                ORDER BY p.id LIMIT 1""",
            {"after": after_id, "me": annotator},
        ).fetchone()
        return row[0] if row else None

    def overlap_with_others(self, annotator: str) -> tuple[int, int]:
        """(pairs with another person's verdict, of those the ones `annotator` also gave a verdict)."""
        row = self.conn.execute(
            f"""SELECT count(*), coalesce(sum(NOT ({_mine("p.id", "no_verdict")})), 0)
                FROM pairs p WHERE p.human_verdicts > 0 AND {_verdict_by_others("p.id")}""",
            {"me": annotator},
        ).fetchone()
        return row[0], row[1]

    def labelled_pair_count(self, annotator: str) -> int:
        """Pairs on which `annotator` has an active verdict (skips are not labels)."""
        return self.conn.execute(
            """SELECT count(DISTINCT pair_id) FROM judgments
               WHERE annotator = ? AND undone = 0 AND verdict != 'skip'""",
            (annotator,),
        ).fetchone()[0]

    def disagreement_candidates(
        self, annotator: str, after_id: int = 0, *, skipped_by_me: bool | None = False, limit: int | None = None
    ) -> list[tuple[int, list[tuple[str, str]]]]:
        """Pairs that may be in the disagreement queue, in id order, with their active verdicts.

        The SQL keeps a pair when some dataset verdict differs from some person's verdict, which
        every pair whose settled labels differ satisfies; whether they really differ takes the
        settling rule (store.settle_verdict) and is decided by the caller. `limit` bounds the
        candidates, not the answers, so a caller looping in batches reads each pair once.
        `skipped_by_me`: False, pairs I have not judged; True, pairs I only skipped; None, both.
        """
        # Driven by pairs a person has touched (human_verdicts > 0), usually far fewer than the
        # pairs with dataset labels; skips are dropped in SQL since settling ignores them.
        candidates = f"""
            SELECT p.id FROM pairs p
            WHERE p.id > :after AND p.human_verdicts > 0 AND {_mine("p.id", _pass(skipped_by_me))}
              AND EXISTS (SELECT 1 FROM judgments d JOIN judgments h ON h.pair_id = d.pair_id
                          WHERE d.pair_id = p.id AND d.undone = 0 AND d.verdict != 'skip'
                            AND d.annotator {_DATASET}
                            AND h.undone = 0 AND h.verdict != 'skip' AND h.verdict != d.verdict
                            AND h.annotator {_PERSON})
            ORDER BY p.id LIMIT :limit"""
        judgments: dict[int, list[tuple[str, str]]] = {}
        for pair_id, who, verdict in self.conn.execute(
            f"""SELECT pair_id, annotator, verdict FROM judgments
                WHERE pair_id IN ({candidates}) AND undone = 0 AND verdict != 'skip'
                ORDER BY pair_id, id""",
            {"after": after_id, "me": annotator, "limit": -1 if limit is None else limit},
        ):
            judgments.setdefault(pair_id, []).append((who, verdict))
        return list(judgments.items())

    def pair_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM pairs").fetchone()[0]

    def annotator_figures(self) -> list[tuple[str, int, float | None, int, int, int, int, int]]:
        """Per annotator, over active judgments: (annotator, judgments, mean seconds (None if no
        timings), a/b verdicts with a known side, of those the ones that picked the left side,
        ties, both bad, skips)."""
        return self.conn.execute(
            """SELECT annotator, count(*), avg(seconds),
                      sum(shown_left IS NOT NULL AND (verdict = 'a' OR verdict = 'b')),
                      sum(verdict = shown_left),
                      sum(verdict = 'tie'), sum(verdict = 'both_bad'), sum(verdict = 'skip')
               FROM judgments WHERE undone = 0 GROUP BY annotator"""
        ).fetchall()

    def length_verdicts(self) -> list[tuple[str, str, int, int]]:
        """Per annotator and pair origin: (annotator, origin, decisive verdicts (a or b) on pairs whose
        two answers differ in length, of those the ones that preferred the longer answer). Length in
        characters; each annotator's latest active verdict on a pair (as agreement counts it), so a
        person who judged a pair twice counts once."""
        return self.conn.execute(
            """SELECT annotator, origin, count(*), sum((verdict = 'a') = (len_a > len_b))
               FROM (SELECT j.annotator, j.verdict, p.origin, length(ra.text) AS len_a, length(rb.text) AS len_b,
                            row_number() OVER (PARTITION BY j.pair_id, j.annotator ORDER BY j.id DESC) AS latest
                     FROM judgments j
                     JOIN pairs p ON p.id = j.pair_id
                     JOIN responses ra ON ra.id = p.response_a_id
                     JOIN responses rb ON rb.id = p.response_b_id
                     WHERE j.undone = 0)
               WHERE latest = 1 AND verdict IN ('a', 'b') AND len_a != len_b
               GROUP BY annotator, origin ORDER BY annotator, origin"""
        ).fetchall()

    def active_verdicts(self) -> Iterable[tuple[int, str, str]]:
        """(pair_id, annotator, verdict) of every active judgment but skips, oldest first: the
        one pass agreement statistics make over a project. (A cursor, not a generator: at
        300,000 rows a Python generator in between cost ~0.5 s.)"""
        return self.conn.execute(
            "SELECT pair_id, annotator, verdict FROM judgments WHERE undone = 0 AND verdict != 'skip' ORDER BY id"
        )

    def add_judgment(
        self,
        pair_id: int,
        annotator: str,
        verdict: str,
        *,
        shown_left: str | None = None,
        rationale: str | None = None,
        seconds: float | None = None,
        wait_s: float = VERDICT_WAIT_S,
    ) -> int:
        """Record a verdict and commit it before returning (it is acknowledged once this returns).

        While another program writes (a long import), it waits up to `wait_s` seconds for its
        turn, then raises DatabaseBusy having recorded nothing."""
        if verdict not in VERDICTS:
            raise WorkbenchError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        with self.transaction(wait_s=wait_s):
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

    # -- reward-model scores and the least-sure queue ----------------------------------------------

    def pair_ids_to_score(self, run_id: str) -> list[int]:
        """Pairs without any person's verdict (skips aside) that `run_id` has not scored, by id; not
        those on held-out prompts (the least-sure queue would offer them for labelling)."""
        return [row[0] for row in self.conn.execute(
            f"""SELECT p.id FROM pairs p
                WHERE (p.human_verdicts = 0 OR NOT {_person_verdict("p.id")}) AND p.prompt_id {_TRAINS}
                  AND NOT EXISTS (SELECT 1 FROM pair_scores s WHERE s.pair_id = p.id AND s.run_id = :run)
                ORDER BY p.id""",
            {"run": run_id},
        )]

    def pair_texts(self, pair_ids: Iterable[int]) -> list[tuple[int, str, str, str]]:
        """(pair id, prompt messages as JSON, response A, response B) for these pairs, by id."""
        ids = list(pair_ids)
        rows: list[tuple[int, str, str, str]] = []
        for start in range(0, len(ids), 500):  # under SQLite's oldest limit on bound parameters
            chunk = ids[start : start + 500]
            rows += self.conn.execute(
                f"""SELECT p.id, pr.messages, ra.text, rb.text FROM pairs p
                    JOIN prompts pr ON pr.id = p.prompt_id
                    JOIN responses ra ON ra.id = p.response_a_id
                    JOIN responses rb ON rb.id = p.response_b_id
                    WHERE p.id IN ({", ".join("?" * len(chunk))})""",
                chunk,
            ).fetchall()
        return sorted(rows)

    def save_pair_scores(self, run_id: str, scores: Iterable[tuple[int, float]]) -> None:
        """Record (pair id, p) under `run_id`, in one transaction; a pair scored again is replaced."""
        now = now_iso()
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO pair_scores(pair_id, run_id, p, scored_at) VALUES (?, ?, ?, ?)",
                [(pair_id, run_id, p, now) for pair_id, p in scores],
            )

    def pair_scores(self, run_id: str) -> dict[int, float]:
        return dict(self.conn.execute("SELECT pair_id, p FROM pair_scores WHERE run_id = ?", (run_id,)))

    def pair_score_count(self, run_id: str) -> int:
        return self.conn.execute("SELECT count(*) FROM pair_scores WHERE run_id = ?", (run_id,)).fetchone()[0]

    def least_sure_run(self) -> str | None:
        """The run whose scores the least-sure queue follows: the newest finished run that has
        scored pairs, else the newest run that has (one still running, or stopped)."""
        row = self.conn.execute(
            """SELECT r.id FROM runs r
               WHERE EXISTS (SELECT 1 FROM pair_scores s WHERE s.run_id = r.id)
               ORDER BY r.status = 'finished' DESC, r.created_at DESC, r.rowid DESC LIMIT 1"""
        ).fetchone()
        return row[0] if row else None

    def next_least_sure_pair(
        self, annotator: str, run_id: str, after: tuple[float, int] | None = None, *, skipped_by_me: bool = False
    ) -> tuple[int, tuple[float, int]] | None:
        """The next pair scored by `run_id` that `annotator` has not judged (or only skipped), in
        order of |p - 0.5| ascending, then id. Returns (pair id, place) or None; the place goes
        back in as `after`. Walks the pair_scores_unsure index: no sort per look-up."""
        distance, after_id = after if after is not None else (-1.0, 0)
        row = self.conn.execute(
            f"""SELECT s.pair_id, abs(s.p - 0.5) FROM pair_scores s
                WHERE s.run_id = :run AND (abs(s.p - 0.5), s.pair_id) > (:distance, :after)
                  AND {_mine("s.pair_id", _pass(skipped_by_me))} AND {_on_trained_prompt("s.pair_id")}
                ORDER BY abs(s.p - 0.5), s.pair_id LIMIT 1""",
            {"run": run_id, "distance": distance, "after": after_id, "me": annotator},
        ).fetchone()
        return (row[0], (row[1], row[0])) if row else None

    def least_sure_left(self, annotator: str, run_id: str) -> int:
        """Pairs scored by `run_id` with no verdict by `annotator` (skipped ones included)."""
        return self.conn.execute(
            f"""SELECT count(*) FROM pair_scores s WHERE s.run_id = :run AND {_mine("s.pair_id", "no_verdict")}
                AND {_on_trained_prompt("s.pair_id")}""",
            {"run": run_id, "me": annotator},
        ).fetchone()[0]
