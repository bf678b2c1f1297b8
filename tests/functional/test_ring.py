"""A three-party ring between real daemons on 127.0.0.1 (a shared dev ledger server, a bootstrap node, three
``keyswitch run`` daemons): A gives BTC-REG to B, B gives ETH-DEV to C, C gives BTC-REG to A, one chunk
each, under the stdlib ``ring`` contract. A proposes it with ``keyswitch ring``; B and C agree over
/keyswitch/contract/1; the enclaves run it over /keyswitch/contract-run/1, each releasing only to its
successor, and every receiver sweeps what it got."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.functional.framework import FACTOR, until

pytestmark = pytest.mark.network


def test_a_ring_of_three_daemons(network):
    network.net = "ringtest"
    lurl, boot = network.ledger_and_boot()
    a, bb, c = network.start_daemons(["A", "B", "C"], bootnodes=[boot], env={"KEYSWITCH_LEDGER_URL": lurl})
    dirs = [a.datadir, bb.datadir, c.datadir]
    gives = {"A": "BTC-REG", "B": "ETH-DEV", "C": "BTC-REG"}
    for name, api in zip("ABC", (a, bb, c)):
        assert api.post("/v1/deposits", {"asset": gives[name], "chunks": 1}).status_code == 201
    addr = {n: api.get("/v1/deposits")["deposits"][0]["address"] for n, api in zip("ABC", (a, bb, c))}
    until(lambda: all(api.get("/v1/status")["offers_in_book"] >= 2 for api in (a, bb, c)), 90,
          "every book holds the others' offers")

    # refusals first: a ring needs two distinct other peers, each with offers of its asset in our book
    r = a.post("/v1/contracts", {"kind": "ring", "give": "BTC-REG",
                                 "legs": [{"peer": bb.peer, "asset": "ETH-DEV"}]})
    assert r.status_code == 409 and "2..8 legs" in r.json()["error"]
    r = a.post("/v1/contracts", {"kind": "ring", "give": "BTC-REG", "legs": [
        {"peer": bb.peer, "asset": "BTC-REG"}, {"peer": c.peer, "asset": "BTC-REG"}]})
    assert r.status_code == 409 and f"0 BTC-REG offer(s) from {bb.peer}" in r.json()["error"]

    out = subprocess.run([sys.executable, "-m", "node", "--datadir", str(dirs[0]), "ring", "--give", "BTC-REG",
                          "--leg", f"{bb.peer}=ETH-DEV", "--leg", f"{c.peer}=BTC-REG", "--deadline-blocks", "5000"],
                         capture_output=True, text=True, timeout=120 * FACTOR)
    assert out.returncode == 0, out.stderr
    agreed = json.loads(out.stdout)
    assert agreed["state"] == "agreed" and agreed["parties"] == [a.peer, bb.peer, c.peer]
    cid = agreed["contract"]

    def row(api):
        return next((x for x in api.get("/v1/contracts")["contracts"] if x["contract"] == cid), {})

    try:
        until(lambda: all(row(api).get("state") == "done" and len(row(api).get("claims", [])) == 1
                          for api in (a, bb, c)), 90, "the ring completes and every chunk is claimed")
    except AssertionError:
        for api in (a, bb, c):
            print(row(api))
        raise
    for name, api, pred in (("A", a, "C"), ("B", bb, "A"), ("C", c, "B")):
        got = row(api)
        assert got["kind"] == "ring" and len(got["released"]) == 1 and len(got["received"]) == 1, got
        assert all(st == "claimed" and tx for _, st, tx in got["claims"]), got
    # on the ledger: every deposit address was swept (by its successor)
    for name, api in zip("ABC", (a, bb, c)):
        (d,) = api.get("/v1/deposits")["deposits"]
        assert d["address"] == addr[name] and d["status"] == "swept", d
