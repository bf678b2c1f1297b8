"""Key escrow between real daemons on 127.0.0.1 (a shared dev ledger server, a bootstrap node, six
``keyswitch run`` daemons): A buys a call option on B's ETH-DEV chunk with its two BTC-REG chunks (premium and
strike) key-escrowed 2-of-3 to H1, H2, H3, R being its recovery node (``keyswitch option ...
--key-escrow-holders H1,H2,H3 --k 2 --recovery R``). The premium is paid; then A's device dies for good
(SIGKILL, its data directory removed) and so does H3. Before the option's expiry the holders refuse R; once
the ledger passes it, R (``POST /v1/escrow/recover``) gets the two remaining holders' shares of the strike
chunk, rebuilds its key in its enclave and sweeps it to A's claim address, which the test derives from A's
identity seed on its own. The premium chunk, shown to the holders as moved to B, is never released."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import coincurve
import pytest

from node.assets import address_for
from node.ledger.client import DevLedgerClient
from node.ledger.devnet import FEES
from node.contracts.desk.swaps import claim_key
from tests.functional.framework import FACTOR, until

pytestmark = pytest.mark.network
NAMES = ["A", "B", "H1", "H2", "H3", "R"]


def test_a_recovery_node_sweeps_a_dead_payers_escrowed_chunk_home(network):
    network.net = "kesc"
    lurl, boot = network.ledger_and_boot()
    api = dict(zip(NAMES, network.start_daemons(NAMES, bootnodes=[boot], env={"KEYSWITCH_LEDGER_URL": lurl})))
    dirs = {n: api[n].datadir for n in NAMES}
    a, b, r = api["A"], api["B"], api["R"]
    holders = [api[h].peer for h in ("H1", "H2", "H3")]
    assert a.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 2}).status_code == 201
    assert b.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 1}).status_code == 201
    until(lambda: b.get("/v1/status")["offers_in_book"] >= 2 and a.get("/v1/status")["offers_in_book"] >= 1,
          60, "A's and B's books hold each other's offers")

    base = {"kind": "option", "peer": b.peer, "give": "BTC-REG", "take": "ETH-DEV", "chunks": 1,
            "premium_chunks": 1, "premium_blocks": 100, "expiry_blocks": 160}
    # bad input, refused with the reason before anything is agreed
    bad = a.post("/v1/contracts", {**base, "key_escrow": {"holders": holders, "k": 4, "recovery": r.peer}})
    assert bad.status_code == 409 and "k must be 2..3" in bad.json()["error"]
    bad = a.post("/v1/contracts", {**base, "key_escrow": {"holders": holders[:2] + [b.peer], "k": 2,
                                                         "recovery": r.peer}})
    assert bad.status_code == 409 and "is a party of the contract" in bad.json()["error"], bad.text

    out = subprocess.run([sys.executable, "-m", "node", "--datadir", str(dirs["A"]), "option", "--writer", b.peer,
                          "--give", "BTC-REG", "--take", "ETH-DEV", "--chunks", "1", "--premium-chunks", "1",
                          "--premium-blocks", "100", "--expiry-blocks", "160",
                          "--key-escrow-holders", ",".join(holders), "--k", "2", "--recovery", r.peer],
                         capture_output=True, text=True, timeout=120 * FACTOR)
    assert out.returncode == 0, out.stderr
    agreed = json.loads(out.stdout)
    cid, expiry = agreed["contract"], agreed["expiry"]
    assert agreed["key_escrow"]["holders"] == holders and agreed["key_escrow"]["k"] == 2

    def row(x):
        return next((c for c in x.get("/v1/contracts")["contracts"] if c["contract"] == cid), {})

    def shares(h):
        return [s for s in api[h].get("/v1/escrow")["holding"]["shares"] if s.get("contract") == cid]

    # the premium goes at once; each holder holds both chunks' shares with both runners' signatures, and
    # knows (B showed it the release record) that the premium moved to B
    until(lambda: row(a).get("released") == [[0, 1]], 60, "the premium is paid")
    until(lambda: all(len(shares(h)) == 2 and not any("not signed" in s["why"] for s in shares(h))
                      and any("moved" in s["why"] for s in shares(h)) for h in ("H1", "H2", "H3")), 60,
          "every holder holds the shares, signed by both runners")
    (mine,) = [d for d in r.get("/v1/escrow")["recovery_node_of"] if d["contract"] == cid]
    seed = (dirs["A"] / "claim.seed").read_bytes()  # the owner's claim seed (not the libp2p identity key)
    dest = {p: address_for("BTC-REG", coincurve.PrivateKey(claim_key(seed, bytes.fromhex(p))).public_key.format())
            for p in mine["destinations"]}
    assert mine["destinations"] == dest and sorted(dest.values()) == sorted(agreed["key_escrow"]["claim_addresses"])

    # A's device dies with its data, and so does one of the three holders
    for n in ("A", "H3"):
        api[n].kill()
    shutil.rmtree(dirs["A"])
    assert r.post("/v1/escrow/recover", {"contract": cid}).status_code == 200
    until(lambda: any("not-allowed" in s for x in r.get("/v1/escrow")["recoveries"]
                      for s in x["holders_said"].values()), 30, "before the expiry the holders refuse")
    # the premium (chunk 0) moved to B: the live holders' enclaves say so, and R stops asking for it at once
    until(lambda: {x["index"]: x["state"] for x in r.get("/v1/escrow")["recoveries"]} == {0: "moved", 1: "asking"},
          30, "R ends the recovery of the chunk that moved; the strike is still asked for")

    ledger = DevLedgerClient(lurl, admin=True)
    deposits = {p: ledger.balance("BTC-REG", address_for("BTC-REG", bytes.fromhex(p))).unconfirmed
                for p in mine["destinations"]}
    unmoved = [p for p, v in deposits.items() if v > 0]  # B swept the premium: the strike is still there
    assert len(unmoved) == 1
    (pub,) = unmoved
    height = ledger.height("ETH-DEV")
    if height < expiry:
        ledger.mine("ETH-DEV", expiry - height)
    until(lambda: any(x["index"] == 1 and x["state"] == "swept" for x in r.get("/v1/escrow")["recoveries"]),
          60, "R rebuilds the strike chunk's key from two shares and sweeps it")
    rec = {x["index"]: x for x in r.get("/v1/escrow")["recoveries"]}
    assert rec[1]["claim"]["status"] == "claimed" and len(rec[1]["shares"]) == 2
    assert rec[0]["state"] == "moved" and all("moved" in s for s in rec[0]["holders_said"].values())
    assert ledger.balance("BTC-REG", address_for("BTC-REG", bytes.fromhex(pub))).unconfirmed == 0
    assert ledger.balance("BTC-REG", dest[pub]).unconfirmed == deposits[pub] - FEES["utxo"]
    for n in ("B", "H1", "H2", "R"):
        assert "raised" not in (dirs[n] / "out.log").read_text(errors="replace"), n
