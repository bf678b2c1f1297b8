"""The demo's claims read back from the real nodes that hold them (``node.dev.demo_contracts``, the swap stage).

ETH-DEV on anvil: each sweep moved the chunk minus the gas it paid. LTC-REG on litecoind: each sweep spent
exactly the chunk's coins (their values read from the funding transactions, not from our records) and paid
the difference between inputs and outputs as its fee. Each line names the full transaction id, as a block
explorer or ``litecoin-cli getrawtransaction`` takes it.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console


def _said(console: Console, chain: str, txid: str, where: str, what: str, good: bool) -> bool:
    """One claim's line; ``good``: it adds up (else said in red)."""
    console.print(f"  on {chain}, sweep {txid} ({where}): claimed {what}" + ("" if good else " [red](does not add up)[/red]"))
    return good


def evm_claims(console: Console, evm_url: str, chunks: list[dict]) -> bool:
    """The ETH-DEV claims on anvil: each sweep moved the chunk minus the gas it paid, read from anvil."""
    from node.ledger.evm import EvmLedger

    evm = EvmLedger(evm_url)
    ok = bool(chunks)
    try:
        for ch in chunks:
            funded = sum(e.amount for e in evm.watch([ch["address"]])[0] if e.kind == "deposit")
            tx = evm._rpc("eth_getTransactionByHash", ch["txid"])
            rec = evm._rpc("eth_getTransactionReceipt", ch["txid"])
            value = int(tx["value"], 16)
            fee = int(rec["gasUsed"], 16) * int(rec["effectiveGasPrice"], 16)
            ok &= _said(console, "anvil", ch["txid"], f"block {int(rec['blockNumber'], 16)}",
                        f"{value / 1e18:.9f} ETH-DEV = the chunk's {funded / 1e18:.9f} minus {fee / 1e18:.9f} gas",
                        rec["status"] == "0x1" and value + fee == funded)
    finally:
        evm.close()
    return ok


def utxo_fee(led, txid: str) -> tuple[int, int, int, list[str], int | None]:
    """(sats in, sats out, virtual size, [input script hex], height of its block or None in the mempool) of a
    transaction on a Bitcoin Core node: each input's value and script read from the transaction that created
    it (the node's transaction index)."""
    from node.ledger.bitcoind import _sats

    tx = led.rpc("getrawtransaction", txid, True)
    ins, scripts = 0, []
    for i in tx["vin"]:
        prev = led.rpc("getrawtransaction", i["txid"], True)["vout"][i["vout"]]
        ins += _sats(prev["value"], "value")
        scripts.append(str(prev["scriptPubKey"]["hex"]))
    out = sum(_sats(o["value"], "value") for o in tx["vout"])
    height = led.rpc("getblockheader", tx["blockhash"])["height"] if tx.get("blockhash") else None
    return ins, out, int(tx["vsize"]), scripts, height


def utxo_claims(console: Console, url: str, cookie: Path, asset: str, chunks: list[dict],
                amounts: dict[str, int]) -> bool:
    """The ``asset`` claims on a Bitcoin Core node (litecoind): each sweep spent only the chunk's coins, all
    of them (``amounts``: address -> sats the giver deposited), and paid inputs minus outputs as its fee."""
    from node.ledger.bitcoind import BitcoindLedger

    led = BitcoindLedger(url, asset=asset, cookie=cookie)
    ok = bool(chunks)
    try:
        for ch in chunks:
            ins, out, vsize, scripts, height = utxo_fee(led, ch["txid"])
            fee = ins - out
            ok &= _said(console, "litecoind", ch["txid"], "in the mempool" if height is None else f"block {height}",
                        f"{out / 1e8:.8f} {asset} = the chunk's {ins / 1e8:.8f} minus a {fee} sat fee "
                        f"({fee / vsize:.1f} sat/vB over {vsize} vB)",
                        ins == amounts.get(ch["address"]) and fee > 0
                        and set(scripts) == {led.script_of(ch["address"]).hex()})
    finally:
        led.close()
    return ok


def litecoind_claims(console: Console, net, chunks: list[dict]) -> bool:
    """The LTC-REG claims on the demo network's litecoind (``net``: ``node.dev.demo_net.LocalNet``), once each sweep
    is in a block (a block comes every second), checked against the amounts the givers deposited."""
    from node.ledger.bitcoind import BitcoindLedger
    from node.dev.localnet import LITECOIND_ASSET

    led = BitcoindLedger(net.ltc_url, asset=LITECOIND_ASSET, cookie=net.ltc_cookie)
    try:
        net.until(lambda: all(led.confirmations(LITECOIND_ASSET, ch["txid"]) >= 1 for ch in chunks),
                  "the sweeps confirming on litecoind", timeout=30)
    finally:
        led.close()
    amounts = {d["address"]: d["amount"] for n in net.nodes for d in net.get(n, "/v1/deposits")["deposits"]}
    return utxo_claims(console, net.ltc_url, net.ltc_cookie, LITECOIND_ASSET, chunks, amounts)
