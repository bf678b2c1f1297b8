"""The ledger interface over Bitcoin Core's JSON-RPC dialect: litecoind here, bitcoind wherever a user runs one.

* **Balance without keys in the node**: confirmed = the address's coins in the UTXO set (``scantxoutset``
  with an ``addr(...)`` descriptor: no wallet, no key import, no rescan); unconfirmed = those plus the
  mempool's effects, read from ``getrawmempool`` and each mempool transaction decoded
  (``getrawtransaction <txid> true``, in one JSON-RPC batch, and kept by txid so that the next read
  fetches only the transactions that arrived since): outputs paying the address's script are added, coins spent by a
  mempool input are removed. Both are read between two identical ``getbestblockhash`` answers (retried
  when a block arrives in between, so a coin is never missed while it moves from mempool to block).
  ``scantxoutset`` walks the whole UTXO set: instant on regtest and test chains, about a minute per read
  on a mainnet node (a watch-only descriptor wallet would be the faster choice there; not built).
* **Send and sweep on our side**: segwit v0 P2WPKH spends built and signed here with embit (BIP-143
  sighash, which commits to each input's amount: a node that lies about a coin's value gets a
  transaction no chain accepts, never a bigger fee). Only the signed transaction goes to the node
  (``sendrawtransaction``); the private key never does. Only the key's P2WPKH coins are spent.
* **Fee rate**: ``estimatesmartfee`` (``conf_target`` blocks, default 2), at least the node's relay fee;
  where the node has no estimate (a fresh regtest, a node just started) the stated fallback
  ``fallback_sat_vb`` (setting ``ledger.rpc_fallback_fee``, 10 sat/vB). A rate above ``max_sat_vb``
  (``ledger.rpc_max_fee_rate``, 500 sat/vB) is refused, whoever answered it: a hostile or broken node
  cannot make a sweep burn the deposit in fees.
* **Confirmations** from ``getrawtransaction`` (the node needs ``-txindex=1`` for transactions that are
  not in its mempool; ``check`` says so at connect). A transaction whose block left the best chain
  (reorganisation, ``invalidateblock``) has 0 confirmations again.
* **Watch** scans blocks after ``since`` (a height) with ``getblock <hash> 2``: an output to a watched
  address is a deposit; an input spending a coin this ledger object has seen a watched address receive
  (in this or an earlier scan, or a balance read) is a spend. ``since=0`` scans the whole chain: meant for
  regtest and young chains.
* **Errors**: a spend the node rejects raises the typed error with the node's own reason:
  ``txn-mempool-conflict``, ``bad-txns-inputs-missingorspent``, ``missing-inputs``, ``Transaction already in
  block chain`` -> ``AlreadySpent``; other rejections -> ``InvalidTransaction``; no answer or refused
  credentials -> ``LedgerUnreachable``.
* ``faucet`` and ``mine`` (development only) use the node's own wallet ``keyswitch-faucet`` and
  ``generatetoaddress``; both refuse any chain but regtest.

Auth is Bitcoin Core's: the ``.cookie`` file (re-read when the node answers 401: it changes at every
node start) or ``rpcuser``/``rpcpassword``. Every amount the node answers is parsed as a decimal and
must be a whole number of satoshis in 0..MAX_SATS; heights and confirmations are integers in 0..2**31.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

from node.ledger.base import (
    AlreadySpent, Balance, InsufficientFunds, InvalidTransaction, LedgerError, LedgerUnreachable, UnknownAsset,
    WatchEvent,
)

COIN = 10**8
MAX_SATS = 84_000_000 * COIN  # Litecoin's MAX_MONEY (Bitcoin's is 21e6 coins): no answer may exceed it
MAX_HEIGHT = 2**31 - 1
DUST_SATS = 546  # change below this is left to the fee rather than made an output the node calls dust
FAUCET_WALLET = "keyswitch-faucet"
#: read timeout (s) of the development calls that write and sync the node's disk (creating or loading its
#: wallet, mining 101 blocks): seconds on a loaded machine, where the reads' ``timeout`` would give up
SLOW_RPC_TIMEOUT = 120.0

#: the chain (``getblockchaininfo.chain``) and genesis block each asset lives on (None: not checked)
CHAINS: dict[str, tuple[str, str | None]] = {
    "LTC-REG": ("regtest", "530827f38f93b43ed12af0b3ad25a288dc02ed74d6d7857862df51fc56c416f9"),
    "LTC": ("main", "12a765e31ffd4059bada1e25190f6e98c99d9714d334efa41a195a7e7e04bfe2"),
    "LTC-TEST": ("test", None),
    "BTC": ("main", "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"),
    "BTC-TEST": ("test", "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943"),
    "BTC-REG": ("regtest", "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"),
}

#: node reject reasons meaning "these coins are already spent (or this spend is already in)"
_SPENT_REASONS = ("txn-mempool-conflict", "bad-txns-inputs-missingorspent", "missing-inputs", "missingorspent",
                  "transaction already in block chain", "txn-already-known", "insufficient fee, rejecting replacement")


class RpcError(LedgerError):
    """The node answered a JSON-RPC error (``rpc_code`` and the node's message)."""

    def __init__(self, method: str, rpc_code: int, message: str) -> None:
        super().__init__(f"{method}: {message} (RPC error {rpc_code})")
        self.method, self.rpc_code, self.message = method, rpc_code, message


def rejection(reason: str) -> LedgerError:
    """The typed error for a node's reason for refusing a transaction."""
    low = reason.lower()
    if any(r in low for r in _SPENT_REASONS):
        return AlreadySpent(f"the node refused the spend: {reason}")
    if "bad-txns-in-belowout" in low:
        return InsufficientFunds(f"the node refused the spend: {reason}")
    return InvalidTransaction(f"the node refused the transaction: {reason}")


def _sats(v, what: str) -> int:
    """A coin amount the node answered (decimal coins) as satoshis, exact and in 0..MAX_SATS."""
    try:
        d = Decimal(v) * COIN
    except (InvalidOperation, TypeError, ValueError):
        raise LedgerError(f"the node answered {what}={v!r}: not an amount") from None
    if not d.is_finite() or d != d.to_integral_value() or not 0 <= d <= MAX_SATS:
        raise LedgerError(f"the node answered {what}={v!r}: not a whole number of satoshis in 0..{MAX_SATS}")
    return int(d)


def _int(v, what: str, hi: int = MAX_HEIGHT) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
        raise LedgerError(f"the node answered {what}={v!r}: not an integer in 0..{hi}")
    return v


def _txid(v, what: str = "txid") -> str:
    if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdef" for c in v.lower()):
        raise LedgerError(f"{what}={v!r} is not a transaction id (64 hex characters)")
    return v.lower()


def _vsize(n_in: int, out_scripts: list[bytes]) -> int:
    """Upper bound of the virtual size of a P2WPKH-only spend (72-byte signatures)."""
    base = 4 + 1 + 41 * n_in + 1 + sum(8 + 1 + len(s) for s in out_scripts) + 4
    witness = 2 + n_in * (1 + 1 + 72 + 1 + 33)
    return -(-(4 * base + witness) // 4)


class BitcoindLedger:
    def __init__(self, url: str, *, asset: str = "LTC-REG", cookie: str | Path = "", user: str = "",
                 password: str = "", timeout: float = 10.0, fallback_sat_vb: float = 10.0,
                 max_sat_vb: float = 500.0, conf_target: int = 2) -> None:
        import httpx

        from node.assets import get_asset

        a = get_asset(asset)
        if a.kind != "utxo" or not a.segwit:
            raise UnknownAsset(f"a Bitcoin Core JSON-RPC node serves a segwit Bitcoin-like asset, not {asset}")
        if not (0 < fallback_sat_vb <= max_sat_vb):
            raise LedgerError(f"fallback fee rate {fallback_sat_vb} sat/vB must be in (0, max {max_sat_vb}]")
        self.url, self.asset, self.network = url.rstrip("/"), asset, a.network
        self.cookie = Path(cookie).expanduser() if cookie else None
        self._user, self._password = user, password
        self.fallback_sat_vb, self.max_sat_vb, self.conf_target = fallback_sat_vb, max_sat_vb, conf_target
        self.http = httpx.Client(timeout=timeout)
        self._ids = itertools.count(1)
        self._scan_lock = threading.Lock()  # the node runs one scantxoutset at a time
        self._seen: dict[tuple[str, int], tuple[str, int]] = {}  # outpoint -> (watched address, sats)
        self._mempool_cache: dict[str, tuple] = {}  # txid -> decoded (txid, inputs, outputs), mempool only
        self._mempool_lock = threading.Lock()
        self._auth = self._read_auth()

    # ------------------------------------------------------------------ transport
    def _read_auth(self) -> tuple[str, str] | None:
        if self.cookie is not None:
            try:
                user, sep, pw = self.cookie.read_text().strip().partition(":")
            except OSError as exc:
                raise LedgerUnreachable(f"cannot read the RPC cookie {self.cookie}: {exc.strerror}") from None
            if not sep:
                raise LedgerUnreachable(f"the RPC cookie {self.cookie} is not user:password")
            return user, pw
        return (self._user, self._password) if self._user else None

    def close(self) -> None:
        self.http.close()

    def rpc(self, method: str, *params, wallet: str | None = None, timeout: float | None = None):
        """One JSON-RPC call; the answer's numbers with a fraction are Decimals (never floats). ``timeout``:
        this call's own read timeout (default: the ledger's)."""
        import httpx

        url = self.url + (f"/wallet/{wallet}" if wallet is not None else "")
        body = {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": list(params)}
        for attempt in (0, 1):
            try:
                r = self.http.post(url, content=json.dumps(body, default=_json_default), auth=self._auth,
                                   **({} if timeout is None else {"timeout": timeout}))
            except httpx.HTTPError as exc:
                raise LedgerUnreachable(f"node at {self.url} unreachable: {exc.__class__.__name__}") from None
            if r.status_code == 401 and attempt == 0 and self.cookie is not None:
                self._auth = self._read_auth()  # the node restarted and wrote a new cookie
                continue
            break
        if r.status_code in (401, 403):
            raise LedgerUnreachable(f"node at {self.url} refused the RPC credentials (HTTP {r.status_code}): "
                                    "check ledger.rpc_cookie or ledger.rpc_user/rpc_password")
        try:
            data = json.loads(r.content, parse_float=Decimal)
        except ValueError:
            raise LedgerError(f"node at {self.url} answered {method} with HTTP {r.status_code}, not JSON") from None
        if not isinstance(data, dict):
            raise LedgerError(f"node at {self.url} answered {method} with a non-object")
        err = data.get("error")
        if err:
            code = err.get("code", 0) if isinstance(err, dict) else 0
            msg = str(err.get("message", err) if isinstance(err, dict) else err)[:500]
            raise RpcError(method, code if isinstance(code, int) else 0, msg)
        return data.get("result")

    def _check(self, asset: str) -> None:
        if asset != self.asset:
            raise UnknownAsset(f"this Bitcoin Core RPC ledger serves {self.asset}, not {asset!r}")

    def check(self) -> dict:
        """Connect-time check: the node answers, runs the asset's chain (name and genesis block) and has a
        transaction index. Returns getblockchaininfo."""
        info = self.rpc("getblockchaininfo")
        want_chain, want_genesis = CHAINS.get(self.asset, (None, None))
        chain = info.get("chain") if isinstance(info, dict) else None
        if want_chain is not None and chain != want_chain:
            raise LedgerError(f"node at {self.url} runs chain {chain!r}; {self.asset} lives on {want_chain!r}")
        if want_genesis is not None and self.rpc("getblockhash", 0) != want_genesis:
            raise LedgerError(f"node at {self.url} has genesis block {self.rpc('getblockhash', 0)}, not "
                              f"{self.asset}'s {want_genesis} (a different coin's {chain} chain?)")
        try:
            idx = self.rpc("getindexinfo", "txindex")
        except RpcError:
            idx = {}
        if not isinstance(idx, dict) or "txindex" not in idx:
            raise LedgerError(f"node at {self.url} has no transaction index: start it with -txindex=1 "
                              "(confirmations of any txid need it)")
        return info

    def _regtest(self, what: str) -> None:
        chain = self.rpc("getblockchaininfo").get("chain")
        if chain != "regtest":
            raise LedgerError(f"{what} is for development: the node at {self.url} runs {chain!r}, not regtest")

    # ------------------------------------------------------------------ addresses
    def script_of(self, address: str) -> bytes:
        """The scriptPubKey of ``address``, which must be an address of this ledger's asset."""
        from embit import script

        try:
            s = script.address_to_scriptpubkey(address)
            ok = s.address(self.network) == address
        except Exception:  # embit raises several types for malformed addresses
            ok = False
        if not ok:
            raise InvalidTransaction(f"{address!r} is not a {self.asset} address")
        return s.data

    def accepts_address(self, address: str) -> bool:
        try:
            self.script_of(address)
            return True
        except LedgerError:
            return False

    # ------------------------------------------------------------------ reads
    def height(self, asset: str) -> int:
        self._check(asset)
        return _int(self.rpc("getblockcount"), "getblockcount")

    def _scan(self, addresses: list[str]) -> list[tuple[str, int, str, int]]:
        """Confirmed coins of ``addresses`` (txid, vout, address, sats) from the UTXO set."""
        descs = [f"addr({a})" for a in addresses]
        by_script = {self.script_of(a).hex(): a for a in addresses}
        for _ in range(200):
            with self._scan_lock:
                try:
                    res = self.rpc("scantxoutset", "start", descs)
                    break
                except RpcError as exc:
                    if "in progress" not in exc.message.lower():  # another client's scan: wait for it
                        raise
            time.sleep(0.05)
        else:
            raise LedgerUnreachable(f"node at {self.url}: scantxoutset stayed busy")
        if not isinstance(res, dict) or not res.get("success"):
            raise LedgerError(f"node at {self.url}: scantxoutset did not complete")
        out = []
        for u in res.get("unspents", []):
            addr = by_script.get(str(u.get("scriptPubKey", "")).lower())
            if addr is None:
                raise LedgerError("scantxoutset answered a coin of a script that was not asked")
            out.append((_txid(u.get("txid")), _int(u.get("vout"), "vout"), addr, _sats(u.get("amount"), "amount")))
        return out

    def rpc_batch(self, calls: list[tuple[str, list]]) -> list:
        """Many calls in one HTTP request (Bitcoin Core's JSON-RPC batch): each answer is the result or an
        ``RpcError`` (returned, not raised), in the order asked."""
        import httpx

        out: list = []
        for start in range(0, len(calls), 500):
            part = calls[start:start + 500]
            body = [{"jsonrpc": "1.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in enumerate(part)]
            try:
                r = self.http.post(self.url, content=json.dumps(body, default=_json_default), auth=self._auth)
            except httpx.HTTPError as exc:
                raise LedgerUnreachable(f"node at {self.url} unreachable: {exc.__class__.__name__}") from None
            if r.status_code in (401, 403):
                raise LedgerUnreachable(f"node at {self.url} refused the RPC credentials (HTTP {r.status_code})")
            try:
                data = json.loads(r.content, parse_float=Decimal)
            except ValueError:
                raise LedgerError(f"node at {self.url} answered a batch with HTTP {r.status_code}, not JSON") from None
            if not isinstance(data, list) or len(data) != len(part):
                raise LedgerError(f"node at {self.url} answered a batch of {len(part)} with something else")
            by_id = {d.get("id"): d for d in data if isinstance(d, dict)}
            for i, (m, _) in enumerate(part):
                d = by_id.get(i)
                if d is None:
                    raise LedgerError(f"node at {self.url} left call {i} ({m}) of a batch unanswered")
                err = d.get("error")
                out.append(RpcError(m, err.get("code", 0) if isinstance(err, dict) else 0,
                                    str(err.get("message", err) if isinstance(err, dict) else err)[:500])
                           if err else d.get("result"))
        return out

    def _mempool(self) -> list[tuple[str, list[tuple[str, int]], list[tuple[int, str, int]]]]:
        """The mempool as (txid, spent outpoints, [(n, script hex, sats)]). Decoded transactions are kept by
        txid (a txid fixes its inputs and outputs) and only new ones are fetched, in one batch: a balance
        read costs one getrawmempool plus the transactions that arrived since the last one."""
        with self._mempool_lock:
            return self._mempool_locked()

    def _mempool_locked(self):
        txids = [_txid(t) for t in self.rpc("getrawmempool")]
        cache = self._mempool_cache
        new = [t for t in txids if t not in cache]
        for t, tx in zip(new, self.rpc_batch([("getrawtransaction", [t, True]) for t in new])):
            if isinstance(tx, RpcError) or not isinstance(tx, dict):
                continue  # left the mempool since the list was read
            ins = [(_txid(i["txid"]), _int(i.get("vout"), "vout")) for i in tx.get("vin", []) if "txid" in i]
            outs = [(_int(o.get("n"), "n"), str(o.get("scriptPubKey", {}).get("hex", "")).lower(),
                     _sats(o.get("value"), "value")) for o in tx.get("vout", [])]
            cache[t] = (t, ins, outs)
        live = set(txids)
        for t in [t for t in cache if t not in live]:
            del cache[t]
        return [cache[t] for t in txids if t in cache]

    def _coins(self, address: str) -> tuple[int, dict[tuple[str, int], int]]:
        """(confirmed sats, {outpoint: sats} of every coin the address holds once the mempool is applied)."""
        spk = self.script_of(address).hex()
        for _ in range(5):
            tip = self.rpc("getbestblockhash")
            conf = self._scan([address])
            mem = self._mempool()
            if self.rpc("getbestblockhash") == tip:
                break
        else:
            raise LedgerUnreachable(f"node at {self.url}: the chain moved during five balance reads")
        owned = {(t, v): s for t, v, _, s in conf}
        spent = set()
        for txid, ins, outs in mem:
            spent.update(ins)
            for n, script_hex, sats in outs:
                if script_hex == spk:
                    owned[(txid, n)] = sats
        for op, s in owned.items():
            self._seen[op] = (address, s)
        return sum(s for _, _, _, s in conf), {op: s for op, s in owned.items() if op not in spent}

    def balance(self, asset: str, address: str) -> Balance:
        self._check(asset)
        confirmed, coins = self._coins(address)
        return Balance(confirmed, sum(coins.values()))

    def utxos(self, asset: str, addresses: list[str]) -> list[tuple[str, int, str, int]]:
        """Confirmed coins (txid, vout, address, sats) of ``addresses``."""
        self._check(asset)
        return sorted(self._scan(list(addresses))) if addresses else []

    def confirmations(self, asset: str, txid: str) -> int:
        self._check(asset)
        try:
            tx = self.rpc("getrawtransaction", _txid(txid), True)
        except RpcError as exc:
            if exc.rpc_code == -5:  # no such mempool or blockchain transaction
                return 0
            raise
        return _int(tx.get("confirmations", 0), "confirmations")

    def watch(self, addresses: list[str], since: int = 0) -> tuple[list[WatchEvent], int]:
        """Deposits to and spends from ``addresses`` in blocks after height ``since``; returns (events, top)."""
        want = {self.script_of(a).hex(): a for a in addresses if self.accepts_address(a)}
        top = _int(self.rpc("getblockcount"), "getblockcount")
        events: list[WatchEvent] = []
        if not want:
            return events, top
        for h in range(max(since, 0) + 1, top + 1):
            block = self.rpc("getblock", self.rpc("getblockhash", h), 2)
            for tx in block.get("tx", []):
                txid = _txid(tx.get("txid"))
                for i in tx.get("vin", []):
                    op = (str(i.get("txid", "")).lower(), i.get("vout"))
                    seen = self._seen.get(op)
                    if seen and seen[0] in want.values():
                        events.append(WatchEvent(h, self.asset, seen[0], "spend", seen[1], txid))
                for o in tx.get("vout", []):
                    addr = want.get(str(o.get("scriptPubKey", {}).get("hex", "")).lower())
                    if addr is not None:
                        sats = _sats(o.get("value"), "value")
                        self._seen[(txid, _int(o.get("n"), "n"))] = (addr, sats)
                        events.append(WatchEvent(h, self.asset, addr, "deposit", sats, txid))
        return events, top

    # ------------------------------------------------------------------ fees and spends
    def fee_rate(self) -> float:
        """sat/vB: estimatesmartfee, else the fallback; at least the node's relay fee; refused above the cap."""
        est = self.rpc("estimatesmartfee", self.conf_target)
        rate = None
        if isinstance(est, dict) and est.get("feerate") is not None:
            rate = _sats(est["feerate"], "feerate") / 1000  # coins per kvB -> sat/vB
        if rate is None:
            rate = self.fallback_sat_vb
        relay = _sats(self.rpc("getnetworkinfo").get("relayfee", 0), "relayfee") / 1000
        rate = max(rate, relay)
        if rate > self.max_sat_vb:
            raise LedgerError(f"fee rate {rate:g} sat/vB (estimatesmartfee or the relay fee of {self.url}) is above "
                              f"ledger.rpc_max_fee_rate={self.max_sat_vb:g} sat/vB: not spending")
        return rate

    def _spend(self, asset: str, privkey: bytes, to: str, amount: int | None) -> str:
        from embit import ec, script
        from embit.transaction import Transaction, TransactionInput, TransactionOutput

        self._check(asset)
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)
                                   or not 0 < amount <= MAX_SATS):
            raise InvalidTransaction(f"amount {amount!r} is not an integer in 1..{MAX_SATS} satoshis")
        dest = self.script_of(to)
        if not isinstance(privkey, (bytes, bytearray)) or len(privkey) != 32:
            raise InvalidTransaction("a private key is 32 bytes")
        try:
            key = ec.PrivateKey(bytes(privkey))
        except Exception:  # embit's ECError: zero or not below the group order (the key is not repeated)
            raise InvalidTransaction("not a valid secp256k1 private key (zero or not below the group order)") from None
        pub = key.get_public_key()
        own = script.p2wpkh(pub)
        own_addr = own.address(self.network)
        _, coins = self._coins(own_addr)
        rate = self.fee_rate()
        picked: list[tuple[tuple[str, int], int]] = []
        total = 0
        ordered = sorted(coins.items(), key=lambda kv: (-kv[1], kv[0]))
        if amount is None:
            picked, total = ordered, sum(coins.values())
            fee = int(rate * _vsize(len(picked), [dest]) + 0.999)
            outs = [(dest, total - fee)]
            if not picked or total - fee < DUST_SATS:
                raise InsufficientFunds(f"{own_addr} holds {total} sat; a sweep pays a {fee} sat fee "
                                        f"({rate:g} sat/vB) and must leave at least {DUST_SATS}")
        else:
            fee = 0
            for op, s in ordered:
                picked.append((op, s))
                total += s
                fee = int(rate * _vsize(len(picked), [dest, own.data]) + 0.999)
                if total >= amount + fee:
                    break
            if total < amount + fee:
                raise InsufficientFunds(f"{own_addr} holds {total} sat; {amount} + fee {fee} ({rate:g} sat/vB) "
                                        "needed")
            change = total - amount - fee
            outs = [(dest, amount)] + ([(own.data, change)] if change >= DUST_SATS else [])
        tx = Transaction(version=2, vin=[TransactionInput(bytes.fromhex(t), v) for (t, v), _ in picked],
                         vout=[TransactionOutput(s, script.Script(d)) for d, s in outs], locktime=0)
        code = script.p2pkh(pub)
        for i, (_, s) in enumerate(picked):
            sig = key.sign(tx.sighash_segwit(i, code, s))
            tx.vin[i].witness = script.Witness([sig.serialize() + b"\x01", pub.sec()])
        return self.submit(asset, tx.serialize())

    def send(self, asset: str, privkey: bytes, to: str, amount: int) -> str:
        return self._spend(asset, privkey, to, amount)

    def sweep(self, asset: str, privkey: bytes, to: str) -> str:
        return self._spend(asset, privkey, to, None)

    def submit(self, asset: str, raw: bytes) -> str:
        """Broadcast a signed transaction (``sendrawtransaction``); a refusal is the typed error with the node's
        reason."""
        self._check(asset)
        try:
            return _txid(self.rpc("sendrawtransaction", bytes(raw).hex()))
        except RpcError as exc:
            raise rejection(exc.message) from None

    def test_accept(self, asset: str, raw: bytes) -> str:
        """``testmempoolaccept``: the txid when the node would accept ``raw``, else the typed error."""
        self._check(asset)
        try:
            res = self.rpc("testmempoolaccept", [bytes(raw).hex()])[0]
        except RpcError as exc:
            raise rejection(exc.message) from None
        if not res.get("allowed"):
            raise rejection(str(res.get("reject-reason", "not allowed"))[:500])
        return _txid(res.get("txid"))

    # ------------------------------------------------------------------ development (regtest only)
    def _faucet_wallet(self) -> None:
        if FAUCET_WALLET in (self.rpc("listwallets") or []):
            return
        try:
            self.rpc("loadwallet", FAUCET_WALLET, timeout=SLOW_RPC_TIMEOUT)
        except RpcError:
            self.rpc("createwallet", FAUCET_WALLET, timeout=SLOW_RPC_TIMEOUT)

    def faucet(self, asset: str, address: str, amount: int) -> str:
        """Fund ``address`` from the node's own regtest wallet (mining to it first when it is short)."""
        self._check(asset)
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_SATS:
            raise InvalidTransaction(f"faucet amount {amount!r} is not an integer in 1..{MAX_SATS}")
        self.script_of(address)
        self._regtest("faucet")
        self._faucet_wallet()
        if _sats(self.rpc("getbalance", wallet=FAUCET_WALLET), "getbalance") < amount + COIN:
            self.rpc("generatetoaddress", 101, self.rpc("getnewaddress", wallet=FAUCET_WALLET),
                     timeout=SLOW_RPC_TIMEOUT)
        try:
            return _txid(self.rpc("sendtoaddress", address, Decimal(amount) / COIN, wallet=FAUCET_WALLET))
        except RpcError as exc:
            raise rejection(exc.message) from None

    def mine(self, asset: str, blocks: int = 1) -> int:
        self._check(asset)
        if isinstance(blocks, bool) or not isinstance(blocks, int) or not 0 < blocks <= 1000:
            raise LedgerError(f"mine: blocks={blocks!r} is not an integer in 1..1000")
        self._regtest("mine")
        self._faucet_wallet()
        self.rpc("generatetoaddress", blocks, self.rpc("getnewaddress", wallet=FAUCET_WALLET),
                 timeout=SLOW_RPC_TIMEOUT if blocks > 1 else None)
        return self.height(asset)


def _json_default(o):
    if isinstance(o, Decimal):
        return float(o)  # an amount of at most 8 decimals: the shortest repr is exact for Core's parser
    raise TypeError(f"{type(o).__name__} is not JSON")
