"""The ledger interface over a real EVM node's JSON-RPC (anvil in development).

Transactions are legacy (EIP-155) transfers signed locally with eth-account
and sent raw (``eth_sendRawTransaction``): the node never sees a private key.
``faucet`` funds through anvil's ``anvil_setBalance`` and a real transfer, and
``mine`` uses ``anvil_mine`` (development only). ``watch`` scans blocks for transfers touching the
addresses.
"""

from __future__ import annotations

import itertools

from node.ledger.base import (
    AlreadySpent, Balance, InsufficientFunds, InvalidTransaction, LedgerError, LedgerUnreachable, UnknownAsset,
    WatchEvent,
)

GAS = 21_000


class EvmLedger:
    def __init__(self, url: str, *, asset: str = "ETH-DEV", timeout: float = 10.0) -> None:
        import httpx

        self.url, self.asset = url, asset
        self.http = httpx.Client(timeout=timeout)
        self._ids = itertools.count(1)
        self._faucets = itertools.count(1)
        self._chain_id: int | None = None

    def close(self) -> None:
        self.http.close()

    def _rpc(self, method: str, *params):
        import httpx

        try:
            r = self.http.post(self.url, json={"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                                               "params": list(params)})
        except httpx.HTTPError as exc:
            raise LedgerUnreachable(f"EVM node at {self.url} unreachable: {exc.__class__.__name__}") from None
        data = r.json()
        if "error" in data:
            msg = str(data["error"].get("message", data["error"]))
            low = msg.lower()
            if "insufficient funds" in low:
                raise InsufficientFunds(msg)
            if "nonce too low" in low or "already known" in low:
                raise AlreadySpent(msg)
            raise InvalidTransaction(msg) if method == "eth_sendRawTransaction" else LedgerError(msg)
        return data["result"]

    def _check(self, asset: str) -> None:
        if asset != self.asset:
            raise UnknownAsset(f"this EVM ledger serves {self.asset}, not {asset!r}")

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self._rpc("eth_chainId"), 16)
        return self._chain_id

    def height(self, asset: str) -> int:
        self._check(asset)
        return int(self._rpc("eth_blockNumber"), 16)

    def balance(self, asset: str, address: str) -> Balance:
        self._check(asset)
        return Balance(int(self._rpc("eth_getBalance", address, "latest"), 16),
                       int(self._rpc("eth_getBalance", address, "pending"), 16))

    def confirmations(self, asset: str, txid: str) -> int:
        self._check(asset)
        rec = self._rpc("eth_getTransactionReceipt", txid)
        if not rec or rec.get("blockNumber") is None:
            return 0
        return self.height(asset) - int(rec["blockNumber"], 16) + 1

    def _spend(self, asset: str, privkey: bytes, to: str, amount: int | None) -> str:
        from eth_account import Account

        self._check(asset)
        acct = Account.from_key(privkey)
        price = int(self._rpc("eth_gasPrice"), 16)
        fee = price * GAS
        bal = self.balance(asset, acct.address).unconfirmed
        value = bal - fee if amount is None else amount
        if value <= 0 or value + fee > bal:
            raise InsufficientFunds(f"{acct.address} holds {bal} wei; {max(value, 0)} + fee {fee} needed")
        nonce = int(self._rpc("eth_getTransactionCount", acct.address, "pending"), 16)
        tx = {"to": to, "value": value, "gas": GAS, "gasPrice": price, "nonce": nonce, "chainId": self.chain_id}
        signed = acct.sign_transaction(tx)
        raw = getattr(signed, "raw_transaction", None) or signed.rawTransaction
        return self._rpc("eth_sendRawTransaction", "0x" + bytes(raw).hex())

    def send(self, asset: str, privkey: bytes, to: str, amount: int) -> str:
        return self._spend(asset, privkey, to, amount)

    def sweep(self, asset: str, privkey: bytes, to: str) -> str:
        return self._spend(asset, privkey, to, None)

    def watch(self, addresses: list[str], since: int = 0) -> tuple[list[WatchEvent], int]:
        """Transfers touching ``addresses`` in blocks after ``since`` (a block number)."""
        want = {a.lower() for a in addresses}
        top = int(self._rpc("eth_blockNumber"), 16)
        events = []
        for n in range(since + 1, top + 1):
            block = self._rpc("eth_getBlockByNumber", hex(n), True)
            for tx in block.get("transactions", []):
                value = int(tx.get("value", "0x0"), 16)
                if (tx.get("to") or "").lower() in want:
                    events.append(WatchEvent(n, self.asset, tx["to"], "deposit", value, tx["hash"]))
                if (tx.get("from") or "").lower() in want:
                    events.append(WatchEvent(n, self.asset, tx["from"], "spend", value, tx["hash"]))
        return events, top

    # development conveniences (anvil)
    def faucet(self, asset: str, address: str, amount: int) -> str:
        """Fund ``address`` with a real, signed transfer (a watchable deposit with a txid, as on a real
        chain) from a one-off funder account that ``anvil_setBalance`` fills first: one funder per call, so
        concurrent faucet calls never race for one account's nonce. The funder key is derived from the
        address, the amount and a per-ledger counter (development only: it guards no value)."""
        import hashlib

        from eth_account import Account

        self._check(asset)
        n = next(self._faucets)
        seed = hashlib.sha256(f"keyswitch evm faucet|{address.lower()}|{amount}|{n}".encode()).digest()
        funder = Account.from_key(seed)
        fee = int(self._rpc("eth_gasPrice"), 16) * GAS
        self._rpc("anvil_setBalance", funder.address, hex(amount + 4 * fee))
        return self._spend(asset, seed, address, amount)

    def mine(self, asset: str, blocks: int = 1) -> int:
        self._check(asset)
        self._rpc("anvil_mine", hex(blocks))
        return self.height(asset)
