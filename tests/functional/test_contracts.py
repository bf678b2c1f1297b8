"""An escrow and an option between real daemons on 127.0.0.1 (a shared dev ledger server, a bootstrap node,
three ``keyswitch run`` daemons): A pays B in escrow and C, the arbiter, signs "release" (after a crash and a
restart: what it agreed to arbitrate is on disk); then A buys a call
option on B's ETH-DEV chunk, pays the premium, exercises it and gets the chunk for its strike. Agreed over
/keyswitch/contract/1, run over /keyswitch/contract-run/1: every release decided inside the enclaves."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.functional.framework import FACTOR, until

pytestmark = pytest.mark.network


def test_an_escrow_and_an_option_between_daemons(network):
    network.net = "ctest"
    lurl, boot = network.ledger_and_boot()
    a, bb, c = network.start_daemons(["A", "B", "C"], bootnodes=[boot], env={"KEYSWITCH_LEDGER_URL": lurl})
    dirs = [a.datadir, bb.datadir, c.datadir]
    assert a.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 4}).status_code == 201
    assert bb.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 1}).status_code == 201
    assert c.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 1}).status_code == 201
    until(lambda: bb.get("/v1/status")["offers_in_book"] >= 4 and a.get("/v1/status")["offers_in_book"] >= 1,
          90, "the books hold the offers")

    # ---- escrow: A's two chunks held for B until C signs "release"
    r = a.post("/v1/contracts", {"kind": "escrow", "peer": bb.peer, "arbiter": c.peer, "give": "BTC-REG",
                                 "chunks": 2, "refund_blocks": 5000})
    assert r.status_code == 201, r.text
    esc = r.json()["contract"]

    def row(api, cid):
        return next((x for x in api.get("/v1/contracts")["contracts"] if x["contract"] == cid), None)

    until(lambda: (row(bb, esc) or {}).get("state") == "running", 60, "B runs the escrow")
    assert row(a, esc)["released"] == []  # nothing moves without the arbiter
    r = bb.post("/v1/contracts/approve", {"contract": esc, "message": "release"})
    assert r.status_code == 200  # B signs "release" too: delivered, but the escrow reads only C's (or A's)
    time.sleep(3)
    assert row(a, esc)["released"] == []
    c.kill()  # ---- C, the arbiter, crashes and comes back on the same data directory: it still approves (issue #18)
    c.restart(90 * FACTOR)
    until(lambda: {a.peer, bb.peer} <= {p["peer"] for p in c.get("/v1/peers")["peers"]}, 60, "C is back with A and B")
    out = subprocess.run([sys.executable, "-m", "node", "--datadir", str(dirs[2]), "approve", "--contract", esc,
                          "--message", "release"], capture_output=True, text=True, timeout=120 * FACTOR)
    assert out.returncode == 0 and json.loads(out.stdout)["approved"] == "release", out.stderr  # via the CLI
    try:
        until(lambda: (row(bb, esc) or {}).get("state") == "done" and (row(a, esc) or {}).get("state") == "done",
              60, "the escrow pays out")
    except AssertionError:
        print("A", row(a, esc), "\nB", row(bb, esc))
        for d in dirs:
            print(d.name, [ln for ln in (d / "out.log").read_text().splitlines() if "contract" in ln][-15:])
        raise
    got = row(bb, esc)
    assert [x[1] for x in got["received"]] == [0, 1] and all(st == "claimed" and tx for _, st, tx in got["claims"])
    # B reports each chunk it received (signed by its enclave, the record attached); C, a third node, takes them
    until(lambda: bb.get("/v1/status")["outcomes"]["published"] >= 2
          and c.get("/v1/status")["outcomes"]["accepted"] >= 2, 60, "B's outcome reports reach C")
    assert bb.get("/v1/status")["outcomes"]["published"] == 2  # once per chunk
    assert [x["score"] > 0 for x in bb.get("/v1/reputation")["devices"] if x["owner"] == a.peer] == [True]

    # ---- option: A buys a call on B's ETH-DEV chunk: one premium chunk now, one strike chunk on exercise
    out = subprocess.run([sys.executable, "-m", "node", "--datadir", str(dirs[0]), "option", "--writer", bb.peer,
                          "--give", "BTC-REG", "--take", "ETH-DEV", "--chunks", "1", "--premium-chunks", "1",
                          "--premium-blocks", "5000", "--expiry-blocks", "10000"],
                         capture_output=True, text=True, timeout=120 * FACTOR)
    assert out.returncode == 0, out.stderr
    opt = json.loads(out.stdout)["contract"]
    until(lambda: (row(a, opt) or {}).get("released") == [[0, 1]], 60, "the premium is paid")
    assert row(bb, opt)["released"] == []  # the underlying waits for the exercise and the strike
    assert a.post("/v1/contracts/approve", {"contract": opt, "message": "exercise"}).status_code == 200
    until(lambda: (row(a, opt) or {}).get("state") == "done" and (row(bb, opt) or {}).get("state") == "done",
          120, "the option is exercised")
    assert row(a, opt)["received"] == [[1, 0]] and row(bb, opt)["received"] == [[0, 0], [0, 1]]
    for d in dirs:
        assert "raised" not in (d / "out.log").read_text(errors="replace"), (d / "out.log").read_text()[-3000:]
