"""Runs, their metrics and their samples."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from .connection import Connection, now_iso


class RunQueries(Connection):
    def create_run(self, run_id: str, *, kind: str, name: str, config: dict[str, Any], output_dir: str) -> None:
        with self.transaction():
            self.conn.execute(
                """INSERT INTO runs(id, kind, name, config, status, created_at, output_dir)
                   VALUES (?, ?, ?, ?, 'created', ?, ?)""",
                (run_id, kind, name, json.dumps(config), now_iso(), output_dir),
            )

    def set_run_status(self, run_id: str, status: str, *, error: str | None = None) -> None:
        column = {"running": "started_at"}.get(status, "finished_at")
        with self.transaction():
            self.conn.execute(
                f"UPDATE runs SET status = ?, error = ?, {column} = ? WHERE id = ?",
                (status, error, now_iso(), run_id),
            )

    def runs(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM runs ORDER BY created_at"))

    def add_metrics(self, run_id: str, step: int, values: dict[str, float]) -> None:
        t = time.time()
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO metrics(run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                [(run_id, step, name, float(value), t) for name, value in values.items()],
            )

    def metric_series(self, run_id: str, name: str) -> list[tuple[int, float]]:
        return list(
            self.conn.execute(
                "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? ORDER BY step", (run_id, name)
            )
        )

    def add_samples(self, run_id: str, step: int, samples: Iterable[tuple[str, str, float | None]]) -> None:
        t = time.time()
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO samples(run_id, step, prompt, response, score, time) VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, step, p, r, s, t) for p, r, s in samples],
            )
