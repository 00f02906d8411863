"""Held-out prompts, evaluations, and what people said when policies met.

- **Held-out prompts** (`heldout_prompts`): prompts no run trains on, for Evaluate to sample on
  (core/evaluation.py). Training leaves them out from the moment they are held out; a run started
  before then may have seen them, which `heldout_since` lets Evaluate say.
- **Evaluations**: one row each, the config and results as JSON (core/evaluation.py writes them).
- **Policy verdicts**: every person's verdict on a pair where two policies met, "Compare with
  reference" (origin `ppo-vs-ref:<run>`: the run's policy against its reference) or "Compare two
  policies" (origin `policies:...`, who is who in the pair's meta), for the Bradley-Terry ranking.
"""

from __future__ import annotations

import json
import random
from typing import Any

from .connection import Connection, now_iso
from .labeling import _PERSON, _prefix_range
from .model_pairs import POLICY_VS_POLICY, POLICY_VS_REFERENCE


class EvaluationQueries(Connection):
    # -- held-out prompts -------------------------------------------------------------------------

    def heldout_prompt_ids(self) -> list[int]:
        """The held-out prompts' ids, in id order."""
        return [row[0] for row in self.conn.execute("SELECT prompt_id FROM heldout_prompts ORDER BY prompt_id")]

    def heldout_since(self) -> str | None:
        """When the first prompt was held out (ISO time), None while none is."""
        return self.conn.execute("SELECT min(held_at) FROM heldout_prompts").fetchone()[0]

    def hold_out_prompts(self, n: int, *, seed: int = 0) -> int:
        """Hold out `n` more prompts (fewer if the project has fewer left); returns how many.

        Prompts that trained nothing yet come first (in no pair with a verdict, so no reward model or
        DPO run learnt from them), then the rest; each group in a seeded random order, so the same
        project and seed hold out the same prompts."""
        if n < 1:
            return 0
        rows = self.conn.execute(
            """SELECT pr.id, EXISTS (SELECT 1 FROM pairs p JOIN judgments j ON j.pair_id = p.id
                                     WHERE p.prompt_id = pr.id AND j.undone = 0 AND j.verdict != 'skip')
               FROM prompts pr WHERE pr.id NOT IN (SELECT prompt_id FROM heldout_prompts) ORDER BY pr.id"""
        ).fetchall()
        rng = random.Random(seed)
        fresh = [prompt_id for prompt_id, judged in rows if not judged]
        judged = [prompt_id for prompt_id, judged in rows if judged]
        rng.shuffle(fresh)
        rng.shuffle(judged)
        chosen = (fresh + judged)[:n]
        held_at = now_iso()
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO heldout_prompts(prompt_id, held_at) VALUES (?, ?)", [(i, held_at) for i in chosen]
            )
        return len(chosen)

    def heldout_prompt_keys(self) -> set[tuple[tuple[str, str], ...]]:
        """The held-out prompts as tuples of (role, content), to match pairs' prompts against."""
        rows = self.conn.execute(
            "SELECT messages FROM prompts WHERE id IN (SELECT prompt_id FROM heldout_prompts)"
        )
        return {tuple((m["role"], m["content"]) for m in json.loads(messages)) for (messages,) in rows}

    # -- evaluations ----------------------------------------------------------------------------

    def save_evaluation(self, evaluation_id: str, config: dict[str, Any], results: dict[str, Any]) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO evaluations(id, created_at, config, results) VALUES (?, ?, ?, ?)",
                (evaluation_id, now_iso(), json.dumps(config), json.dumps(results)),
            )

    def evaluations(self) -> list[dict[str, Any]]:
        """Every evaluation (id, created_at, config, results), newest first."""
        rows = self.conn.execute("SELECT id, created_at, config, results FROM evaluations ORDER BY created_at DESC, id DESC")
        return [
            {"id": i, "created_at": at, "config": json.loads(config), "results": json.loads(results)}
            for i, at, config, results in rows
        ]

    def evaluation(self, evaluation_id: str) -> dict[str, Any] | None:
        return next((e for e in self.evaluations() if e["id"] == evaluation_id), None)

    def delete_evaluation(self, evaluation_id: str) -> bool:
        with self.transaction():
            return self.conn.execute("DELETE FROM evaluations WHERE id = ?", (evaluation_id,)).rowcount > 0

    # -- policies judged against each other ---------------------------------------------------------

    def policy_verdicts(self) -> list[tuple[str, str, str]]:
        """(policy A, policy B, verdict) for every person's active verdict (skips left out) on a pair
        where two policies met. A `ppo-vs-ref:<run>` pair is the run against its reference (the model
        named in the pair's meta, or "reference of <run>" for a pair from before that was kept)."""
        verdicts = []
        for prefix in (POLICY_VS_REFERENCE, POLICY_VS_POLICY):
            rows = self.conn.execute(
                f"""SELECT p.origin, p.meta, j.verdict FROM pairs p
                    JOIN judgments j ON j.pair_id = p.id AND j.undone = 0 AND j.verdict != 'skip'
                                    AND j.annotator {_PERSON}
                    WHERE p.origin >= :low AND p.origin < :high ORDER BY j.id""",
                _prefix_range(prefix),
            )
            for origin, meta_text, verdict in rows:
                meta = json.loads(meta_text) if meta_text else {}
                if prefix == POLICY_VS_REFERENCE:
                    run_id = origin[len(prefix):]
                    a, b = run_id, meta.get("reference") or f"reference of {run_id}"
                else:
                    a, b = meta.get("a"), meta.get("b")
                if a and b:
                    verdicts.append((str(a), str(b), verdict))
        return verdicts
