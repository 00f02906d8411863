"""Runs, their metrics, samples and checkpoints.

A run's row is written by whichever process executes it (jobs.py): 'created' when it is set up,
'running' while a job works on it, then 'finished', 'cancelled' or 'failed'. Metrics and samples
arrive in batches (one transaction each), since every commit waits for the disk.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from .connection import Connection, now_iso

# The states in which a run can still change by itself (someone is, or was, working on it).
LIVE_STATUSES = ("created", "running")
END_STATUSES = ("finished", "failed", "cancelled")


def _decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A runs row with its JSON columns as Python values."""
    if row is None:
        return None
    row = dict(row)
    row["config"] = json.loads(row["config"]) if row.get("config") else {}
    row["summary"] = json.loads(row["summary"]) if row.get("summary") else None
    return row


class RunQueries(Connection):
    # -- runs --------------------------------------------------------------------------------

    def create_run(self, run_id: str, *, kind: str, name: str, config: dict[str, Any], output_dir: str) -> None:
        with self.transaction():
            self.conn.execute(
                """INSERT INTO runs(id, kind, name, config, status, created_at, output_dir)
                   VALUES (?, ?, ?, ?, 'created', ?, ?)""",
                (run_id, kind, name, json.dumps(config), now_iso(), output_dir),
            )

    def set_run_status(
        self, run_id: str, status: str, *, error: str | None = None, summary: dict[str, Any] | None = None
    ) -> None:
        """'running' stamps started_at and clears what an earlier attempt left (a resumed run);
        any other status stamps finished_at and records the error and summary."""
        with self.transaction():
            if status == "running":
                self.conn.execute(
                    """UPDATE runs SET status = 'running', started_at = ?, finished_at = NULL,
                       error = NULL, summary = NULL WHERE id = ?""",
                    (now_iso(), run_id),
                )
            else:
                self.conn.execute(
                    "UPDATE runs SET status = ?, error = ?, summary = ?, finished_at = ? WHERE id = ?",
                    (status, error, None if summary is None else json.dumps(summary), now_iso(), run_id),
                )

    def end_live_run(self, run_id: str, status: str, *, error: str) -> bool:
        """Mark a run ended unless its own process already did; True if this call changed it.

        For the supervisor of a process that died: the child may have recorded its outcome just
        before it went, and that record is the better one.
        """
        with self.transaction():
            cursor = self.conn.execute(
                f"""UPDATE runs SET status = ?, error = ?, finished_at = ?
                    WHERE id = ? AND status IN ({", ".join("?" * len(LIVE_STATUSES))})""",
                (status, error, now_iso(), run_id, *LIVE_STATUSES),
            )
        return cursor.rowcount > 0

    def runs(self, *, newest_first: bool = False, decode: bool = False) -> list[dict[str, Any]]:
        """Every run: raw rows (config and summary as JSON text), or decoded as `run()` gives them."""
        order = "DESC" if newest_first else "ASC"
        # rowid breaks ties: runs started within the same millisecond keep their order.
        rows = self.db.query(f"SELECT * FROM runs ORDER BY created_at {order}, rowid {order}")
        return [_decode(row) for row in rows] if decode else list(rows)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run with config and summary decoded, or None if there is no such run."""
        return _decode(next(self.db.query("SELECT * FROM runs WHERE id = ?", [run_id]), None))

    def delete_run(self, run_id: str) -> bool:
        """Forget a run: its row, figures, samples, checkpoint records and pair scores, in one
        transaction (its folder is the caller's: core/run_deletion.py). Pairs and verdicts it led
        to stay. True if there was such a run."""
        with self.transaction():
            for table in ("pair_scores", "metrics", "samples", "checkpoints"):
                self.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            return self.conn.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount > 0

    # -- metrics -----------------------------------------------------------------------------

    def add_metrics(self, run_id: str, step: int, values: dict[str, float]) -> None:
        t = time.time()
        self.add_metric_rows(run_id, [(step, name, value, t) for name, value in values.items()])

    def add_metric_rows(self, run_id: str, rows: Iterable[tuple[int, str, float, float]]) -> None:
        """Many (step, name, value, time) rows in one transaction."""
        self.save_run_records(run_id, metrics=rows)

    def metric_names(self, run_id: str) -> list[str]:
        return [name for (name,) in self.conn.execute(
            "SELECT DISTINCT name FROM metrics WHERE run_id = ? ORDER BY name", (run_id,)
        )]

    def metric_series(self, run_id: str, name: str) -> list[tuple[int, float]]:
        return list(
            self.conn.execute(
                "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? ORDER BY step", (run_id, name)
            )
        )

    def metric_history(self, run_id: str) -> dict[str, list[tuple[int, float, float]]]:
        """Every figure the run logged, by name: its (step, value, time) in step order, `time` the
        wall clock (seconds since the epoch) when the job reported it. One query for a whole run
        (comparing runs draws them all)."""
        history: dict[str, list[tuple[int, float, float]]] = {}
        for name, step, value, t in self.conn.execute(
            "SELECT name, step, value, time FROM metrics WHERE run_id = ? ORDER BY name, step, time", (run_id,)
        ):
            history.setdefault(name, []).append((step, value, t))
        return history

    def truncate_metrics(self, run_id: str, after_step: int) -> int:
        """Delete the metrics and samples logged after `after_step` (a resumed run logs them
        again from its checkpoint). Returns how many metric values went."""
        with self.transaction():
            n = self.conn.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, after_step)).rowcount
            self.conn.execute("DELETE FROM samples WHERE run_id = ? AND step > ?", (run_id, after_step))
            self.conn.execute("DELETE FROM checkpoints WHERE run_id = ? AND step > ?", (run_id, after_step))
        return n

    # -- samples -----------------------------------------------------------------------------

    def add_samples(self, run_id: str, step: int, samples: Iterable[tuple[str, str, float | None]]) -> None:
        t = time.time()
        self.add_sample_rows(run_id, [(step, p, r, s, t) for p, r, s in samples])

    def add_sample_rows(self, run_id: str, rows: Iterable[tuple[int, str, str, float | None, float]]) -> None:
        """Many (step, prompt, response, score, time) rows in one transaction."""
        self.save_run_records(run_id, samples=rows)

    def samples(self, run_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The run's latest samples, newest first; `extra` is a dict of the sample's other figures."""
        rows = self.db.query(
            "SELECT step, prompt, response, score, time, extra FROM samples WHERE run_id = ? "
            "ORDER BY step DESC, id DESC LIMIT ?",
            [run_id, limit],
        )
        return [{**row, "extra": json.loads(row["extra"]) if row["extra"] else {}} for row in rows]

    # -- checkpoints -------------------------------------------------------------------------

    def save_run_records(
        self,
        run_id: str,
        *,
        metrics: Iterable[tuple[int, str, float, float]] = (),
        samples: Iterable[tuple[int, str, str, float | None, float] | tuple[int, str, str, float | None, float, dict]] = (),
        checkpoint: tuple[int, str, bool] | None = None,
        checkpoints: Iterable[tuple[int, str, bool]] = (),
        wait_s: float | None = None,
    ) -> None:
        """Metrics (step, name, value, time), samples (step, prompt, response, score, time[, extra]) and
        perhaps complete checkpoints (step, path, best), in one transaction: a checkpoint is
        never on record without the figures logged up to it. `wait_s`: as transaction()'s."""
        checkpoints = [*checkpoints, *([checkpoint] if checkpoint is not None else [])]
        with self.transaction(wait_s=wait_s):
            self.conn.executemany(
                "INSERT INTO metrics(run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                [(run_id, int(s), name, float(v), float(t)) for s, name, v, t in metrics],
            )
            self.conn.executemany(
                "INSERT INTO samples(run_id, step, prompt, response, score, time, extra) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, int(row[0]), row[1], row[2], row[3], float(row[4]), _extra_json(row)) for row in samples],
            )
            for step, path, best in checkpoints:
                self.conn.execute(
                    "INSERT INTO checkpoints(run_id, step, path, best, time) VALUES (?, ?, ?, ?, ?)",
                    (run_id, int(step), path, int(best), time.time()),
                )

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "SELECT step, path, best, time FROM checkpoints WHERE run_id = ? ORDER BY step, time", [run_id]
        ))

    def last_checkpoint(self, run_id: str) -> dict[str, Any] | None:
        rows = self.checkpoints(run_id)
        return rows[-1] if rows else None


def _extra_json(sample: tuple) -> str | None:
    extra = sample[5] if len(sample) > 5 else None
    return json.dumps(extra) if extra else None
