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
from node.assets.prices import PriceError

OFFER_TTL = 24 * 3600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS deposits (pubkey BLOB PRIMARY KEY, asset TEXT NOT NULL, address TEXT NOT NULL,
  amount INTEGER NOT NULL, usd_cents INTEGER NOT NULL, price TEXT NOT NULL, price_at REAL NOT NULL,
  txid TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kept (pubkey BLOB PRIMARY KEY, contract TEXT NOT NULL);
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

    def add_kept(self, d: Deposit, contract: str) -> bool:
        """Record a key kept from ``contract`` as a deposit, once (a second call for the same key changes
        nothing and answers False): the deposit and where it came from in one transaction."""
        with self.db:
            cur = self.db.execute("INSERT OR IGNORE INTO deposits VALUES (?,?,?,?,?,?,?,?,?)",
                                  tuple(d.__dict__.values()))
            if cur.rowcount == 0:
                return False
            self.db.execute("INSERT OR REPLACE INTO kept VALUES (?,?)", (d.pubkey, contract))
        return True

    def kept(self) -> dict[bytes, str]:
        """Deposit key -> the contract it was received in, for the deposits this node kept (claim policy keep)."""
        return {bytes(p): c for p, c in self.db.execute("SELECT pubkey, contract FROM kept")}

    def close(self) -> None:
        self.db.close()


def open_ledger(cfg):
    """The ledger the node uses: ``ledger.url`` (a dev ledger server) or the embedded one in the datadir,
    with ``ledger.evm_asset`` routed to the EVM node at ``ledger.evm_url`` when that is set
    (``node.ledger.router``; an unreachable EVM node is a ``LedgerError`` here)."""
    from node.ledger.router import with_bitcoind, with_evm

    if cfg["ledger.url"]:
        from node.ledger.client import DevLedgerClient

        base = DevLedgerClient(cfg["ledger.url"], admin=True)
    else:
        from node.ledger.devnet import DevLedger

        base = DevLedger(Path(cfg.datadir) / "ledger.sqlite", automine=True)
    try:
        routed = with_evm(base, cfg.get("ledger.evm_url", ""), cfg.get("ledger.evm_asset", "ETH-DEV"))
        return with_bitcoind(routed, cfg)  # ledger.rpc_asset on a Bitcoin Core JSON-RPC node when ledger.rpc_url is set
    except Exception:
        base.close()
        raise


class QuoteRefused(ValueError):
    """The wallet will not fund keys whose enclave's quote does not verify."""


def verify_vault(enclave, *, net: str, peer_id: str, now: float, policy=None):
    """The wallet's check before funding: quote the vault's binding and verify it. Returns the verdict."""
    from datetime import datetime, timezone

    from node.attest.binding import verify_attestation
    from node.attest.policy import AttestationPolicy

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


def adopt_kept(store: DepositStore, kept, ledger, enclave, *, now: float, prices=None) -> list[Deposit]:
    """Turn keys this node kept from contracts (claim policy "keep") into its deposits, each once.

    ``kept`` is ``[(contract key, Chunk)]`` (``node.contracts.desk.swaps.kept_chunks``). A key is adopted only while the
    enclave holds it (never exported: it stays in the enclave) and its funds are at the address, confirmed
    and not being spent (a giver's double spend leaves it out); its funding transaction is read from the
    ledger, its USD value at the current price. Idempotent: the key is the deposit's primary key, so a
    restart or a second pass adds nothing. Returns the deposits added."""
    known = {d.pubkey for d in store.all()}
    todo = [(k, c) for k, c in kept if c.pubkey not in known]
    if not todo:
        return []
    held = set(enclave.held_pubkeys())
    prices = prices or StaticPrices()
    out = []
    for contract, c in todo:
        if c.pubkey not in held:
            continue
        bal = ledger.balance(c.asset, c.address)
        if bal.confirmed < c.amount or bal.unconfirmed < c.amount:
            continue
        funding = [e.txid for e in ledger.watch([c.address])[0] if e.kind == "deposit"]
        if not funding:
            continue
        try:
            price = prices.price(c.asset, now)
        except PriceError:  # no fresh price now (prices.max_age): adopted at a later refresh, not at a stale one
            continue
        d = Deposit(c.pubkey, c.asset, c.address, c.amount, usd_value_cents(c.asset, c.amount, price),
                    str(price.usd_per_unit), price.at, funding[-1], now)
        if store.add_kept(d, contract):
            out.append(d)
    return out


def offers_from(deposits: list[Deposit], ledger, enclave, *, now: float, ttl: float = OFFER_TTL):
    """Offers for confirmed deposits whose key the enclave still holds, uncommitted to any open contract (it
    signs no sheet naming a committed key: I4), and whose funds are still there."""
    from node.protocols.offers import Offer

    held = set(enclave.offerable_pubkeys())
    offers = []
    for d in deposits:
        if d.pubkey not in held:
            continue
        if ledger.balance(d.asset, d.address).confirmed < d.amount:
            continue
        offers.append(Offer(d.asset, d.address, d.pubkey, d.amount, d.usd_cents, d.price, d.price_at, now + ttl))
    return offers


# ------------------------------------------------------------------ waiting and status (the wallet side)
class ConfirmationTimeout(TimeoutError):
    """Not every funding transaction reached the wanted confirmations in time."""

    def __init__(self, wanted: int, timeout: float, confirmations: dict[str, int]) -> None:
        self.wanted, self.timeout, self.confirmations = wanted, timeout, dict(confirmations)
        short = {t: c for t, c in confirmations.items() if c < wanted}
        worst = min(short.items(), key=lambda kv: kv[1])
        super().__init__(f"timed out after {timeout:g} s waiting for {wanted} confirmation(s): "
                         f"{len(short)} of {len(confirmations)} funding transaction(s) short "
                         f"(e.g. {worst[0][:16]}... has {worst[1]})")


def wait_confirmations(ledger, txs: list[tuple[str, str]], wanted: int, *, timeout: float, poll: float = 0.2,
                       on_progress=None, monotonic=None, sleep=None) -> dict[str, int]:
    """Poll until each ``(asset, txid)`` has ``wanted`` confirmations; returns txid -> confirmations.

    ``on_progress(confirmations)`` is called after every poll. Raises ``ConfirmationTimeout`` after
    ``timeout`` seconds (the deposits stay made and funded; only the waiting stops), and lets the
    ledger's own errors (``LedgerUnreachable``, ...) through.
    """
    import time

    monotonic, sleep = monotonic or time.monotonic, sleep or time.sleep
    if timeout <= 0:
        raise ValueError("timeout must be > 0")
    deadline = monotonic() + timeout
    while True:
        confs = {txid: ledger.confirmations(asset, txid) for asset, txid in txs}
        if on_progress is not None:
            on_progress(confs)
        if all(c >= wanted for c in confs.values()):
            return confs
        left = deadline - monotonic()
        if left <= 0:
            raise ConfirmationTimeout(wanted, timeout, confs)
        sleep(min(poll, left))


def deposit_status(d: Deposit, ledger, key_state: str = "unknown") -> dict:
    """A deposit with its status, one of:

    * ``funded``: the funding transaction is not yet in a block;
    * ``confirmed(n)``: in a block, n confirmations, the funds still at the address, the key still held;
    * ``released``: the enclave gave the key away (to a counterparty, or exported it to its owner) and the
      funds are still at the address;
    * ``swept``: the funds have left the address (whoever moved them).
    """
    row = d.to_json()
    confs = ledger.confirmations(d.asset, d.txid)
    bal = ledger.balance(d.asset, d.address)
    row.update(key_state=key_state, confirmations=confs, confirmed=bal.confirmed)
    if confs > 0 and bal.unconfirmed < d.amount:
        row["status"] = "swept"
    elif key_state in ("released", "exported"):
        row["status"] = "released"
    elif confs == 0:
        row["status"] = "funded"
    else:
        row["status"] = f"confirmed({confs})"
    return row
