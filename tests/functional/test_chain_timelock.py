"""A contract's time-lock counted in the blocks of a real node: three daemons (a dev ledger server for BTC-REG,
the real node, a bootstrap node) run an escrow of A's chunk on that node for B with C as arbiter; nobody
approves, the node mines past the refund height, and A's enclave, reading the node's heights through A's node,
refunds the chunk to A, whose node sweeps it home on that node in a real transaction that pays its fee.

Two nodes: anvil (ETH-DEV: an EVM transfer paying gas) and litecoind -regtest (LTC-REG: a P2WPKH sweep paying
a fee in sat/vB), each skipped with the reason where it is not installed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import httpx
import pytest

from node.dev.localnet import find_anvil, find_litecoind, start_anvil, start_litecoind
from tests.functional.framework import FACTOR, Network, until

pytestmark = pytest.mark.network

REFUND_BLOCKS = 20


def rpc(url: str, method: str, *params):
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10).json()
    assert "error" not in r, r
    return r["result"]


@dataclass
class Chain:
    """A real node serving ``asset`` to the daemons (``env``), as the test drives and reads it."""

    asset: str
    env: dict[str, str]
    height: Callable[[], int]
    mine: Callable[[int], None]
    holds: Callable[[str], int]  # what an address holds (confirmed and in the mempool), smallest unit
    spent_ok: Callable[[str, str], bool]  # (txid, deposit address): a real transaction spending that deposit


def anvil_chain(network: Network) -> Chain:
    log = network.tmpdir / "anvil/out.log"
    log.parent.mkdir()
    evm, url = start_anvil(find_anvil(), log)  # blocks only when asked or on a tx
    network.adopt("anvil", evm, log)

    def spent_ok(txid: str, address: str) -> bool:
        receipt = rpc(url, "eth_getTransactionReceipt", txid)
        return receipt is not None and int(receipt["status"], 16) == 1 and receipt["from"].lower() == address.lower()

    return Chain("ETH-DEV", {"KEYSWITCH_LEDGER_EVM_URL": url, "KEYSWITCH_LEDGER_EVM_ASSET": "ETH-DEV"},
                 lambda: int(rpc(url, "eth_blockNumber"), 16), lambda n: rpc(url, "anvil_mine", hex(n)),
                 lambda a: int(rpc(url, "eth_getBalance", a, "latest"), 16), spent_ok)


def litecoind_chain(network: Network) -> Chain:
    from node.ledger.bitcoind import BitcoindLedger

    d = network.tmpdir / "litecoind"
    proc, url, cookie = start_litecoind(find_litecoind(), d)  # blocks only when asked
    network.adopt("litecoind", proc, d / "out.log")
    led = BitcoindLedger(url, asset="LTC-REG", cookie=cookie, timeout=30 * FACTOR)
    led.mine("LTC-REG", 101)  # a mature coinbase for the faucet wallet that funds the deposit

    def spent_ok(txid: str, address: str) -> bool:
        tx = led.rpc("getrawtransaction", txid, True)
        spk = led.script_of(address).hex()
        return all(led.rpc("getrawtransaction", i["txid"], True)["vout"][i["vout"]]["scriptPubKey"]["hex"] == spk
                   for i in tx["vin"]) and bool(tx["vin"])

    return Chain("LTC-REG", {"KEYSWITCH_LEDGER_RPC_URL": url, "KEYSWITCH_LEDGER_RPC_COOKIE": str(cookie),
                             "KEYSWITCH_LEDGER_RPC_ASSET": "LTC-REG"},
                 lambda: led.height("LTC-REG"), lambda n: led.mine("LTC-REG", n),
                 lambda a: led.balance("LTC-REG", a).unconfirmed, spent_ok)


CHAINS = [pytest.param(anvil_chain, id="anvil", marks=pytest.mark.skipif(
              find_anvil() is None, reason="anvil is not installed (make test installs it)")),
          pytest.param(litecoind_chain, id="litecoind", marks=pytest.mark.skipif(
              find_litecoind() is None, reason="litecoind is not installed (make test installs it)"))]


@pytest.mark.parametrize("make_chain", CHAINS)
def test_an_escrow_refunds_at_a_height_counted_in_a_real_nodes_blocks(network, make_chain):
    network.net = "chainlock"
    lurl, boot = network.ledger_and_boot()
    chain = make_chain(network)
    env = {"KEYSWITCH_LEDGER_URL": lurl, **chain.env}
    a, b, c = network.start_daemons(["A", "B", "C"], bootnodes=[boot], env=env)
    dirs = [a.datadir, b.datadir, c.datadir]
    r = a.post("/v1/deposits", {"asset": chain.asset, "chunks": 1})
    assert r.status_code == 201, r.text
    (dep,) = r.json()["deposits"]
    assert chain.holds(dep["address"]) == int(dep["amount"])  # on the real node
    chain.mine(1)  # litecoind mines only when asked: the deposit confirms, and is offered
    for x in (b, c):
        assert x.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 1}).status_code == 201
    until(lambda: b.get("/v1/status")["offers_in_book"] >= 2 and a.get("/v1/status")["offers_in_book"] >= 2,
          90, "the books hold the offers")

    h0 = chain.height()
    r = a.post("/v1/contracts", {"kind": "escrow", "peer": b.peer, "arbiter": c.peer, "give": chain.asset,
                                 "chunks": 1, "refund_blocks": REFUND_BLOCKS})
    assert r.status_code == 201, r.text
    cid = r.json()["contract"]
    # the refund height is the node's height + 20 (the dev ledger, a block every 0.5 s, is far ahead by now)
    assert h0 <= r.json()["refund_height"] - REFUND_BLOCKS <= chain.height(), r.json()

    def row(api):
        return next((x for x in api.get("/v1/contracts")["contracts"] if x["contract"] == cid), {})

    until(lambda: row(b).get("state") == "running" and row(a).get("state") == "running", 60,
          "both run the escrow")
    assert row(a)["released"] == [] and row(a)["refunded"] == []  # before the height nothing moves
    chain.mine(REFUND_BLOCKS + 2)  # past the refund height, in the node's blocks
    until(lambda: row(a).get("refunded") == [0] and row(a).get("claims"), 90,
          "A's enclave refunds the chunk at the node's height and A's node sweeps it")
    got = row(a)
    (claim,) = got["claims"]
    assert got["state"] == "done" and got["released"] == [] and claim[1] == "refunded" and claim[2], got
    assert chain.spent_ok(claim[2], dep["address"])  # a real transaction spending the deposit
    assert chain.holds(dep["address"]) == 0  # swept, the fee paid from it
    assert row(b).get("received") == [] and row(b).get("claims") == []  # the payee got nothing
    for d in dirs:
        assert "raised" not in (d / "out.log").read_text(errors="replace"), (d / "out.log").read_text()[-3000:]
