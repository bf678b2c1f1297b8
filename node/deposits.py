"""Deposits: chunks funded to enclave-generated keys, and the offers made from them.

``make_deposits`` asks the enclave for fresh deposit keys, derives each
key's native address, converts the chunk's USD value at the current price
into the asset's smallest unit, funds it from the development faucet (the
stand-in for the owner's wallet on the dev ledger) and records it in
``<datadir>/deposits.sqlite``. ``offers_from`` turns confirmed, unspent
deposits into offers for this node's sheet.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from node.assets import StaticPrices, address_for, chunk_amount, get_asset, usd_value_cents

OFFER_TTL = 24 * 3600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS deposits (pubkey BLOB PRIMARY KEY, asset TEXT NOT NULL, address TEXT NOT NULL,
  amount INTEGER NOT NULL, usd_cents INTEGER NOT NULL, price TEXT NOT NULL, price_at REAL NOT NULL,
  txid TEXT NOT NULL, created_at REAL NOT NULL);
"""


@dataclass(frozen=True)
class Deposit:
    pubkey: bytes
    asset: str
    address: str
    amount: int
    usd_cents: int
    price: str
    price_at: float
    txid: str
    created_at: float

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["pubkey"] = self.pubkey.hex()
        return d


class DepositStore:
    def __init__(self, path: Path | None) -> None:
        self.db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None, check_same_thread=False)
        self.db.executescript(SCHEMA)

    def add(self, d: Deposit) -> None:
        with self.db:
            self.db.execute("INSERT INTO deposits VALUES (?,?,?,?,?,?,?,?,?)", tuple(d.__dict__.values()))

    def all(self) -> list[Deposit]:
        return [Deposit(*r) for r in self.db.execute("SELECT * FROM deposits ORDER BY created_at, pubkey")]

    def close(self) -> None:
        self.db.close()


def open_ledger(cfg):
    """The ledger the node uses: ``ledger.url`` (a dev ledger server) or the embedded one in the datadir."""
    if cfg["ledger.url"]:
        from node.ledger.client import DevLedgerClient

        return DevLedgerClient(cfg["ledger.url"], admin=True)
    from node.ledger.devnet import DevLedger

    return DevLedger(Path(cfg.datadir) / "ledger.sqlite", automine=True)


class QuoteRefused(ValueError):
    """The wallet will not fund keys whose enclave's quote does not verify."""


def verify_vault(enclave, *, net: str, peer_id: str, now: float, policy=None):
    """The wallet's check before funding: quote the vault's binding and verify it. Returns the verdict."""
    from datetime import datetime, timezone

    from node.tee.binding import verify_attestation
    from node.tee.policy import AttestationPolicy

    binding = enclave.binding_for(net, peer_id)
    verdict = verify_attestation(enclave.quote(binding, now=now), binding, policy=policy or AttestationPolicy.dev(),
                                 at=datetime.fromtimestamp(now, timezone.utc))
    if not verdict.ok:
        raise QuoteRefused(f"not funding: the vault's quote is refused ({verdict.code}: {verdict.reason})")
    return verdict


def make_deposits(enclave, ledger, store: DepositStore, *, asset: str, chunks: int, chunk_usd_cents: int,
                  now: float, prices=None, net: str = "dev", peer_id: str = "", policy=None) -> list[Deposit]:
    """Generate ``chunks`` keys in the enclave, verify its quote over them, then fund one chunk of ``asset`` each."""
    get_asset(asset)  # UnknownAsset with the known list, before touching the enclave
    if not 1 <= chunks <= 1000:
        raise ValueError("chunks must be 1..1000")
    price = (prices or StaticPrices()).price(asset, now)
    amount = chunk_amount(asset, chunk_usd_cents, price)
    out = []
    pubs = enclave.generate_keys(chunks)
    verify_vault(enclave, net=net, peer_id=peer_id, now=now, policy=policy)  # the quote commits to the new keys
    for pub in pubs:
        address = address_for(asset, pub)
        txid = ledger.faucet(asset, address, amount)
        d = Deposit(pub, asset, address, amount, usd_value_cents(asset, amount, price), str(price.usd_per_unit),
                    price.at, txid, now)
        store.add(d)
        out.append(d)
    return out


def offers_from(deposits: list[Deposit], ledger, enclave, *, now: float, ttl: float = OFFER_TTL):
    """Offers for confirmed deposits whose key the enclave still holds and whose funds are still there."""
    from node.protocols.offers import Offer

    held = set(enclave.held_pubkeys())
    offers = []
    for d in deposits:
        if d.pubkey not in held:
            continue
        if ledger.balance(d.asset, d.address).confirmed < d.amount:
            continue
        offers.append(Offer(d.asset, d.address, d.pubkey, d.amount, d.usd_cents, d.price, d.price_at, now + ttl))
    return offers
