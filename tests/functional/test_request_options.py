"""A request for options on real daemons (issue 18, ``request --contract option``): five ``keyswitch run``
daemons on 127.0.0.1. The requester R asks for the right to buy $150 of BTC-REG with ETH-DEV; the allocation
spreads it over three providers, one of which (X, ``tests.functional.refuser``) refuses to write. The two
others write their options (R's premium paid, their chunks committed in their enclaves); X's share is asked
for once more and written by P3, funded meanwhile. R exercises one option (its chunk comes for one strike
chunk) and lets the two others expire (every chunk goes home); every contract ends on both sides and every
exposure hold on every node is released."""

from __future__ import annotations

import pytest

from node.ledger.client import DevLedgerClient
from tests.functional.framework import (
    FACTOR, Network, RequestWatch, book_offers, print_contract_logs, until, until_holds_released,
)
from tests.functional.refuser import REASON

pytestmark = pytest.mark.network
NET = "opttest"
EXPIRY = int(80 * FACTOR)  # blocks (0.5 s each): long enough to write and exercise; then mined past at once


def test_a_request_for_options_is_written_by_providers_a_refuser_covered_then_exercised_or_expired(network):
    network.net = NET
    try:
        _run(network)
    except BaseException:
        print_contract_logs(network, ("contract", "refus", "request", "option"))
        raise


def _run(network: Network) -> None:
    lurl, boot = network.ledger_and_boot()
    names = ["R", "X", "P1", "P2", "P3"]
    env = {"KEYSWITCH_LEDGER_URL": lurl, "KEYSWITCH_RISK_MAX_SHARE_DEVICE": "0.34",  # one $50 chunk per device
           "KEYSWITCH_RISK_REQUEST_DEADLINE": str(3 * FACTOR)}
    api = dict(zip(names, network.wait_daemons([
        network.add_daemon(n, bootnodes=[boot], env=env,
                           module="tests.functional.refuser" if n == "X" else "node") for n in names])))
    r = api["R"]
    peers = {api[n].peer: n for n in names}
    assert r.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 8}).status_code == 201
    for n in ("X", "P1", "P2"):
        assert api[n].post("/v1/deposits", {"asset": "BTC-REG", "chunks": 1}).status_code == 201

    until(lambda: book_offers(r, "BTC-REG") == 3 and all(book_offers(api[n], "ETH-DEV") == 8 for n in names[1:]), 120,
          "R's book holds the three BTC-REG offers, every provider R's eight ETH-DEV offers")

    # terms out of bounds: refused with the range, nothing started
    bad = r.post("/v1/requests", {"asset": "BTC-REG", "usd": 150, "give": "ETH-DEV", "contract": "option",
                                  "premium_chunks": 5, "wait": False})
    assert bad.status_code == 400 and "premium_chunks" in bad.json()["error"], bad.text
    started = r.post("/v1/requests", {"asset": "BTC-REG", "usd": 150, "give": "ETH-DEV", "contract": "option",
                                      "premium_chunks": 1, "expiry_blocks": EXPIRY, "wait": False})
    assert started.status_code == 202, started.text
    watch = RequestWatch(r, started.json())
    # the first allocation: its providers stay in the report ("running" may be over before a read: the options
    # are written and the refusal comes within a second, and the shortfall is then being asked for again)
    first = watch.until_report(lambda rep: rep["providers"] or rep["state"] in ("complete", "short", "no-allocation"),
                               60, "the first allocation")
    assert first["providers"] and all(p["ask"] == 1 for p in first["providers"]), first
    assert api["P3"].post("/v1/deposits", {"asset": "BTC-REG", "chunks": 1}).status_code == 201  # the cover
    rep = watch.until(("complete", "short", "no-allocation"), 240, "the request to end")
    print("[test] report:", {k: v for k, v in rep.items() if k != "providers"})
    for p in rep["providers"]:
        print("[test]  ", {k: p[k] for k in ("peer", "ask", "state", "received", "lost", "reason", "contract")})
    assert rep["contract"] == "option" and rep["premium_chunks"] == 1 and rep["expiry_blocks"] == EXPIRY
    ask1 = {peers[p["peer"]]: p for p in rep["providers"] if p["ask"] == 1}
    assert set(ask1) == {"X", "P1", "P2"}, ask1  # spread over three providers
    assert ask1["X"]["state"] == "refused" and REASON in ask1["X"]["reason"], ask1["X"]
    assert ask1["P1"]["state"] == ask1["P2"]["state"] == "done", ask1
    ask2 = [p for p in rep["providers"] if p["ask"] == 2]
    assert [peers[p["peer"]] for p in ask2] == ["P3"] and ask2[0]["state"] == "done", ask2  # covered once
    assert rep["state"] == "complete" and rep["exit_code"] == 0 and rep["lost"] == 0, rep
    assert rep["obtained_cents"] >= 15_000
    written = {peers[p["peer"]]: p["contract"] for p in rep["providers"] if p["state"] == "done"}
    assert len(set(written.values())) == 3 and all(len(c) == 64 for c in written.values()), written

    def row(a, cid):
        return next((x for x in a.get("/v1/contracts")["contracts"] if x["contract"] == cid), None) or {}

    for n, cid in written.items():  # the premium went to each writer; nothing else moved yet
        assert row(r, cid)["released"] == [[0, 1]], (n, row(r, cid))
        assert row(api[n], cid)["released"] == [], (n, row(api[n], cid))

    # R exercises P1's option: its strike goes, P1's chunk comes; P2's and P3's expire
    ex = r.post("/v1/contracts/approve", {"contract": written["P1"], "message": "exercise"})
    assert ex.status_code == 200, ex.text
    until(lambda: row(r, written["P1"]).get("state") == "done" and row(api["P1"], written["P1"]).get("state")
          == "done", 60 * FACTOR, "the exercised option ends")
    assert row(r, written["P1"])["received"] == [[1, 0]]
    assert row(api["P1"], written["P1"])["received"] == [[0, 0], [0, 1]]
    DevLedgerClient(lurl, admin=True).mine("BTC-REG", EXPIRY + 2)  # past every expiry, without waiting for it
    until(lambda: all(row(a, written[n]).get("state") == "done" for n in ("P2", "P3") for a in (r, api[n])),
          90 * FACTOR, "the options not exercised expire and end")
    for n in ("P2", "P3"):
        assert row(r, written[n])["received"] == [] and row(r, written[n])["refunded"] == [1], row(r, written[n])
        assert row(api[n], written[n])["refunded"] == [0], row(api[n], written[n])  # the writer's chunk went home
    until_holds_released(api, 120, "after the request for options")
