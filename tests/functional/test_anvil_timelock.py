"""A contract's time-lock counted in the blocks of a real EVM node: three daemons (a dev ledger server for
BTC-REG, anvil for ETH-DEV, a bootstrap node) run an escrow of A's ETH-DEV chunk for B with C as arbiter;
nobody approves, anvil mines past the refund height, and A's enclave, reading anvil's heights through A's
node, refunds the chunk to A, whose node sweeps it home on anvil (a real transaction, paying gas)."""

from __future__ import annotations

import sys

import httpx
import pytest

from node.localnet import init_datadir, find_anvil, spawn, start_anvil, stop_all, wait_for
from tests.functional.framework import FACTOR, Api, ledger_and_boot, until

pytestmark = [pytest.mark.network,
              pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make test installs it)")]

REFUND_BLOCKS = 20


def rpc(url: str, method: str, *params):
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10).json()
    assert "error" not in r, r
    return r["result"]


def test_an_escrow_refunds_at_a_height_counted_in_anvil_blocks(tmp_path):
    procs = []
    try:
        lurl, boot = ledger_and_boot(tmp_path, "evmlock", procs)
        (tmp_path / "anvil").mkdir()
        evm, evm_url = start_anvil(find_anvil(), tmp_path / "anvil/out.log")  # blocks only when asked or on a tx
        procs.append(evm)
        env = {"KEYSWITCH_LEDGER_URL": lurl, "KEYSWITCH_LEDGER_EVM_URL": evm_url, "KEYSWITCH_LEDGER_EVM_ASSET": "ETH-DEV"}
        dirs = [tmp_path / n for n in "ABC"]
        for d in dirs:
            init_datadir(d)  # `keyswitch init`: run refuses a data directory never initialised
            procs.append(spawn([sys.executable, "-m", "node", "--datadir", str(d), "run", "--net", "evmlock",
                                "--bootnodes", boot, "--republish", "2"], d / "out.log", env=env))
        a, b, c = [Api(d, wait_for(d / "out.log", r"ready (\S+)", p, timeout=90 * FACTOR))
                   for d, p in zip(dirs, procs[3:])]
        r = a.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 1})
        assert r.status_code == 201, r.text
        (dep,) = r.json()["deposits"]
        assert int(rpc(evm_url, "eth_getBalance", dep["address"], "latest"), 16) == int(dep["amount"])  # on anvil
        for x in (b, c):
            assert x.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 1}).status_code == 201
        until(lambda: b.get("/v1/status")["offers_in_book"] >= 2 and a.get("/v1/status")["offers_in_book"] >= 2,
              90, "the books hold the offers")

        h0 = int(rpc(evm_url, "eth_blockNumber"), 16)
        r = a.post("/v1/contracts", {"kind": "escrow", "peer": b.peer, "arbiter": c.peer, "give": "ETH-DEV",
                                     "chunks": 1, "refund_blocks": REFUND_BLOCKS})
        assert r.status_code == 201, r.text
        cid = r.json()["contract"]
        # the refund height is anvil's height + 20 (the dev ledger, a block every 0.5 s, is far ahead by now)
        assert h0 <= r.json()["refund_height"] - REFUND_BLOCKS <= int(rpc(evm_url, "eth_blockNumber"), 16), r.json()

        def row(api):
            return next((x for x in api.get("/v1/contracts")["contracts"] if x["contract"] == cid), {})

        until(lambda: row(b).get("state") == "running" and row(a).get("state") == "running", 60,
              "both run the escrow")
        assert row(a)["released"] == [] and row(a)["refunded"] == []  # before the height nothing moves
        rpc(evm_url, "anvil_mine", hex(REFUND_BLOCKS + 2))  # past the refund height, in anvil's blocks
        until(lambda: row(a).get("refunded") == [0] and row(a).get("claims"), 90,
              "A's enclave refunds the chunk at anvil's height and A's node sweeps it")
        got = row(a)
        (claim,) = got["claims"]
        assert got["state"] == "done" and got["released"] == [] and claim[1] == "refunded" and claim[2], got
        receipt = rpc(evm_url, "eth_getTransactionReceipt", claim[2])
        assert receipt is not None and int(receipt["status"], 16) == 1, receipt  # a real, successful EVM transfer
        assert rpc(evm_url, "eth_getBalance", dep["address"], "latest") == "0x0"  # swept, gas paid from it
        assert row(b).get("received") == [] and row(b).get("claims") == []  # the payee got nothing
        for d in dirs:
            assert "raised" not in (d / "out.log").read_text(errors="replace"), (d / "out.log").read_text()[-3000:]
    finally:
        stop_all(procs)
