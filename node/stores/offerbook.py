"""The offer book: every valid offer by asset and value, in SQLite (``<datadir>/offers.sqlite``).

One row per offer of the newest valid sheet of each origin; applying a newer
sheet replaces that origin's rows in one transaction (so retractions are
implicit). Rows are keyed by (origin, device, offer id): one origin's sheet
never touches another origin's rows, even for an offer id they share (a node
republishing another's offers gets rows of its own, never the other's; the
receiver's validation rejects such offers anyway: not in the device's
attested key commitment). Offers past their expiry drop out of every query and are purged by
``purge_expired`` (the offers protocol's ``offers.purge`` timer, hourly). The book is a real SQLite file (WAL), so it survives a
restart; ``OfferBook(None)`` keeps it in memory for simulations.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from pathlib import Path

from node.protocols.offers import device_id_of  # noqa: F401  (re-exported: a device's id)
from node.risk.types import Candidate

SCHEMA_VERSION = 3  # 2: offers keyed by (origin, device_id, offer_id); 3: no index by origin or expiry
# Every offer row written costs a B-tree insert per index, and a sheet seen for the first time writes 100
# of them: so two indexes only. The key (origin first) serves every query by origin; by expiry only
# ``purge_expired`` and ``count`` select, and ``count`` reads nearly every row anyway (the book holds
# unexpired offers): a scan. (Schema 2's indexes by origin and by expiry cost ~20 % of a sheet's rows.)
SCHEMA = """
CREATE TABLE IF NOT EXISTS sheets (
    origin TEXT PRIMARY KEY, seq INTEGER NOT NULL, device_id BLOB NOT NULL,
    device_class TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS offers (
    offer_id BLOB NOT NULL, origin TEXT NOT NULL, device_id BLOB NOT NULL, device_class TEXT NOT NULL,
    asset TEXT NOT NULL, address TEXT NOT NULL, pubkey BLOB NOT NULL, amount INTEGER NOT NULL,
    usd_cents INTEGER NOT NULL, price TEXT NOT NULL, price_at REAL NOT NULL, expiry REAL NOT NULL,
    PRIMARY KEY (origin, device_id, offer_id)
);
CREATE INDEX IF NOT EXISTS offers_by_asset_value ON offers (asset, usd_cents DESC, offer_id);
CREATE INDEX IF NOT EXISTS sheets_by_device ON sheets (device_id);
"""


class OfferBook:
    def __init__(self, path: Path | None = None, *, device_class=lambda body: "sim") -> None:
        self.path = path
        self.db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None, check_same_thread=False)
        if path:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            # an older layout (offers keyed by offer id alone): the book is a cache of gossip, refilled by the
            # pull on connect, so it is rebuilt rather than migrated
            self.db.executescript("DROP TABLE IF EXISTS offers; DROP TABLE IF EXISTS sheets;")
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.db.executescript(SCHEMA)
        self.device_class = device_class
        self._latest: dict[str, int] = dict(self.db.execute("SELECT origin, seq FROM sheets"))
        # origin -> (device, class, digest of the offer ids in order, earliest expiry) of the sheet stored
        # from it, kept only when every offer of that sheet was stored: see ``apply_sheet`` (rows gone since
        # by any way, ``drop_device``, ``purge_expired`` or another origin's sheet, show in the origin's count)
        self._same: dict[str, tuple[bytes, str, bytes, float]] = {}

    def close(self) -> None:
        self.db.close()

    def latest_seq(self, origin: str) -> int | None:
        return self._latest.get(origin)

    def origins_of(self, device_id: bytes, now: float) -> set[str]:
        """The origins whose latest sheet here is from this device and still counts: received within the
        longest an offer may live (``offers.max_offer_lifetime``), or with an unexpired offer. What the origin
        cap (``offers.max_origins_per_device``) counts."""
        from node.protocols.offers import MAX_OFFER_LIFETIME

        return {r[0] for r in self.db.execute(
            "SELECT origin FROM sheets WHERE device_id = ? AND (received_at > ? OR origin IN "
            "(SELECT origin FROM offers WHERE device_id = ? AND expiry > ?))",
            (device_id, now - MAX_OFFER_LIFETIME, device_id, now))}

    def apply_sheet(self, body, *, now: float, ids: list[bytes] | None = None) -> int:
        """Replace ``body.origin``'s offers with the sheet's unexpired ones; returns how many.

        A newer sheet usually repeats most of the previous one (nodes republish
        their sheet whether or not it changed), so when the origin's device and
        class are unchanged only the difference is written: offers no longer
        listed are deleted, new ones inserted. The result is the same rows as a
        full replace. A re-announced sheet (the same offers, in order, from the same device and class as
        the sheet stored from that origin, every one of them stored and none expired since) changes no
        offer row at all: only the sheet's own row (seq, arrival) is written, without reading the origin's
        rows back. ``ids`` are the offers' ids in order when the caller has them (validation computed
        them); otherwise they are computed here."""
        if ids is None:
            from node.protocols.offers import offer_ids

            ids = offer_ids(body.offers)
        if len(ids) != len(body.offers):
            raise ValueError(f"{len(ids)} offer ids for {len(body.offers)} offers")
        device = device_id_of(body.binding.sign_pub)
        dclass = self.device_class(body)
        digest = hashlib.sha256(b"".join(ids)).digest()
        same = self._same.get(body.origin)
        if same is not None and same[:3] == (device, dclass, digest) and same[3] > now and self.db.execute(
                "SELECT COUNT(*) FROM offers WHERE origin = ?", (body.origin,)).fetchone()[0] == len(ids):
            # a re-announcement: the same offers from the same device and class as the sheet stored, all of
            # them stored, none expired since and none gone (a row another origin's sheet took over by its id
            # leaves this origin's count short), so no offer row changes; only the sheet's own row is written
            self.db.execute("INSERT OR REPLACE INTO sheets VALUES (?,?,?,?,?)",
                            (body.origin, body.seq, device, dclass, now))
            self._latest[body.origin] = body.seq
            return len(ids)
        fresh = {i: o for i, o in zip(ids, body.offers) if o.expiry > now}
        with self.db:
            self.db.execute("BEGIN")
            prev = self.db.execute("SELECT device_id, device_class FROM sheets WHERE origin = ?",
                                   (body.origin,)).fetchone()
            if prev is not None and (bytes(prev[0]), prev[1]) == (device, dclass):
                held = {bytes(r[0]) for r in self.db.execute("SELECT offer_id FROM offers WHERE origin = ?",
                                                              (body.origin,))}
                self.db.executemany("DELETE FROM offers WHERE origin = ? AND device_id = ? AND offer_id = ?",
                                    [(body.origin, device, i) for i in held - fresh.keys()])
                new = [i for i in fresh if i not in held]
            else:
                self.db.execute("DELETE FROM offers WHERE origin = ?", (body.origin,))
                new = list(fresh)
            self.db.executemany(
                "INSERT OR REPLACE INTO offers VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(i, body.origin, device, dclass, o.asset, o.address, o.pubkey, o.amount, o.usd_cents, o.price,
                  o.price_at, o.expiry) for i in new for o in (fresh[i],)])
            self.db.execute(
                "INSERT OR REPLACE INTO sheets VALUES (?,?,?,?,?)", (body.origin, body.seq, device, dclass, now)
            )
        self._latest[body.origin] = body.seq
        if len(fresh) == len(ids):
            self._same[body.origin] = (device, dclass, digest, min((o.expiry for o in body.offers), default=math.inf))
        else:
            self._same.pop(body.origin, None)
        return len(fresh)

    def devices(self) -> list[tuple[bytes, str]]:
        """(device id, device class) of every device with offers in the book."""
        return [(bytes(d), c) for d, c in self.db.execute("SELECT DISTINCT device_id, device_class FROM offers")]

    def drop_device(self, device_id: bytes) -> int:
        """Remove every offer of a device (revoked, or caught cheating)."""
        with self.db:
            cur = self.db.execute("DELETE FROM offers WHERE device_id = ?", (device_id,))
        return cur.rowcount

    def purge_expired(self, now: float) -> int:
        with self.db:
            cur = self.db.execute("DELETE FROM offers WHERE expiry <= ?", (now,))
        return cur.rowcount

    def count(self, *, now: float, asset: str | None = None) -> int:
        q = "SELECT COUNT(*) FROM offers WHERE expiry > ?" + (" AND asset = ?" if asset else "")
        return self.db.execute(q, (now, asset) if asset else (now,)).fetchone()[0]

    def candidates(self, asset: str, *, now: float, limit: int | None = None) -> list[Candidate]:
        """Unexpired offers of ``asset``, most valuable first; one per deposit key of a device (a device may
        publish under up to ``offers.max_origins_per_device`` origins: the same key offered under two of them
        is one chunk, never two candidates)."""
        q = ("SELECT offer_id, device_id, origin, device_class, asset, address, amount, usd_cents, expiry, pubkey "
             "FROM offers WHERE asset = ? AND expiry > ? ORDER BY usd_cents DESC, offer_id, origin")
        out: list[Candidate] = []
        seen: set[tuple[bytes, bytes]] = set()
        for row in self.db.execute(q, (asset, now)):
            key = (bytes(row[1]), bytes(row[9]))
            if key in seen:
                continue
            seen.add(key)
            out.append(Candidate(*row[:9]))
            if limit and len(out) >= limit:
                break
        return out

    def rows(self, *, now: float, asset: str | None = None, limit: int = 100) -> list[dict]:
        """Offers as JSON-able dicts (the API's view)."""
        q = ("SELECT offer_id, origin, device_id, device_class, asset, address, amount, usd_cents, price, "
             "price_at, expiry FROM offers WHERE expiry > ?" + (" AND asset = ?" if asset else "")
             + " ORDER BY asset, usd_cents DESC, offer_id LIMIT ?")
        args = (now, asset, limit) if asset else (now, limit)
        cols = ["offer_id", "origin", "device_id", "device_class", "asset", "address", "amount", "usd_cents",
                "price", "price_at", "expiry"]
        out = []
        for r in self.db.execute(q, args):
            d = dict(zip(cols, r))
            d["offer_id"], d["device_id"] = d["offer_id"].hex(), d["device_id"].hex()
            out.append(d)
        return out
