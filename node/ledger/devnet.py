"""The embedded development ledger: several assets in one SQLite file.

Bitcoin-like assets use a UTXO model, Ethereum-like ones an account model
with nonces. Every spend is a signed transaction (secp256k1 over a tagged
hash of its deterministic encoding) and the ledger verifies each signature
and that the signing key owns the coins (its address in the asset's native
format), so a swept deposit key really is the only way to move a deposit.
Transactions wait in a mempool until ``mine()`` puts them in a block
(``automine=True`` mines each at once). ``submit_many`` verifies a batch of
signed transactions and applies it in one SQLite transaction, with the same
rules and per-transaction results as submitting them one by one (``submit``
is ``submit_many`` of one). ``faucet`` creates coins for development.
``python -m node.ledger.server serve`` serves one over HTTP
(``node.ledger.client.DevLedgerClient`` speaks to it).

Signing happens on the wallet side (``WalletOps``, shared by the in-process
ledger and the HTTP client): private keys are never sent to the ledger.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import sqlite3
import threading
from pathlib import Path

import coincurve
import msgspec

from node import wire
from node.assets import address_for, address_kinds, get_asset
from node.assets import UnknownAsset as _AssetUnknown
from node.crypto import sha256, sign_digest, tagged_hash, verify_digest
from node.ledger.base import (
    AlreadySpent, Balance, InsufficientFunds, InvalidTransaction, LedgerError, UnknownAsset, WatchEvent,
)

TX_VERSION = 1
MAX_TX_SIZE = 100_000
FEES = {"utxo": 500, "account": 21_000 * 10**9}


class Outpoint(msgspec.Struct, array_like=True, frozen=True):
    txid: str
    vout: int


class TxOut(msgspec.Struct, array_like=True, frozen=True):
    address: str
    amount: int


class Witness(msgspec.Struct, array_like=True, frozen=True):
    pubkey: bytes
    sig: bytes


class UtxoTx(msgspec.Struct, array_like=True, frozen=True, tag="utxo"):
    version: int
    asset: str
    inputs: list[Outpoint]
    outputs: list[TxOut]
    witnesses: list[Witness] = []


class AccountTx(msgspec.Struct, array_like=True, frozen=True, tag="account"):
    version: int
    asset: str
    to: str
    value: int
    nonce: int
    fee: int
    pubkey: bytes = b""
    sig: bytes = b""


Tx = UtxoTx | AccountTx


_TX_DECODER = msgspec.msgpack.Decoder(Tx)
_ENCODER = msgspec.msgpack.Encoder()


def _decode_tx(raw: bytes) -> Tx:
    """``wire.decode(raw, Tx)`` (bounded, canonical only), with a prebuilt decoder on the common path;
    anything unusual goes through ``wire.decode`` itself, which raises its ``WireError``."""
    if type(raw) is bytes and 0 < len(raw) <= MAX_TX_SIZE:
        try:
            tx = _TX_DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        else:
            if _ENCODER.encode(tx) == raw:
                return tx
    return wire.decode(raw, Tx, max_size=MAX_TX_SIZE)


def _unsigned(tx: Tx) -> bytes:
    if isinstance(tx, UtxoTx):
        return wire.encode(msgspec.structs.replace(tx, witnesses=[]))
    return wire.encode(msgspec.structs.replace(tx, pubkey=b"", sig=b""))


SIGHASH_TAG = "keyswitch/devtx/1"
_SIGHASH_PREFIX = hashlib.sha256(hashlib.sha256(SIGHASH_TAG.encode()).digest() * 2)


def sighash(tx: Tx) -> bytes:
    return tagged_hash(SIGHASH_TAG, _unsigned(tx))


def _sighash_of_unsigned(unsigned: bytes) -> bytes:
    """``tagged_hash(SIGHASH_TAG, unsigned)`` from a precomputed prefix state."""
    h = _SIGHASH_PREFIX.copy()
    h.update(len(unsigned).to_bytes(4, "big"))
    h.update(unsigned)
    return h.digest()


def txid_of(tx: Tx) -> str:
    # an account transfer's unsigned body does not name its sender: two senders paying the same value to
    # the same address at the same nonce must not share a txid, so the sender's key is part of it
    extra = tx.pubkey if isinstance(tx, AccountTx) else b""
    return sha256(_unsigned(tx) + extra).hex()


@functools.lru_cache(maxsize=65536)
def _addresses(asset: str, pubkey: bytes) -> frozenset[str]:
    return frozenset(address_for(asset, pubkey, kind=k) for k in address_kinds(asset))


def owns(asset: str, pubkey: bytes, address: str) -> bool:
    try:
        return address in _addresses(asset, bytes(pubkey))
    except ValueError:
        return False


class WalletOps:
    """send / sweep built on ``utxos``, ``nonce``, ``submit``: the signing stays here."""

    def _asset(self, asset: str):
        try:
            return get_asset(asset)
        except _AssetUnknown as exc:
            raise UnknownAsset(str(exc)) from None

    def send(self, asset: str, privkey: bytes, to: str, amount: int) -> str:
        return self._spend(asset, privkey, to, amount)

    def sweep(self, asset: str, privkey: bytes, to: str) -> str:
        return self._spend(asset, privkey, to, None)

    def _spend(self, asset: str, privkey: bytes, to: str, amount: int | None) -> str:
        a = self._asset(asset)
        key = coincurve.PrivateKey(privkey)
        pub = key.public_key.format()
        fee = FEES[a.kind]
        if a.kind == "account":
            frm = address_for(asset, pub)
            bal = self.balance(asset, frm).unconfirmed
            value = bal - fee if amount is None else amount
            if value <= 0 or value + fee > bal:
                raise InsufficientFunds(f"{frm} holds {bal} of {asset}; {value if value > 0 else 0} + fee {fee} needed")
            tx = AccountTx(TX_VERSION, asset, to, value, self.nonce(asset, frm), fee)
            tx = msgspec.structs.replace(tx, pubkey=pub, sig=sign_digest(key, sighash(tx)))
            return self.submit(asset, wire.encode(tx))
        mine = [address_for(asset, pub, kind=k) for k in address_kinds(asset)]
        coins = sorted(self.utxos(asset, mine), key=lambda u: (-u[3], u[0], u[1]))
        total = sum(u[3] for u in coins)
        if amount is None:
            chosen, out_amount = coins, total - fee
            if out_amount <= 0:
                raise InsufficientFunds(f"the key controls {total} of {asset}, not more than the fee {fee}")
        else:
            if amount <= 0:
                raise InvalidTransaction("amount must be positive")
            chosen, acc = [], 0
            for u in coins:
                if acc >= amount + fee:
                    break
                chosen.append(u)
                acc += u[3]
            if acc < amount + fee:
                raise InsufficientFunds(f"the key controls {total} of {asset}; {amount} + fee {fee} needed")
            out_amount = amount
        outputs = [TxOut(to, out_amount)]
        change = sum(u[3] for u in chosen) - out_amount - fee
        if change > 0:
            outputs.append(TxOut(mine[0], change))
        tx = UtxoTx(TX_VERSION, asset, [Outpoint(u[0], u[1]) for u in chosen], outputs)
        sig = sign_digest(key, sighash(tx))
        tx = msgspec.structs.replace(tx, witnesses=[Witness(pub, sig)] * len(chosen))
        return self.submit(asset, wire.encode(tx))


# (``seq`` without AUTOINCREMENT: rows are never deleted, so a new row's seq is max + 1 all the same,
# without a write to sqlite_sequence per row; files made with AUTOINCREMENT behave identically)
SCHEMA = """
CREATE TABLE IF NOT EXISTS txs (seq INTEGER PRIMARY KEY, asset TEXT, txid TEXT UNIQUE,
                                height INTEGER, raw BLOB);
CREATE TABLE IF NOT EXISTS outputs (asset TEXT, txid TEXT, vout INTEGER, address TEXT, amount INTEGER,
                                    spent_by TEXT, PRIMARY KEY (txid, vout));
CREATE INDEX IF NOT EXISTS outputs_addr ON outputs (asset, address);
CREATE TABLE IF NOT EXISTS moves (asset TEXT, txid TEXT, frm TEXT, dest TEXT, value INTEGER, fee INTEGER,
                                  nonce INTEGER);
CREATE INDEX IF NOT EXISTS moves_from ON moves (asset, frm);
CREATE INDEX IF NOT EXISTS moves_to ON moves (asset, dest);
CREATE TABLE IF NOT EXISTS heights (asset TEXT PRIMARY KEY, height INTEGER);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, asset TEXT, address TEXT, kind TEXT,
                                   amount INTEGER, txid TEXT);
CREATE INDEX IF NOT EXISTS events_addr ON events (address);
"""


class DevLedger(WalletOps):
    """In-process dev ledger over a real SQLite file (``path=None``: in memory). Thread-safe."""

    def __init__(self, path: Path | None = None, *, automine: bool = False, clock=None,
                 block_interval: float | None = None) -> None:
        """``block_interval`` (seconds, with ``clock``): a block is mined every interval of clock time,
        checked on every call (so a ``ManualClock`` in the simulator drives it deterministically)."""
        self.db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None, check_same_thread=False)
        if path:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a confirmed transaction survives a crash
        self.db.executescript(SCHEMA)
        self.automine = automine
        self.lock = threading.RLock()
        if block_interval is not None and (clock is None or block_interval <= 0):
            raise ValueError("block_interval needs a clock and must be > 0")
        self.clock, self.block_interval = clock, block_interval
        self._block_time: dict[str, float] = {}

    def _tick(self, asset: str) -> None:
        if self.block_interval is None:
            return
        now = self.clock.now()
        last = self._block_time.setdefault(asset, now)
        n = int((now - last) // self.block_interval)
        if n > 0:
            self._block_time[asset] = last + n * self.block_interval
            self.mine(asset, n)

    def _asset(self, asset: str):
        a = WalletOps._asset(self, asset)
        self._tick(asset)
        return a

    def spent_by(self, asset: str, txid: str, vout: int) -> str | None:
        """The transaction that spent an output (the evidence behind an "already spent")."""
        row = self.db.execute("SELECT spent_by FROM outputs WHERE asset=? AND txid=? AND vout=?",
                              (asset, txid, vout)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _txn(self):
        """One SQLite transaction (the connection is in autocommit mode, so ``with self.db`` alone is not)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---------------------------------------------------------------- reads
    def height(self, asset: str) -> int:
        self._asset(asset)
        row = self.db.execute("SELECT height FROM heights WHERE asset=?", (asset,)).fetchone()
        return row[0] if row else 0

    def _mined(self, txid: str) -> int | None:
        row = self.db.execute("SELECT height FROM txs WHERE txid=?", (txid,)).fetchone()
        return None if row is None else row[0]

    def confirmations(self, asset: str, txid: str) -> int:
        self._asset(asset)
        h = self._mined(txid)
        return 0 if h is None else self.height(asset) - h + 1

    def balance(self, asset: str, address: str) -> Balance:
        a = self._asset(asset)
        with self.lock:
            if a.kind == "utxo":
                rows = self.db.execute(
                    "SELECT o.amount, t.height, o.spent_by, (SELECT height FROM txs WHERE txid=o.spent_by) "
                    "FROM outputs o JOIN txs t ON t.txid=o.txid WHERE o.asset=? AND o.address=?", (asset, address))
                conf = unconf = 0
                for amount, h, spent_by, spent_h in rows:
                    if h is not None and spent_h is None:
                        conf += amount
                    if spent_by is None:
                        unconf += amount
                return Balance(conf, unconf)
            conf = unconf = 0
            for frm, dest, value, fee, h in self.db.execute(
                    "SELECT m.frm, m.dest, m.value, m.fee, t.height FROM moves m JOIN txs t ON t.txid=m.txid "
                    "WHERE m.asset=? AND (m.frm=? OR m.dest=?)", (asset, address, address)):
                delta = (value if dest == address else 0) - (value + fee if frm == address else 0)
                unconf += delta
                if h is not None:
                    conf += delta
            return Balance(conf, unconf)

    def utxos(self, asset: str, addresses: list[str]) -> list[tuple[str, int, str, int]]:
        q = ",".join("?" * len(addresses))
        return [tuple(r) for r in self.db.execute(
            f"SELECT txid, vout, address, amount FROM outputs WHERE asset=? AND spent_by IS NULL AND address IN ({q}) "
            "ORDER BY txid, vout", (asset, *addresses))]

    def nonce(self, asset: str, address: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM moves WHERE asset=? AND frm=?", (asset, address)).fetchone()[0]

    def watch(self, addresses: list[str], since: int = 0) -> tuple[list[WatchEvent], int]:
        """Deposits and spends touching ``addresses`` after event ``since``; returns (events, new cursor)."""
        q = ",".join("?" * len(addresses)) or "''"
        rows = self.db.execute(f"SELECT seq, asset, address, kind, amount, txid FROM events WHERE seq>? AND "
                               f"address IN ({q}) ORDER BY seq", (since, *addresses)).fetchall()
        last = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        return [WatchEvent(*r) for r in rows], max(last, since)

    # --------------------------------------------------------------- writes
    def mine(self, asset: str, blocks: int = 1) -> int:
        WalletOps._asset(self, asset)
        with self.lock, self._txn():
            row = self.db.execute("SELECT height FROM heights WHERE asset=?", (asset,)).fetchone()
            h = (row[0] if row else 0) + blocks
            self.db.execute("INSERT OR REPLACE INTO heights VALUES (?, ?)", (asset, h))
            self.db.execute("UPDATE txs SET height=? WHERE asset=? AND height IS NULL", (h - blocks + 1, asset))
        return h

    def faucet(self, asset: str, address: str, amount: int) -> str:
        """Create ``amount`` new coins at ``address`` (development only)."""
        a = self._asset(asset)
        if amount <= 0:
            raise InvalidTransaction("faucet amount must be positive")
        with self.lock, self._txn():
            seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM txs").fetchone()[0]
            txid = sha256(b"faucet" + asset.encode() + address.encode() + seq.to_bytes(8, "big")).hex()
            self.db.execute("INSERT INTO txs (asset, txid, height, raw) VALUES (?, ?, NULL, ?)", (asset, txid, b""))
            if a.kind == "utxo":
                self.db.execute("INSERT INTO outputs VALUES (?, ?, 0, ?, ?, NULL)", (asset, txid, address, amount))
            else:
                self.db.execute("INSERT INTO moves VALUES (?, ?, '', ?, ?, 0, 0)", (asset, txid, address, amount))
            self.db.execute("INSERT INTO events (asset, address, kind, amount, txid) VALUES (?, ?, 'deposit', ?, ?)",
                            (asset, address, amount, txid))
        if self.automine:
            self.mine(asset)
        return txid

    def submit(self, asset: str, raw: bytes) -> str:
        """Verify and accept a signed transaction into the mempool; returns its txid (``submit_many`` of one)."""
        result = self.submit_many(asset, [raw])[0]
        if isinstance(result, LedgerError):
            raise result
        return result

    def submit_many(self, asset: str, raws: list[bytes]) -> list[str | LedgerError]:
        """Verify and accept a batch of signed transactions in order, in ONE SQLite transaction.

        The rules are ``submit``'s, applied as if the transactions came one by one: a transaction may
        spend outputs made earlier in the batch; of two spends of the same coins (or the same nonce) the
        first is accepted and the later gets ``AlreadySpent`` naming the winner. Returns, in order, the
        txid of each accepted transaction or the typed error (not raised) of each refused one. With
        ``automine`` the accepted ones are mined together in one block. An unknown asset raises; so does a
        failure to store the batch, and then none of it is stored.
        """
        a = self._asset(asset)
        results: list[str | LedgerError] = []
        decoded: list[tuple[int, Tx, bytes]] = []
        for raw in raws:
            try:
                tx = _decode_tx(raw)
            except wire.WireError as exc:
                results.append(InvalidTransaction(f"malformed transaction: {exc.reason}"))
                continue
            if tx.version != TX_VERSION or tx.asset != asset:
                results.append(InvalidTransaction("wrong version or asset"))
                continue
            decoded.append((len(results), tx, raw if isinstance(raw, bytes) else bytes(raw)))
            results.append("")  # placeholder
        if not decoded:
            return results
        # every signature first, in one tight loop and outside the lock (its result depends only on the
        # transaction); ``apply`` consults it where ``submit`` always checked it, so errors come out the same
        checked = [_check_signatures(tx) for _, tx, _ in decoded]
        with self.lock:
            batch = _Batch(self.db, asset)
            if a.kind == "utxo":
                batch.prefetch({op.txid for _, tx, _ in decoded if isinstance(tx, UtxoTx) for op in tx.inputs})
            for (i, tx, raw), sigs in zip(decoded, checked):
                try:
                    results[i] = batch.apply(a.kind, tx, raw, *sigs)
                except LedgerError as exc:
                    results[i] = exc
            if batch.txs:
                batch.write()
        if self.automine and batch.txs:
            self.mine(asset)
        return results


class _Batch:
    """The ledger's state as a batch of transactions sees it: the database (read once) plus the batch's
    own effects so far; ``write`` stores the accepted transactions in one SQLite transaction."""

    def __init__(self, db: sqlite3.Connection, asset: str) -> None:
        self.db, self.asset = db, asset
        self.coins: dict[tuple[str, int], list] = {}  # (txid, vout) -> [address, amount, spent_by]
        self.nonces: dict[str, int] = {}
        self.balances: dict[str, int] = {}  # unconfirmed, for account-model senders
        self.deltas: dict[str, int] = {}
        self.txs: list[tuple] = []
        self.spends: list[tuple] = []
        self.outputs: list[tuple] = []
        self.moves: list[tuple] = []
        self.events: list[tuple] = []

    def prefetch(self, txids: set[str]) -> None:
        ids = list(txids)
        for k in range(0, len(ids), 500):
            part = ids[k:k + 500]
            q = ",".join("?" * len(part))
            # (``+asset``: look up by the primary key, not by the (asset, address) index)
            for txid, vout, address, amount, spent_by in self.db.execute(
                    f"SELECT txid, vout, address, amount, spent_by FROM outputs WHERE txid IN ({q}) AND +asset=?",
                    (*part, self.asset)):
                self.coins[(txid, vout)] = [address, amount, spent_by]

    def _nonce(self, address: str) -> int:
        n = self.nonces.get(address)
        if n is None:
            n = self.nonces[address] = self.db.execute(_NONCE_SQL, (self.asset, address)).fetchone()[0]
        return n

    def _balance(self, address: str) -> int:
        b = self.balances.get(address)
        if b is None:
            b = self.balances[address] = self.db.execute(_UNCONF_SQL, (self.asset, address)).fetchone()[0]
        return b + self.deltas.get(address, 0)

    def apply(self, kind: str, tx: Tx, raw: bytes, unsigned: bytes, valid) -> str:
        """Check one transaction against the batch's view (raising the typed error) and record it.
        ``unsigned``, ``valid``: from ``_check_signatures(tx)``."""
        asset = self.asset
        if isinstance(tx, UtxoTx):
            txid = sha256(unsigned).hex()
            if kind != "utxo" or not tx.inputs or len(tx.witnesses) != len(tx.inputs):
                raise InvalidTransaction("a UTXO transaction needs inputs, each with a witness")
            if len(set(tx.inputs)) != len(tx.inputs):
                raise InvalidTransaction("an input is listed twice")
            total_in = 0
            spent = []
            for op, w, ok in zip(tx.inputs, tx.witnesses, valid):
                coin = self.coins.get((op.txid, op.vout))
                if coin is None:
                    raise InvalidTransaction(f"input {op.txid}:{op.vout} does not exist")
                address, amount, spent_by = coin
                if spent_by is not None:
                    raise AlreadySpent(f"input {op.txid}:{op.vout} already spent by {spent_by}")
                if not owns(asset, w.pubkey, address) or not ok:
                    raise InvalidTransaction(f"input {op.txid}:{op.vout}: signature does not prove ownership")
                total_in += amount
                spent.append((coin, op, address, amount))
            if any(o.amount <= 0 for o in tx.outputs) or not tx.outputs:
                raise InvalidTransaction("outputs must be positive")
            if total_in - sum(o.amount for o in tx.outputs) < FEES["utxo"]:
                raise InsufficientFunds(f"inputs {total_in} do not cover outputs plus the fee {FEES['utxo']}")
            self.txs.append((asset, txid, raw))
            for coin, op, address, amount in spent:
                coin[2] = txid
                self.spends.append((txid, op.txid, op.vout))
                self.events.append((asset, address, "spend", amount, txid))
            for i, o in enumerate(tx.outputs):
                self.coins[(txid, i)] = [o.address, o.amount, None]
                self.outputs.append((asset, txid, i, o.address, o.amount))
                self.events.append((asset, o.address, "deposit", o.amount, txid))
            return txid
        if kind != "account":
            raise InvalidTransaction(f"{asset} is not an account-model asset")
        txid = sha256(unsigned + tx.pubkey).hex()
        frm = _account_address(asset, bytes(tx.pubkey)) if len(tx.pubkey) == 33 else ""
        if not frm or not valid:
            raise InvalidTransaction("bad signature")
        nonce = self._nonce(frm)
        if tx.nonce != nonce:
            raise AlreadySpent(f"nonce {tx.nonce} used or out of order (next is {nonce})")
        if tx.value <= 0 or tx.fee < FEES["account"]:
            raise InvalidTransaction("value must be positive and the fee at least the minimum")
        if self._balance(frm) < tx.value + tx.fee:
            raise InsufficientFunds(f"{frm} cannot pay {tx.value} + fee {tx.fee}")
        self.nonces[frm] = nonce + 1
        self.deltas[frm] = self.deltas.get(frm, 0) - tx.value - tx.fee
        self.deltas[tx.to] = self.deltas.get(tx.to, 0) + tx.value
        self.txs.append((asset, txid, raw))
        self.moves.append((asset, txid, frm, tx.to, tx.value, tx.fee, tx.nonce))
        self.events.append((asset, frm, "spend", tx.value + tx.fee, txid))
        self.events.append((asset, tx.to, "deposit", tx.value, txid))
        return txid

    def write(self) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO txs (asset, txid, height, raw) VALUES (?, ?, NULL, ?)", self.txs)
            if self.outputs:  # first: a later transaction of the batch may spend them
                db.executemany("INSERT INTO outputs VALUES (?, ?, ?, ?, ?, NULL)", self.outputs)
            if self.spends:
                db.executemany("UPDATE outputs SET spent_by=? WHERE txid=? AND vout=?", self.spends)
            if self.moves:
                db.executemany("INSERT INTO moves VALUES (?, ?, ?, ?, ?, ?, ?)", self.moves)
            db.executemany("INSERT INTO events (asset, address, kind, amount, txid) VALUES (?, ?, ?, ?, ?)",
                           self.events)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _check_signatures(tx: Tx) -> tuple[bytes, list[bool] | bool]:
    """(unsigned body, signature validity): per witness for a UTXO transaction (a sweep repeats one witness
    per input: same digest, same answer, checked once), one flag for an account transfer."""
    unsigned = _unsigned(tx)
    digest = _sighash_of_unsigned(unsigned)
    if isinstance(tx, UtxoTx):
        seen: dict[Witness, bool] = {}
        out = []
        for w in tx.witnesses:
            ok = seen.get(w)
            if ok is None:
                ok = seen[w] = verify_digest(w.pubkey, digest, w.sig)
            out.append(ok)
        return unsigned, out
    return unsigned, len(tx.pubkey) == 33 and verify_digest(tx.pubkey, digest, tx.sig)


_NONCE_SQL = "SELECT COUNT(*) FROM moves WHERE asset=? AND frm=?"
_UNCONF_SQL = ("SELECT COALESCE(SUM(CASE WHEN dest=?2 THEN value ELSE 0 END) - "
               "SUM(CASE WHEN frm=?2 THEN value + fee ELSE 0 END), 0) "
               "FROM moves WHERE asset=?1 AND (frm=?2 OR dest=?2)")


@functools.lru_cache(maxsize=65536)
def _account_address(asset: str, pubkey: bytes) -> str:
    try:
        return address_for(asset, pubkey)
    except ValueError:
        return ""
