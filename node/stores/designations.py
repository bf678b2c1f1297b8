"""The contracts whose escrowed chunks this node is the recovery node of, in SQLite (``<datadir>/escrow.sqlite``):
the store behind ``node.contracts.desk.escrow.EscrowDesk`` (moved out of the desk, same file and schema, issue #19).

One row per contract: the owner, its party, the spec, the destination address of each escrowed chunk (JSON), when
it was agreed, when a recovery was asked and its result (JSON). Autocommit; the connection is not bound to one
thread (the desk's callers, the driver's worker and the event loop, serialise calls under the driver's lock).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = ("CREATE TABLE IF NOT EXISTS designations (cid TEXT PRIMARY KEY, owner TEXT NOT NULL, "
          "party INTEGER NOT NULL, spec BLOB NOT NULL, dest TEXT NOT NULL, agreed REAL NOT NULL, "
          "recover REAL, result TEXT)")


class DesignationStore:
    def __init__(self, path: Path | None) -> None:
        self._db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None, check_same_thread=False)
        self._db.execute(SCHEMA)

    def unfinished(self) -> list[str]:
        """Contract ids (hex) whose recovery was asked and has no result yet (resumed after a restart)."""
        return [cid for (cid,) in self._db.execute(
            "SELECT cid FROM designations WHERE recover IS NOT NULL AND result IS NULL").fetchall()]

    def set_result(self, cid: str, result: str) -> None:
        """``result`` (JSON) for ``cid``, unless it has one already."""
        self._db.execute("UPDATE designations SET result = ? WHERE cid = ? AND result IS NULL", (result, cid))

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM designations").fetchone()[0]

    def has(self, cid: str) -> bool:
        return self._db.execute("SELECT 1 FROM designations WHERE cid = ?", (cid,)).fetchone() is not None

    def add(self, cid: str, owner: str, party: int, spec: bytes, dest: str, agreed: float) -> None:
        """A designation agreed (kept as first agreed if ``cid`` is there already)."""
        self._db.execute("INSERT OR IGNORE INTO designations (cid, owner, party, spec, dest, agreed) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (cid, owner, party, spec, dest, agreed))

    def get(self, cid: str) -> tuple[int, bytes, str] | None:
        """(party, spec, destinations JSON) of ``cid``, or None."""
        row = self._db.execute("SELECT party, spec, dest FROM designations WHERE cid = ?", (cid,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]), row[2])

    def ask_recover(self, cid: str, now: float) -> None:
        """A recovery of ``cid`` asked at ``now`` (the first time kept), its old result cleared."""
        self._db.execute("UPDATE designations SET recover = COALESCE(recover, ?), result = NULL WHERE cid = ?",
                         (now, cid))

    def rows(self) -> list[tuple]:
        """(cid, owner, party, dest, agreed, recover, result) of every designation, oldest first."""
        return list(self._db.execute(
            "SELECT cid, owner, party, dest, agreed, recover, result FROM designations ORDER BY agreed"))

    def close(self) -> None:
        self._db.close()
