"""The release records this node received and the outcomes it reported, in SQLite
(``<datadir>/release-records.sqlite``): the ``outcomes.ReleaseRecordStore`` behind ``ReleaseRecords``.

Every change is one autocommit statement (WAL). ``ReleaseRecords.observe`` runs inside the release
protocol's handle, which the runtime runs on its worker thread (``handle_blocks``): the connection is not
bound to one thread (single statements on a serialized SQLite are safe across threads).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


class ReleaseRecordsDB:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS release_records (seq INTEGER PRIMARY KEY, "
                         "contract_id BLOB NOT NULL, deposit_pub BLOB NOT NULL, record BLOB NOT NULL, "
                         "UNIQUE (contract_id, deposit_pub))")
        self._db.execute("CREATE TABLE IF NOT EXISTS reported (key TEXT PRIMARY KEY)")

    def load(self) -> tuple[list[tuple[bytes, bytes, bytes]], set[str]]:
        reported = {k for (k,) in self._db.execute("SELECT key FROM reported")}
        records = [(bytes(cid), bytes(pub), bytes(rec)) for cid, pub, rec in self._db.execute(
            "SELECT contract_id, deposit_pub, record FROM release_records ORDER BY seq")]
        return records, reported

    def add(self, contract_id: bytes, deposit_pub: bytes, record: bytes) -> None:
        self._db.execute("INSERT OR IGNORE INTO release_records (contract_id, deposit_pub, record) "
                         "VALUES (?, ?, ?)", (contract_id, deposit_pub, record))

    def remove(self, contract_id: bytes, deposit_pub: bytes) -> None:
        self._db.execute("DELETE FROM release_records WHERE contract_id = ? AND deposit_pub = ?",
                         (contract_id, deposit_pub))

    def add_reported(self, key: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO reported (key) VALUES (?)", (key,))

    def close(self) -> None:
        self._db.close()
