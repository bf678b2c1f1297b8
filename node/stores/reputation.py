"""The reputation table in SQLite (``<datadir>/reputation.sqlite``): the ``ReputationStore`` behind
``node.risk.reputation.Reputation``. Every change is one transaction (WAL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from node.risk.reputation import DeviceRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id BLOB PRIMARY KEY, owner TEXT NOT NULL, device_class TEXT NOT NULL,
    score REAL NOT NULL, updated_at REAL NOT NULL, first_seen REAL NOT NULL,
    cheater INTEGER NOT NULL, reports INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen_reports (key BLOB PRIMARY KEY);
"""


class ReputationDB:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def load(self) -> tuple[list[DeviceRecord], set[bytes]]:
        records = [DeviceRecord(bytes(r[0]), r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7])
                   for r in self._db.execute("SELECT * FROM devices")]
        return records, {bytes(r[0]) for r in self._db.execute("SELECT key FROM seen_reports")}

    def save(self, rec: DeviceRecord, seen_key: bytes | None = None) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO devices VALUES (?,?,?,?,?,?,?,?)",
                             (rec.device_id, rec.owner, rec.device_class, rec.score, rec.updated_at,
                              rec.first_seen, int(rec.cheater), rec.reports))
            if seen_key is not None:
                self._db.execute("INSERT OR IGNORE INTO seen_reports VALUES (?)", (seen_key,))

    def see(self, key: bytes) -> None:
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO seen_reports VALUES (?)", (key,))

    def close(self) -> None:
        self._db.close()
