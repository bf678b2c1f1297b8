"""The escrows this node arbitrates, in SQLite (``<datadir>/arbiter.sqlite``): the store behind
``node.contracts.desk.arbiter.Arbitrations``.

An escrow's arbiter runs nothing (it is no runner): all it keeps is the spec it agreed to sign approvals for, so
that after a restart ``approve`` still finds it. One row per contract, written (one autocommit transaction, WAL,
``synchronous=FULL``: durable when the call returns) before the arbiter answers yes to the offer, deleted when the
escrow can no longer use an approval. The connection is not bound to one thread (its caller serialises calls).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS arbitrated (
    cid TEXT PRIMARY KEY, proposer TEXT NOT NULL, spec BLOB NOT NULL, agreed REAL NOT NULL);
"""


class ArbitrationStore:
    def __init__(self, path: Path | None) -> None:
        self._db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None, check_same_thread=False)
        if path:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a row is on disk before the arbiter answers yes
        self._db.executescript(SCHEMA)

    def load(self) -> list[tuple[str, str, bytes, float]]:
        """Every row: (contract id hex, proposer peer id, encoded spec, when agreed), oldest first."""
        return [(c, p, bytes(s), a) for c, p, s, a in self._db.execute(
            "SELECT cid, proposer, spec, agreed FROM arbitrated ORDER BY agreed, cid")]

    def add(self, cid: str, proposer: str, spec: bytes, agreed: float) -> None:
        self._db.execute("INSERT OR IGNORE INTO arbitrated VALUES (?, ?, ?, ?)", (cid, proposer, spec, agreed))

    def remove(self, cid: str) -> None:
        self._db.execute("DELETE FROM arbitrated WHERE cid = ?", (cid,))

    def close(self) -> None:
        self._db.close()
