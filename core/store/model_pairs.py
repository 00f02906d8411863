"""Pairs that models made, and the queues and figures about them: "Compare with reference"
(origin `ppo-vs-ref:<run id>`: a PPO run's policy against its reference, and the run's human win
rate) and Generate… (origin `generated:<model>`, core/generate.py). Their queues walk one origin
at a time, the newest first, each origin's pairs in id order (see labeling.py for the vocabulary).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .connection import Connection
from .labeling import _PERSON, _mine, _pass, _prefix_range

# The origin of the pairs "Compare with reference" makes for a run (named when PPO was the only method): this, then the run's id.
POLICY_VS_REFERENCE = "ppo-vs-ref:"
# The origin of the pairs "Compare two policies" makes (core/compare.py): this, then "<a> vs <b>";
# who is who is in each pair's meta ("a", "b").
POLICY_VS_POLICY = "policies:"
# The origin of the pairs core/generate.py samples: this, then the model's short name.
GENERATED = "generated:"


class ModelPairQueries(Connection):
    # -- the policy-vs-reference queue -----------------------------------------------------------

    def policy_vs_reference_origins(self) -> list[tuple[str, str]]:
        """(time, origin) of every origin where policies meet, newest first: each `ppo-vs-ref:*`
        origin at its run's creation time (a run whose record is gone sorts last, with ''), each
        `policies:*` origin (Compare two policies) at its newest pair's."""
        return self.conn.execute(
            """SELECT * FROM (
                   SELECT coalesce((SELECT r.created_at FROM runs r WHERE r.id = substr(o.origin, :skip)), ''), o.origin
                   FROM (SELECT DISTINCT origin FROM pairs WHERE origin >= :low AND origin < :high) o
                   UNION ALL
                   SELECT max(created_at), origin FROM pairs WHERE origin >= :low2 AND origin < :high2 GROUP BY origin)
               ORDER BY 1 DESC, 2 DESC""",
            {**_prefix_range(POLICY_VS_REFERENCE), "skip": len(POLICY_VS_REFERENCE) + 1,
             **{f"{k}2": v for k, v in _prefix_range(POLICY_VS_POLICY).items()}},
        ).fetchall()

    def next_policy_vs_reference_pair(
        self, annotator: str, after: tuple[str, str, int] | None = None, *, skipped_by_me: bool = False
    ) -> tuple[int, tuple[str, str, int]] | None:
        """The next pair of origin `ppo-vs-ref:*` that `annotator` has not judged (or, with
        `skipped_by_me`, only skipped): the newest run's pairs first, a run's pairs in id order.

        Returns (pair id, place) or None; pass the place back as `after` to continue past it.
        """
        return self._next_by_origin(self.policy_vs_reference_origins(), annotator, after, skipped_by_me)

    def policy_vs_reference_left(self, annotator: str) -> int:
        """Pairs where policies meet with no verdict by `annotator` (skipped ones included)."""
        return self._left_with_prefix(POLICY_VS_REFERENCE, annotator) + self._left_with_prefix(POLICY_VS_POLICY, annotator)

    # -- the generated queue ---------------------------------------------------------------------

    def generated_origins(self) -> list[tuple[str, str]]:
        """(its newest pair's creation time, origin) of every `generated:*` origin, newest first."""
        return self.conn.execute(
            """SELECT max(created_at), origin FROM pairs WHERE origin >= :low AND origin < :high
               GROUP BY origin ORDER BY 1 DESC, 2 DESC""",
            _prefix_range(GENERATED),
        ).fetchall()

    def next_generated_pair(
        self, annotator: str, after: tuple[str, str, int] | None = None, *, skipped_by_me: bool = False
    ) -> tuple[int, tuple[str, str, int]] | None:
        """As next_policy_vs_reference_pair, for the `generated:*` pairs: the origin that got pairs
        most recently first, an origin's pairs in id order."""
        return self._next_by_origin(self.generated_origins(), annotator, after, skipped_by_me)

    def generated_left(self, annotator: str) -> int:
        """Generated pairs with no verdict by `annotator` (skipped ones included)."""
        return self._left_with_prefix(GENERATED, annotator)

    def _next_by_origin(
        self, origins: list[tuple[str, str]], annotator: str, after: tuple[str, str, int] | None, skipped_by_me: bool
    ) -> tuple[int, tuple[str, str, int]] | None:
        # One origin at a time, each an (origin, id) range on the origin index: sorting every
        # such pair by its origin's rank on each look-up cost ~20 ms at 10,000 of them.
        for made, origin in origins:
            after_id = 0
            if after is not None:
                if (made, origin) > after[:2]:
                    continue  # sorts before the place (descending): walked already
                if (made, origin) == after[:2]:
                    after_id = after[2]
            row = self.conn.execute(
                f"""SELECT id FROM pairs
                    WHERE origin = :origin AND id > :after AND {_mine("id", _pass(skipped_by_me))}
                    ORDER BY id LIMIT 1""",
                {"origin": origin, "after": after_id, "me": annotator},
            ).fetchone()
            if row:
                return row[0], (made, origin, row[0])
        return None

    def _left_with_prefix(self, prefix: str, annotator: str) -> int:
        return self.conn.execute(
            f"""SELECT count(*) FROM pairs p
                WHERE p.origin >= :low AND p.origin < :high AND {_mine("p.id", "no_verdict")}""",
            {**_prefix_range(prefix), "me": annotator},
        ).fetchone()[0]

    # -- the prompts they answer, and what people made of them -----------------------------------

    def prompt_ids_for_comparison(self, origin_prefix: str | None, compared_origin: str) -> list[tuple[int, bool]]:
        """(prompt id, already in a pair of `compared_origin`) for every prompt a PPO run with this
        `prompt_origin` trains on: prompts of pairs whose origin starts with `origin_prefix`, or
        every prompt of the project when it is None or empty. In id order."""
        # substr, not LIKE: LIKE ignores case and reads % and _ in the prefix as wildcards.
        compared = "pr.id IN (SELECT prompt_id FROM pairs WHERE origin = :compared)"
        if origin_prefix:
            sql = f"""SELECT pr.id, {compared} FROM prompts pr
                      WHERE pr.id IN (SELECT prompt_id FROM pairs WHERE substr(origin, 1, :n) = :prefix)
                      ORDER BY pr.id"""
        else:
            sql = f"SELECT pr.id, {compared} FROM prompts pr ORDER BY pr.id"
        params = {"compared": compared_origin, "n": len(origin_prefix or ""), "prefix": origin_prefix or ""}
        return [(prompt_id, bool(done)) for prompt_id, done in self.conn.execute(sql, params)]

    def prompts_for_generation(self, origin_prefix: str | None, generated_origin: str) -> list[tuple[int, int]]:
        """(prompt id, rank) for generating candidate responses (core/generate.py): rank 0 for a
        prompt in no pair at all, 1 for one not yet in a pair of `generated_origin`, 2 for the rest.
        Only prompts of pairs whose origin starts with `origin_prefix`, when it is given, and never
        a held-out one (its pairs would train nothing). Id order."""
        rank = """CASE WHEN NOT EXISTS (SELECT 1 FROM pairs p WHERE p.prompt_id = pr.id) THEN 0
                       WHEN EXISTS (SELECT 1 FROM pairs p WHERE p.prompt_id = pr.id AND p.origin = :generated) THEN 2
                       ELSE 1 END"""
        # substr, not LIKE: LIKE ignores case and reads % and _ in the prefix as wildcards.
        where = "WHERE pr.id NOT IN (SELECT prompt_id FROM heldout_prompts)"
        if origin_prefix:
            where += " AND pr.id IN (SELECT prompt_id FROM pairs WHERE substr(origin, 1, :n) = :prefix)"
        params = {"generated": generated_origin, "n": len(origin_prefix or ""), "prefix": origin_prefix or ""}
        return list(self.conn.execute(f"SELECT pr.id, {rank} FROM prompts pr {where} ORDER BY pr.id", params))

    def prompt_messages(self, prompt_ids: Iterable[int]) -> dict[int, str]:
        """The messages (JSON) of these prompts, by id."""
        ids = list(prompt_ids)
        found: dict[int, str] = {}
        for start in range(0, len(ids), 500):  # under SQLite's oldest limit on bound parameters
            chunk = ids[start : start + 500]
            found.update(self.conn.execute(
                f"SELECT id, messages FROM prompts WHERE id IN ({', '.join('?' * len(chunk))})", chunk
            ))
        return found

    def policy_win_rates(self) -> dict[str, dict[str, Any]]:
        """How people judged each run's policy (SFT, DPO, RL) against its reference, by run id.

        Over the pairs whose origin is `ppo-vs-ref:<run id>` (response A is the policy's, B the
        reference's), counting every person's active verdict (skips and `dataset:` labels left out):
        wins (A better), losses, ties, both_bad, judged (their sum), pairs (made), judged_pairs (with
        a verdict), and win_rate = (wins + ties / 2) / (wins + losses + ties), None before any."""
        rows = self.conn.execute(
            f"""SELECT p.origin, count(DISTINCT p.id), count(DISTINCT j.pair_id),
                       coalesce(sum(j.verdict = 'a'), 0), coalesce(sum(j.verdict = 'b'), 0),
                       coalesce(sum(j.verdict = 'tie'), 0), coalesce(sum(j.verdict = 'both_bad'), 0)
                FROM pairs p
                LEFT JOIN judgments j ON j.pair_id = p.id AND j.undone = 0 AND j.verdict != 'skip'
                                     AND j.annotator {_PERSON}
                WHERE p.origin >= :low AND p.origin < :high
                GROUP BY p.origin""",
            # A range on the origin index: every origin that starts with the prefix sorts in it.
            {"low": POLICY_VS_REFERENCE, "high": POLICY_VS_REFERENCE[:-1] + chr(ord(POLICY_VS_REFERENCE[-1]) + 1)},
        )
        rates: dict[str, dict[str, Any]] = {}
        for origin, pairs, judged_pairs, wins, losses, ties, both_bad in rows:
            decided = wins + losses + ties
            rates[origin[len(POLICY_VS_REFERENCE):]] = {
                "wins": wins, "losses": losses, "ties": ties, "both_bad": both_bad,
                "judged": decided + both_bad, "pairs": pairs, "judged_pairs": judged_pairs,
                "win_rate": (wins + 0.5 * ties) / decided if decided else None,
            }
        return rates
