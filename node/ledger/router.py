"""``RoutedLedger(default, {asset: ledger})``: one ledger interface over several backends.

A daemon with ``ledger.evm_url`` set serves ``ledger.evm_asset`` (ETH-DEV by default) from a real EVM
node (``EvmLedger``, anvil in development); with ``ledger.rpc_url`` set it serves ``ledger.rpc_asset``
(LTC-REG by default) from a Bitcoin Core JSON-RPC node (``BitcoindLedger``: litecoind, bitcoind); every
other asset comes from the dev ledger. Each call that names an asset goes to that asset's ledger;
``watch`` (which names addresses only) asks the default ledger for every address and each routed ledger
for the addresses it accepts (its ``accepts_address``: an address of its asset's network; else 0x... for
an Ethereum-like asset), and merges the events.
"""

from __future__ import annotations

from node.ledger.base import Balance, LedgerError, LedgerUnreachable, WatchEvent


def _account_address(a: str) -> bool:
    return a.startswith("0x") and len(a) == 42


class RoutedLedger:
    def __init__(self, default, routes: dict) -> None:
        self.default, self.routes = default, dict(routes)

    def ledger_for(self, asset: str):
        return self.routes.get(asset, self.default)

    def describe(self) -> dict[str, str]:
        """asset -> which backend serves it (for status lines)."""
        return {a: f"{type(led).__name__} {getattr(led, 'url', '')}".strip() for a, led in self.routes.items()}

    def balance(self, asset: str, address: str) -> Balance:
        return self.ledger_for(asset).balance(asset, address)

    def send(self, asset: str, privkey: bytes, to: str, amount: int) -> str:
        return self.ledger_for(asset).send(asset, privkey, to, amount)

    def sweep(self, asset: str, privkey: bytes, to: str) -> str:
        return self.ledger_for(asset).sweep(asset, privkey, to)

    def confirmations(self, asset: str, txid: str) -> int:
        return self.ledger_for(asset).confirmations(asset, txid)

    def height(self, asset: str) -> int:
        return self.ledger_for(asset).height(asset)

    def faucet(self, asset: str, address: str, amount: int) -> str:
        return self.ledger_for(asset).faucet(asset, address, amount)

    def mine(self, asset: str, blocks: int = 1) -> int:
        return self.ledger_for(asset).mine(asset, blocks)

    def _only(self, asset: str, method: str):
        led = self.ledger_for(asset)
        fn = getattr(led, method, None)
        if fn is None:
            raise LedgerError(f"the ledger serving {asset} ({type(led).__name__}) has no {method!r}")
        return fn

    def utxos(self, asset: str, addresses: list[str]):
        return self._only(asset, "utxos")(asset, addresses)

    def nonce(self, asset: str, address: str) -> int:
        return self._only(asset, "nonce")(asset, address)

    def submit(self, asset: str, raw: bytes) -> str:
        return self._only(asset, "submit")(asset, raw)

    def submit_many(self, asset: str, raws: list[bytes], **kw) -> list:
        return self._only(asset, "submit_many")(asset, raws, **kw)

    def watch(self, addresses: list[str], since: int = 0) -> tuple[list[WatchEvent], int]:
        """Events for ``addresses`` from every ledger that may hold them. Cursors are per ledger: with more
        than one ledger asked, ``since`` must be 0 (the whole history) and the cursor answered is 0."""
        asks = [(self.default, list(addresses))]
        for led in {id(v): v for v in self.routes.values()}.values():
            accepts = getattr(led, "accepts_address", _account_address)
            mine = [a for a in addresses if accepts(a)]
            if mine:
                asks.append((led, mine))
        if len(asks) == 1:
            return self.default.watch(list(addresses), since)
        if since:
            raise LedgerError("watch with a cursor reads one ledger; these addresses span several "
                              f"({', '.join(type(led).__name__ for led, _ in asks)}): watch from 0")
        events: list[WatchEvent] = []
        for led, addrs in asks:
            events += led.watch(addrs, 0)[0]
        return events, 0

    def close(self) -> None:
        for led in [self.default, *{id(v): v for v in self.routes.values()}.values()]:
            if hasattr(led, "close"):
                led.close()


def with_evm(base, evm_url: str, evm_asset: str = "ETH-DEV", *, timeout: float = 10.0):
    """``base`` alone, or ``base`` with ``evm_asset`` routed to the EVM node at ``evm_url`` (when set).

    The EVM node is asked for its chain id at once: unreachable, or a chain other than the asset's, is a
    clear ``LedgerError`` now rather than a failed claim later."""
    if not evm_url:
        return base
    from node.assets import get_asset
    from node.ledger.evm import EvmLedger

    asset = get_asset(evm_asset)
    if asset.kind != "account":
        raise LedgerError(f"ledger.evm_asset={evm_asset!r}: an EVM node serves an Ethereum-like asset, "
                          f"not a {asset.kind} one")
    evm = EvmLedger(evm_url, asset=evm_asset, timeout=timeout)
    try:
        chain = evm.chain_id
    except LedgerUnreachable as exc:
        evm.close()
        raise LedgerUnreachable(f"ledger.evm_url: {exc}; start the EVM node (anvil) or unset ledger.evm_url "
                                f"to serve {evm_asset} from the dev ledger") from None
    except (LedgerError, ValueError) as exc:
        evm.close()
        raise LedgerError(f"ledger.evm_url={evm_url}: not an EVM JSON-RPC endpoint ({exc})") from None
    if asset.chain_id is not None and chain != asset.chain_id:
        evm.close()
        raise LedgerError(f"ledger.evm_url={evm_url} runs chain id {chain}; {evm_asset} is chain id "
                          f"{asset.chain_id} (start anvil with --chain-id {asset.chain_id})")
    return RoutedLedger(base, {evm_asset: evm})


def with_bitcoind(base, cfg_or_url, asset: str = "LTC-REG", *, cookie: str = "", user: str = "", password: str = "",
                  fallback_fee: float = 10.0, max_fee_rate: float = 500.0, timeout: float = 10.0):
    """``base`` alone, or ``base`` (a ledger or a ``RoutedLedger``) with ``asset`` routed to the Bitcoin Core
    JSON-RPC node at ``cfg_or_url`` (when set). ``cfg_or_url`` may be a ``Config``: its ``ledger.rpc_*``
    settings are read.

    The node is checked at once (``BitcoindLedger.check``: it answers with these credentials, runs the
    asset's chain and genesis block, keeps a transaction index): a wrong node is a clear ``LedgerError`` now
    rather than a lost deposit later."""
    if not isinstance(cfg_or_url, str):
        cfg = cfg_or_url
        url, asset = cfg.get("ledger.rpc_url", ""), cfg.get("ledger.rpc_asset", "LTC-REG")
        cookie, user, password = (cfg.get("ledger.rpc_cookie", ""), cfg.get("ledger.rpc_user", ""),
                                  cfg.get("ledger.rpc_password", ""))
        fallback_fee, max_fee_rate = cfg.get("ledger.rpc_fallback_fee", 10.0), cfg.get("ledger.rpc_max_fee_rate", 500.0)
    else:
        url = cfg_or_url
    if not url:
        return base
    from node.ledger.bitcoind import BitcoindLedger

    led = BitcoindLedger(url, asset=asset, cookie=cookie, user=user, password=password, timeout=timeout,
                         fallback_sat_vb=fallback_fee, max_sat_vb=max_fee_rate)
    try:
        led.check()
    except LedgerUnreachable as exc:
        led.close()
        raise LedgerUnreachable(f"ledger.rpc_url: {exc}; start the node (litecoind/bitcoind) or unset "
                                f"ledger.rpc_url to serve {asset} from the dev ledger") from None
    except LedgerError as exc:
        led.close()
        raise LedgerError(f"ledger.rpc_url={url}: {exc}") from None
    if isinstance(base, RoutedLedger):
        return RoutedLedger(base.default, {**base.routes, asset: led})
    return RoutedLedger(base, {asset: led})
