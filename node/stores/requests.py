"""Requests to contracts in SQLite (``<datadir>/requests.sqlite``): each run's state (``RequestRun.to_state``,
as JSON) written after every change, so a restarted daemon still answers ``GET /v1/requests/{id}`` and resumes
the runs that had not ended (``node.app.requestdesk``). Every write is one transaction (WAL); the finished runs
beyond the newest ``keep`` are dropped as new ones finish."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    request_id TEXT PRIMARY KEY, started_at REAL NOT NULL, done INTEGER NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_done ON runs (done, started_at);
"""


class RequestStore:
    def __init__(self, path: Path | None, *, keep: int = 100) -> None:
        self.keep = keep
        self._db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None, check_same_thread=False)
        if path:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def save(self, request_id: str, started_at: float, done: bool, state: dict) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?)",
                             (request_id, started_at, int(done), json.dumps(state, separators=(",", ":"))))
            if done:
                self._db.execute("DELETE FROM runs WHERE done = 1 AND request_id NOT IN (SELECT request_id FROM runs "
                                 "WHERE done = 1 ORDER BY started_at DESC LIMIT ?)", (self.keep,))

    def load(self) -> list[tuple[str, dict | str]]:
        """Every stored run, oldest first: (id, its state), or (id, why it does not read)."""
        out: list[tuple[str, dict | str]] = []
        for rid, text in self._db.execute("SELECT request_id, state FROM runs ORDER BY started_at, request_id"):
            try:
                state = json.loads(text)
            except ValueError as exc:
                out.append((rid, f"unreadable: {exc}"))
                continue
            out.append((rid, state if isinstance(state, dict) else "unreadable: not an object"))
        return out

    def close(self) -> None:
        self._db.close()
