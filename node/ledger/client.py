"""``DevLedgerClient(url)``: the ledger interface over the dev ledger's HTTP server.

Signing stays here (``WalletOps``): ``send`` and ``sweep`` fetch the coins or
nonce, sign locally and submit the signed transaction.
"""

from __future__ import annotations

from node import wire  # noqa: F401  (keeps the encoding in one place)
from node.ledger.base import ERRORS, Balance, LedgerError, LedgerUnreachable, WatchEvent
from node.ledger.devnet import WalletOps


class DevLedgerClient(WalletOps):
    def __init__(self, url: str, *, admin: bool = False, timeout: float = 10.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.admin = admin
        self.http = httpx.Client(timeout=timeout)

    def _call(self, method: str, **params):
        import httpx

        try:
            r = self.http.post(self.url + "/rpc", json={"method": method, "params": params})
        except httpx.HTTPError as exc:
            raise LedgerUnreachable(f"dev ledger at {self.url} unreachable: {exc.__class__.__name__}") from None
        data = r.json()
        if "error" in data:
            err = data["error"]
            raise ERRORS.get(err.get("code"), LedgerError)(err.get("message", "ledger error"))
        return data["result"]

    def balance(self, asset: str, address: str) -> Balance:
        return Balance(**self._call("balance", asset=asset, address=address))

    def height(self, asset: str) -> int:
        return self._call("height", asset=asset)

    def confirmations(self, asset: str, txid: str) -> int:
        return self._call("confirmations", asset=asset, txid=txid)

    def utxos(self, asset: str, addresses: list[str]):
        return [tuple(u) for u in self._call("utxos", asset=asset, addresses=addresses)]

    def nonce(self, asset: str, address: str) -> int:
        return self._call("nonce", asset=asset, address=address)

    def submit(self, asset: str, raw: bytes) -> str:
        return self._call("submit", asset=asset, raw=raw.hex())

    def submit_many(self, asset: str, raws: list[bytes], *, max_body: int = 4 * 1024 * 1024) -> list:
        """``DevLedger.submit_many`` over HTTP: txids or typed errors (not raised), in order. Batches whose
        hex exceeds ``max_body`` go in several calls, each applied atomically by the server."""
        out: list = []
        part: list[str] = []
        size = 0
        for raw in list(raws) + [None]:
            if part and (raw is None or size + 2 * len(raw) > max_body):
                for r in self._call("submit_many", asset=asset, raws=part):
                    if "error" in r:
                        out.append(ERRORS.get(r["error"].get("code"), LedgerError)(r["error"].get("message", "")))
                    else:
                        out.append(r["txid"])
                part, size = [], 0
            if raw is not None:
                part.append(raw.hex())
                size += 2 * len(raw) + 4
        return out

    def watch(self, addresses: list[str], since: int = 0):
        r = self._call("watch", addresses=addresses, since=since)
        return [WatchEvent(**e) for e in r["events"]], r["cursor"]

    def faucet(self, asset: str, address: str, amount: int) -> str:
        return self._call("faucet", asset=asset, address=address, amount=amount)

    def mine(self, asset: str, blocks: int = 1) -> int:
        return self._call("mine", asset=asset, blocks=blocks)

    def close(self) -> None:
        self.http.close()
