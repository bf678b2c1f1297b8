"""Claim policy "keep" between real daemons on 127.0.0.1 (a shared dev ledger server, a bootstrap node, three
``keyswitch run`` daemons). B runs with ``--claim-policy keep``: A swaps two BTC-REG chunks for B's two
ETH-DEV chunks; B keeps the BTC-REG keys in its enclave (no sweep), they become B's deposits and B's sheet
offers them; C's book holds them. B is killed (SIGKILL) and restarted: the kept keys are still offered, once.
Then B swaps one kept chunk onward to C for C's ETH-DEV, and C (policy sweep) claims it on the ledger."""

from __future__ import annotations

import pytest

from tests.functional.framework import until

pytestmark = pytest.mark.network


def _contract(api, cid=None):
    rows = [c for c in api.get("/v1/contracts")["contracts"] if cid is None or c["contract"] == cid]
    return rows[-1] if rows else {}


def _book(api, origin, asset):
    return sorted(o["address"] for o in api.get(f"/v1/offers?asset={asset}")["offers"] if o["origin"] == origin)


def test_a_kept_key_is_offered_again_and_swapped_onward(network):
    network.net = "keeptest"
    lurl, boot = network.ledger_and_boot()
    env = {"KEYSWITCH_LEDGER_URL": lurl}
    a, bb, c = network.wait_daemons([network.add_daemon(n, *(["--claim-policy", "keep"] if n == "B" else []),
                                                        bootnodes=[boot], env=env) for n in "ABC"])
    dirs = [a.datadir, bb.datadir, c.datadir]
    assert a.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 2}).status_code == 201
    assert bb.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 2}).status_code == 201
    assert c.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 1}).status_code == 201
    gave = sorted(x["address"] for x in a.get("/v1/deposits")["deposits"])
    until(lambda: len(_book(a, bb.peer, "ETH-DEV")) == 2 and _book(bb, a.peer, "BTC-REG") == gave
          and len(_book(bb, c.peer, "ETH-DEV")) == 1, 90, "the books hold the offers")

    # ---- A's two BTC-REG chunks for B's two ETH-DEV chunks; B keeps what it receives
    r = a.post("/v1/contracts", {"peer": bb.peer, "give": "BTC-REG", "take": "ETH-DEV", "chunks": 2})
    assert r.status_code == 201, r.text
    until(lambda: _contract(a).get("state") == "done" and "outcome" in _contract(bb), 90, "the swap ends")
    o = _contract(bb)["outcome"]
    assert (o["status"], o["received"], o["lost"]) == ("claimed", 2, 0), o
    assert sorted(ch["address"] for ch in o["chunks"]) == gave
    assert all(ch["status"] == "kept" and ch["txid"] == "" for ch in o["chunks"]), o  # no sweep
    assert all(ch["status"] == "claimed" and ch["txid"] for ch in _contract(a)["outcome"]["chunks"])  # A swept

    # ---- the kept keys are B's deposits (still in B's enclave) and on B's sheet, in C's book
    def kept_rows(api):
        return sorted((x["address"], x["key_state"], x["status"].split("(")[0])
                      for x in api.get("/v1/deposits")["deposits"] if x["kept_from"])

    until(lambda: len(kept_rows(bb)) == 2, 30, "B adopts the kept keys as deposits")
    assert kept_rows(bb) == [(ad, "received", "confirmed") for ad in gave]
    until(lambda: _book(c, bb.peer, "BTC-REG") == gave, 60, "B's kept chunks reach C's book")
    assert bb.get("/v1/status")["own_offers"] == 2  # its ETH-DEV went to A: only the kept chunks are left

    # ---- a crash: B is killed and restarted; the kept chunks are offered again, once
    bb.kill()
    bb.restart()  # (its log: out-2.log)
    assert bb.get("/v1/status")["own_offers"] == 2
    assert kept_rows(bb) == [(ad, "received", "confirmed") for ad in gave]
    assert len(bb.get("/v1/deposits")["deposits"]) == 4  # its two own (now released) and the two kept
    until(lambda: len(_book(bb, c.peer, "ETH-DEV")) == 1, 60, "B reconnects and knows C's offer")

    # ---- B swaps one kept chunk onward to C; C sweeps it to its own address
    r = bb.post("/v1/contracts", {"peer": c.peer, "give": "BTC-REG", "take": "ETH-DEV", "chunks": 1})
    assert r.status_code == 201, r.text
    until(lambda: _contract(c).get("state") == "done" and "outcome" in _contract(bb, _contract(c)["contract"]),
          90, "the onward swap ends")
    (ch,) = _contract(c)["outcome"]["chunks"]
    assert ch["asset"] == "BTC-REG" and ch["address"] in gave and ch["status"] == "claimed" and ch["txid"], ch
    (back,) = _contract(bb, _contract(c)["contract"])["outcome"]["chunks"]
    assert back["asset"] == "ETH-DEV" and back["status"] == "kept"  # B keeps what C gave, too
    left = [ad for ad in gave if ad != ch["address"]]
    until(lambda: _book(c, bb.peer, "BTC-REG") == left, 60, "the released kept chunk leaves C's book")
    for d in dirs:
        for log in d.glob("out*.log"):
            assert "raised" not in log.read_text(errors="replace"), log.read_text()[-3000:]
