"""A swap between two real daemons on 127.0.0.1: a shared dev ledger server, a bootstrap node, two
``keyswitch run`` daemons. A funds BTC-REG chunks, B funds ETH-DEV chunks; A proposes a swap over
/keyswitch/contract/1, B's policy agrees, the enclaves exchange the keys tit-for-tat over
/keyswitch/contract-run/1 (the stdlib turns contract), each side sweeps what it received to its own claim addresses, and each reports
the outcome (claimed) to the other's reputation view."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import httpx
import pytest

from tests.functional.framework import FACTOR, until

pytestmark = pytest.mark.network

def test_two_daemons_swap_chunks_and_claim_them(network):
    network.net = "swaptest"
    lurl, boot = network.ledger_and_boot()
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        mport = sk.getsockname()[1]
    a = network.add_daemon("A", "--metrics-port", str(mport), bootnodes=[boot], env={"KEYSWITCH_LEDGER_URL": lurl})
    bb = network.add_daemon("B", bootnodes=[boot], env={"KEYSWITCH_LEDGER_URL": lurl})
    network.wait_daemons([a, bb])
    dirs = [a.datadir, bb.datadir]
    assert a.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 2}).status_code == 201
    assert bb.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 2}).status_code == 201
    until(lambda: a.get("/v1/status")["offers_in_book"] == 2 and bb.get("/v1/status")["offers_in_book"] == 2,
          90, "each book holds the other's two offers")

    # a refusal first: B has no BTC-REG to give, so A cannot even plan the reverse swap
    r = a.post("/v1/contracts", {"peer": bb.peer, "give": "ETH-DEV", "take": "BTC-REG", "chunks": 1})
    assert r.status_code == 409 and "offers 0 unexpired ETH-DEV" in r.json()["error"]

    # the swap itself through the CLI, as an operator would run it
    out = subprocess.run([sys.executable, "-m", "node", "--datadir", str(dirs[0]), "swap", "--peer", bb.peer,
                          "--give", "BTC-REG", "--take", "ETH-DEV", "--chunks", "2", "--wait", str(90 * FACTOR),
                          "--json"], capture_output=True, text=True, timeout=200 * FACTOR)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["agreed"]["state"] == "agreed" and res["agreed"]["rounds"] == 4
    assert res["contract"]["state"] == "done", res

    def finished():
        ca, cb = a.get("/v1/contracts")["contracts"], bb.get("/v1/contracts")["contracts"]
        return ca and cb and all(c["state"] == "done" and "outcome" in c for c in ca + cb)

    until(finished, 120, "both sides finish the swap")
    for api, got in ((a, "ETH-DEV"), (bb, "BTC-REG")):
        (c,) = api.get("/v1/contracts")["contracts"]
        o = c["outcome"]
        assert (o["status"], o["released"], o["received"], o["lost"]) == ("claimed", 2, 2, 0), o
        assert all(ch["asset"] == got and ch["status"] == "claimed" and ch["txid"] for ch in o["chunks"]), o
    # `keyswitch balance`: where the received keys went: both swept to the owner's claim addresses, by the
    # sweeps the outcome names
    for api, got in ((a, "ETH-DEV"), (bb, "BTC-REG")):
        bal = api.get("/v1/balance")
        (c,) = api.get("/v1/contracts")["contracts"]
        assert sorted(r["txid"] for r in bal["claims"]) == sorted(ch["txid"] for ch in c["outcome"]["chunks"])
        assert [(t["asset"], t["status"], t["keys"]) for t in bal["totals"]] in (
            [(got, "claimed", 1), (got, "claimed", 1)], [(got, "claimed", 2)]), bal  # (an address per key)
    text = subprocess.run([sys.executable, "-m", "node", "--datadir", str(dirs[0]), "balance"],
                          capture_output=True, text=True, timeout=60 * FACTOR).stdout
    dests = {r["destination"] for r in a.get("/v1/balance")["claims"]}
    assert all(f"swept to {d}" in text for d in dests) and "ETH-DEV" in text, text
    # each side's view of the other's device went up; each received the other's outcome report
    until(lambda: all(api.get("/v1/status")["outcomes"]["accepted"] >= 1 for api in (a, bb)), 60,
          "outcome reports delivered")
    rep = {r["owner"]: r for r in a.get("/v1/reputation")["devices"]}
    assert rep[bb.peer]["score"] > 0 and not rep[bb.peer]["cheater"]
    # the node's metrics count the contract, its releases and its claims
    def metrics_show():
        text = httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=10).text
        return ('keyswitch_contracts{state="done"} 1.0' in text and "keyswitch_key_releases_total 2.0" in text
                and 'keyswitch_claims_total{result="claimed"} 2.0' in text
                and 'keyswitch_outcomes_total{kind="claimed"} 1.0' in text)

    until(metrics_show, 30, "metrics counting the swap")
    # the swapped deposits are no longer on offer anywhere
    until(lambda: a.get("/v1/status")["offers_in_book"] == 0 and bb.get("/v1/status")["offers_in_book"] == 0,
          60, "released chunks leave the books")
    # the republish ticks after the swap (every 2 s) sign sheets without the released keys: no handler raised
    for d in dirs:
        assert "raised" not in (d / "out.log").read_text(errors="replace"), (d / "out.log").read_text()[-3000:]
