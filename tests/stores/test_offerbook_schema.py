"""The offer book's schema 3 (two indexes on the offer rows: what a sheet seen for the first time writes is
one B-tree insert per index a row, issue #23 figure (a)): a schema-2 book is rebuilt, every query by origin
still goes through the key, and the queries answer as before (tests/protocols/test_offers.py's book tests)."""

from __future__ import annotations

import sqlite3

from node.protocols.offers import decode_sheet
from node.stores.offerbook import SCHEMA_VERSION, OfferBook
from tests.adversarial.offerkit import NOW, Node, offers_of

SCHEMA_2 = """
CREATE TABLE sheets (origin TEXT PRIMARY KEY, seq INTEGER NOT NULL, device_id BLOB NOT NULL,
    device_class TEXT NOT NULL, received_at REAL NOT NULL);
CREATE TABLE offers (
    offer_id BLOB NOT NULL, origin TEXT NOT NULL, device_id BLOB NOT NULL, device_class TEXT NOT NULL,
    asset TEXT NOT NULL, address TEXT NOT NULL, pubkey BLOB NOT NULL, amount INTEGER NOT NULL,
    usd_cents INTEGER NOT NULL, price TEXT NOT NULL, price_at REAL NOT NULL, expiry REAL NOT NULL,
    PRIMARY KEY (origin, device_id, offer_id));
CREATE INDEX offers_by_asset_value ON offers (asset, usd_cents DESC, offer_id);
CREATE INDEX offers_by_origin ON offers (origin);
CREATE INDEX offers_by_expiry ON offers (expiry);
CREATE INDEX sheets_by_device ON sheets (device_id);
INSERT INTO sheets VALUES ('12D3KooOld', 7, x'00', 'sim', 0);
PRAGMA user_version = 2;
"""


def indexes(db) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            if not r[0].startswith("sqlite_autoindex")}


def test_a_schema_2_book_is_rebuilt_with_two_offer_indexes_and_answers_as_a_new_one(tmp_path):
    path = tmp_path / "offers.sqlite"
    old = sqlite3.connect(str(path))
    old.executescript(SCHEMA_2)
    old.close()
    node = Node("Shape", keys=4, seed=b"s")
    body = decode_sheet(node.sheet(offers_of(node.keys)))[1]
    book, fresh = OfferBook(path), OfferBook(None)
    assert book.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert indexes(book.db) == {"offers_by_asset_value", "sheets_by_device"}
    assert book.latest_seq("12D3KooOld") is None  # a cache of gossip: rebuilt, refilled by the pull
    for b in (book, fresh):
        assert b.apply_sheet(body, now=NOW) == 4
    assert book.rows(now=NOW) == fresh.rows(now=NOW) and len(book.rows(now=NOW)) == 4
    assert book.candidates("BTC-REG", now=NOW) == fresh.candidates("BTC-REG", now=NOW)
    assert book.count(now=NOW) == book.count(now=NOW, asset="BTC-REG") == 4
    assert book.origins_of(book.devices()[0][0], NOW) == {node.peer}


def test_every_query_by_origin_goes_through_the_key_not_a_scan():
    book = OfferBook(None)
    for q, args in [("SELECT COUNT(*) FROM offers WHERE origin = ?", ("o",)),
                    ("SELECT offer_id FROM offers WHERE origin = ?", ("o",)),
                    ("DELETE FROM offers WHERE origin = ?", ("o",)),
                    ("SELECT origin FROM offers WHERE address = ? AND origin = ?", ("a", "o"))]:  # node/contracts/desk/swaps.py
        plan = " ".join(r[-1] for r in book.db.execute("EXPLAIN QUERY PLAN " + q, args))
        assert "sqlite_autoindex_offers_1 (origin=?" in plan and "SCAN offers" not in plan, (q, plan)
